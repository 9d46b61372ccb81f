// The WebSocket to intercomd (protocol v1, docs/protocol.md): registering under a
// name, answering requests by id, and coming back after the network or the
// appliance drops: reconnect with backoff (1 s doubling to 30 s, with jitter) and
// reclaim the name with the token kept in sessionStorage.
//
// Every time the page becomes visible again (visibilitychange, pageshow) it opens
// a fresh socket: after iOS suspended the page, a dead socket can still read OPEN.
// `failedOpens` counts sockets in a row that never opened (the upgrade itself
// failed: `error`, then close 1006), which is how an untrusted certificate shows.
//
// Events (on/emit): 'state' {state, retryAt}, 'registered' msg, 'message' msg,
// 'fatal' code, 'replaced'.
//
// `extra()` adds fields to every `register` (features, groups, dnd). A group
// `call` and a `page` are answered by `ringing` / `paging` carrying the request's
// id in place of an `ack`: that resolves the request and is also emitted.

import { Emitter } from './emitter.js';

const TOKEN_KEY = 'intercom.token';
const REGISTER_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 10000;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;

/** Register errors a retry cannot fix: the person has to choose again.
 *  name_taken is among them only for a name just typed in; a device's own saved
 *  name may still be held by its previous, not yet timed-out connection (after a
 *  reboot, say), so that is retried with backoff. */
const FATAL = new Set(['name_invalid', 'name_taken', 'unauthorized', 'already_registered']);

export class SignalError extends Error {
  constructor(code, message, detail) {
    super(message || code);
    this.code = code;
    this.detail = detail || {}; // the whole error message (no_one_available lists names)
  }
}

/** Delay before reconnect attempt n (0-based): 1 s, 2 s, 4 s … 30 s, each ±25 %. */
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 16));
  return Math.min(BACKOFF_MAX_MS, Math.round(base * (0.75 + random() * 0.5)));
}

function loadToken(name) {
  try {
    const saved = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || 'null');
    return saved && saved.name === name ? saved.token : undefined;
  } catch {
    return undefined;
  }
}

function saveToken(name, token) {
  try {
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ name, token }));
  } catch {
    // private mode: we simply cannot resume after a reload
  }
}

export class Signaling extends Emitter {
  constructor(url) {
    super();
    this.url = url;
    this.name = null;
    this.key = undefined;
    this.ws = null;
    this.candidate = null;
    this.state = 'idle'; // idle | connecting | registered | reconnecting | stopped
    this.attempt = 0;
    this.retryAt = 0;
    this.retryTimer = null;
    this.registerTimer = null;
    this.nextId = 1;
    this.pending = new Map();
    this.everRegistered = false;
    this.registrations = 0;
    this.failedOpens = 0;
    this.extra = () => ({});
    window.addEventListener('online', () => this.reconnectNow());
    const back = () => {
      // iOS fires both visibilitychange and pageshow on a return: one second socket
      // is enough, and dropping one that the server may already have switched to
      // would take this tablet offline for a moment.
      if (document.visibilityState !== 'visible' || this.candidate) return;
      this.reconnectNow();
    };
    document.addEventListener('visibilitychange', back);
    window.addEventListener('pageshow', (ev) => {
      // The first pageshow is the page's own load; only a return counts.
      if (ev.persisted || this.everRegistered) back();
    });
  }

  /** Starts (or restarts) under `name`. With `retryTaken`, a name held by
   *  someone else is waited for instead of given up. */
  start(name, key, { retryTaken = false } = {}) {
    this.name = name;
    this.key = key || undefined;
    this.retryTaken = retryTaken;
    this.attempt = 0;
    this.lastError = null;
    this.everRegistered = false;
    this.stopTimers();
    this.drop(this.ws, 1000);
    this.drop(this.candidate, 1000);
    this.ws = this.candidate = null;
    this.open();
  }

  stop() {
    this.setState('stopped');
    this.stopTimers();
    this.drop(this.ws, 1000);
    this.drop(this.candidate, 1000);
    this.ws = this.candidate = null;
  }

  /** Opens a fresh socket now. An old one stays open until the new one has
   *  registered (the server then closes it with 4001), so a call survives. */
  reconnectNow() {
    if (this.state === 'stopped' || this.state === 'idle' || !this.name) return;
    this.stopTimers();
    this.open();
  }

  setState(state) {
    this.state = state;
    this.emit('state', { state, retryAt: this.retryAt });
  }

  stopTimers() {
    clearTimeout(this.retryTimer);
    clearTimeout(this.registerTimer);
    this.retryTimer = null;
    this.registerTimer = null;
  }

  drop(ws, code) {
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = null;
    ws.onclose = null;
    try {
      ws.close(code);
    } catch {
      // already closing
    }
  }

  open() {
    const live = this.ws && this.ws.readyState === WebSocket.OPEN && this.state === 'registered';
    if (live) {
      // Probably a stale socket after a network change: try a second one and
      // switch over only once it has registered.
      this.drop(this.candidate, 1000);
      this.candidate = this.connect(true);
      return;
    }
    this.drop(this.ws, 1000);
    this.setState(this.everRegistered ? 'reconnecting' : 'connecting');
    this.ws = this.connect(false);
  }

  connect(isCandidate) {
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.failedOpens++;
      if (!isCandidate) this.scheduleRetry();
      return null;
    }
    ws.onopen = () => {
      ws.opened = true;
      this.failedOpens = 0;
      const msg = { type: 'register', ...this.extra(), name: this.name, id: this.nextId++ };
      const token = loadToken(this.name);
      if (token) msg.token = token;
      if (this.key) msg.key = this.key;
      ws.registerId = msg.id;
      ws.send(JSON.stringify(msg));
      if (isCandidate) return;
      this.registerTimer = setTimeout(() => {
        if (this.ws === ws && this.state !== 'registered') {
          this.drop(ws, 1000);
          this.onLost();
        }
      }, REGISTER_TIMEOUT_MS);
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!msg || typeof msg !== 'object') return;
      if (ws === this.candidate) this.receiveCandidate(msg, ws);
      else if (ws === this.ws) this.receive(msg, ws);
    };
    ws.onclose = (ev) => {
      if (!ws.opened) this.failedOpens++;
      if (ws === this.candidate) {
        this.candidate = null;
        return;
      }
      if (this.ws !== ws) return;
      this.failPending('disconnected');
      if (ev.code === 4001) {
        this.ws = null;
        this.setState('stopped');
        this.emit('replaced');
        return;
      }
      this.onLost();
    };
    ws.onerror = () => {};
    return ws;
  }

  receiveCandidate(msg, ws) {
    if (msg.type === 'registered') {
      const old = this.ws;
      this.candidate = null;
      this.ws = ws;
      this.drop(old, 1000);
      this.failPending('disconnected');
      this.receive(msg, ws);
    } else if (msg.type === 'error' && msg.id === ws.registerId) {
      this.candidate = null;
      this.drop(ws, 1000);
    }
  }

  receive(msg, ws) {
    if (msg.type === 'registered') {
      clearTimeout(this.registerTimer);
      this.attempt = 0;
      this.retryAt = 0;
      this.lastError = null;
      this.everRegistered = true;
      this.registrations++;
      if (msg.token) saveToken(msg.name || this.name, msg.token);
      this.setState('registered');
      this.emit('registered', msg);
      return;
    }
    if (msg.type === 'error' && msg.id !== undefined && msg.id === ws.registerId && this.state !== 'registered') {
      clearTimeout(this.registerTimer);
      this.drop(ws, 1000);
      this.ws = null;
      if (FATAL.has(msg.code) && !(msg.code === 'name_taken' && this.retryTaken)) {
        this.setState('stopped');
        this.emit('fatal', msg.code);
      } else {
        // full, rate_limited …: try again later
        this.onLost(msg.code);
      }
      return;
    }
    if ((msg.type === 'ack' || msg.type === 'error') && msg.id !== undefined && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.type === 'ack') p.resolve(msg);
      else p.reject(new SignalError(msg.code, msg.message, msg));
      return;
    }
    if ((msg.type === 'ringing' || msg.type === 'paging') && msg.id !== undefined && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      p.resolve(msg);
    }
    this.emit('message', msg);
  }

  onLost(code) {
    if (this.state === 'stopped') return;
    this.ws = null;
    this.lastError = code || null;
    this.scheduleRetry();
  }

  scheduleRetry() {
    this.stopTimers();
    const delay = backoffDelay(this.attempt++);
    this.retryAt = Date.now() + delay;
    this.setState(this.everRegistered ? 'reconnecting' : 'connecting');
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  failPending(code) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new SignalError(code));
    }
    this.pending.clear();
  }

  /** Sends without waiting for an answer. Returns false when not connected. */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.state !== 'registered') return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** Sends with an id; resolves on ack, rejects with SignalError(code) on error. */
  request(msg) {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      if (!this.send({ ...msg, id })) {
        reject(new SignalError('disconnected'));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SignalError('timeout'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
    });
  }
}

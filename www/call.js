// The call in progress, from the first ring to its end: who with, its phase, the
// camera and microphone, the peer connection (link.js) and every timer it started.
// end() tears all of that down exactly once; an ended call emits nothing and runs
// no timer, so a step that awaited something only has to ask whether its call is
// still the current one (app.js `current`).
//
// Phases: 'ringing-out' (we call) or 'ringing-in' (we are called), then
// 'connecting' once accepted, 'in-call' once media first connects, and 'ended'.
// Events (on/emit): 'phase', 'media' (the link's state changed), 'remote' (remote
// tracks or media flags changed), 'failed' (the link gave up on the media path).

import { Emitter } from './emitter.js';
import { Link } from './link.js';
import { getLocalMedia, stopStream } from './media.js';

export class Call extends Emitter {
  constructor(partner, phase) {
    super();
    this.partner = partner;
    this.phase = phase;
    this.role = phase === 'ringing-in' ? 'callee' : 'caller';
    this.mediaPromise = null;
    this.media = null; // what getLocalMedia() gave, once the link uses it
    this.link = null;
    this.pendingSignals = []; // signal payloads that arrived before the link
    this.startedAt = 0; // when media first connected
    this.sending = { audio: true, video: true }; // our microphone and camera
    this.pttHeld = false;
    this.remoteBlocked = false; // autoplay refused the remote sound until a tap
    this.timers = new Set();
  }

  get ended() {
    return this.phase === 'ended';
  }

  emit(type) {
    if (!this.ended) super.emit(type);
  }

  setPhase(phase) {
    if (this.ended || this.phase === phase) return;
    this.phase = phase;
    this.emit('phase');
  }

  /** Opens the camera and microphone on first use; the same promise after that. */
  localMedia() {
    if (!this.mediaPromise) this.mediaPromise = getLocalMedia();
    return this.mediaPromise;
  }

  /** Runs fn after ms, unless the call has ended by then. */
  after(ms, fn) {
    const id = setTimeout(() => {
      this.timers.delete(id);
      if (!this.ended) fn();
    }, ms);
    this.timers.add(id);
  }

  /** Runs fn every ms until the call ends. */
  every(ms, fn) {
    this.timers.add(setInterval(fn, ms));
  }

  /** Starts the peer connection with `media` (from localMedia()); `send` relays a
   *  signal payload to the partner; `sending` says which of our tracks start enabled. */
  connect(media, { iceServers, send, sending }) {
    this.media = media;
    this.sending = { audio: media.audio && sending.audio, video: media.video && sending.video };
    for (const tr of media.stream.getTracks()) tr.enabled = this.sending[tr.kind] === true;
    const link = new Link({ role: this.role, iceServers, local: media, send });
    this.link = link;
    link.on('state', () => {
      if (link.status === 'connected' && this.phase === 'connecting') {
        this.startedAt = Date.now();
        this.setPhase('in-call');
      }
      this.emit('media');
    });
    link.on('remote', () => this.emit('remote'));
    link.on('failed', () => this.emit('failed'));
    for (const data of this.pendingSignals) link.handle(data);
    this.pendingSignals = [];
  }

  /** A `signal` payload from the partner: to the link, or kept until there is one. */
  signal(data) {
    if (this.link) this.link.handle(data);
    else if (!this.ended) this.pendingSignals.push(data);
  }

  /** Turns our microphone ('audio') or camera ('video') on or off and tells the partner. */
  setSending(kind, on) {
    this.sending[kind] = on;
    if (this.link) this.link.setTrackEnabled(kind, on);
  }

  /** Stops timers, the link and the camera (also one still opening). True the
   *  first time, false after: whoever gets true does the rest of the ending. */
  end() {
    if (this.ended) return false;
    this.phase = 'ended';
    for (const id of this.timers) clearTimeout(id); // clears intervals too
    this.timers.clear();
    if (this.link) this.link.close();
    if (this.mediaPromise) this.mediaPromise.then((m) => stopStream(m.stream));
    this.pendingSignals = [];
    return true;
  }
}

// The intercom page: screens, presence, the call flow and kiosk behaviour.
// Talks to intercomd through signaling.js; the call in progress is one Call (call.js),
// and the screen shown follows its phase.
//
// URL parameters (for a wall tablet's bookmark):
//   name=door      preset this device's name
//   autoanswer=1   answer incoming calls by themselves after one ring, only when
//                  the appliance requires an access key (else it rings as usual)
//   audio=0        start calls with the camera off (video=0 is the same)
//   ptt=1          push-to-talk: hold a big button to open the microphone
//   lang=ko        force the language (en, ko)
//   key=…          access key, when the appliance was started with --access-key
//   kiosk=1        kiosk behaviour without presetting a name
//
// A URL carrying any of these is the tablet's set-up: they are kept in localStorage
// and a launch without any (a home-screen app starts at its own URL, with storage
// apart from Safari's) uses what was kept. The settings panel forgets them.

import { t, pickLang, setLang, translateDom } from './i18n.js';
import { Signaling } from './signaling.js';
import { Call } from './call.js';
import * as sound from './sound.js';

const $ = (id) => document.getElementById(id);
const NAME_KEY = 'intercom.name';
const PTT_KEY = 'intercom.ptt';
const CAM_KEY = 'intercom.camera';
const KEY_KEY = 'intercom.key';
const SETUP_KEY = 'intercom.setup';
// The kiosk's set-up parameters (door, calls, groups and dnd are for the kiosk modes).
const SETUP_PARAMS = ['name', 'autoanswer', 'audio', 'video', 'ptt', 'kiosk', 'lang', 'key', 'door', 'calls', 'groups', 'dnd'];
const TRUST_HINT_AFTER = 3; // sockets in a row that never opened
const NOTICE_MS = 8000;
const AUTOANSWER_MS = 2500;

// Network strings (reasons, error codes) are looked up in Maps, never on plain
// objects: a reason of `constructor` or `__proto__` must find nothing.
const FATAL_KEYS = new Map([['name_taken', 'nameTaken'], ['name_invalid', 'nameInvalid'], ['unauthorized', 'unauthorized']]);
const CALL_ERROR_KEYS = new Map([['busy', 'isBusy'], ['peer_not_found', 'peerGone']]);
const OUTGOING_HANGUP_KEYS = new Map([['declined', 'declined'], ['timeout', 'noAnswer'], ['busy', 'isBusy'], ['disconnected', 'peerGone']]);
const CALL_HANGUP_KEYS = new Map([['disconnected', 'peerLost'], ['failed', 'mediaFailed']]);

const store = {
  get(k) {
    try {
      return localStorage.getItem(k);
    } catch {
      return null;
    }
  },
  set(k, v) {
    try {
      if (v === null || v === undefined) localStorage.removeItem(k);
      else localStorage.setItem(k, v);
    } catch {
      // storage disabled: settings last for this visit only
    }
  },
};

/** The URL's set-up parameters when it has any (and keeps them), else the kept ones. */
function setupParams() {
  const url = new URLSearchParams(location.search);
  const own = new URLSearchParams();
  for (const k of SETUP_PARAMS) if (url.has(k)) own.set(k, url.get(k));
  if ([...own.keys()].length > 0) {
    store.set(SETUP_KEY, own.toString());
    return own;
  }
  return new URLSearchParams(store.get(SETUP_KEY) || '');
}

const params = setupParams();

/** Changes a kept set-up parameter the URL had set, so the next launch keeps the change. */
function keepSetup(k, v) {
  const kept = new URLSearchParams(store.get(SETUP_KEY) || '');
  if (!kept.has(k)) return;
  kept.set(k, v);
  store.set(SETUP_KEY, kept.toString());
}
const flag = (name) => ['1', 'true', 'yes', 'on'].includes((params.get(name) || '').toLowerCase());
const flagOff = (name) => ['0', 'false', 'no', 'off'].includes((params.get(name) || '').toLowerCase());

const kiosk = params.has('name') || flag('autoanswer') || flag('kiosk');
const autoAnswer = flag('autoanswer');
if (params.has('key')) store.set(KEY_KEY, params.get('key'));

/** Everything the screens show, in one place; all of one call is in `call`. */
const S = {
  view: 'boot', // the screen when there is no call
  me: null,
  peers: new Map(), // name -> 'online' | 'busy'
  call: null, // Call, until it ends
  notice: null, // {key, text}
  editingFromList: false,
  iceServers: [],
  keyed: false, // the appliance requires an access key (from `registered`)
  noticeTimer: null,
  queuedHangup: null, // a hangup to send once the socket is back
  needKey: false, // the appliance asked for an access key: set-up shows the field
  httpPort: null, // the plain-HTTP port with the set-up guide (from /healthz); 0 while asking or when none
  gestured: false, // a tap or key press has happened (sound, wake lock, camera)
};

const wsUrl = `${location.protocol === 'http:' ? 'ws' : 'wss'}://${location.host}/ws`;
const sig = new Signaling(wsUrl);

// A bookmark's parameters win over the settings screen (they are the kiosk's setup).
const pttMode = () => (params.has('ptt') ? flag('ptt') : store.get(PTT_KEY) === '1');
const cameraAtStart = () => !(flagOff('audio') || flagOff('video')) && store.get(CAM_KEY) !== '0';

// ---------------------------------------------------------------- screens

const CALL_SCREENS = new Map([['ringing-out', 'outgoing'], ['ringing-in', 'incoming'], ['connecting', 'call'], ['in-call', 'call']]);
const TITLES = new Map([['incoming', 'incomingFrom'], ['call', 'inCallWith']]);

/** The screen follows the call's phase while there is a call, else the page's view. */
function screen() {
  return S.call ? CALL_SCREENS.get(S.call.phase) : S.view;
}

/** Whether `call` is still the call in progress: a step that resumes after an
 *  await stops here when its call has ended (and maybe another has begun). */
function current(call) {
  return call === S.call && !call.ended;
}

function show(view) {
  S.view = view;
  render();
}

function render() {
  const now = screen();
  const title = TITLES.get(now);
  document.title = title && S.call ? `${t(title, { name: S.call.partner })} · ${t('appName')}` : t('appName');
  for (const el of document.querySelectorAll('.screen')) el.hidden = el.id !== `screen-${now}`;
  document.body.dataset.screen = now;
  updateWakeLock();
  updateSoundGate();
  sound.setSession(now === 'call' ? 'auto' : 'playback');
}

function avatar(el, name) {
  const ch = Array.from(name.trim())[0] || '?';
  el.textContent = ch.toUpperCase();
  el.style.setProperty('--hue', String(hue(name)));
}

function hue(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}

function icon(id, cls = 'icon') {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', cls);
  svg.setAttribute('aria-hidden', 'true');
  const use = document.createElementNS('http://www.w3.org/2000/svg', 'use');
  use.setAttribute('href', `#${id}`);
  svg.append(use);
  return svg;
}

function renderList() {
  $('me-name').textContent = S.me ? t('youAre', { name: S.me }) : '';
  const ul = $('peers');
  const names = [...S.peers.keys()].sort((a, b) => a.localeCompare(b));
  const focusedName = document.activeElement && document.activeElement.dataset && document.activeElement.dataset.peer;
  ul.textContent = '';
  for (const name of names) {
    const busy = S.peers.get(name) === 'busy';
    const li = document.createElement('li');
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = `peer${busy ? ' is-busy' : ''}`;
    btn.dataset.peer = name;
    btn.dataset.status = busy ? 'busy' : 'online';
    btn.setAttribute('aria-label', busy ? t('callNameBusy', { name }) : t('callName', { name }));
    if (busy) btn.setAttribute('aria-disabled', 'true');
    const av = document.createElement('span');
    av.className = 'avatar';
    av.setAttribute('aria-hidden', 'true');
    avatar(av, name);
    const text = document.createElement('span');
    text.className = 'peer-text';
    const n = document.createElement('span');
    n.className = 'peer-name';
    n.textContent = name;
    const st = document.createElement('span');
    st.className = 'peer-status';
    st.append(icon(busy ? 'i-busy' : 'i-ok', 'icon small'), document.createTextNode(busy ? t('busyLong') : t('available')));
    text.append(n, st);
    const go = document.createElement('span');
    go.className = 'peer-go';
    go.setAttribute('aria-hidden', 'true');
    go.append(icon('i-phone'));
    btn.append(av, text, go);
    btn.addEventListener('click', () => startCall(name));
    li.append(btn);
    ul.append(li);
    if (name === focusedName) btn.focus();
  }
  const connected = sig.state === 'registered';
  ul.classList.toggle('is-stale', !connected);
  ul.setAttribute('aria-busy', String(!connected));
  $('empty').hidden = names.length > 0 || !connected;
  renderNotice();
}

function setNotice(key, name) {
  clearTimeout(S.noticeTimer);
  if (!key) {
    S.notice = null;
  } else {
    S.notice = { key, text: t(key, { name }) };
    S.noticeTimer = setTimeout(() => setNotice(null), NOTICE_MS);
  }
  renderNotice();
}

function renderNotice() {
  const box = $('notice');
  box.hidden = !S.notice;
  box.dataset.key = S.notice ? S.notice.key : '';
  $('notice-text').textContent = S.notice ? S.notice.text : '';
}

function renderBanner() {
  const st = sig.state;
  const visible = st === 'reconnecting' || (st === 'connecting' && screen() !== 'boot' && screen() !== 'setup');
  const banner = $('banner');
  banner.hidden = !visible;
  document.body.classList.toggle('has-banner', visible);
  if (!visible) return;
  const secs = sig.retryAt ? Math.max(0, Math.ceil((sig.retryAt - Date.now()) / 1000)) : 0;
  if (sig.lastError === 'name_taken') $('banner-text').textContent = t('nameHeld', { name: S.me || '' });
  else if (sig.lastError === 'full') $('banner-text').textContent = t('full');
  else $('banner-text').textContent = secs > 0 ? t('reconnectingIn', { s: secs }) : t('reconnecting');
  $('banner-retry').hidden = secs <= 0;
  renderTrustHint();
}

/** The page loaded, but its socket never opens: most likely the certificate (Safari
 *  does not carry a "visit anyway" exception over to wss://). Links to the guide. */
function renderTrustHint() {
  const failing = !sig.everRegistered && sig.failedOpens > 0;
  const show = failing && sig.failedOpens >= TRUST_HINT_AFTER;
  const hint = $('trust-hint');
  hint.hidden = !show;
  // Asked at the first failure, so the link is usually there when the hint shows.
  if (failing && S.httpPort === null) learnGuidePort();
  const link = $('trust-link');
  link.hidden = !S.httpPort;
  if (S.httpPort) {
    // The guide is on this same appliance, on its plain-HTTP port.
    const guide = new URL('/', location.href);
    guide.protocol = 'http:';
    guide.port = String(S.httpPort);
    link.href = guide.href;
  }
}

/** Learns the plain-HTTP port (the set-up guide) from the appliance, once. */
function learnGuidePort() {
  S.httpPort = 0; // asked; 0 until answered, null again if it failed
  fetch('/healthz', { cache: 'no-store' })
    .then((r) => r.json())
    .then((h) => {
      const port = h && h.http_port;
      S.httpPort = Number.isInteger(port) && port > 0 && port < 65536 ? port : 0;
      renderTrustHint();
    })
    .catch(() => {
      S.httpPort = null;
    });
}
setInterval(renderBanner, 1000);

function renderClock() {
  const now = new Date();
  const lang = document.documentElement.lang || 'en';
  $('clock-time').textContent = now.toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' });
  $('clock-date').textContent = now.toLocaleDateString(lang, { weekday: 'long', month: 'long', day: 'numeric' });
}
setInterval(renderClock, 5000);

// ---------------------------------------------------------------- setup

function showSetup(errorKey) {
  const input = $('setup-name');
  input.value = S.me || store.get(NAME_KEY) || params.get('name') || '';
  const err = $('setup-error');
  err.hidden = !errorKey;
  err.textContent = errorKey ? t(errorKey) : '';
  const keyError = errorKey === 'keyNeeded' || errorKey === 'keyWrong';
  input.setAttribute('aria-invalid', errorKey && !keyError ? 'true' : 'false');
  $('setup-key').setAttribute('aria-invalid', keyError ? 'true' : 'false');
  $('setup-key-field').hidden = !S.needKey;
  $('setup-key').value = store.get(KEY_KEY) || '';
  $('setup-cancel').hidden = !S.editingFromList;
  show('setup');
  if (keyError) $('setup-key').focus();
  else input.focus();
}

function validName(name) {
  const bytes = new TextEncoder().encode(name).length;
  return bytes >= 1 && bytes <= 32 && name === name.trim() && !/\p{Cc}/u.test(name);
}

$('setup-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = $('setup-name').value.trim();
  if (!validName(name)) {
    showSetup('nameInvalid');
    $('setup-name').value = name;
    return;
  }
  if (S.needKey) {
    store.set(KEY_KEY, $('setup-key').value || null);
    keepSetup('key', $('setup-key').value);
  }
  keepSetup('name', name);
  S.editingFromList = false;
  connectAs(name, { typed: true });
});

$('setup-cancel').addEventListener('click', () => {
  S.editingFromList = false;
  show('list');
  renderList();
});

/** `typed`: the person just entered this name, so "taken" is an answer to
 *  them; a saved or preset name is waited for instead (its previous connection
 *  may not have timed out yet). */
function connectAs(name, { typed = false } = {}) {
  if (S.me !== name) S.peers.clear();
  S.me = name;
  show(sig.everRegistered ? 'list' : 'boot');
  sig.start(name, store.get(KEY_KEY), { retryTaken: !typed });
}

// ---------------------------------------------------------------- settings

$('open-settings').addEventListener('click', () => {
  $('settings-name-value').textContent = S.me || '';
  $('set-ptt').checked = pttMode();
  $('set-cam').checked = cameraAtStart();
  show('settings');
  $('settings-done').focus();
});
$('set-ptt').addEventListener('change', (e) => store.set(PTT_KEY, e.target.checked ? '1' : '0'));
$('set-cam').addEventListener('change', (e) => store.set(CAM_KEY, e.target.checked ? '1' : '0'));
$('settings-done').addEventListener('click', () => {
  show('list');
  renderList();
});
$('settings-clear').addEventListener('click', () => {
  for (const k of [SETUP_KEY, NAME_KEY, KEY_KEY, PTT_KEY, CAM_KEY]) store.set(k, null);
  sig.stop();
  location.replace(location.pathname);
});
$('settings-name').addEventListener('click', () => {
  S.editingFromList = true;
  showSetup(null);
});

// ---------------------------------------------------------------- signaling events

sig.on('state', () => {
  // A first connection that keeps failing: show the list (with the banner and
  // the settings button) rather than an endless "Connecting…".
  if (screen() === 'boot' && (sig.lastError || sig.attempt > 1)) show('list');
  renderBanner();
  if (screen() === 'list') renderList();
});

/** Replace the whole list (from `registered`, or `peers` after dropped updates). */
function setRoster(list) {
  S.peers.clear();
  for (const p of Array.isArray(list) ? list : []) {
    if (p && typeof p.name === 'string' && p.name !== S.me) S.peers.set(p.name, p.status === 'busy' ? 'busy' : 'online');
  }
}

sig.on('registered', (msg) => {
  S.me = typeof msg.name === 'string' && msg.name ? msg.name : S.me;
  store.set(NAME_KEY, S.me);
  S.iceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
  // Without an access key anyone on the LAN may register and call: then an
  // auto-answering kiosk would be an open camera, so it rings instead.
  S.keyed = msg.keyed === true;
  S.needKey = S.keyed;
  for (const el of document.querySelectorAll('.aa-note')) el.hidden = !autoAnswer || S.keyed;
  if (S.queuedHangup) {
    sig.send(S.queuedHangup);
    S.queuedHangup = null;
  }
  setRoster(msg.peers);
  // After a reconnect the server either kept our call (the token carried it
  // over, so the partner is still busy) or it restarted and forgot it.
  const call = S.call;
  if (call && S.peers.get(call.partner) !== 'busy') endCall(call, call.phase === 'ringing-in' ? 'missed' : 'callLostServer');
  if (screen() === 'boot' || screen() === 'setup') show('list');
  renderList();
  renderBanner();
});

sig.on('fatal', (code) => {
  let key = FATAL_KEYS.get(code) || 'nameInvalid';
  if (code === 'unauthorized') {
    // A question, not a dead end: the set-up screen asks for the key.
    key = store.get(KEY_KEY) ? 'keyWrong' : 'keyNeeded';
    S.needKey = true;
  }
  if (S.call) endCall(S.call, null);
  showSetup(key);
});

sig.on('replaced', () => {
  if (S.call) endCall(S.call, null, { silent: true });
  $('message-text').textContent = t('replaced');
  $('message-action').textContent = t('useHere');
  show('message');
});

$('message-action').addEventListener('click', () => connectAs(S.me));
$('banner-retry').addEventListener('click', () => sig.reconnectNow());
$('notice-close').addEventListener('click', () => setNotice(null));

sig.on('message', (msg) => {
  const call = S.call;
  const fromPartner = !!call && msg.from === call.partner;
  switch (msg.type) {
    case 'peer':
      if (typeof msg.name !== 'string' || msg.name === S.me) break;
      if (msg.status === 'offline') S.peers.delete(msg.name);
      else S.peers.set(msg.name, msg.status === 'busy' ? 'busy' : 'online');
      if (screen() === 'list') renderList();
      break;
    case 'peers':
      setRoster(msg.peers);
      if (screen() === 'list') renderList();
      break;
    case 'call':
      onIncoming(msg.from);
      break;
    case 'accept':
      if (fromPartner && call.phase === 'ringing-out') onAccepted(call);
      break;
    case 'hangup':
      if (fromPartner) onRemoteHangup(call, msg.reason);
      break;
    case 'signal':
      if (fromPartner) call.signal(msg.data);
      break;
    default:
      break;
  }
});

// ---------------------------------------------------------------- calling

/** Makes `partner`'s call the current one and lets its events drive the screens. */
function beginCall(partner, phase) {
  const call = new Call(partner, phase);
  S.call = call;
  call.on('phase', () => {
    render();
    if (call.phase === 'in-call') sound.blip();
    renderCall();
  });
  call.on('media', renderCall);
  call.on('local', () => {
    if (call.media && call.media.video) $('local-video').srcObject = call.media.stream;
    renderCall();
  });
  call.on('remote', () => {
    playRemote(call);
    renderCall();
  });
  call.on('failed', () => hangUp(call, 'failed', 'mediaFailed'));
  return call;
}

function startCall(name) {
  if (screen() !== 'list' || S.call || sig.state !== 'registered') return;
  if (S.peers.get(name) === 'busy') {
    setNotice('isBusy', name);
    return;
  }
  sound.unlock();
  setNotice(null);
  const call = beginCall(name, 'ringing-out');
  avatar($('out-avatar'), name);
  $('out-name').textContent = name;
  $('out-hint').textContent = t('ringingHint', { name });
  render();
  $('out-cancel').focus();
  sound.ringback();
  call.localMedia();
  sig.request({ type: 'call', to: name }).catch((err) => {
    if (current(call) && call.phase === 'ringing-out') endCall(call, CALL_ERROR_KEYS.get(err.code) || 'mediaFailed');
  });
}

async function onAccepted(call) {
  sound.stop();
  enterCallScreen(call);
  const media = await call.localMedia();
  if (current(call)) connectMedia(call, media);
}

function onIncoming(from) {
  if (typeof from !== 'string') return;
  if (S.call || S.view === 'message') {
    sig.send({ type: 'hangup', to: from, reason: 'busy' });
    return;
  }
  const call = beginCall(from, 'ringing-in');
  avatar($('in-avatar'), from);
  $('in-name').textContent = t('incomingFrom', { name: from });
  render();
  $('in-accept').focus();
  sound.ring();
  if (autoAnswer && S.keyed) call.after(AUTOANSWER_MS, acceptCall);
}

async function acceptCall() {
  const call = S.call;
  if (!call || call.phase !== 'ringing-in') return;
  sound.stop();
  sound.unlock();
  enterCallScreen(call);
  // Accept first: opening the camera may wait on a permission prompt nobody is at
  // the door to answer, and the caller's offer waits in the call until then.
  sig.request({ type: 'accept', to: call.partner }).catch((err) => {
    if (current(call)) endCall(call, err.code === 'no_call' ? 'missed' : 'mediaFailed');
  });
  const media = await call.localMedia();
  if (current(call)) connectMedia(call, media);
}

$('in-accept').addEventListener('click', acceptCall);
$('in-decline').addEventListener('click', () => hangUp(S.call, 'declined'));
$('out-cancel').addEventListener('click', () => hangUp(S.call, 'cancel'));
$('btn-hangup').addEventListener('click', () => hangUp(S.call, 'ended'));

function enterCallScreen(call) {
  $('call-name').textContent = call.partner;
  avatar($('call-avatar'), call.partner);
  $('call-timer').textContent = '00:00';
  $('remote-video').srcObject = null;
  $('local-video').srcObject = null;
  $('media-note').hidden = true;
  call.setPhase('connecting');
  $('btn-hangup').focus();
}

function connectMedia(call, media) {
  call.connect(media, {
    iceServers: S.iceServers,
    sending: { audio: !pttMode(), video: cameraAtStart() },
    send: (data) => sig.send({ type: 'signal', to: call.partner, data }),
  });
  $('local-video').srcObject = media.video ? media.stream : null;
  call.every(1000, renderTimer);
  renderCall();
}

function playRemote(call) {
  const v = $('remote-video');
  const stream = call.link && call.link.remoteStream;
  if (!stream || stream.getTracks().length === 0) return;
  if (v.srcObject !== stream) v.srcObject = stream;
  const p = v.play();
  if (p && p.catch) {
    p.then(() => setRemoteBlocked(call, false)).catch((err) => {
      if (err && err.name === 'NotAllowedError' && current(call)) {
        // No gesture yet: show the picture muted and ask for one tap.
        v.muted = true;
        v.play().catch(() => {});
        setRemoteBlocked(call, true);
      }
    });
  }
}

function setRemoteBlocked(call, blocked) {
  if (!current(call) || call.remoteBlocked === blocked) return;
  call.remoteBlocked = blocked;
  updateSoundGate();
}

function renderTimer() {
  const el = $('call-timer');
  const started = S.call ? S.call.startedAt : 0;
  if (!started) {
    el.textContent = '00:00';
    return;
  }
  const s = Math.floor((Date.now() - started) / 1000);
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  el.textContent = hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

function remoteHasVideo() {
  const link = S.call && S.call.link;
  if (!link || !link.remoteMedia.video) return false;
  return link.remoteStream.getVideoTracks().some((tr) => tr.readyState === 'live' && !tr.muted);
}

function renderCall() {
  if (screen() !== 'call') return;
  const call = S.call;
  const link = call.link;
  const name = call.partner;
  const status = link ? link.status : 'connecting';
  $('call-status').textContent = status === 'connected' ? '' : status === 'restoring' ? t('restoring') : t('connectingMedia');
  document.body.dataset.callPhase = status;

  const hasVideo = remoteHasVideo();
  $('remote-video').classList.toggle('is-off', !hasVideo);
  $('remote-placeholder').hidden = hasVideo;
  $('remote-state').textContent = link && status === 'connected' && !hasVideo ? t('remoteNoVideo', { name }) : '';
  const rm = $('remote-muted');
  rm.hidden = !(link && !link.remoteMedia.audio);
  rm.querySelector('span').textContent = t('remoteMuted', { name });

  const media = call.media;
  const note = $('media-note');
  let noteKey = null;
  if (call.localPaused.audio || call.localPaused.video) noteKey = 'localPaused';
  else if (media && media.audioReason === 'insecure') noteKey = 'notSecure';
  else if (media && !media.audio) noteKey = 'listenOnly';
  else if (media && !media.video) noteKey = media.videoReason === 'denied' ? 'audioOnlyDenied' : 'audioOnlyNoCamera';
  note.hidden = !noteKey;
  note.dataset.key = noteKey || '';
  note.querySelector('span').textContent = noteKey ? t(noteKey, { name }) : '';

  const micOn = call.sending.audio;
  const camOn = call.sending.video;
  const ptt = pttMode() && media && media.audio;
  $('ptt').hidden = !ptt;
  document.body.classList.toggle('ptt-on', !!ptt);
  $('ptt').classList.toggle('is-held', call.pttHeld);
  $('ptt-label').textContent = call.pttHeld ? t('talking') : t('holdToTalk');
  const mute = $('btn-mute');
  mute.parentElement.hidden = !!ptt;
  mute.disabled = !media || !media.audio;
  mute.setAttribute('aria-pressed', String(!micOn));
  mute.setAttribute('aria-label', micOn ? t('mute') : t('unmute'));
  mute.querySelector('use').setAttribute('href', micOn ? '#i-mic' : '#i-mic-off');
  $('btn-mute-label').textContent = micOn ? t('mute') : t('micOff');
  const cam = $('btn-cam');
  cam.disabled = !media || !media.video;
  cam.setAttribute('aria-pressed', String(!!media && media.video && !camOn));
  const camLabel = media && !media.video ? t('noCamera') : camOn ? t('cameraOff') : t('cameraOn');
  cam.setAttribute('aria-label', camLabel);
  cam.querySelector('use').setAttribute('href', camOn ? '#i-cam' : '#i-cam-off');
  $('btn-cam-label').textContent = camLabel;
  $('local-off').hidden = !!(media && media.video && camOn);
  document.querySelector('.local').hidden = !media || (!media.video && !media.audio);
  renderTimer();
}

for (const [id, kind] of [['btn-mute', 'audio'], ['btn-cam', 'video']]) {
  $(id).addEventListener('click', () => {
    const call = S.call;
    if (!call || !call.media || !call.media[kind]) return;
    call.setSending(kind, !call.sending[kind]);
    renderCall();
  });
}

function setTalking(on) {
  const call = S.call;
  if (!pttMode() || !call || !call.media || call.pttHeld === on) return;
  call.pttHeld = on;
  call.setSending('audio', on);
  renderCall();
}
const ptt = $('ptt');
ptt.addEventListener('pointerdown', (e) => {
  ptt.setPointerCapture(e.pointerId);
  setTalking(true);
});
for (const ev of ['pointerup', 'pointercancel', 'lostpointercapture']) ptt.addEventListener(ev, () => setTalking(false));
ptt.addEventListener('keydown', (e) => {
  if ((e.key === ' ' || e.key === 'Enter') && !e.repeat) {
    e.preventDefault();
    setTalking(true);
  }
});
ptt.addEventListener('keyup', (e) => {
  if (e.key === ' ' || e.key === 'Enter') setTalking(false);
});
ptt.addEventListener('blur', () => setTalking(false));
ptt.addEventListener('contextmenu', (e) => e.preventDefault());

/** We end `call` (cancel, decline, hang up, failed media): tell the partner, then end it here. */
function hangUp(call, reason, noticeKey = null) {
  if (!call) return;
  sendHangup(call, reason);
  endCall(call, noticeKey);
}

/** Tells the partner (through the server) that we hang up. Sent after the
 *  reconnect when the socket is down, so the server does not keep a call
 *  this page has already left. */
function sendHangup(call, reason) {
  const msg = { type: 'hangup', to: call.partner, reason };
  if (!sig.send(msg)) S.queuedHangup = msg;
}

function onRemoteHangup(call, reason) {
  let key;
  if (call.phase === 'ringing-out') key = OUTGOING_HANGUP_KEYS.get(reason) || 'declined';
  else if (call.phase === 'ringing-in') key = 'missed';
  else key = CALL_HANGUP_KEYS.get(reason) || 'callEnded';
  endCall(call, key);
}

/** Ends `call` once (its end() stops media, link and timers), stops the tones and
 *  goes back to the list with a notice; `silent` leaves the screen and plays no tone. */
function endCall(call, noticeKey, { silent = false } = {}) {
  const wasInCall = CALL_SCREENS.get(call.phase) === 'call';
  if (!call.end()) return;
  if (S.call === call) S.call = null;
  sound.stop();
  const remote = $('remote-video');
  remote.srcObject = null;
  remote.muted = false;
  $('local-video').srcObject = null;
  delete document.body.dataset.callPhase;
  document.body.classList.remove('ptt-on');
  if (wasInCall && !silent) sound.endTone();
  setNotice(noticeKey, call.partner);
  if (!silent) {
    show('list');
    renderList();
    if (noticeKey) $('notice-close').focus();
  }
}

// ---------------------------------------------------------------- kiosk: sound, wake lock

function updateSoundGate() {
  const needTap = (kiosk && !sound.isUnlocked()) || (!!S.call && S.call.remoteBlocked);
  $('sound-gate').hidden = !needTap || screen() === 'setup';
}
sound.onUnlockChange(updateSoundGate);

function onGesture() {
  const first = !S.gestured;
  S.gestured = true;
  // Both inside the gesture: WebKit grants the first wake lock only then.
  updateWakeLock();
  sound.unlock();
  if (first && kiosk) warmUpCamera();
  const call = S.call;
  if (call && call.remoteBlocked) {
    const v = $('remote-video');
    v.muted = false;
    v.play()
      .then(() => setRemoteBlocked(call, false))
      .catch(() => {});
  }
}
// WebKit counts click, touchend and pointerup as gestures for sound, not pointerdown.
for (const ev of ['click', 'touchend', 'pointerup', 'keydown']) document.addEventListener(ev, onGesture, true);

/** A kiosk asks for camera and microphone once, on its first tap, so the prompt is
 *  answered before a call arrives that nobody is there to answer it for. */
function warmUpCamera() {
  if (S.call || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
  navigator.mediaDevices
    .getUserMedia({ audio: true, video: true })
    .then((stream) => stream.getTracks().forEach((tr) => tr.stop()))
    .catch(() => {});
}
$('sound-gate').addEventListener('click', onGesture);

// The screen stays on for a kiosk and during a call. The first request happens
// inside a tap (onGesture); after that on every return to the page (the lock is
// released when the page is hidden). Where the API is missing or refused (home-screen
// apps before iPadOS 18.4), a muted, looping, inline video keeps the screen on.
let wakeLock = null;
let wakeRequest = null;
let keepAwake = null; // the fallback <video>
function updateWakeLock() {
  const want = (kiosk || screen() === 'call') && document.visibilityState === 'visible';
  if (want && S.gestured) {
    if (!wakeLock && !wakeRequest) requestWakeLock();
  } else if (!want) {
    if (wakeLock) {
      const lock = wakeLock;
      wakeLock = null;
      lock.release().catch(() => {});
    }
    if (keepAwake) keepAwake.pause();
  }
}

function requestWakeLock() {
  if (!('wakeLock' in navigator)) {
    keepAwakeVideo();
    return;
  }
  let req;
  try {
    req = navigator.wakeLock.request('screen'); // synchronously, inside the gesture
  } catch (err) {
    req = Promise.reject(err);
  }
  wakeRequest = req;
  Promise.resolve(req).then(
    (lock) => {
      wakeRequest = null;
      wakeLock = lock;
      if (keepAwake) keepAwake.pause();
      lock.addEventListener('release', () => {
        if (wakeLock === lock) wakeLock = null;
      });
    },
    () => {
      wakeRequest = null;
      wakeLock = null;
      keepAwakeVideo();
    },
  );
}

/** Plays a tiny muted looping inline video of a canvas: a playing video keeps the
 *  screen on where the Wake Lock API is missing or refused. */
function keepAwakeVideo() {
  if (!keepAwake) {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 2;
    if (!canvas.captureStream) return;
    const g = canvas.getContext('2d');
    let n = 0;
    const paint = () => {
      g.fillStyle = n++ % 2 ? '#000' : '#010101';
      g.fillRect(0, 0, 2, 2);
    };
    paint();
    setInterval(paint, 1000);
    keepAwake = document.createElement('video');
    keepAwake.className = 'keep-awake';
    keepAwake.muted = true;
    keepAwake.loop = true;
    keepAwake.setAttribute('muted', '');
    keepAwake.setAttribute('playsinline', '');
    keepAwake.setAttribute('aria-hidden', 'true');
    keepAwake.srcObject = canvas.captureStream(1);
    document.body.append(keepAwake);
  }
  keepAwake.play().catch(() => {});
}

function onReturn() {
  if (document.visibilityState !== 'visible') return;
  if (wakeLock && wakeLock.released) wakeLock = null;
  updateWakeLock();
}
document.addEventListener('visibilitychange', onReturn);
window.addEventListener('pageshow', onReturn);

// ---------------------------------------------------------------- start

function boot() {
  setLang(pickLang(`?${params}`));
  translateDom();
  renderClock();
  updateSoundGate();
  sound.probe();
  if (!window.RTCPeerConnection || !window.WebSocket) {
    $('message-text').textContent = t('noWebrtc');
    $('message-action').hidden = true;
    show('message');
    return;
  }
  const preset = (params.get('name') || '').trim();
  if (preset && validName(preset)) store.set(NAME_KEY, preset);
  const name = store.get(NAME_KEY);
  if (name && validName(name)) connectAs(name);
  else showSetup(null);
}

boot();

// The end-to-end tests set this flag before the page loads (tests/e2e/harness.mjs).
if (window.intercomTestHooks === true) {
  import('./testhooks.js').then((m) => m.install({ S, sig, screen, remoteHasVideo, keepAwake: () => keepAwake }));
}

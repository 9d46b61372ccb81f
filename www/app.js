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

import { t, pickLang, setLang, translateDom } from './i18n.js';
import { Signaling } from './signaling.js';
import { Call } from './call.js';
import * as sound from './sound.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const flag = (name) => ['1', 'true', 'yes', 'on'].includes((params.get(name) || '').toLowerCase());
const flagOff = (name) => ['0', 'false', 'no', 'off'].includes((params.get(name) || '').toLowerCase());

const NAME_KEY = 'intercom.name';
const PTT_KEY = 'intercom.ptt';
const CAM_KEY = 'intercom.camera';
const KEY_KEY = 'intercom.key';
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
  input.setAttribute('aria-invalid', errorKey ? 'true' : 'false');
  $('setup-cancel').hidden = !S.editingFromList;
  show('setup');
  input.focus();
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
  const key = FATAL_KEYS.get(code) || 'nameInvalid';
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
  const media = await call.localMedia();
  if (!current(call)) return;
  connectMedia(call, media);
  try {
    await sig.request({ type: 'accept', to: call.partner });
  } catch (err) {
    if (current(call)) endCall(call, err.code === 'no_call' ? 'missed' : 'mediaFailed');
  }
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
  $('remote-video').srcObject = call.link.remoteStream;
  call.every(1000, renderTimer);
  renderCall();
}

function playRemote(call) {
  const v = $('remote-video');
  if (!v.srcObject) return;
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
  if (media && media.audioReason === 'insecure') noteKey = 'notSecure';
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
  sound.unlock();
  const call = S.call;
  if (call && call.remoteBlocked) {
    const v = $('remote-video');
    v.muted = false;
    v.play()
      .then(() => setRemoteBlocked(call, false))
      .catch(() => {});
  }
}
document.addEventListener('pointerdown', onGesture, true);
document.addEventListener('keydown', onGesture, true);
$('sound-gate').addEventListener('click', onGesture);

let wakeLock = null;
async function updateWakeLock() {
  const want = (kiosk || screen() === 'call') && document.visibilityState === 'visible';
  if (!('wakeLock' in navigator)) return;
  if (want && !wakeLock) {
    try {
      wakeLock = await navigator.wakeLock.request('screen');
      wakeLock.addEventListener('release', () => {
        wakeLock = null;
      });
    } catch {
      wakeLock = null;
    }
  } else if (!want && wakeLock) {
    const lock = wakeLock;
    wakeLock = null;
    lock.release().catch(() => {});
  }
}
document.addEventListener('visibilitychange', updateWakeLock);

// ---------------------------------------------------------------- start

function boot() {
  setLang(pickLang());
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
  import('./testhooks.js').then((m) => m.install({ S, sig, screen, remoteHasVideo }));
}

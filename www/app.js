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
//   groups=a,b     this tablet's ring groups (at most 8)
//   dnd=1          start in do-not-disturb (the header's toggle changes it)
//   door=1         door station: one large Ring button, kiosk behaviour
//   calls=…        what a door station rings: a group, else a station's name
//
// A URL carrying any of these is the tablet's set-up: they are kept in localStorage
// and a launch without any (a home-screen app starts at its own URL, with storage
// apart from Safari's) uses what was kept. The settings panel forgets them.

import { t, pickLang, setLang, translateDom } from './i18n.js';
import { Signaling } from './signaling.js';
import { Call } from './call.js';
import { Link } from './link.js';
import { getTrack, stopStream } from './media.js';
import * as sound from './sound.js';

const $ = (id) => document.getElementById(id);
const NAME_KEY = 'intercom.name';
const PTT_KEY = 'intercom.ptt';
const CAM_KEY = 'intercom.camera';
const KEY_KEY = 'intercom.key';
const SETUP_KEY = 'intercom.setup';
const DND_KEY = 'intercom.dnd';
const MISSED_KEY = 'intercom.missed';
const SEEN_KEY = 'intercom.missedSeen';
const MISSED_MAX = 50;
const FEATURES = ['groups', 'dnd', 'preview', 'page'];
// The kiosk's set-up parameters (door, calls, groups and dnd are for the kiosk modes).
const SETUP_PARAMS = ['name', 'autoanswer', 'audio', 'video', 'ptt', 'kiosk', 'lang', 'key', 'door', 'calls', 'groups', 'dnd'];
const TRUST_HINT_AFTER = 3; // sockets in a row that never opened
const NOTICE_MS = 8000;
const AUTOANSWER_MS = 2500;

// Network strings (reasons, error codes) are looked up in Maps, never on plain
// objects: a reason of `constructor` or `__proto__` must find nothing.
const FATAL_KEYS = new Map([['name_taken', 'nameTaken'], ['name_invalid', 'nameInvalid'], ['unauthorized', 'unauthorized'], ['group_invalid', 'groupInvalid']]);
const CALL_ERROR_KEYS = new Map([['busy', 'isBusy'], ['peer_not_found', 'peerGone'], ['dnd', 'isDnd'], ['group_invalid', 'groupInvalid']]);
const GROUP_HANGUP_KEYS = new Map([['timeout', 'noOneAnswered']]);
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

const doorMode = flag('door');
const doorCalls = (params.get('calls') || '').trim();
const kiosk = params.has('name') || flag('autoanswer') || flag('kiosk') || doorMode;
/** Where the page rests between calls: the list, or a door station's Ring button. */
const home = () => (doorMode ? 'door' : 'list');
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
  groupsOf: new Map(), // name -> its groups
  features: new Set(), // what the appliance offers (`registered.features`)
  dnd: params.has('dnd') ? flag('dnd') : store.get(DND_KEY) === '1',
  page: null, // an announcement: {role: 'pager' | 'listener', group, from, to, links, media}
  missed: loadMissed(),
};

/** `?groups=a,b`: valid names, duplicates dropped, at most 8, first order kept. */
function parseGroups(text) {
  const out = [];
  for (const g of String(text || '').split(',').map((x) => x.trim())) {
    if (g && g !== '*' && validName(g) && !out.includes(g) && out.length < 8) out.push(g);
  }
  return out;
}
const myGroups = parseGroups(params.get('groups'));

function loadMissed() {
  try {
    const list = JSON.parse(store.get(MISSED_KEY) || '[]');
    return Array.isArray(list) ? list.filter((m) => m && typeof m.from === 'string' && Number.isFinite(m.at)).slice(0, MISSED_MAX) : [];
  } catch {
    return [];
  }
}

const wsUrl = `${location.protocol === 'http:' ? 'ws' : 'wss'}://${location.host}/ws`;
const sig = new Signaling(wsUrl);
sig.extra = () => (myGroups.length ? { features: FEATURES, dnd: S.dnd, groups: myGroups } : { features: FEATURES, dnd: S.dnd });

// A bookmark's parameters win over the settings screen (they are the kiosk's setup).
const pttMode = () => (params.has('ptt') ? flag('ptt') : store.get(PTT_KEY) === '1');
const cameraAtStart = () => !(flagOff('audio') || flagOff('video')) && store.get(CAM_KEY) !== '0';

// ---------------------------------------------------------------- screens

const CALL_SCREENS = new Map([['ringing-out', 'outgoing'], ['ringing-in', 'incoming'], ['connecting', 'call'], ['in-call', 'call']]);
const TITLES = new Map([['incoming', 'incomingFrom'], ['call', 'inCallWith']]);

/** The screen follows the call's phase while there is a call, else the page's view. */
function screen() {
  if (S.call) return CALL_SCREENS.get(S.call.phase);
  return S.page && S.page.role === 'listener' ? 'announce' : S.view;
}

/** Resting on the list (or the door's button), connected, nothing going on. */
function idle() {
  return screen() === home() && !S.call && !S.page && sig.state === 'registered';
}

const groupLabel = (g) => (g === '*' ? t('everyone') : g);
const who = (call) => call.partner || groupLabel(call.group);

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
  sound.setSession(now === 'call' || (S.page && S.page.role === 'pager') ? 'auto' : 'playback');
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

const STATUS_LOOK = new Map([
  ['online', { icon: 'i-ok', text: 'available', label: 'callName' }],
  ['busy', { icon: 'i-busy', text: 'busyLong', label: 'callNameBusy' }],
  ['dnd', { icon: 'i-moon', text: 'dnd', label: 'callNameDnd' }],
]);

/** One card of the list: a station (`data-peer`) or a group (`data-group`). */
function card({ key, value, title, status, sub, label, iconId, onTap }) {
  const li = document.createElement('li');
  const btn = document.createElement('button');
  btn.type = 'button';
  btn.className = `peer${status === 'online' ? '' : ' is-busy'}${status === 'dnd' ? ' is-dnd' : ''}`;
  btn.dataset[key] = value;
  btn.dataset.status = status;
  btn.setAttribute('aria-label', label);
  if (status !== 'online' && key === 'peer') btn.setAttribute('aria-disabled', 'true');
  const av = document.createElement('span');
  av.className = 'avatar';
  av.setAttribute('aria-hidden', 'true');
  if (key === 'group') av.append(icon('i-group'));
  else avatar(av, value);
  if (key === 'group') av.style.setProperty('--hue', String(hue(value)));
  const text = document.createElement('span');
  text.className = 'peer-text';
  const n = document.createElement('span');
  n.className = 'peer-name';
  n.textContent = title;
  const st = document.createElement('span');
  st.className = 'peer-status';
  st.append(icon(iconId, 'icon small'), document.createTextNode(sub));
  text.append(n, st);
  const go = document.createElement('span');
  go.className = 'peer-go';
  go.setAttribute('aria-hidden', 'true');
  go.append(icon(key === 'group' ? 'i-bell' : 'i-phone'));
  btn.append(av, text, go);
  btn.addEventListener('click', onTap);
  li.append(btn);
  return li;
}

/** Group name -> the other registered stations in it, from the peers' `groups`. */
function groupMembers() {
  const m = new Map();
  for (const [name, gs] of S.groupsOf) {
    if (!S.peers.has(name)) continue;
    for (const g of gs) {
      if (!m.has(g)) m.set(g, []);
      m.get(g).push(name);
    }
  }
  return m;
}

function renderList() {
  $('me-name').textContent = S.me ? t('youAre', { name: S.me }) : '';
  renderHeader();
  if (doorMode) renderDoor();
  const ul = $('peers');
  const names = [...S.peers.keys()].sort((a, b) => a.localeCompare(b));
  const focused = document.activeElement && document.activeElement.dataset;
  const focusKey = focused ? focused.peer || focused.group : null;
  ul.textContent = '';
  for (const name of names) {
    const status = S.peers.get(name);
    const look = STATUS_LOOK.get(status);
    ul.append(card({ key: 'peer', value: name, title: name, status, sub: t(look.text), label: t(look.label, { name }), iconId: look.icon, onTap: () => startCall(name) }));
  }
  const gl = $('groups');
  gl.textContent = '';
  const groups = S.features.has('groups') ? [...groupMembers()].sort((a, b) => a[0].localeCompare(b[0])) : [];
  for (const [g, members] of groups) {
    const free = members.filter((n) => S.peers.get(n) === 'online').length;
    const count = t(members.length === 1 ? 'tablets1' : 'tablets', { n: members.length });
    const sub = `${count} · ${t('nAvailable', { n: free })}`;
    gl.append(card({ key: 'group', value: g, title: g, status: free ? 'online' : 'busy', sub, label: `${t('callGroup', { name: g })} (${sub})`, iconId: free ? 'i-ok' : 'i-busy', onTap: () => startGroupCall(g) }));
  }
  for (const btn of document.querySelectorAll('#peers .peer, #groups .peer')) if ((btn.dataset.peer || btn.dataset.group) === focusKey) btn.focus();
  const connected = sig.state === 'registered';
  for (const list of [ul, gl]) {
    list.classList.toggle('is-stale', !connected);
    list.setAttribute('aria-busy', String(!connected));
  }
  gl.hidden = groups.length === 0;
  $('empty').hidden = names.length > 0 || !connected;
  renderAnnounce(groups.map((x) => x[0]));
  renderNotice();
}

function setNotice(key, name, vars = {}) {
  clearTimeout(S.noticeTimer);
  if (!key) {
    S.notice = null;
  } else {
    S.notice = { key, text: t(key, { ...vars, name }) };
    S.noticeTimer = setTimeout(() => setNotice(null), NOTICE_MS);
  }
  renderNotice();
}

function renderNotice() {
  const box = $('notice');
  box.hidden = !S.notice;
  box.dataset.key = S.notice ? S.notice.key : '';
  $('notice-text').textContent = S.notice ? S.notice.text : '';
  const door = $('door-notice');
  door.hidden = !S.notice;
  door.textContent = S.notice ? S.notice.text : '';
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
  show(home());
  renderList();
});

/** `typed`: the person just entered this name, so "taken" is an answer to
 *  them; a saved or preset name is waited for instead (its previous connection
 *  may not have timed out yet). */
function connectAs(name, { typed = false } = {}) {
  if (S.me !== name) S.peers.clear();
  S.me = name;
  show(sig.everRegistered ? home() : 'boot');
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
  show(home());
  renderList();
});
$('settings-clear').addEventListener('click', () => {
  for (const k of [SETUP_KEY, NAME_KEY, KEY_KEY, PTT_KEY, CAM_KEY, DND_KEY, MISSED_KEY, SEEN_KEY]) store.set(k, null);
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
  if (screen() === 'boot' && (sig.lastError || sig.attempt > 1)) show(home());
  renderBanner();
  if (screen() === home()) renderList();
});

/** Replace the whole list (from `registered`, or `peers` after dropped updates). */
function setRoster(list) {
  S.peers.clear();
  S.groupsOf.clear();
  for (const p of Array.isArray(list) ? list : []) setPeer(p);
}

const STATUSES = new Set(['busy', 'dnd']);

/** One peer object (or `peer` message): its status and its groups. */
function setPeer(p) {
  if (!p || typeof p.name !== 'string' || p.name === S.me) return;
  if (p.status === 'offline') {
    S.peers.delete(p.name);
    S.groupsOf.delete(p.name);
    return;
  }
  S.peers.set(p.name, STATUSES.has(p.status) ? p.status : 'online');
  S.groupsOf.set(p.name, Array.isArray(p.groups) ? p.groups.filter((g) => typeof g === 'string') : []);
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
  S.features = new Set(Array.isArray(msg.features) ? msg.features : []);
  // A resume keeps the appliance's DND and ignores register's: say it again.
  if (S.features.has('dnd')) sig.send({ type: 'status', dnd: S.dnd });
  if (S.queuedHangup) {
    sig.send(S.queuedHangup);
    S.queuedHangup = null;
  }
  setRoster(msg.peers);
  // After a reconnect the server either kept our call (the token carried it
  // over, so the partner is still busy) or it restarted and forgot it.
  const call = S.call;
  const busy = (n) => S.peers.get(n) === 'busy';
  if (call && !(call.partner ? busy(call.partner) : call.ringing.some(busy))) {
    if (call.phase === 'ringing-in') recordMissed(call);
    endCall(call, call.phase === 'ringing-in' ? 'missed' : 'callLostServer');
  }
  const page = S.page;
  if (page && !(page.role === 'listener' ? busy(page.from) : page.to.some(busy))) endPage(page);
  if (screen() === 'boot' || screen() === 'setup') show(home());
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
  if (S.page) endPage(S.page, null, { silent: true });
  showSetup(key);
});

sig.on('replaced', () => {
  if (S.call) endCall(S.call, null, { silent: true });
  if (S.page) endPage(S.page, null, { silent: true });
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
      setPeer(msg);
      if (screen() === home()) renderList();
      break;
    case 'peers':
      setRoster(msg.peers);
      if (screen() === home()) renderList();
      break;
    case 'call':
      onIncoming(msg.from, typeof msg.group === 'string' ? msg.group : null);
      break;
    case 'ringing':
      if (call && call.group && msg.group === call.group && call.phase === 'ringing-out') onRinging(call, msg.to);
      break;
    case 'accept':
      if (!call || call.phase !== 'ringing-out') break;
      if (call.group && !call.partner && msg.group === call.group && typeof msg.from === 'string') {
        call.partner = msg.from; // the first to answer a group ring gets the call
        onAccepted(call);
      } else if (fromPartner) onAccepted(call);
      break;
    case 'hangup':
      if (typeof msg.group === 'string' && msg.from === undefined) onGroupHangup(msg.group, msg.reason);
      else if (fromPartner) onRemoteHangup(call, msg.reason);
      else if (S.page && S.page.role === 'listener' && msg.from === S.page.from) endPage(S.page);
      break;
    case 'signal':
      if (call && call.previews.has(msg.from)) call.previews.get(msg.from).handle(msg.data);
      else if (fromPartner) {
        if (call.phase === 'ringing-in') openCalleePreview(call);
        call.signal(msg.data);
      } else if (S.page && S.page.links.has(msg.from)) S.page.links.get(msg.from).handle(msg.data);
      else if (S.page && S.page.role === 'listener' && msg.from === S.page.from) listen(S.page).handle(msg.data);
      break;
    case 'page':
      onPaged(msg.from, typeof msg.group === 'string' ? msg.group : '*');
      break;
    case 'paging':
      if (S.page && S.page.role === 'pager' && msg.group === S.page.group) onPaging(S.page, msg.to);
      break;
    default:
      break;
  }
});

// ---------------------------------------------------------------- calling

/** Makes `partner`'s call the current one and lets its events drive the screens. */
function beginCall(partner, phase, group = null) {
  const call = new Call(partner, phase, group);
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

const sendingAtStart = () => ({ audio: !pttMode(), video: cameraAtStart() });

function startCall(name) {
  if (!idle()) return;
  const status = S.peers.get(name);
  if (status === 'busy' || status === 'dnd') {
    setNotice(status === 'dnd' ? 'isDnd' : 'isBusy', name);
    return;
  }
  const call = ringOut(name, null);
  sig
    .request({ type: 'call', to: name })
    .then(() => current(call) && onRinging(call, [name]))
    .catch((err) => {
      if (current(call) && call.phase === 'ringing-out') endCall(call, CALL_ERROR_KEYS.get(err.code) || 'mediaFailed');
    });
}

/** Rings every free member of `group` (`call` with `group`); the first to answer talks. */
function startGroupCall(group) {
  if (!idle()) return;
  const call = ringOut(null, group);
  sig
    .request({ type: 'call', group })
    .then((msg) => current(call) && onRinging(call, msg.to))
    .catch((err) => {
      if (!current(call) || call.phase !== 'ringing-out') return;
      if (err.code === 'no_one_available') endCall(call, unavailable(group, err.detail));
      else endCall(call, CALL_ERROR_KEYS.get(err.code) || 'mediaFailed');
    });
}

/** The outgoing screen for a call to `name` or `group`, with our own camera. */
function ringOut(name, group) {
  sound.unlock();
  setNotice(null);
  const call = beginCall(name, 'ringing-out', group);
  const label = name || groupLabel(group);
  avatar($('out-avatar'), label);
  $('out-name').textContent = label;
  $('out-hint').textContent = name ? t('ringingHint', { name }) : '';
  render();
  $('out-cancel').focus();
  sound.ringback();
  call.localMedia().then((media) => {
    if (!current(call) || call.phase !== 'ringing-out') return;
    call.useMedia(media, sendingAtStart());
    const v = $('out-video');
    v.hidden = !media.video;
    if (media.video) v.srcObject = media.stream;
    syncPreviews(call);
  });
  return call;
}

/** Why nobody rings (`no_one_available` with its `busy` and `dnd` lists). */
function unavailable(group, detail) {
  const names = (x) => (Array.isArray(x) ? x.filter((n) => typeof n === 'string') : []);
  const busy = names(detail.busy);
  const dnd = names(detail.dnd);
  const name = groupLabel(group);
  if (!busy.length && !dnd.length) return ['nobodyInGroup', name];
  if (!dnd.length) return ['allBusy', name];
  if (!busy.length) return dnd.length === 1 ? ['isDnd', dnd[0]] : ['allDnd', name];
  return ['mixedUnavailable', name, { busy: busy.join(', '), dnd: dnd.join(', ') }];
}

/** Who our ring is ringing now (`ringing.to`, or the callee of a 1:1 call). */
function onRinging(call, to) {
  call.ringing = Array.isArray(to) ? to.filter((n) => typeof n === 'string') : [];
  if (call.group) $('out-hint').textContent = t('ringingWho', { names: call.ringing.join(', ') });
  syncPreviews(call);
}

/** Shows our picture to the first PREVIEW_MAX ringing callees, one link each;
 *  the others see it once they answer. A callee that cannot take a preview (the
 *  server answers `no_call`) gets a fresh link after answering instead. */
function syncPreviews(call) {
  if (!S.features.has('preview') || !current(call) || call.phase !== 'ringing-out' || !call.media) return;
  for (const name of call.previews.keys()) if (!call.ringing.includes(name)) call.dropPreview(name);
  for (const name of call.ringing) {
    call.openPreview(name, {
      iceServers: S.iceServers,
      send: (data) => {
        const msg = { type: 'signal', to: name, data };
        if (!data.description) return sig.send(msg);
        sig.request(msg).catch((err) => {
          if (err.code === 'no_call' && current(call) && call.phase === 'ringing-out') call.dropPreview(name);
        });
      },
    });
  }
}

/** Our ring ended without an answer (`hangup` with `group`, no `from`), or our page did. */
function onGroupHangup(group, reason) {
  const call = S.call;
  if (call && call.group === group && !call.partner && call.phase === 'ringing-out') {
    endCall(call, [GROUP_HANGUP_KEYS.get(reason) || 'groupDeclined', groupLabel(group)]);
  } else if (S.page && S.page.role === 'pager' && S.page.group === group) endPage(S.page);
}

async function onAccepted(call) {
  sound.stop();
  enterCallScreen(call);
  const media = await call.localMedia();
  if (current(call)) connectMedia(call, media);
}

function onIncoming(from, group) {
  if (typeof from !== 'string') return;
  if (S.call || S.page || S.view === 'message') {
    sig.send({ type: 'hangup', to: from, reason: 'busy' });
    return;
  }
  const call = beginCall(from, 'ringing-in', group);
  avatar($('in-avatar'), from);
  $('in-name').textContent = group ? t('groupFrom', { name: from, group: groupLabel(group) }) : t('incomingFrom', { name: from });
  $('in-video').hidden = true;
  $('screen-incoming').classList.remove('has-preview');
  render();
  $('in-accept').focus();
  sound.ring();
  if (autoAnswer && S.keyed) call.after(AUTOANSWER_MS, acceptCall);
}

/** The caller's preview arrived while we ring: receive only, nothing of ours is sent. */
function openCalleePreview(call) {
  call.receivePreview({ iceServers: S.iceServers, send: (data) => sig.send({ type: 'signal', to: call.partner, data }) });
}

/** The caller's live picture behind Answer and Decline (muted until answered). */
function showPreview(call) {
  const v = $('in-video');
  const stream = call.link && call.link.remoteStream;
  if (!stream || !stream.getVideoTracks().length) return;
  if (v.srcObject !== stream) v.srcObject = stream;
  v.hidden = false;
  $('screen-incoming').classList.add('has-preview');
  v.play().catch(() => {});
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
  $('in-video').srcObject = $('out-video').srcObject = null;
  $('media-note').hidden = true;
  call.setPhase('connecting');
  $('btn-hangup').focus();
}

function connectMedia(call, media) {
  call.connect(media, {
    iceServers: S.iceServers,
    sending: sendingAtStart(),
    send: (data) => sig.send({ type: 'signal', to: call.partner, data }),
  });
  $('local-video').srcObject = media.video ? media.stream : null;
  call.every(1000, renderTimer);
  playRemote(call);
  renderCall();
}

function playRemote(call) {
  if (call.phase === 'ringing-in') {
    showPreview(call);
    return;
  }
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
  // A group ring nobody has answered yet is cancelled as a whole.
  const msg = call.partner ? { type: 'hangup', to: call.partner, reason } : { type: 'hangup', group: call.group, reason };
  if (!sig.send(msg)) S.queuedHangup = msg;
}

function onRemoteHangup(call, reason) {
  let key;
  if (call.phase === 'ringing-out') key = OUTGOING_HANGUP_KEYS.get(reason) || 'declined';
  else if (call.phase === 'ringing-in' && reason === 'answered_elsewhere') key = 'answeredElsewhere';
  else if (call.phase === 'ringing-in') {
    key = 'missed';
    recordMissed(call);
  } else key = CALL_HANGUP_KEYS.get(reason) || 'callEnded';
  endCall(call, key);
}

/** Ends `call` once (its end() stops media, link and timers), stops the tones and
 *  goes back to the list with a notice (a key, or [key, name, vars]); `silent`
 *  leaves the screen and plays no tone. */
function endCall(call, noticeKey, { silent = false } = {}) {
  const wasInCall = CALL_SCREENS.get(call.phase) === 'call';
  if (!call.end()) return;
  if (S.call === call) S.call = null;
  sound.stop();
  const remote = $('remote-video');
  remote.srcObject = null;
  remote.muted = false;
  $('local-video').srcObject = null;
  $('in-video').srcObject = $('out-video').srcObject = null;
  delete document.body.dataset.callPhase;
  document.body.classList.remove('ptt-on');
  if (wasInCall && !silent) sound.endTone();
  if (Array.isArray(noticeKey)) setNotice(...noticeKey);
  else setNotice(noticeKey, who(call));
  if (!silent) {
    show(home());
    renderList();
    if (noticeKey && !doorMode) $('notice-close').focus();
  }
}

// ---------------------------------------------------------------- missed calls

/** An incoming call (or group ring) that ended unanswered: kept, newest first. */
function recordMissed(call) {
  const entry = { from: call.partner, at: call.at };
  if (call.group) entry.group = call.group;
  S.missed = [entry, ...S.missed].slice(0, MISSED_MAX);
  store.set(MISSED_KEY, JSON.stringify(S.missed));
  renderHeader();
}

const unseen = () => {
  const seen = Number(store.get(SEEN_KEY)) || 0;
  return S.missed.filter((m) => m.at > seen).length;
};

function renderMissed() {
  const ul = $('missed-list');
  ul.textContent = '';
  const lang = document.documentElement.lang || 'en';
  for (const m of S.missed) {
    const li = document.createElement('li');
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'setting-row';
    btn.dataset.missed = m.from;
    const what = document.createElement('span');
    what.textContent = m.group ? t('groupFrom', { name: m.from, group: groupLabel(m.group) }) : m.from;
    const when = document.createElement('span');
    when.className = 'muted';
    when.textContent = new Date(m.at).toLocaleString(lang, { weekday: 'short', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
    btn.setAttribute('aria-label', t('callName', { name: m.from }));
    btn.append(icon('i-missed'), what, when);
    btn.addEventListener('click', () => {
      show(home());
      renderList();
      startCall(m.from);
    });
    li.append(btn);
    ul.append(li);
  }
  $('missed-none').hidden = S.missed.length > 0;
}

$('open-missed').addEventListener('click', () => {
  store.set(SEEN_KEY, String(Date.now()));
  renderMissed();
  show('missed');
  renderHeader();
  $('missed-done').focus();
});
$('missed-done').addEventListener('click', () => {
  show(home());
  renderList();
});
$('missed-clear').addEventListener('click', () => {
  S.missed = [];
  store.set(MISSED_KEY, null);
  renderMissed();
  renderHeader();
});

// ---------------------------------------------------------------- header: DND, missed badge

function renderHeader() {
  const n = unseen();
  const badge = $('missed-badge');
  badge.hidden = n === 0;
  badge.textContent = String(n);
  $('open-missed').setAttribute('aria-label', n ? `${t('missedCalls')} (${n})` : t('missedCalls'));
  const dnd = $('dnd-toggle');
  dnd.hidden = !S.features.has('dnd');
  dnd.setAttribute('aria-pressed', String(S.dnd));
  dnd.classList.toggle('is-on', S.dnd);
  document.body.classList.toggle('dnd-on', S.dnd && S.features.has('dnd'));
}

/** Do-not-disturb: calls to this tablet are refused and pages skip it. Kept like
 *  the kiosk's other settings; told to the appliance now or on the next connect. */
$('dnd-toggle').addEventListener('click', () => {
  S.dnd = !S.dnd;
  const v = S.dnd ? '1' : '0';
  store.set(DND_KEY, v);
  keepSetup('dnd', v);
  if (params.has('dnd')) params.set('dnd', v);
  sig.send({ type: 'status', dnd: S.dnd });
  renderHeader();
});

// ---------------------------------------------------------------- door station

function renderDoor() {
  $('door-name').textContent = S.me || '';
  $('door-hint').textContent = doorCalls ? t('doorHint', { name: doorCalls }) : '';
  $('door-ring').disabled = !doorCalls || sig.state !== 'registered';
}

/** Rings `calls=`: a group when some station is in one by that name (or no station
 *  has that name), else that station. */
$('door-ring').addEventListener('click', () => {
  const inGroup = [...S.groupsOf.values()].some((gs) => gs.includes(doorCalls));
  if (S.features.has('groups') && (inGroup || !S.peers.has(doorCalls))) startGroupCall(doorCalls);
  else startCall(doorCalls);
});
$('door-settings').addEventListener('click', () => $('open-settings').click());

// ---------------------------------------------------------------- announcements (paging)

/** The announce bar: hold to page the chosen group or everyone. */
function renderAnnounce(groups) {
  const bar = $('announce');
  bar.hidden = !S.features.has('page');
  if (bar.hidden) return;
  const sel = $('announce-target');
  const want = ['*', ...groups];
  const had = sel.value;
  if ([...sel.options].map((o) => o.value).join('\n') !== want.join('\n')) {
    sel.textContent = '';
    for (const g of want) sel.append(new Option(groupLabel(g), g));
    sel.value = want.includes(had) ? had : '*';
  }
  const page = S.page && S.page.role === 'pager' ? S.page : null;
  $('announce-hold').classList.toggle('is-held', !!page);
  $('announce-label').textContent = page ? t('announcing') : t('holdToAnnounce');
  $('announce-to').textContent = page && page.to.length ? t('listeningNow', { names: page.to.join(', ') }) : '';
}

/** Hold: page the chosen target with our microphone only. */
function startPage() {
  if (!idle() || !S.features.has('page')) return;
  const group = $('announce-target').value || '*';
  sound.unlock();
  setNotice(null);
  const page = (S.page = { role: 'pager', group, to: [], links: new Map(), media: null });
  render();
  renderAnnounce([]);
  getTrack('audio').then((track) => {
    if (S.page !== page) {
      if (track) track.stop();
      return;
    }
    if (!track) {
      // Without a microphone nobody would hear a thing: say so instead.
      sig.send({ type: 'hangup', group: page.group });
      endPage(page, 'noMicAnnounce');
      return;
    }
    page.media = { stream: new MediaStream([track]), audio: true, video: false };
    syncPageLinks(page);
  });
  sig
    .request({ type: 'page', group })
    .then((msg) => onPaging(page, msg.to))
    .catch((err) => {
      if (S.page !== page) return;
      endPage(page, err.code === 'no_one_available' ? unavailable(group, err.detail) : CALL_ERROR_KEYS.get(err.code) || 'mediaFailed');
    });
}

/** Release: the page ends for everyone. */
function stopPage() {
  const page = S.page;
  if (!page || page.role !== 'pager') return;
  sig.send({ type: 'hangup', group: page.group });
  endPage(page);
}

function onPaging(page, to) {
  if (S.page !== page) return;
  page.to = Array.isArray(to) ? to.filter((n) => typeof n === 'string') : [];
  syncPageLinks(page);
  renderAnnounce(groupNames());
}

const groupNames = () => [...groupMembers().keys()].sort((a, b) => a.localeCompare(b));

/** One send-only audio link per listener. */
function syncPageLinks(page) {
  for (const [name, link] of page.links) {
    if (!page.to.includes(name)) {
      link.close();
      page.links.delete(name);
    }
  }
  if (!page.media) return;
  for (const name of page.to) {
    if (page.links.has(name)) continue;
    const send = (data) => sig.send({ type: 'signal', to: name, data });
    page.links.set(name, new Link({ role: 'caller', iceServers: S.iceServers, local: page.media, send, kinds: ['audio'], direction: 'sendonly' }));
  }
}

/** We are paged: a chime, then the voice at once; nothing of ours is sent. */
function onPaged(from, group) {
  if (typeof from !== 'string') return;
  if (S.call || S.page || S.view === 'message') {
    sig.send({ type: 'hangup', to: from, reason: 'busy' });
    return;
  }
  S.page = { role: 'listener', from, group, to: [], links: new Map(), blocked: false };
  avatar($('ann-avatar'), from);
  $('ann-from').textContent = t('announcementFrom', { name: from });
  $('ann-group').textContent = t('toGroup', { name: groupLabel(group) });
  render();
  sound.chime();
  $('ann-leave').focus();
}

/** The listener's one receive-only link to the pager, made on its first signal. */
function listen(page) {
  let link = page.links.get(page.from);
  if (!link) {
    link = new Link({ role: 'callee', iceServers: S.iceServers, local: null, send: (data) => sig.send({ type: 'signal', to: page.from, data }) });
    link.on('remote', () => playPage(page));
    page.links.set(page.from, link);
  }
  return link;
}

function playPage(page) {
  const el = $('page-audio');
  const link = page.links.get(page.from);
  if (S.page !== page || !link) return;
  if (el.srcObject !== link.remoteStream) el.srcObject = link.remoteStream;
  el.play().then(
    () => setPageBlocked(page, false),
    (err) => setPageBlocked(page, !!err && err.name === 'NotAllowedError'),
  );
}

/** WebKit lets a media element play sound later without a tap once play() was
 *  called on it inside one: the first tap does that for the announcement's element. */
function primePageAudio() {
  // Without a source nothing plays (the promise may stay pending until one comes).
  const p = $('page-audio').play();
  if (p && p.catch) p.catch(() => {});
}

function setPageBlocked(page, blocked) {
  if (S.page !== page) return;
  page.blocked = blocked;
  updateSoundGate();
}

$('ann-leave').addEventListener('click', () => {
  const page = S.page;
  if (!page || page.role !== 'listener') return;
  sig.send({ type: 'hangup', to: page.from, reason: 'ended' });
  endPage(page);
});

/** Ends an announcement here (either role): links, microphone, screen. */
function endPage(page, noticeKey = null, { silent = false } = {}) {
  if (S.page !== page) return;
  S.page = null;
  for (const link of page.links.values()) link.close();
  if (page.media) stopStream(page.media.stream);
  $('page-audio').srcObject = null;
  if (Array.isArray(noticeKey)) setNotice(...noticeKey);
  else if (noticeKey) setNotice(noticeKey, groupLabel(page.group));
  if (!silent) {
    show(home());
    renderList();
  }
}

const hold = $('announce-hold');
hold.addEventListener('pointerdown', (e) => {
  hold.setPointerCapture(e.pointerId);
  startPage();
});
for (const ev of ['pointerup', 'pointercancel', 'lostpointercapture']) hold.addEventListener(ev, stopPage);
hold.addEventListener('keydown', (e) => {
  if ((e.key === ' ' || e.key === 'Enter') && !e.repeat) {
    e.preventDefault();
    startPage();
  }
});
hold.addEventListener('keyup', (e) => {
  if (e.key === ' ' || e.key === 'Enter') stopPage();
});
hold.addEventListener('blur', stopPage);
hold.addEventListener('contextmenu', (e) => e.preventDefault());

// ---------------------------------------------------------------- kiosk: sound, wake lock

function updateSoundGate() {
  const needTap = (kiosk && !sound.isUnlocked()) || (!!S.call && S.call.remoteBlocked) || (!!S.page && !!S.page.blocked);
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
  if (S.page && S.page.blocked) playPage(S.page);
  else if (first && !S.page) primePageAudio();
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
  const want = (kiosk || screen() === 'call' || screen() === 'announce') && document.visibilityState === 'visible';
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

/** Fills in the round call buttons, which index.html writes as
 *  `<div class="action" data-icon="i-…"><button …></button></div>`: the icon in the
 *  button and the label under it. The label says what data-i18n-label says, except
 *  on a toggle (aria-pressed), whose label (id "<button id>-label") the call controls
 *  set as it flips. Runs before translateDom. */
function buildActions() {
  for (const action of document.querySelectorAll('.action[data-icon]')) {
    const btn = action.querySelector('button');
    btn.append(icon(action.dataset.icon));
    const label = document.createElement('span');
    label.className = 'action-label';
    if (btn.hasAttribute('aria-pressed')) label.id = `${btn.id}-label`;
    else label.dataset.i18n = btn.dataset.i18nLabel;
    label.setAttribute('aria-hidden', 'true');
    action.append(label);
  }
}

function boot() {
  setLang(pickLang(`?${params}`));
  buildActions();
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
  import('./testhooks.js').then((m) => m.install({ S, sig, screen, remoteHasVideo, keepAwake: () => keepAwake, unseen }));
}

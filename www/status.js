// The owner's page: asks once for the admin key (kept in this browser), then polls
// /status.json with it as a bearer token and draws what the appliance is doing. The
// add-a-tablet form builds a kiosk address and shows it as a QR code the appliance
// makes (/qr.svg, also behind the key). Every string from the appliance is set as text,
// never as markup: station names and log lines come from the LAN.

const $ = (id) => document.getElementById(id);
const KEY = 'intercom.admin';
const POLL_MS = 3000;
const SVG = 'http://www.w3.org/2000/svg';

// Korean when the browser's first language is, else English: static text carries its
// Korean in data-ko, the rest goes through tr().
const KO = /^ko\b/i.test(navigator.language || '');
const tr = (en, ko) => (KO ? ko : en);
if (KO) {
  document.documentElement.lang = 'ko';
  for (const e of document.querySelectorAll('[data-ko]')) e.textContent = e.dataset.ko;
  $('add-groups').placeholder = '예: 위층,주방';
}

const store = {
  get: () => {
    try {
      return localStorage.getItem(KEY);
    } catch {
      return null;
    }
  },
  set: (v) => {
    try {
      if (v) localStorage.setItem(KEY, v);
      else localStorage.removeItem(KEY);
    } catch {
      // storage disabled: the key lasts for this visit
    }
  },
};
let key = store.get();
let timer = null;
let last = null;

const auth = () => ({ Authorization: `Bearer ${key}` });

function askKey(wrong) {
  $('owner').hidden = true;
  $('key-form').hidden = false;
  $('key-wrong').hidden = !wrong;
  $('key').focus();
}

$('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  key = $('key').value.trim();
  store.set(key);
  poll();
});

$('forget').addEventListener('click', () => {
  store.set(null);
  key = null;
  clearTimeout(timer);
  askKey(false);
});

async function poll() {
  clearTimeout(timer);
  if (!key) return askKey(false);
  let r;
  try {
    r = await fetch('/status.json', { headers: auth(), cache: 'no-store' });
  } catch {
    $('summary').textContent = tr('The appliance does not answer; trying again…', '장치가 응답하지 않습니다. 다시 시도하는 중…');
    timer = setTimeout(poll, POLL_MS);
    return;
  }
  if (r.status === 401) return askKey(true);
  if (r.ok) {
    last = await r.json();
    $('key-form').hidden = true;
    $('owner').hidden = false;
    render(last);
  }
  timer = setTimeout(poll, POLL_MS);
}

// ------------------------------------------------------------------ formatting

function duration(s) {
  if (s === null || s === undefined) return '–';
  const neg = s < 0;
  s = Math.abs(s);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const [D, H, M, S] = KO ? ['일', '시간', '분', '초'] : [' d', ' h', ' min', ' s'];
  const text = d > 0 ? `${d}${D} ${h}${H}` : h > 0 ? `${h}${H} ${m}${M}` : `${m}${M} ${Math.floor(s % 60)}${S}`;
  return neg ? tr(`expired ${text} ago`, `${text} 전에 만료됨`) : text;
}

const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const when = (unixS) => (unixS ? `${new Date(unixS * 1000).toLocaleString()}` : '–');

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

/** A <dl> from [label, value] pairs. */
function facts(dl, rows) {
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', k), el('dd', String(v))]));
}

// ------------------------------------------------------------------ sections
// One line per column or row: a new field (groups, do-not-disturb, pages, relay
// allocations) is one more entry here.

// Status words from the server, looked up in a Map (a network string never indexes an object).
const STATUS = new Map(KO ? [['online', '온라인'], ['busy', '통화 중'], ['dnd', '방해 금지'], ['offline', '오프라인']] : [['dnd', 'do not disturb']]);

const STATION_COLUMNS = [
  [tr('Name', '이름'), (s) => s.name],
  [tr('Status', '상태'), (s) => STATUS.get(s.status) || s.status, (s) => `status-${s.status}`],
  [tr('Groups', '그룹'), (s) => (Array.isArray(s.groups) ? s.groups.join(', ') : '')],
  [tr('With', '상대'), (s) => s.with || ''],
  [tr('Address', '주소'), (s) => s.address || '–'],
  [tr('Connected since', '접속 시각'), (s) => when(s.since)],
];

const CALL_STATES = new Map([
  ['ringing', (c) => tr(`${c.from} is ringing ${c.to}`, `${c.from} → ${c.to} 호출 중`)],
  ['active', (c) => tr(`${c.from} and ${c.to} are talking`, `${c.from} ↔ ${c.to} 통화 중`)],
  ['ringing_group', (c) => tr(`${c.from} is ringing group ${c.to}`, `${c.from} → 그룹 ${c.to} 호출 중`)],
  ['paging', (c) => tr(`${c.from} is paging ${c.to}`, `${c.from} → ${c.to} 방송 중`)],
]);

const CERT_ROWS = [
  [tr('CA fingerprint (SHA-256)', 'CA 지문 (SHA-256)'), (d) => d.cert.ca_fingerprint || tr('not a local CA (--cert)', '자체 CA 아님 (--cert)')],
  [tr('CA expires in', 'CA 만료까지'), (d) => duration(d.cert.ca_expires_in_s)],
  [tr('Server certificate expires in', '서버 인증서 만료까지'), (d) => duration(d.cert.server_expires_in_s)],
];

const COUNTER_ROWS = [
  [tr('Open connections', '열린 연결'), (d) => d.counters.connections],
  [tr('Calls started', '시작된 통화'), (d) => d.counters.calls_started],
  [tr('Calls answered', '응답한 통화'), (d) => d.counters.calls_answered],
  [tr('Calls missed', '부재중 통화'), (d) => d.counters.calls_missed],
  [tr('Pages', '방송'), (d) => d.counters.pages],
  [tr('Signals relayed', '중계한 시그널'), (d) => d.counters.signals],
  [tr('Received', '받은 양'), (d) => bytes(d.counters.bytes_in)],
  [tr('Sent', '보낸 양'), (d) => bytes(d.counters.bytes_out)],
  [tr('Relay allocations in use', '사용 중인 릴레이 할당'), (d) => d.counters.turn_allocations],
  [tr('Relayed through the appliance', '릴레이로 중계한 양'), (d) => bytes(d.counters.turn_relayed_bytes)],
];

function render(d) {
  const mem = d.memory_kib ? tr(`, ${bytes(d.memory_kib * 1024)} memory`, `, 메모리 ${bytes(d.memory_kib * 1024)}`) : '';
  $('summary').textContent = tr(`version ${d.version}, up ${duration(d.uptime_s)}${mem}`, `버전 ${d.version}, 가동 ${duration(d.uptime_s)}${mem}`);

  const head = $('stations').tHead.rows[0];
  if (head.cells.length === 0) for (const [title] of STATION_COLUMNS) head.append(el('th', title));
  const rows = d.stations.map((s) => {
    const tr = el('tr');
    tr.dataset.name = s.name;
    for (const [, value, cls] of STATION_COLUMNS) tr.append(el('td', value(s), cls ? cls(s) : undefined));
    return tr;
  });
  $('stations').tBodies[0].replaceChildren(...rows);
  $('station-count').textContent = `(${d.stations.length})`;
  $('no-stations').hidden = d.stations.length > 0;

  const calls = d.calls.map((c) => {
    const li = el('li', (CALL_STATES.get(c.state) || ((x) => `${x.from} → ${x.to}`))(c));
    li.dataset.state = c.state;
    return li;
  });
  $('calls').replaceChildren(...calls);
  $('no-calls').hidden = calls.length > 0;

  chart($('chart'), d.hours, d.now_ms);
  facts($('certs'), CERT_ROWS.map(([k, f]) => [k, f(d)]));
  facts($('counters'), COUNTER_ROWS.map(([k, f]) => [k, f(d)]));

  const events = d.events
    .slice()
    .reverse()
    .map((e) => {
      const li = el('li', undefined, e.level);
      li.append(el('time', clock(e.at_ms)), document.createTextNode(e.text));
      return li;
    });
  $('events').replaceChildren(...events);
  if (!$('add-key').dataset.touched) $('add-key').value = d.access_key || '';
}

/** Calls and missed calls per hour as bars, oldest hour on the left. */
function chart(box, hours, nowMs) {
  const W = 480;
  const H = 120;
  const top = 8;
  const base = H - 18;
  const max = Math.max(1, ...hours.map(([c, m]) => Math.max(c, m)));
  const slot = W / hours.length;
  const bar = (slot - 4) / 2;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  const total = hours.reduce((a, [c, m]) => [a[0] + c, a[1] + m], [0, 0]);
  svg.setAttribute('aria-label', tr(`${total[0]} calls and ${total[1]} missed in the last 24 hours`, `최근 24시간 통화 ${total[0]}건, 부재중 ${total[1]}건`));
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  add('line', { x1: 0, x2: W, y1: base + 0.5, y2: base + 0.5 });
  const nowHour = Math.floor(nowMs / 3600000);
  hours.forEach(([calls, missed], i) => {
    const x = i * slot + 2;
    for (const [n, cls, dx, label] of [[calls, 'calls', 0, tr('calls', '통화')], [missed, 'missed', bar, tr('missed', '부재중')]]) {
      const h = (n / max) * (base - top);
      if (n > 0) add('rect', { class: cls, x: x + dx, y: base - h, width: bar, height: h, rx: 1 }).append(titleOf(n, label));
    }
    const hour = new Date((nowHour - (hours.length - 1 - i)) * 3600000).getHours();
    if (hour % 6 === 0) add('text', { x: x, y: H - 4 }, `${String(hour).padStart(2, '0')}:00`);
  });
  add('text', { x: W - 2, y: top + 2, 'text-anchor': 'end' }, tr(`max ${max}`, `최대 ${max}`));
  box.replaceChildren(svg);
}

function titleOf(n, what) {
  const t = document.createElementNS(SVG, 'title');
  t.textContent = `${n} ${what}`;
  return t;
}

// ------------------------------------------------------------------ add a tablet

/** The kiosk address for the form's settings (the web client's URL parameters). */
function kioskUrl() {
  const p = new URLSearchParams();
  p.set('name', $('add-name').value.trim());
  p.set('kiosk', '1');
  const groups = $('add-groups').value.split(',').map((g) => g.trim()).filter(Boolean);
  if (groups.length) p.set('groups', groups.join(','));
  if ($('add-autoanswer').checked) p.set('autoanswer', '1');
  if ($('add-door').checked) p.set('door', '1');
  if ($('add-camera-off').checked) p.set('video', '0');
  const k = $('add-key').value.trim();
  if (k) p.set('key', k);
  return `${location.origin}/?${p}`;
}

let qrUrl = null;
let qrFor = '';
async function showKiosk() {
  if (!$('add-name').value.trim()) {
    $('add-result').hidden = true;
    return;
  }
  const url = kioskUrl();
  $('kiosk-url').textContent = url;
  $('add-result').hidden = false;
  if (url === qrFor) return;
  qrFor = url;
  const r = await fetch(`/qr.svg?text=${encodeURIComponent(url)}`, { headers: auth(), cache: 'no-store' });
  if (!r.ok || qrFor !== url) return;
  const blob = await r.blob();
  if (qrUrl) URL.revokeObjectURL(qrUrl);
  qrUrl = URL.createObjectURL(blob);
  $('kiosk-qr').src = qrUrl;
  $('kiosk-qr').dataset.for = url;
}

$('add').addEventListener('input', (e) => {
  if (e.target.id === 'add-key') e.target.dataset.touched = '1';
  showKiosk();
});
$('add').addEventListener('submit', (e) => e.preventDefault());

poll();

// The wall iPad, as far as Chromium can stand in for it: a kiosk (`door`) set up from
// `?name=door&autoanswer=1&key=…` and a tablet (`kitchen`) calling it, against an
// appliance with an access key and a plain-HTTP port.
//
// The door's page records, from an init script, every wake-lock request (with
// navigator.userActivation at that moment; the request is refused, as in a home-screen
// app before iPadOS 18.4, so the fallback video must play), every getUserMedia call
// (made to take 5 s on the first page) and every message it sends on its socket.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import http from 'node:http';
import { startServer, launchTablet, makeFakeCamera, waitFor, sleep, tempDir, needBinary, tearDown, waitScreen } from './harness.mjs';

const KEY = 'e2e-ipad-7cTq2LwZp4';
const SLOW_MEDIA_MS = 5000;

let server;
let stateDir;
let mediaDir;
let artifacts;
let caPem;
let httpPort;
let door;
let kitchen;
const pageErrors = [];

/** GET over HTTPS (trusting the appliance's CA) or plain HTTP: {status, type, body}. */
function get(url) {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    mod
      .get(url, { ca: caPem }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

before(async () => {
  artifacts = needBinary();
  stateDir = tempDir('ipad-state');
  // Every tablet here is 127.0.0.1; on a LAN each has its own address. Two browsers
  // loading pages, a third page, and a second socket on every return to the page
  // exceed the default 8 unregistered sockets per address, so the cap is 64.
  server = await startServer({ stateDir, args: ['--access-key', KEY, '--http-listen', '127.0.0.1:0', '--max-per-ip', '64'] });
  caPem = readFileSync(join(stateDir, 'ca.crt'));
  const health = JSON.parse((await get(`${server.origin}/healthz`)).body);
  httpPort = health.http_port;
  assert.ok(Number.isInteger(httpPort) && httpPort > 0, `healthz names the plain-HTTP port: ${JSON.stringify(health)}`);

  mediaDir = tempDir('ipad-media');
  const caFile = join(stateDir, 'ca.crt');
  const doorCam = makeFakeCamera(join(mediaDir, 'door.y4m'), { wall: [70, 130, 210], wall2: [30, 60, 120], person: [26, 30, 48] });
  const kitchenCam = makeFakeCamera(join(mediaDir, 'kitchen.y4m'), { wall: [235, 150, 60], wall2: [190, 90, 30], person: [60, 40, 30] });
  door = await launchTablet({ label: 'door', caFile, camera: doorCam, viewport: { width: 820, height: 1180 } });
  kitchen = await launchTablet({ label: 'kitchen', caFile, camera: kitchenCam, viewport: { width: 1180, height: 820 } });
  for (const t of [door, kitchen]) t.page.on('pageerror', (err) => pageErrors.push(`${t.label}: ${err.message}`));
  await door.context.addInitScript((slowMs) => {
    const log = (window.e2eLog = { wake: [], gum: [], sent: [] });
    const request = () => {
      log.wake.push({ t: Date.now(), active: !!(navigator.userActivation && navigator.userActivation.isActive), event: window.event ? window.event.type : null });
      return Promise.reject(new DOMException('refused', 'NotAllowedError'));
    };
    if (navigator.wakeLock) navigator.wakeLock.request = request;
    else Object.defineProperty(navigator, 'wakeLock', { value: { request } });
    const md = navigator.mediaDevices;
    const gum = md.getUserMedia.bind(md);
    md.getUserMedia = (c) => {
      const e = { start: Date.now(), end: null };
      log.gum.push(e);
      const wait = location.hash === '#slow' ? slowMs : 0;
      return new Promise((r) => setTimeout(r, wait))
        .then(() => gum(c))
        .then((s) => {
          e.end = Date.now();
          return s;
        });
    };
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
      try {
        const m = JSON.parse(data);
        log.sent.push({ t: Date.now(), type: m.type, name: m.name, key: m.key });
      } catch {
        // not ours
      }
      return send.call(this, data);
    };
  }, SLOW_MEDIA_MS);
});

after(() => tearDown({ tablets: [door, kitchen], server, dirs: [stateDir, mediaDir] }));

const report = () => {
  const T = window.intercomTest;
  return { state: T.state(), connection: T.connection(), me: T.me(), partner: T.partner(), peers: T.peers(), notice: T.notice(), pc: T.pcState() };
};
const waitState = (tablet, s, timeout) => waitScreen(tablet, s, { timeout, report });
const registered = (tablet) => waitFor(tablet, 'registered', () => window.intercomTest && window.intercomTest.connection() === 'registered', undefined, { report });
const e2eLog = (tablet) => tablet.probe(() => window.e2eLog);
const stats = (tablet) => tablet.probe(() => window.intercomTest.stats());

/** Waits until fn(stats) holds on `tablet`, sampling getStats(). */
async function waitStats(tablet, what, fn, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let s;
  for (;;) {
    s = await stats(tablet);
    if (s && fn(s)) return s;
    if (Date.now() > deadline) throw new Error(`${tablet.label}: ${what}; last stats ${JSON.stringify(s)}`);
    await sleep(250);
  }
}

async function hangUp() {
  await kitchen.page.click('#btn-hangup');
  await waitState(kitchen, 'list');
  await waitState(door, 'list');
}

test('the first wake-lock request is inside a tap, and it is asked again on every return; the refused lock falls back to a playing video', async () => {
  await door.page.goto(`${server.origin}/?name=door&autoanswer=1&key=${KEY}#slow`);
  await registered(door);
  await kitchen.page.goto(`${server.origin}/?name=kitchen&key=${KEY}`);
  await registered(kitchen);
  await sleep(500);
  assert.deepEqual((await e2eLog(door)).wake, [], 'no request before the first tap');

  await door.page.click('#clock-time');
  const first = await waitFor(door, 'a wake-lock request', () => window.e2eLog.wake[0]);
  assert.equal(first.active, true, 'the first request happens during a user activation');
  assert.ok(['click', 'pointerup', 'touchend'].includes(first.event), `and inside the tap's own event handler (${first.event})`);
  const fallback = await waitFor(door, 'the keep-awake video playing', () => {
    const v = window.intercomTest.keepAwake();
    return v && !v.paused && v;
  });
  assert.deepEqual(fallback, { paused: false, muted: true, loop: true, playsInline: true });

  await door.probe(() => document.dispatchEvent(new Event('visibilitychange')));
  await waitFor(door, 'a request after visibilitychange', () => window.e2eLog.wake.length >= 2);
  await door.probe(() => window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true })));
  await waitFor(door, 'a request after pageshow', () => window.e2eLog.wake.length >= 3);
  // Each return also opened a second socket, which took over the registration.
  await waitFor(door, 'one registered socket again', () => window.intercomTest.sockets() === 1 && window.intercomTest.connection() === 'registered', undefined, { report });
  assert.ok((await door.probe(() => window.intercomTest.registrations())) >= 2, 'the door registered again on its return');
  // The kiosk asked for camera and microphone on that first tap, before any call.
  assert.equal((await e2eLog(door)).gum.length, 1, 'one getUserMedia on the first tap');
  await waitFor(door, 'the warm-up camera request to finish', () => window.e2eLog.gum[0].end !== null, undefined, { timeout: SLOW_MEDIA_MS + 5000 });
});

test('a kiosk whose camera takes 5 s sends accept first; the ring plays through an unmuted <audio>; the call connects with video both ways and negotiates H.264 where offered', async () => {
  await door.probe(() => {
    window.e2eLog.gum = [];
    window.e2eLog.sent = [];
  });
  await waitFor(kitchen, 'door online', () => window.intercomTest.peers().door === 'online', undefined, { report });
  await kitchen.page.click('[data-peer="door"]');
  await waitState(door, 'incoming');
  const ring = await waitFor(door, 'the ring playing', () => {
    const r = window.intercomTest.ring();
    return r && r.play && r;
  });
  assert.equal(ring.play, 'resolved', 'play() on the ring element resolved');
  assert.equal(ring.muted, false);
  assert.equal(ring.paused, false);
  await door.page.screenshot({ path: join(artifacts, 'ipad-kiosk-ringing.png') });

  await waitFor(door, 'accept sent', () => window.e2eLog.sent.some((m) => m.type === 'accept'), undefined, { timeout: 8000 });
  const log = await e2eLog(door);
  const accept = log.sent.find((m) => m.type === 'accept');
  assert.equal(log.gum.length >= 1, true, 'media was asked for');
  assert.ok(accept.t <= log.gum[0].start, `accept (${accept.t}) before getUserMedia (${log.gum[0].start})`);
  assert.equal(log.gum[0].end, null, 'the camera is still opening when accept has gone');

  await waitState(kitchen, 'call', 10000);
  for (const t of [door, kitchen]) {
    await waitFor(t, 'the peer connection connected', () => window.intercomTest.pcState() === 'connected', undefined, { timeout: 20000, report });
    await waitFor(t, 'the remote picture', () => window.intercomTest.remoteVideo().videoWidth > 0, undefined, { timeout: 15000, report });
    await waitStats(t, 'inbound video bytes', (s) => (s.inbound.video || 0) > 20000);
  }
  const doorLog = await e2eLog(door);
  assert.ok(doorLog.gum[0].end - doorLog.gum[0].start >= SLOW_MEDIA_MS - 50, 'the camera really took 5 s');
  await door.page.screenshot({ path: join(artifacts, 'ipad-kiosk-call.png') });

  const h264 = await kitchen.probe(() => {
    const caps = RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video');
    return !!caps && caps.codecs.some((c) => /h264/i.test(c.mimeType));
  });
  const want = h264 ? 'video/H264' : 'video/VP8';
  for (const t of [door, kitchen]) {
    const s = await waitStats(t, 'an outbound video codec', (x) => !!x.videoCodec);
    assert.equal(s.videoCodec, want, `${t.label} sends ${want} (this Chromium ${h264 ? 'offers' : 'lacks'} H.264)`);
  }
});

test('a local video track that ends mid-call is acquired again, put on the sender, and video keeps flowing', async () => {
  const before = await kitchen.probe(() => window.intercomTest.localVideo());
  assert.ok(await kitchen.probe(() => window.intercomTest.endLocalVideo()), 'the camera track was ended');
  const after = await waitFor(kitchen, 'a new camera track', (old) => {
    const v = window.intercomTest.localVideo();
    return v && v.replaced === 1 && v.id !== old && v.state === 'live' && v.sent === v.id && v;
  }, before.id, { report });
  assert.notEqual(after.id, before.id);
  const sent = (await stats(kitchen)).outbound.video;
  const got = (await stats(door)).inbound.video;
  await waitStats(kitchen, 'outbound video bytes growing', (s) => s.outbound.video > sent + 20000);
  await waitStats(door, 'inbound video bytes growing', (s) => s.inbound.video > got + 20000);
  assert.equal(await kitchen.probe(() => window.intercomTest.state()), 'call');
  await hangUp();
});

test('reopened at / in the same browser, the kiosk registers as door with the key and answers by itself', async () => {
  await door.page.goto(`${server.origin}/`);
  await registered(door);
  assert.equal(await door.probe(() => window.intercomTest.me()), 'door');
  const reg = (await e2eLog(door)).sent.find((m) => m.type === 'register');
  assert.deepEqual({ name: reg.name, key: reg.key }, { name: 'door', key: KEY });
  await waitFor(kitchen, 'door online', () => window.intercomTest.peers().door === 'online', undefined, { report });
  await kitchen.page.click('[data-peer="door"]');
  await waitState(door, 'incoming');
  await waitFor(door, 'auto-answer', () => window.e2eLog.sent.some((m) => m.type === 'accept'), undefined, { timeout: 8000 });
  await waitState(kitchen, 'call', 10000);
  await hangUp();
});

test('settings can be forgotten; then the set-up screen asks for the access key, and with it the tablet registers', async () => {
  await door.page.click('#open-settings');
  await waitState(door, 'settings');
  await door.page.screenshot({ path: join(artifacts, 'ipad-settings.png') });
  await door.page.click('#settings-clear');
  await waitState(door, 'setup');
  assert.equal(new URL(door.page.url()).search, '');
  await door.page.fill('#setup-name', 'hall');
  await door.page.click('#setup-save');
  await waitFor(door, 'the key field', () => window.intercomTest.setupKeyField() && window.intercomTest.state() === 'setup', undefined, { report });
  assert.equal(await door.probe(() => window.intercomTest.setupError()), 'This intercom needs an access key. Enter it below.');
  await door.page.screenshot({ path: join(artifacts, 'ipad-setup-key.png') });
  await door.page.fill('#setup-key', KEY);
  await door.page.click('#setup-save');
  await registered(door);
  assert.equal(await door.probe(() => window.intercomTest.me()), 'hall');
});

test('a page whose WebSocket upgrade keeps failing shows the trust hint with a link to the guide', async () => {
  // The upgrade goes to a path the appliance answers with 404 (the same origin, so
  // the page's CSP allows it): `error`, then close 1006, which is all a page sees
  // when Safari refuses the certificate for wss://.
  const page = await kitchen.context.newPage();
  page.on('pageerror', (err) => pageErrors.push(`trust: ${err.message}`));
  await page.addInitScript(() => {
    const Real = window.WebSocket;
    window.WebSocket = function (url, protocols) {
      return new Real(String(url).replace(/\/ws$/, '/no-such-socket'), protocols);
    };
    window.WebSocket.prototype = Real.prototype;
    Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  });
  await page.goto(`${server.origin}/?name=porch&key=${KEY}`);
  const tab = { label: 'trust', probe: (fn, arg) => page.evaluate(fn, arg) };
  const hint = await waitFor(tab, 'the trust hint with its link', () => {
    const h = window.intercomTest && window.intercomTest.trustHint();
    return h && h.href && h;
  }, undefined, { timeout: 20000, report: () => ({ failedOpens: window.intercomTest.failedOpens(), connection: window.intercomTest.connection(), screen: window.intercomTest.state(), ws: String(window.WebSocket).slice(0, 60) }) });
  assert.match(hint.text, /does not trust the intercom's certificate/);
  assert.equal(hint.href, `http://localhost:${httpPort}/`);
  await page.screenshot({ path: join(artifacts, 'ipad-trust-hint.png') });
  const guide = await get(hint.href);
  assert.equal(guide.status, 200);
  assert.match(guide.body.toString(), /Set up this tablet/);
  await page.close();
});

test('/intercom.mobileconfig on both ports is a plist with the keys iOS requires and the CA in a com.apple.security.root payload', async () => {
  const der = new X509Certificate(caPem).raw;
  const dir = tempDir('ipad-profile');
  try {
    for (const url of [`${server.origin}/intercom.mobileconfig`, `http://localhost:${httpPort}/intercom.mobileconfig`]) {
      const r = await get(url);
      assert.equal(r.status, 200, url);
      assert.equal(r.type, 'application/x-apple-aspen-config', url);
      const file = join(dir, 'p.mobileconfig');
      writeFileSync(file, r.body);
      const parsed = JSON.parse(
        execFileSync('python3', ['-c', PLIST_PY, file], { encoding: 'utf8' }),
      );
      assert.equal(parsed.PayloadType, 'Configuration', url);
      assert.equal(parsed.PayloadVersion, 1, url);
      assert.match(parsed.PayloadUUID, /^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/, url);
      assert.ok(parsed.PayloadIdentifier.length > 0, url);
      assert.ok(parsed.PayloadDisplayName.length > 0, url);
      assert.equal(parsed.content.length, 1, url);
      const [root] = parsed.content;
      assert.equal(root.PayloadType, 'com.apple.security.root', url);
      assert.equal(root.PayloadVersion, 1, url);
      assert.notEqual(root.PayloadUUID, parsed.PayloadUUID);
      assert.ok(Buffer.from(root.data, 'base64').equals(der), `${url}: the payload is the CA's DER`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Parses a profile with plistlib and prints what the test checks, as JSON.
const PLIST_PY = `
import base64, json, plistlib, sys
with open(sys.argv[1], 'rb') as f:
    p = plistlib.load(f)
keys = ['PayloadType', 'PayloadIdentifier', 'PayloadUUID', 'PayloadVersion', 'PayloadDisplayName']
out = {k: p[k] for k in keys}
out['content'] = [dict({k: c[k] for k in keys}, data=base64.b64encode(c['PayloadContent']).decode()) for c in p['PayloadContent']]
print(json.dumps(out))
`;

test('no uncaught errors in the pages', () => {
  assert.deepEqual(pageErrors, []);
});

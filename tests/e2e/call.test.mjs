// Two headless Chromium "tablets" call each other through the real intercomd.
// Run inside a network namespace that has only `lo` (see ./run), so WebRTC can
// only use 127.0.0.1; the selected candidate pair is still checked on both ends.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import {
  startServer,
  launchTablet,
  makeFakeCamera,
  waitFor,
  sleep,
  tempDir,
  needBinary,
  tearDown,
  waitScreen,
} from './harness.mjs';

const KITCHEN = 'Kitchen';
const DOOR = 'Front door';
const RING_TIMEOUT_S = 5;

let server;
let stateDir;
let mediaDir;
let artifacts;
let A; // Kitchen: a landscape tablet that picks its name on first visit
let B; // Front door: a portrait kiosk set up by URL (?name=…)
const cspViolations = [];
const pageErrors = [];

before(async () => {
  artifacts = needBinary();
  stateDir = tempDir('state');
  // Both tablets are 127.0.0.1 (on a LAN each has its own address): a page load's
  // parallel requests from both, plus their sockets, exceed the default 8
  // unregistered sockets per address, so the cap here is 32.
  server = await startServer({ stateDir, args: ['--ring-timeout', String(RING_TIMEOUT_S), '--max-per-ip', '32'] });
  const caFile = join(stateDir, 'ca.crt');
  assert.match(readFileSync(caFile, 'utf8'), /BEGIN CERTIFICATE/);
  const media = (mediaDir = tempDir('media'));
  const camA = makeFakeCamera(join(media, 'kitchen.y4m'), { wall: [236, 150, 84], wall2: [176, 88, 46], person: [64, 42, 40] });
  const camB = makeFakeCamera(join(media, 'door.y4m'), { wall: [70, 130, 210], wall2: [30, 60, 120], person: [26, 30, 48] });
  [A, B] = await Promise.all([
    launchTablet({ label: 'kitchen', caFile, camera: camA, viewport: { width: 1280, height: 800 } }),
    launchTablet({ label: 'door', caFile, camera: camB, viewport: { width: 800, height: 1280 } }),
  ]);
  for (const t of [A, B]) {
    t.page.on('console', (msg) => {
      if (/Content[- ]Security[- ]Policy/i.test(msg.text())) cspViolations.push(`${t.label}: ${msg.text()}`);
    });
    t.page.on('pageerror', (err) => pageErrors.push(`${t.label}: ${err.message}`));
  }
});

after(() => tearDown({ tablets: [A, B], server, dirs: [stateDir, mediaDir] }));

const state = () => window.intercomTest.state();
const report = () => {
  const T = window.intercomTest;
  return { state: T.state(), connection: T.connection(), me: T.me(), partner: T.partner(), peers: T.peers(), notice: T.notice(), pc: T.pcState(), ice: T.iceState() };
};
const waitState = (t, s, timeout) => waitScreen(t, s, { timeout, report });
const waitPeer = (t, name, status) =>
  waitFor(t, `${name} ${status}`, ([n, s]) => window.intercomTest.peers()[n] === s, [name, status], { report });
const stats = (t) => t.probe(() => window.intercomTest.stats());
const healthz = (t) => t.page.evaluate(() => fetch('/healthz').then((r) => r.json()));
const inboundTotal = (s) => (s?.inbound.audio || 0) + (s?.inbound.video || 0);

async function call(from, to, toName) {
  await from.page.click(`[data-peer="${toName}"]`);
  await waitState(from, 'outgoing');
  await waitState(to, 'incoming');
}

async function connected(t) {
  await waitFor(t, 'RTCPeerConnection connected', () => window.intercomTest.pcState() === 'connected', undefined, { timeout: 20000, report });
}

test('the page is served with a CSP and trusted TLS', async () => {
  const res = await A.page.goto(`${server.origin}/`);
  assert.equal(res.status(), 200);
  const csp = res.headers()['content-security-policy'] || '';
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'/);
  assert.equal(new URL(A.page.url()).protocol, 'https:');
  // "Add to Home Screen": the manifest and its icons are served.
  const manifest = await A.page.evaluate(async () => {
    const href = document.querySelector('link[rel=manifest]').href;
    const m = await (await fetch(href)).json();
    const icons = [];
    for (const icon of m.icons) {
      const r = await fetch(new URL(icon.src, href));
      icons.push({ src: icon.src, status: r.status, type: r.headers.get('content-type') });
    }
    return { display: m.display, startUrl: m.start_url, icons };
  });
  assert.equal(manifest.display, 'standalone');
  assert.equal(manifest.startUrl, undefined, 'no start_url: a home-screen app starts at the URL it was added from');
  assert.ok(manifest.icons.length >= 2);
  for (const icon of manifest.icons) {
    assert.equal(icon.status, 200, icon.src);
    assert.match(icon.type, /^image\//, icon.src);
  }
});

test('a page that does not ask for the test hooks loads none', async () => {
  const page = await A.context.newPage();
  try {
    // Whichever init script runs first, the flag stays false on this page.
    await page.addInitScript(() => Object.defineProperty(window, 'intercomTestHooks', { value: false }));
    const paths = [];
    page.on('request', (r) => paths.push(new URL(r.url()).pathname));
    await page.goto(`${server.origin}/`);
    await page.waitForFunction(() => document.body.dataset.screen === 'setup');
    assert.ok(paths.includes('/app.js') && paths.includes('/call.js'), `loaded ${paths}`);
    assert.ok(!paths.includes('/testhooks.js'), `loaded ${paths}`);
    assert.equal(await page.evaluate(() => typeof window.intercomTest), 'undefined');
  } finally {
    await page.close();
  }
});

test('both tablets register and see each other online', async () => {
  // Kitchen: first visit, picks its name.
  await waitState(A, 'setup');
  await A.page.fill('#setup-name', KITCHEN);
  await A.page.click('#setup-save');
  // Front door: a kiosk bookmark presets the name.
  await B.page.goto(`${server.origin}/?name=${encodeURIComponent(DOOR)}`);
  await waitState(A, 'list');
  await waitState(B, 'list');
  await waitPeer(A, DOOR, 'online');
  await waitPeer(B, KITCHEN, 'online');
  assert.equal(await A.probe(() => window.intercomTest.me()), KITCHEN);
  assert.equal(await B.probe(() => window.intercomTest.me()), DOOR);
  assert.equal(await A.page.evaluate(() => localStorage.getItem('intercom.name')), KITCHEN);
  assert.ok(await A.page.isVisible(`[data-peer="${DOOR}"]`), 'Front door is listed on the kitchen tablet');
  const box = await A.page.locator(`[data-peer="${DOOR}"]`).boundingBox();
  assert.ok(box.height >= 48 && box.width >= 48, `touch target is ${box.width}x${box.height}`);
  await A.page.screenshot({ path: join(artifacts, 'kitchen-list.png') });
});

test('kitchen calls the front door, which answers; media flows both ways over 127.0.0.1', async () => {
  await call(A, B, DOOR);
  assert.equal(await B.probe(() => window.intercomTest.partner()), KITCHEN);
  await waitFor(B, 'focus on Answer', () => window.intercomTest.focused() === 'in-accept', undefined, { report });
  assert.match(await B.page.textContent('#in-name'), new RegExp(KITCHEN));
  await waitPeer(A, DOOR, 'busy');
  assert.equal(await B.probe(() => window.intercomTest.tone()), 'ring', 'the door rings');
  assert.equal(await A.probe(() => window.intercomTest.tone()), 'ringback', 'the kitchen hears the ringback');
  assert.equal(await B.probe(() => window.intercomTest.soundUnlocked()), true, 'Web Audio is running');
  await B.page.screenshot({ path: join(artifacts, 'door-incoming.png') });
  await A.page.screenshot({ path: join(artifacts, 'kitchen-ringing.png') });

  await B.page.click('#in-accept');
  await waitState(A, 'call');
  await waitState(B, 'call');
  assert.equal(await B.probe(() => window.intercomTest.tone()), null, 'ringing stops on answer');
  assert.equal(await A.probe(() => window.intercomTest.tone()), null, 'ringback stops on answer');
  await connected(A);
  await connected(B);

  // The front door sees the kitchen's picture, and it moves.
  const v0 = await waitFor(B, 'remote video frames', () => {
    const v = window.intercomTest.remoteVideo();
    return v.videoWidth > 0 && v.currentTime > 0 && v;
  }, undefined, { timeout: 15000, report });
  await sleep(1500);
  const v1 = await B.probe(() => window.intercomTest.remoteVideo());
  assert.ok(v1.videoWidth > 0, `remote videoWidth ${v1.videoWidth}`);
  assert.ok(v1.currentTime > v0.currentTime, `remote currentTime did not advance: ${v0.currentTime} -> ${v1.currentTime}`);
  assert.equal(v1.paused, false);

  // RTP bytes grow on both sides.
  const [a0, b0] = await Promise.all([stats(A), stats(B)]);
  await sleep(1500);
  const [a1, b1] = await Promise.all([stats(A), stats(B)]);
  assert.ok(inboundTotal(a1) > inboundTotal(a0), `kitchen inbound bytes did not grow: ${JSON.stringify([a0?.inbound, a1?.inbound])}`);
  assert.ok(inboundTotal(b1) > inboundTotal(b0), `door inbound bytes did not grow: ${JSON.stringify([b0?.inbound, b1?.inbound])}`);
  assert.ok(a1.inbound.video > 0 && b1.inbound.video > 0, 'video bytes received on both sides');
  assert.ok(a1.inbound.audio > 0 && b1.inbound.audio > 0, 'audio bytes received on both sides');

  // WebRTC stayed on loopback: anything else is a leak and fails loudly.
  for (const [label, s] of [['kitchen', a1], ['door', b1]]) {
    assert.ok(s.pair, `${label}: no selected candidate pair in getStats()`);
    assert.equal(s.pair.local.address, '127.0.0.1', `${label}: local candidate is ${JSON.stringify(s.pair.local)}, not 127.0.0.1`);
    assert.equal(s.pair.remote.address, '127.0.0.1', `${label}: remote candidate is ${JSON.stringify(s.pair.remote)}, not 127.0.0.1`);
  }

  // Each side shows the other's camera (the kitchen wall is orange, the door's blue).
  const colourB = await B.probe(() => window.intercomTest.remoteColor());
  const colourA = await waitFor(A, 'remote video frames', () => window.intercomTest.remoteColor(), undefined, { report });
  assert.ok(colourB[0] > colourB[2] + 30, `door should see the orange kitchen, sees rgb ${colourB}`);
  assert.ok(colourA[2] > colourA[0] + 30, `kitchen should see the blue door, sees rgb ${colourA}`);

  await sleep(1200); // let the timer tick so the screenshot shows a running call
  await A.page.screenshot({ path: join(artifacts, 'kitchen-in-call.png') });
  await B.page.screenshot({ path: join(artifacts, 'door-in-call.png') });
});

test('mute and camera off reach the other side', async () => {
  await A.page.click('#btn-mute');
  assert.deepEqual(await A.probe(() => window.intercomTest.localTracks()), { audio: false, video: true });
  await waitFor(B, 'remote muted', () => window.intercomTest.remoteMedia().audio === false, undefined, { report });
  assert.ok(await B.page.isVisible('#remote-muted'), 'the door shows that the kitchen muted');
  await A.page.click('#btn-mute');
  await waitFor(B, 'remote unmuted', () => window.intercomTest.remoteMedia().audio === true, undefined, { report });

  await A.page.click('#btn-cam');
  assert.deepEqual(await A.probe(() => window.intercomTest.localTracks()), { audio: true, video: false });
  await waitFor(B, 'remote camera off', () => !window.intercomTest.remoteMedia().showing, undefined, { report });
  assert.ok(await B.page.isVisible('#remote-placeholder'), 'the door shows the kitchen avatar instead of a black picture');
  await A.page.click('#btn-cam');
  await waitFor(B, 'remote camera on', () => window.intercomTest.remoteMedia().showing, undefined, { report });
});

test('an ICE restart started by both sides at once (glare) keeps the call', async () => {
  const [ua, ub] = await Promise.all([A.probe(() => window.intercomTest.iceUfrag()), B.probe(() => window.intercomTest.iceUfrag())]);
  assert.ok(ua && ub, 'both sides have a local description');
  await Promise.all([A.probe(() => window.intercomTest.restartIce()), B.probe(() => window.intercomTest.restartIce())]);
  for (const [t, before] of [[A, ua], [B, ub]]) {
    await waitFor(t, 'new ICE credentials, stable and connected', (old) => {
      const T = window.intercomTest;
      return T.iceUfrag() !== old && T.signalingState() === 'stable' && T.pcState() === 'connected';
    }, before, { timeout: 20000, report });
  }
  const [a0, b0] = await Promise.all([stats(A), stats(B)]);
  await sleep(1500);
  const [a1, b1] = await Promise.all([stats(A), stats(B)]);
  assert.ok(inboundTotal(a1) > inboundTotal(a0), 'kitchen still receives media after the restart');
  assert.ok(inboundTotal(b1) > inboundTotal(b0), 'door still receives media after the restart');
  assert.equal(b1.pair.local.address, '127.0.0.1');
});

test('a network change mid-call: the kitchen reconnects with its token and the call goes on', async () => {
  // The browser says the network is back (as after a Wi-Fi hand-over); the page
  // opens a second socket, reclaims its name with the token, and the server
  // closes the old socket with 4001. Nobody else notices; the call survives.
  const before = await healthz(A);
  const registrations = await A.probe(() => window.intercomTest.registrations());
  await A.page.evaluate(() => window.dispatchEvent(new Event('online')));
  await waitFor(A, 'registered on the new socket', (n) => window.intercomTest.registrations() === n + 1 && window.intercomTest.sockets() === 1, registrations, { report });
  assert.equal(await A.probe(() => window.intercomTest.connection()), 'registered');
  assert.equal(await A.probe(() => window.intercomTest.state()), 'call');
  assert.equal(await B.probe(() => window.intercomTest.state()), 'call');
  const deadline = Date.now() + 5000;
  let after = await healthz(A);
  while (after.connections !== before.connections && Date.now() < deadline) after = await healthz(A);
  assert.equal(after.connections, before.connections, 'the server closed the old socket');
  assert.equal(after.peers, before.peers);
  // Signaling still reaches the door through the new socket.
  await A.page.click('#btn-mute');
  await waitFor(B, 'remote muted via the new socket', () => window.intercomTest.remoteMedia().audio === false, undefined, { report });
  await A.page.click('#btn-mute');
  await waitFor(B, 'remote unmuted', () => window.intercomTest.remoteMedia().audio === true, undefined, { report });
  assert.equal(await A.probe(() => window.intercomTest.pcState()), 'connected');
});

test('kitchen hangs up and both return to the list', async () => {
  await A.page.click('#btn-hangup');
  await waitState(A, 'list');
  await waitState(B, 'list');
  assert.equal((await B.probe(() => window.intercomTest.notice()))?.key, 'callEnded');
  assert.equal(await A.probe(() => window.intercomTest.pcState()), null);
  assert.equal(await B.probe(() => window.intercomTest.pcState()), null);
  await waitPeer(A, DOOR, 'online');
  await waitPeer(B, KITCHEN, 'online');
});

test('a second call, the other way round, works without reloading', async () => {
  await call(B, A, KITCHEN);
  await A.page.click('#in-accept');
  await connected(A);
  await connected(B);
  await waitFor(A, 'remote video frames', () => window.intercomTest.remoteVideo().videoWidth > 0, undefined, { report });
  const s0 = await stats(B);
  await sleep(1200);
  const s1 = await stats(B);
  assert.ok(inboundTotal(s1) > inboundTotal(s0), 'door inbound bytes grow in the second call');
  await B.page.click('#btn-hangup');
  await waitState(A, 'list');
  await waitState(B, 'list');
});

test('a declined call says so on the caller', async () => {
  await call(A, B, DOOR);
  await B.page.click('#in-decline');
  await waitState(A, 'list');
  await waitState(B, 'list');
  const notice = await waitFor(A, 'declined notice', () => window.intercomTest.notice(), undefined, { report });
  assert.equal(notice.key, 'declined');
  assert.match(notice.text, /declined/);
  assert.ok(await A.page.isVisible('#notice'), 'the notice is on screen');
  await A.page.screenshot({ path: join(artifacts, 'kitchen-declined.png') });
});

test('a cancelled call shows as missed on the callee', async () => {
  await call(A, B, DOOR);
  await A.page.click('#out-cancel');
  await waitState(A, 'list');
  await waitState(B, 'list');
  assert.equal((await B.probe(() => window.intercomTest.notice()))?.key, 'missed');
});

test('an unanswered call ends with "no answer" after the ring timeout', async () => {
  await call(A, B, DOOR);
  await waitState(A, 'list', (RING_TIMEOUT_S + 5) * 1000);
  await waitState(B, 'list');
  assert.equal((await A.probe(() => window.intercomTest.notice()))?.key, 'noAnswer');
  assert.equal((await B.probe(() => window.intercomTest.notice()))?.key, 'missed');
});

test('a tablet ringing for someone else shows as busy, and calling it says so', async () => {
  // A third device, "Hall", is a bare WebSocket opened from the kitchen page; it calls the door.
  await A.page.evaluate(
    (door) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://${location.host}/ws`);
        window.hallSocket = ws;
        ws.onopen = () => ws.send(JSON.stringify({ type: 'register', name: 'Hall' }));
        ws.onerror = () => reject(new Error('the Hall socket failed'));
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          if (m.type === 'registered') ws.send(JSON.stringify({ type: 'call', to: door, id: 1 }));
          else if (m.type === 'ack' && m.id === 1) resolve();
          else if (m.type === 'error') reject(new Error(e.data));
        };
      }),
    DOOR,
  );
  await waitPeer(A, DOOR, 'busy');
  // A busy entry is aria-disabled (Playwright would wait for it to be enabled), yet a tap
  // on it must explain itself; the ring lasts RING_TIMEOUT_S, so tap at once.
  await A.page.click(`[data-peer="${DOOR}"]`, { force: true });
  const notice = await waitFor(A, 'busy notice', () => window.intercomTest.notice()?.key === 'isBusy' && window.intercomTest.notice(), undefined, { report });
  assert.equal(notice.key, 'isBusy');
  assert.match(notice.text, /Front door is busy/);
  assert.equal(await A.probe(state), 'list', 'no call was started');
  assert.equal(await A.probe(() => window.intercomTest.peers().Hall), 'busy');
  assert.equal(await B.probe(state), 'incoming', 'the door rings for Hall');
  await A.page.screenshot({ path: join(artifacts, 'kitchen-busy.png') });
  // Hall gives up and leaves: the door stops ringing and everyone is available again.
  await A.page.evaluate((door) => {
    window.hallSocket.send(JSON.stringify({ type: 'hangup', to: door }));
    window.hallSocket.close();
  }, DOOR);
  await waitState(B, 'list');
  await waitPeer(A, DOOR, 'online');
  await waitFor(A, 'Hall gone', () => !('Hall' in window.intercomTest.peers()), undefined, { report });
});

test('without camera permission the call still connects with audio, and says so', async () => {
  // The kitchen tablet refuses the camera from now on.
  await A.page.evaluate(() => {
    const md = navigator.mediaDevices;
    const real = md.getUserMedia.bind(md);
    window.__realGetUserMedia = real;
    md.getUserMedia = (c) => (c && c.video ? Promise.reject(new DOMException('refused', 'NotAllowedError')) : real(c));
  });
  await call(A, B, DOOR);
  await B.page.click('#in-accept');
  await connected(A);
  await connected(B);
  assert.equal(await A.probe(() => window.intercomTest.mediaNote()), 'audioOnlyDenied');
  assert.ok(await A.page.isVisible('#media-note'), 'the audio-only note is on screen');
  // The door still hears the kitchen and shows who it is instead of a blank picture.
  const s0 = await stats(B);
  await sleep(1500);
  const s1 = await stats(B);
  assert.ok((s1.inbound.audio || 0) > (s0.inbound.audio || 0), 'door receives the kitchen audio');
  await waitFor(B, 'remote placeholder', () => !document.getElementById('remote-placeholder').hidden, undefined, { report });
  // …and the kitchen still sees the door.
  await waitFor(A, 'remote video frames', () => window.intercomTest.remoteVideo().videoWidth > 0, undefined, { report });
  await A.page.screenshot({ path: join(artifacts, 'kitchen-audio-only.png') });
  await B.page.screenshot({ path: join(artifacts, 'door-audio-only.png') });
  await A.page.click('#btn-hangup');
  await waitState(A, 'list');
  await waitState(B, 'list');
  await A.page.evaluate(() => {
    navigator.mediaDevices.getUserMedia = window.__realGetUserMedia;
  });
});

test('push to talk: the microphone is open only while the button is held', async () => {
  await B.page.click('#open-settings');
  await waitState(B, 'settings');
  await B.page.check('#set-ptt');
  await B.page.click('#settings-done');
  await waitState(B, 'list');
  await call(A, B, DOOR);
  await B.page.click('#in-accept');
  await connected(A);
  await connected(B);
  // The button appears once the microphone is ready, which may come after the link.
  await B.page.waitForSelector('#ptt', { state: 'visible', timeout: 10000 }).catch(() => assert.fail('the hold-to-talk button is shown'));
  assert.equal((await B.probe(() => window.intercomTest.localTracks())).audio, false, 'microphone closed at first');
  await waitFor(A, 'door microphone closed', () => window.intercomTest.remoteMedia().audio === false, undefined, { report });
  await B.page.hover('#ptt');
  await B.page.mouse.down();
  assert.equal((await B.probe(() => window.intercomTest.localTracks())).audio, true, 'microphone open while held');
  await waitFor(A, 'door microphone open', () => window.intercomTest.remoteMedia().audio === true, undefined, { report });
  await B.page.screenshot({ path: join(artifacts, 'door-push-to-talk.png') });
  await B.page.mouse.up();
  assert.equal((await B.probe(() => window.intercomTest.localTracks())).audio, false, 'microphone closed on release');
  await B.page.click('#btn-hangup');
  await waitState(A, 'list');
  await waitState(B, 'list');
  await B.page.click('#open-settings');
  await B.page.uncheck('#set-ptt');
  await B.page.click('#settings-done');
});

test('after a reload the kiosk is back under its name; autoanswer=1 without an access key rings, audio=0 starts with the camera off', async () => {
  await B.page.goto(`${server.origin}/?name=${encodeURIComponent(DOOR)}&autoanswer=1&audio=0`);
  await waitFor(B, 'registered', () => window.intercomTest && window.intercomTest.connection() === 'registered', undefined, { report });
  assert.equal(await B.probe(() => window.intercomTest.me()), DOOR);
  await waitPeer(A, DOOR, 'online');
  await call(A, B, DOOR);
  // This server has no --access-key, so the kiosk must not answer by itself
  // (kiosk.test.mjs covers both cases); a person answers it, well inside the
  // 5 s ring timeout but after the 2.5 s auto-answer delay.
  await sleep(3000);
  assert.equal(await B.probe(state), 'incoming', 'still ringing after the auto-answer delay');
  assert.match(await B.probe(() => window.intercomTest.autoAnswerNote()), /access key/);
  await B.page.click('#in-accept');
  await waitState(B, 'call');
  await connected(A);
  await connected(B);
  // The link may connect while it rings (the caller's preview); the door's own microphone
  // joins once it is open.
  await waitFor(B, 'door microphone on, camera off', () => {
    const t = window.intercomTest.localTracks();
    return t.audio === true && t.video === false;
  }, undefined, { report });
  await waitFor(A, 'door camera off', () => window.intercomTest.remoteMedia().video === false, undefined, { report });
  assert.ok(await A.page.isVisible('#remote-placeholder'), 'the kitchen shows the door avatar');
  await B.page.click('#btn-cam');
  await waitFor(A, 'door camera on', () => window.intercomTest.remoteMedia().showing, undefined, { report });
  await A.page.click('#btn-hangup');
  await waitState(B, 'list');
});

test('after the server is killed and restarted both tablets come back under the same names', async () => {
  const port = server.port;
  await server.kill();
  await waitFor(A, 'reconnecting banner', () => window.intercomTest.banner(), undefined, { report });
  await waitFor(B, 'reconnecting state', () => window.intercomTest.connection() === 'reconnecting', undefined, { report });
  await A.page.screenshot({ path: join(artifacts, 'kitchen-reconnecting.png') });
  await sleep(1000);
  server = await startServer({ stateDir, port, args: ['--ring-timeout', String(RING_TIMEOUT_S)] });
  await waitFor(A, 'registered again', () => window.intercomTest.connection() === 'registered', undefined, { timeout: 45000, report });
  await waitFor(B, 'registered again', () => window.intercomTest.connection() === 'registered', undefined, { timeout: 45000, report });
  await waitPeer(A, DOOR, 'online');
  await waitPeer(B, KITCHEN, 'online');
  assert.equal(await A.probe(() => window.intercomTest.me()), KITCHEN);
  assert.equal(await B.probe(() => window.intercomTest.me()), DOOR);
  assert.equal(await A.probe(() => window.intercomTest.banner()), null, 'the banner is gone');
  // And they can still call each other.
  await call(A, B, DOOR);
  await B.page.click('#in-accept');
  await connected(A);
  await connected(B);
  await B.page.click('#btn-hangup');
  await waitState(A, 'list');
});

test('a Korean kiosk (?lang=ko&name=주방) speaks Korean and shows up by its Korean name', async () => {
  const page = await A.context.newPage();
  try {
    await page.goto(`${server.origin}/?lang=ko&name=${encodeURIComponent('주방')}`);
    await page.waitForFunction(() => window.intercomTest && window.intercomTest.connection() === 'registered');
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'ko');
    assert.equal(await page.textContent('#list-title'), '누구에게 전화할까요?');
    await waitPeer(B, '주방', 'online');
  } finally {
    await page.close();
  }
  await waitFor(B, '주방 offline', () => !('주방' in window.intercomTest.peers()), undefined, { report });
});

test('when the other tablet vanishes mid-call the call ends cleanly', async () => {
  await call(A, B, DOOR);
  await B.page.click('#in-accept');
  await connected(A);
  await B.page.close();
  await waitState(A, 'list');
  assert.equal((await A.probe(() => window.intercomTest.notice()))?.key, 'peerLost');
  await waitFor(A, 'door offline', (n) => !(n in window.intercomTest.peers()), DOOR, { report });
  assert.equal(await A.probe(() => window.intercomTest.pcState()), null);
});

test('no Content-Security-Policy violations and no uncaught errors in the pages', () => {
  assert.deepEqual(cspViolations, []);
  assert.deepEqual(pageErrors, []);
});

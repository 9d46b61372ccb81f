// A wall kiosk (`?name=Door&autoanswer=1`) and a "visitor": a bare WebSocket that any
// device on the LAN could open, driven from a second page of the same browser (on the
// appliance's own origin, so the server takes it as a page would).
//
// First the appliance runs without --access-key: the kiosk must ring, not answer, and
// say why. Then it restarts on the same port with a key: the kiosk answers by itself,
// and hang-up reasons that name Object.prototype members never leave it stuck.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, launchTablet, makeFakeCamera, waitFor, sleep, tempDir, needBinary, tearDown, waitScreen } from './harness.mjs';

const DOOR = 'Door';
const VISITOR = 'Mallory';
const KEY = 'e2e-kiosk-Qh7vR2mXw9';
const AUTOANSWER_MS = 2500; // www/app.js
const HOSTILE_REASONS = ['constructor', '__proto__', 'toString'];

let server;
let stateDir;
let mediaDir;
let artifacts;
let kiosk; // the tablet whose first page is the kiosk
let visitor; // { label, probe, page }: a second page holding the bare socket
const pageErrors = [];

before(async () => {
  artifacts = needBinary();
  stateDir = tempDir('kiosk-state');
  server = await startServer({ stateDir });
  mediaDir = tempDir('kiosk-media');
  const camera = makeFakeCamera(join(mediaDir, 'door.y4m'), { wall: [70, 130, 210], wall2: [30, 60, 120], person: [26, 30, 48] });
  kiosk = await launchTablet({ label: 'kiosk', caFile: join(stateDir, 'ca.crt'), camera, viewport: { width: 800, height: 1280 } });
  kiosk.page.on('pageerror', (err) => pageErrors.push(`kiosk: ${err.message}`));
  const page = await kiosk.context.newPage();
  visitor = { label: 'visitor', page, probe: (fn, arg) => page.evaluate(fn, arg) };
});

after(() => tearDown({ tablets: [kiosk], server, dirs: [stateDir, mediaDir] }));

const report = () => {
  const T = window.intercomTest;
  return { state: T.state(), connection: T.connection(), partner: T.partner(), peers: T.peers(), notice: T.notice(), note: T.autoAnswerNote() };
};
const state = () => window.intercomTest.state();
const waitState = (s, timeout) => waitScreen(kiosk, s, { timeout, report });

async function openKiosk(query) {
  await kiosk.page.goto(`${server.origin}/?name=${DOOR}&autoanswer=1${query}`);
  await waitFor(kiosk, 'registered', () => window.intercomTest && window.intercomTest.connection() === 'registered', undefined, { report });
  await waitState('list');
}

/** Registers the visitor's bare socket; resolves to its `registered` message. */
async function visit(key) {
  await visitor.page.goto(`${server.origin}/healthz`);
  return visitor.page.evaluate(
    ([name, key]) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://${location.host}/ws`);
        window.visitor = { ws, inbox: [] };
        ws.onopen = () => ws.send(JSON.stringify({ type: 'register', name, key }));
        ws.onerror = () => reject(new Error('the visitor socket failed'));
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          if (m.type === 'registered') resolve(m);
          else if (m.type === 'error') reject(new Error(e.data));
          else window.visitor.inbox.push(m);
        };
      }),
    [VISITOR, key],
  );
}

const visitorSends = (msg) => visitor.page.evaluate((m) => window.visitor.ws.send(JSON.stringify(m)), msg);

/** Waits for the visitor to receive a message of `type` from the kiosk, and takes it. */
const visitorGets = (type, timeout) =>
  waitFor(
    visitor,
    `a "${type}" message`,
    ([type, from]) => {
      const inbox = window.visitor.inbox;
      const i = inbox.findIndex((m) => m.type === type && m.from === from);
      return i >= 0 && inbox.splice(i, 1)[0];
    },
    [type, DOOR],
    { timeout, report: () => window.visitor.inbox },
  );

const visitorHeard = (type) => visitor.probe((type) => window.visitor.inbox.some((m) => m.type === type), type);

async function leave() {
  await visitor.page.evaluate(() => window.visitor.ws.close());
  await waitFor(kiosk, 'the visitor offline', (n) => !(n in window.intercomTest.peers()), VISITOR, { report });
}

test('without --access-key, autoanswer=1 rings like any tablet and says why', async () => {
  await openKiosk('');
  const note = await waitFor(kiosk, 'the auto-answer note on the list', () => window.intercomTest.autoAnswerNote(), undefined, { report });
  assert.equal(note, 'Auto-answer is off: it needs an access key on the intercom.');
  assert.ok(await kiosk.page.isVisible('#screen-list .aa-note'), 'the note is on screen');
  await kiosk.page.screenshot({ path: join(artifacts, 'kiosk-autoanswer-off.png') });

  const reg = await visit(undefined);
  assert.equal(reg.keyed, false);
  await visitorSends({ type: 'call', to: DOOR, id: 1 });
  await waitState('incoming');
  assert.match(await kiosk.probe(() => window.intercomTest.autoAnswerNote()), /access key/, 'the ringing screen says it too');
  await sleep(AUTOANSWER_MS + 1500);
  assert.equal(await kiosk.probe(state), 'incoming', 'still ringing after the auto-answer delay');
  assert.equal(await visitorHeard('accept'), false, 'the kiosk did not accept');
  await kiosk.page.screenshot({ path: join(artifacts, 'kiosk-rings-unkeyed.png') });
  await visitorSends({ type: 'hangup', to: DOOR, reason: 'cancel' });
  await waitState('list');
  await leave();
});

test('the note speaks Korean on a Korean kiosk', async () => {
  await openKiosk('&lang=ko');
  const note = await waitFor(kiosk, 'the Korean note', () => window.intercomTest.autoAnswerNote(), undefined, { report });
  assert.equal(note, '자동 응답 꺼짐: 인터폰에 접근 키가 있어야 합니다.');
});

test('with --access-key the kiosk answers by itself and shows no note', async () => {
  const port = server.port;
  await server.stop();
  server = await startServer({ stateDir, port, args: ['--access-key', KEY] });
  await openKiosk(`&key=${KEY}`);
  assert.equal(await kiosk.probe(() => window.intercomTest.autoAnswerNote()), null);
  assert.ok(!(await kiosk.page.isVisible('#screen-list .aa-note')), 'no note on screen');

  const reg = await visit(KEY);
  assert.equal(reg.keyed, true);
  await visitorSends({ type: 'call', to: DOOR, id: 1 });
  await waitState('incoming');
  await visitorGets('accept', AUTOANSWER_MS + 8000);
  assert.equal(await kiosk.probe(state), 'call');
  await visitorSends({ type: 'hangup', to: DOOR, reason: 'ended' });
  await waitState('list');
});

for (const reason of HOSTILE_REASONS) {
  test(`a hang-up reason of "${reason}" leaves the kiosk on the list, callable again`, async () => {
    // While ringing.
    await visitorSends({ type: 'call', to: DOOR });
    await waitState('incoming');
    await visitorSends({ type: 'hangup', to: DOOR, reason });
    await waitState('list');
    assert.equal((await kiosk.probe(() => window.intercomTest.notice()))?.key, 'missed');

    // In a call (auto-answered).
    await visitorSends({ type: 'call', to: DOOR });
    await visitorGets('accept', AUTOANSWER_MS + 8000);
    await visitorSends({ type: 'hangup', to: DOOR, reason });
    await waitState('list');
    assert.equal((await kiosk.probe(() => window.intercomTest.notice()))?.key, 'callEnded');
    assert.equal(await kiosk.probe(() => window.intercomTest.partner()), null);
    assert.equal(await kiosk.probe(() => window.intercomTest.pcState()), null);
    await kiosk.page.screenshot({ path: join(artifacts, `kiosk-after-${reason.replace(/_/g, '')}.png`) });

    // Calling out, refused by the visitor.
    await waitFor(kiosk, 'the visitor online', (n) => window.intercomTest.peers()[n] === 'online', VISITOR, { report });
    await kiosk.page.click(`[data-peer="${VISITOR}"]`);
    await waitState('outgoing');
    await visitorGets('call');
    await visitorSends({ type: 'hangup', to: DOOR, reason });
    await waitState('list');
    assert.equal((await kiosk.probe(() => window.intercomTest.notice()))?.key, 'declined');

    // And the next caller still gets through: the kiosk answers.
    await visitorSends({ type: 'call', to: DOOR, id: 2 });
    await visitorGets('accept', AUTOANSWER_MS + 8000);
    assert.equal(await kiosk.probe(state), 'call');
    await visitorSends({ type: 'hangup', to: DOOR, reason: 'ended' });
    await waitState('list');
  });
}

test('a peer named "__proto__" is listed, and calling it works', async () => {
  const name = '__proto__';
  await visitor.page.evaluate(
    ([name, key]) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://${location.host}/ws`);
        window.proto = { ws, calls: 0 };
        ws.onopen = () => ws.send(JSON.stringify({ type: 'register', name, key }));
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          if (m.type === 'registered') resolve();
          else if (m.type === 'error') reject(new Error(e.data));
          else if (m.type === 'call') {
            window.proto.calls++;
            ws.send(JSON.stringify({ type: 'hangup', to: m.from, reason: 'valueOf' }));
          }
        };
      }),
    [name, KEY],
  );
  await waitFor(kiosk, `${name} online`, (n) => Object.prototype.hasOwnProperty.call(window.intercomTest.peers(), n), name, { report });
  assert.equal(await kiosk.page.textContent(`[data-peer="${name}"] .peer-name`), name);
  await kiosk.page.screenshot({ path: join(artifacts, 'kiosk-proto-peer.png') });
  await kiosk.page.click(`[data-peer="${name}"]`);
  await waitFor(visitor, 'the call reaching it', () => window.proto.calls === 1);
  await waitState('list');
  assert.equal((await kiosk.probe(() => window.intercomTest.notice()))?.key, 'declined');
  await visitor.page.evaluate(() => window.proto.ws.close());
});

test('no uncaught errors in the kiosk page', () => {
  assert.deepEqual(pageErrors, []);
});

// Wi-Fi client isolation, for real: the appliance and two tablets on a Linux bridge
// whose tablet ports are isolated (each tablet reaches the appliance, never the
// other), in network namespaces this test makes and removes. Two Chromium tablets,
// each inside its own namespace, call each other through intercomd's built-in
// TURN relay: over UDP, then with only the TCP relay offered; and, as the negative
// control, with `--turn off` the same call does not connect.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startServer, launchTablet, makeFakeCamera, waitFor, sleep, tempDir, needBinary, tearDown, waitScreen } from './harness.mjs';

const APPLIANCE = '10.77.0.1';
const ADDR = { kitchen: '10.77.0.11', door: '10.77.0.12' };
const ns = (n) => `ic${process.pid}${n}`;
const NS = { sw: ns('sw'), ap: ns('ap'), kitchen: ns('ka'), door: ns('kb') };

const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

let stateDir;
let mediaDir;
let cams;

before(() => {
  needBinary();
  for (const n of Object.values(NS)) ip('netns', 'add', n);
  ip('-n', NS.sw, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', NS.sw, 'link', 'set', 'br0', 'up');
  const hosts = [['ap', NS.ap, APPLIANCE, false], ['ka', NS.kitchen, ADDR.kitchen, true], ['kb', NS.door, ADDR.door, true]];
  for (const [port, n, addr, isolated] of hosts) {
    ip('link', 'add', `p-${port}`, 'netns', NS.sw, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n);
    ip('-n', NS.sw, 'link', 'set', `p-${port}`, 'master', 'br0');
    ip('-n', NS.sw, 'link', 'set', `p-${port}`, 'up');
    // Bridge port isolation: isolated ports reach only the others that are not.
    if (isolated) execFileSync('bridge', ['-n', NS.sw, 'link', 'set', 'dev', `p-${port}`, 'isolated', 'on']);
    ip('-n', n, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
    ip('-n', n, 'link', 'set', 'eth0', 'up');
    ip('-n', n, 'link', 'set', 'lo', 'up');
  }
  stateDir = tempDir('lan-state');
  mediaDir = tempDir('lan-media');
  cams = {
    kitchen: makeFakeCamera(join(mediaDir, 'kitchen.y4m'), { wall: [236, 150, 84], wall2: [176, 88, 46], person: [64, 42, 40] }),
    door: makeFakeCamera(join(mediaDir, 'door.y4m'), { wall: [70, 130, 210], wall2: [30, 60, 120], person: [26, 30, 48] }),
  };
});

after(() => {
  for (const n of Object.values(NS)) {
    try {
      ip('netns', 'del', n);
    } catch {
      // already gone
    }
  }
  return tearDown({ dirs: [stateDir, mediaDir] });
});

const report = () => {
  const T = window.intercomTest;
  return { state: T.state(), connection: T.connection(), pc: T.pcState(), ice: T.iceState() };
};
const waitState = (t, s, timeout) => waitScreen(t, s, { timeout, report });
const stats = (t) => t.probe(() => window.intercomTest.stats());
const inboundVideo = (s) => s?.inbound.video || 0;

/** The server in the appliance's namespace, and a tablet in each of the others, in a call. */
async function callThrough({ turnArgs, tcpOnly }) {
  const server = await startServer({
    stateDir,
    host: APPLIANCE,
    prefix: ['ip', 'netns', 'exec', NS.ap],
    args: [...turnArgs, '--turn-ports', '49160-49199'],
  });
  const caFile = join(stateDir, 'ca.crt');
  const tablets = [];
  try {
    for (const [label, name] of [['kitchen', 'Kitchen'], ['door', 'Door']]) {
      const t = await launchTablet({ label, caFile, camera: cams[label], viewport: { width: 800, height: 600 }, netns: NS[label] });
      tablets.push(t);
      if (tcpOnly) {
        // The tablet is offered only the TCP relay: as if its network blocked UDP 3478.
        await t.context.addInitScript(() => {
          const Native = window.RTCPeerConnection;
          window.RTCPeerConnection = function (config = {}) {
            const keep = (u) => !/^turns?:/.test(u) || /transport=tcp/.test(u);
            const iceServers = (config.iceServers || [])
              .map((s) => ({ ...s, urls: [].concat(s.urls).filter(keep) }))
              .filter((s) => s.urls.length > 0);
            return new Native({ ...config, iceServers });
          };
          window.RTCPeerConnection.prototype = Native.prototype;
        });
      }
      await t.page.goto(`${server.origin}/?name=${name}`);
      await waitState(t, 'list');
    }
    const [A, B] = tablets;
    await waitFor(A, 'Door online', () => window.intercomTest.peers().Door === 'online', undefined, { report });
    await A.page.click('[data-peer="Door"]');
    await waitState(B, 'incoming');
    await B.page.click('#in-accept');
    await waitState(A, 'call');
    await waitState(B, 'call');
    return { server, A, B };
  } catch (err) {
    await Promise.all(tablets.map((t) => t.close()));
    await server.stop();
    throw err;
  }
}

async function closeAll({ server, A, B }) {
  await Promise.all([A.close(), B.close()]);
  await server.stop();
}

/** The call connects through the relay on the appliance's address, video both ways. */
async function assertRelayed(call, relayProtocol) {
  const { A, B } = call;
  for (const t of [A, B]) {
    await waitFor(t, 'RTCPeerConnection connected', () => window.intercomTest.pcState() === 'connected', undefined, { timeout: 20000, report });
  }
  const [a0, b0] = await Promise.all([stats(A), stats(B)]);
  await sleep(1500);
  const [a1, b1] = await Promise.all([stats(A), stats(B)]);
  assert.ok(inboundVideo(a1) > inboundVideo(a0), `kitchen video did not grow: ${inboundVideo(a0)} -> ${inboundVideo(a1)}`);
  assert.ok(inboundVideo(b1) > inboundVideo(b0), `door video did not grow: ${inboundVideo(b0)} -> ${inboundVideo(b1)}`);
  for (const [label, s] of [['kitchen', a1], ['door', b1]]) {
    assert.ok(s.pair, `${label}: no selected candidate pair`);
    const ends = [s.pair.local, s.pair.remote];
    const relay = ends.find((c) => c.type === 'relay' && c.address === APPLIANCE);
    assert.ok(relay, `${label}: no relay candidate on ${APPLIANCE} in the selected pair ${JSON.stringify(s.pair)}`);
    // Nothing went tablet to tablet directly: that is what the isolation forbids.
    assert.ok(!(s.pair.local.type === 'host' && s.pair.remote.type === 'host'), `${label}: host-to-host ${JSON.stringify(s.pair)}`);
  }
  // Our own relay candidate (whichever side's relay carries the call) was reached over
  // the expected transport.
  const ownRelays = [a1, b1].map((s) => s.pair.local).filter((c) => c.type === 'relay');
  assert.ok(ownRelays.length > 0, 'a local relay candidate is selected on at least one side');
  for (const c of ownRelays) assert.equal(c.relayProtocol, relayProtocol, `relay reached over ${c.relayProtocol}`);
  const health = await A.page.evaluate(() => fetch('/healthz').then((r) => r.json()));
  assert.ok(health.turn_allocations >= 1, `healthz: ${JSON.stringify(health)}`);
}

test('behind client isolation, a call connects through the relay over UDP', async () => {
  const call = await callThrough({ turnArgs: ['--turn', 'on'] });
  try {
    await assertRelayed(call, 'udp');
  } finally {
    await closeAll(call);
  }
});

test('with only the TCP relay offered, the call connects over TCP', async () => {
  const call = await callThrough({ turnArgs: ['--turn', 'on'], tcpOnly: true });
  try {
    await assertRelayed(call, 'tcp');
  } finally {
    await closeAll(call);
  }
});

test('negative control: with --turn off the same call does not connect', async () => {
  const call = await callThrough({ turnArgs: ['--turn', 'off'] });
  try {
    const { A, B } = call;
    // Both sides learn the other's host candidate (descriptions and candidates were
    // exchanged through the server) ...
    for (const [t, partner] of [[A, ADDR.door], [B, ADDR.kitchen]]) {
      await waitFor(
        t,
        `a remote host candidate ${partner}`,
        async (addr) => {
          const s = await window.intercomTest.stats();
          return (s?.remoteCandidates || []).some((c) => c.address === addr);
        },
        partner,
        { report },
      );
    }
    // ... yet for 15 s nothing connects: the isolation is real.
    const until = Date.now() + 15000;
    while (Date.now() < until) {
      for (const t of [A, B]) {
        const pc = await t.probe(() => window.intercomTest.pcState());
        assert.notEqual(pc, 'connected', `${t.label} connected although the bridge isolates the tablets`);
      }
      await sleep(500);
    }
  } finally {
    await closeAll(call);
  }
});

// The call object (www/call.js) without a browser: end() tears everything down
// once, and nothing of an ended call runs or is kept afterwards.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, tempDir } from './harness.mjs';

let Call;
let dir;

before(async () => {
  // www/ has no package.json, so older Node would read its modules as CommonJS.
  dir = tempDir('www-modules');
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  for (const f of ['call.js', 'link.js', 'emitter.js', 'media.js']) copyFileSync(join(ROOT, 'www', f), join(dir, f));
  ({ Call } = await import(pathToFileURL(join(dir, 'call.js')).href));
});

after(() => rmSync(dir, { recursive: true, force: true }));

const tick = (ms) => new Promise((r) => setTimeout(r, ms));

test('end() stops timers, the link and the camera once; an ended call emits nothing', async (t) => {
  const call = new Call('door', 'ringing-in');
  assert.equal(call.role, 'callee');
  const seen = [];
  call.on('phase', () => seen.push(call.phase));
  call.after(20, () => seen.push('timeout'));
  call.every(5, () => seen.push('tick'));
  let closed = 0;
  call.link = { close: () => closed++ };
  // The camera is still opening when the call ends.
  let opened;
  call.mediaPromise = new Promise((r) => {
    opened = r;
  });

  call.setPhase('connecting');
  await tick(12);
  const timers = [...call.timers];
  t.after(() => timers.forEach(clearTimeout)); // so a failure cannot leave the interval running
  assert.equal(call.end(), true);
  assert.equal(call.end(), false);
  assert.equal(call.ended, true);
  call.setPhase('in-call');
  const stopped = [];
  opened({ stream: { getTracks: () => [{ stop: () => stopped.push('camera') }] } });
  const atEnd = seen.length;
  await tick(40);

  assert.equal(seen[0], 'connecting');
  assert.ok(seen.includes('tick'), 'the interval ran while the call was on');
  assert.equal(seen.length, atEnd, `nothing ran after end(): ${seen}`);
  assert.ok(!seen.includes('timeout') && !seen.includes('in-call'));
  assert.equal(closed, 1);
  assert.deepEqual(stopped, ['camera']);
});

test('signals that arrive before the link are kept for it, and dropped once the call ends', () => {
  const call = new Call('door', 'ringing-out');
  assert.equal(call.role, 'caller');
  call.signal({ candidate: 1 });
  assert.deepEqual(call.pendingSignals, [{ candidate: 1 }]);
  call.end();
  call.signal({ candidate: 2 });
  assert.deepEqual(call.pendingSignals, []);
});

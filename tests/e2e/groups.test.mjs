// Four headless Chromium tablets and the real intercomd, inside the loopback-only
// namespace (./run): a door station (`?door=1&calls=household`) rings the group
// "household" (Kitchen and Bedroom) while Office is outside it. Both members see the
// door's picture before answering, and send nothing until one of them answers;
// the other goes back to its list. Then Office pages everyone; then Bedroom turns
// on do-not-disturb. Screenshots go to target/e2e/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { startServer, launchTablet, makeFakeCamera, waitFor, sleep, tempDir, needBinary, tearDown, waitScreen, ROOT } from './harness.mjs';

const GROUP = 'household';
const DOOR = 'Door';
const KITCHEN = 'Kitchen';
const BEDROOM = 'Bedroom';
const OFFICE = 'Office';

let server;
let stateDir;
let mediaDir;
let artifacts;
let door;
let kitchen;
let bedroom;
let office;
let all = [];
const pageErrors = [];

before(async () => {
  artifacts = needBinary();
  stateDir = tempDir('groups-state');
  // Four tablets on 127.0.0.1 load pages in parallel: the per-address cap is raised.
  server = await startServer({ stateDir, args: ['--ring-timeout', '90', '--max-per-ip', '64'] });
  const caFile = join(stateDir, 'ca.crt');
  mediaDir = tempDir('groups-media');
  const cam = (file, wall, wall2) => makeFakeCamera(join(mediaDir, file), { wall, wall2, person: [30, 30, 40] });
  const tablets = [
    ['door', cam('door.y4m', [70, 130, 210], [30, 60, 120]), { width: 800, height: 1280 }],
    ['kitchen', cam('kitchen.y4m', [236, 150, 84], [176, 88, 46]), { width: 1280, height: 800 }],
    ['bedroom', cam('bedroom.y4m', [120, 200, 120], [60, 120, 60]), { width: 1280, height: 800 }],
    ['office', cam('office.y4m', [200, 200, 200], [120, 120, 120]), { width: 1280, height: 800 }],
  ];
  all = await Promise.all(tablets.map(([label, camera, viewport]) => launchTablet({ label, caFile, camera, viewport })));
  [door, kitchen, bedroom, office] = all;
  for (const t of all) t.page.on('pageerror', (err) => pageErrors.push(`${t.label}: ${err.message}`));
});

after(() => tearDown({ tablets: all, server, dirs: [stateDir, mediaDir] }));

const report = () => {
  const T = window.intercomTest;
  return { state: T.state(), connection: T.connection(), partner: T.partner(), peers: T.peers(), notice: T.notice(), ringing: T.ringing(), page: T.page() };
};
const waitState = (t, s, timeout) => waitScreen(t, s, { timeout, report });
const waitPeer = (t, name, status) =>
  waitFor(t, `${name} ${status}`, ([n, s]) => window.intercomTest.peers()[n] === s, [name, status], { report });
const stats = (t) => t.probe(() => window.intercomTest.stats());
const pageStats = (t) => t.probe(() => window.intercomTest.pageStats());
const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);

/** Waits until `get(t)` reports more of `pick` than it did at first (bytes flowing). */
async function grows(t, what, get, pick, timeout = 20000) {
  const first = pick(await get(t));
  const deadline = Date.now() + timeout;
  for (;;) {
    const now = pick(await get(t));
    if (now > first && first >= 0) return now;
    if (Date.now() > deadline) throw new Error(`${t.label}: ${what} did not grow (${first} -> ${now})`);
    await sleep(250);
  }
}

test('four tablets register; the group shows as a card on the tablets outside and inside it', async () => {
  await door.page.goto(`${server.origin}/?name=${DOOR}&door=1&calls=${GROUP}`);
  await kitchen.page.goto(`${server.origin}/?name=${KITCHEN}&groups=${GROUP}`);
  await bedroom.page.goto(`${server.origin}/?name=${BEDROOM}&groups=${GROUP},upstairs`);
  await office.page.goto(`${server.origin}/?name=${OFFICE}`);
  await waitState(door, 'door');
  for (const t of [kitchen, bedroom, office]) await waitState(t, 'list');
  for (const t of all) assert.deepEqual((await t.probe(() => window.intercomTest.features())).sort(), ['dnd', 'groups', 'page', 'preview']);
  await waitPeer(office, BEDROOM, 'online');
  await waitPeer(office, KITCHEN, 'online');
  await waitPeer(office, DOOR, 'online');
  assert.deepEqual(await office.probe(() => window.intercomTest.groups()), { [DOOR]: [], [KITCHEN]: [GROUP], [BEDROOM]: [GROUP, 'upstairs'] });
  const card = office.page.locator(`[data-group="${GROUP}"]`);
  await card.waitFor();
  assert.match(await card.textContent(), new RegExp(`^${GROUP}2 tablets · 2 available$`));
  assert.match(await office.page.locator('[data-group="upstairs"]').textContent(), /^upstairs1 tablet · 1 available$/);
  // Kitchen is in the group itself: its card counts the one other member.
  assert.match(await kitchen.page.locator(`[data-group="${GROUP}"]`).textContent(), new RegExp(`^${GROUP}1 tablet · 1 available$`));
  await office.page.screenshot({ path: join(artifacts, 'groups-card.png') });
  // The door station: its name and one Ring button, no list.
  assert.equal(await door.page.textContent('#door-name'), DOOR);
  assert.ok(await door.page.isVisible('#door-ring'));
  assert.ok(!(await door.page.isVisible('#peers')));
  await door.page.screenshot({ path: join(artifacts, 'groups-door-station.png') });
});

test('the door rings household: both members see its picture before answering and send nothing; one answers, the other goes back', async () => {
  await door.page.click('#door-ring');
  await waitState(door, 'outgoing');
  await waitState(kitchen, 'incoming');
  await waitState(bedroom, 'incoming');
  const ringing = await waitFor(door, 'ringing both members', () => {
    const r = window.intercomTest.ringing();
    return r && r.to.length === 2 && r.previews.length === 2 && r;
  }, undefined, { report });
  assert.equal(ringing.group, GROUP);
  assert.deepEqual([...ringing.to].sort(), [BEDROOM, KITCHEN]);
  assert.equal(await office.probe(() => window.intercomTest.state()), 'list', 'Office is outside the group and does not ring');
  for (const t of [kitchen, bedroom]) assert.equal(await t.probe(() => window.intercomTest.incomingText()), `${DOOR} → ${GROUP}`);
  // The door shows its own camera while it rings.
  await waitFor(door, 'own camera while ringing', () => {
    const v = document.getElementById('out-video');
    return !v.hidden && v.videoWidth > 0;
  }, undefined, { report });

  // Preview: video bytes from the door grow on both members while they still ring,
  // and neither has sent a single byte.
  for (const t of [kitchen, bedroom]) {
    await grows(t, 'inbound video while ringing', stats, (s) => (s ? s.inbound.video || 0 : -1));
    await waitFor(t, 'the preview picture', () => window.intercomTest.previewShown(), undefined, { report });
    const s = await stats(t);
    assert.equal(sum(s.outbound), 0, `${t.label} sent media before answering: ${JSON.stringify(s.outbound)}`);
    assert.deepEqual(await t.probe(() => window.intercomTest.localTracks()), { audio: false, video: false }, `${t.label} opened no camera or microphone`);
    assert.equal(await t.probe(() => window.intercomTest.state()), 'incoming');
  }
  await kitchen.page.screenshot({ path: join(artifacts, 'groups-preview.png') });
  await door.page.screenshot({ path: join(artifacts, 'groups-door-ringing.png') });

  await kitchen.page.click('#in-accept');
  await waitState(kitchen, 'call');
  await waitState(door, 'call');
  assert.equal(await door.probe(() => window.intercomTest.partner()), KITCHEN);
  await waitState(bedroom, 'list');
  assert.equal((await bedroom.probe(() => window.intercomTest.notice())).key, 'answeredElsewhere');
  assert.deepEqual(await bedroom.probe(() => window.intercomTest.missed()), [], 'a ring answered elsewhere is not missed');

  // They talk both ways: Kitchen now sends audio and video, and the door hears it.
  await grows(kitchen, 'outbound audio after answering', stats, (s) => (s ? s.outbound.audio || 0 : -1));
  await grows(kitchen, 'outbound video after answering', stats, (s) => (s ? s.outbound.video || 0 : -1));
  await grows(door, 'inbound audio from the kitchen', stats, (s) => (s ? s.inbound.audio || 0 : -1));
  await grows(door, 'inbound video from the kitchen', stats, (s) => (s ? s.inbound.video || 0 : -1));
  await grows(kitchen, 'inbound audio from the door', stats, (s) => (s ? s.inbound.audio || 0 : -1));
  await kitchen.page.click('#btn-hangup');
  await waitState(kitchen, 'list');
  await waitState(door, 'door');
  await waitPeer(office, KITCHEN, 'online');
  await waitPeer(office, DOOR, 'online');
});

test('declines shrink the ring on the caller\'s screen; the last one ends it, and nobody has a missed call', async () => {
  await office.page.click(`[data-group="${GROUP}"]`);
  await waitState(kitchen, 'incoming');
  await waitState(bedroom, 'incoming');
  await waitFor(office, 'ringing both', () => window.intercomTest.ringing()?.to.length === 2, undefined, { report });
  assert.equal(await office.page.textContent('#out-name'), GROUP);
  await bedroom.page.click('#in-decline');
  await waitState(bedroom, 'list');
  await waitFor(office, 'ringing Kitchen only', (k) => {
    const r = window.intercomTest.ringing();
    return r && r.to.length === 1 && r.to[0] === k && r.previews.join() === k;
  }, KITCHEN, { report });
  assert.equal(await office.page.textContent('#out-hint'), `Ringing ${KITCHEN}`);
  assert.equal(await office.probe(() => window.intercomTest.state()), 'outgoing');
  await kitchen.page.click('#in-decline');
  await waitState(kitchen, 'list');
  await waitState(office, 'list');
  const notice = await office.probe(() => window.intercomTest.notice());
  assert.equal(notice.key, 'groupDeclined');
  assert.equal(notice.text, `No one in ${GROUP} took the call.`);
  for (const t of [kitchen, bedroom]) assert.deepEqual(await t.probe(() => window.intercomTest.missed()), [], `${t.label}: a declined call is not missed`);
  await waitPeer(office, KITCHEN, 'online');
  await waitPeer(office, BEDROOM, 'online');
});

test('a page to everyone: each idle tablet hears it at once and sends nothing', async () => {
  await waitPeer(office, BEDROOM, 'online');
  assert.equal(await office.page.inputValue('#announce-target'), '*');
  await office.page.hover('#announce-hold');
  await office.page.mouse.down();
  try {
    const page = await waitFor(office, 'three listeners', () => {
      const p = window.intercomTest.page();
      return p && p.to.length === 3 && p;
    }, undefined, { report });
    assert.equal(page.role, 'pager');
    assert.deepEqual([...page.to].sort(), [BEDROOM, DOOR, KITCHEN]);
    for (const t of [door, kitchen, bedroom]) {
      await waitState(t, 'announce');
      assert.equal(await t.page.textContent('#ann-from'), `Announcement from ${OFFICE}`);
      await grows(t, 'inbound page audio', pageStats, (s) => (s ? s.inbound.audio || 0 : -1));
      const s = await pageStats(t);
      assert.equal(sum(s.outbound), 0, `${t.label} sent media while listening: ${JSON.stringify(s.outbound)}`);
      assert.equal(s.inbound.video || 0, 0, 'a page carries no video');
      await waitFor(t, 'the voice playing', () => {
        const a = window.intercomTest.pageAudio();
        return a.tracks === 1 && !a.paused && !a.muted;
      }, undefined, { report });
    }
    assert.match(await office.page.textContent('#announce-to'), /Listening: /);
    await kitchen.page.screenshot({ path: join(artifacts, 'groups-announcement.png') });
    await office.page.screenshot({ path: join(artifacts, 'groups-paging.png') });
  } finally {
    await office.page.mouse.up();
  }
  for (const t of [kitchen, bedroom]) await waitState(t, 'list');
  await waitState(door, 'door');
  assert.equal(await office.probe(() => window.intercomTest.page()), null);
});

test('a listener leaves an announcement with Leave; the pager sees who is left', async () => {
  await office.page.hover('#announce-hold');
  await office.page.mouse.down();
  try {
    await waitFor(office, 'three listeners', () => window.intercomTest.page()?.to.length === 3, undefined, { report });
    await waitState(bedroom, 'announce');
    await bedroom.page.click('#ann-leave');
    await waitState(bedroom, 'list');
    const left = await waitFor(office, 'two listeners', () => {
      const p = window.intercomTest.page();
      return p && p.to.length === 2 && p.to;
    }, undefined, { report });
    assert.ok(!left.includes(BEDROOM));
  } finally {
    await office.page.mouse.up();
  }
  for (const t of [kitchen]) await waitState(t, 'list');
  await waitState(door, 'door');
});

test('do-not-disturb: shown to the others, a call to it is refused on screen, group rings skip it', async () => {
  await bedroom.page.click('#dnd-toggle');
  assert.equal(await bedroom.probe(() => window.intercomTest.dnd()), true);
  assert.equal(await bedroom.page.getAttribute('#dnd-toggle', 'aria-pressed'), 'true');
  assert.ok(await bedroom.page.isVisible('#dnd-toggle .dnd-on-label'), 'the header says do-not-disturb is on');
  await bedroom.page.screenshot({ path: join(artifacts, 'groups-dnd-on.png') });
  await waitPeer(office, BEDROOM, 'dnd');
  await waitPeer(kitchen, BEDROOM, 'dnd');
  const peer = office.page.locator(`[data-peer="${BEDROOM}"]`);
  assert.equal(await peer.getAttribute('data-status'), 'dnd');
  assert.equal(await peer.locator('.peer-status use').getAttribute('href'), '#i-moon');
  await office.page.screenshot({ path: join(artifacts, 'groups-dnd-list.png') });
  await peer.click({ force: true }); // aria-disabled: Playwright would wait for it to be enabled
  const notice = await office.probe(() => window.intercomTest.notice());
  assert.equal(notice.key, 'isDnd');
  assert.equal(notice.text, `${BEDROOM} is in do-not-disturb.`);
  assert.ok(await office.page.isVisible('#notice'));
  assert.equal(await office.probe(() => window.intercomTest.state()), 'list');
  assert.equal(await bedroom.probe(() => window.intercomTest.state()), 'list', 'Bedroom never rang');

  // The preference survives a reload (kept like the kiosk's other settings),
  // and the appliance is told again.
  await bedroom.page.reload();
  await waitState(bedroom, 'list');
  assert.equal(await bedroom.probe(() => window.intercomTest.dnd()), true);
  await waitPeer(office, BEDROOM, 'dnd');

  // A group ring skips the DND member; cancelled unanswered, it is a missed call.
  await office.page.click(`[data-group="${GROUP}"]`);
  await waitState(kitchen, 'incoming');
  const r = await waitFor(office, 'ringing Kitchen only', () => window.intercomTest.ringing()?.to.length === 1 && window.intercomTest.ringing(), undefined, { report });
  assert.deepEqual(r.to, [KITCHEN]);
  assert.equal(await bedroom.probe(() => window.intercomTest.state()), 'list');
  await office.page.click('#out-cancel');
  await waitState(kitchen, 'list');
  await waitState(office, 'list');
  const missed = await kitchen.probe(() => window.intercomTest.missed());
  assert.equal(missed.length, 1);
  assert.equal(missed[0].from, OFFICE);
  assert.equal(missed[0].group, GROUP);
  assert.equal(await kitchen.probe(() => window.intercomTest.missedBadge()), 1);
  await kitchen.page.click('#open-missed');
  await waitState(kitchen, 'missed');
  assert.match(await kitchen.page.textContent('#missed-list'), new RegExp(`${OFFICE} → ${GROUP}`));
  assert.equal(await kitchen.probe(() => window.intercomTest.missedBadge()), 0, 'seen: the badge goes');
  await kitchen.page.click('#missed-done');
  await waitState(kitchen, 'list');

  // With Kitchen in do-not-disturb too, nobody can answer, and Office is told why.
  await kitchen.page.click('#dnd-toggle');
  await waitPeer(office, KITCHEN, 'dnd');
  await office.page.click(`[data-group="${GROUP}"]`);
  await waitFor(office, 'the explanation', () => window.intercomTest.notice()?.key === 'allDnd', undefined, { report });
  assert.equal((await office.probe(() => window.intercomTest.notice())).text, `Everyone in ${GROUP} is in do-not-disturb.`);
  await waitState(office, 'list');
  for (const t of [kitchen, bedroom]) {
    await t.page.click('#dnd-toggle');
    assert.equal(await t.probe(() => window.intercomTest.dnd()), false);
  }
  await waitPeer(office, KITCHEN, 'online');
  await waitPeer(office, BEDROOM, 'online');
});

test('every string of the page is in English and Korean', () => {
  const text = readFileSync(join(ROOT, 'www', 'i18n.js'), 'utf8');
  const block = (lang) => {
    const m = new RegExp(`\\n  ${lang}: \\{\\n([\\s\\S]*?)\\n  \\},`).exec(text);
    assert.ok(m, `no ${lang} table`);
    return [...m[1].matchAll(/^ {4}(\w+):/gm)].map((x) => x[1]).sort();
  };
  const en = block('en');
  assert.ok(en.includes('announcementFrom') && en.includes('isDnd'), 'the new strings are in the table');
  assert.deepEqual(block('ko'), en);
});

test('no page errors on any tablet', () => {
  assert.deepEqual(pageErrors, []);
});

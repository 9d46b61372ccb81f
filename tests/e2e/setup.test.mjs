// The set-up page and the owner's page in Chromium, against the real intercomd with a
// plain-HTTP port, an access key and an admin key:
//  - the set-up page in Korean and English, as an iPad and as an Android phone see it
//    (their own steps first), in a browser that does not trust the appliance yet;
//  - the readiness check turning into "Open the intercom" in a browser that does;
//  - the owner's page asking for the admin key, then showing five stations, a call and a page
//    in progress; the add-a-tablet form's QR code, and the set-up page's, decoded by
//    zbarimg, equal their addresses; a tablet opening the kiosk address keeps its key.
// Screenshots go to target/e2e/setup-*.png and owner-*.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import https from 'node:https';
import { chromium } from 'playwright-core';
import { startServer, trustingHome, waitFor, tempDir, needBinary, tearDown, CHROMIUM, CHROMIUM_FLAGS } from './harness.mjs';

const ACCESS = 'e2e-setup-Hq7x2Lw';
const ADMIN = 'e2e-owner-0b7d4c1e9a2f';
const UA = {
  ipad: 'Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
  android: 'Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
};

let server;
let stateDir;
let artifacts;
let caPem;
let httpPort;
let trusting; // a browser whose certificate store trusts the appliance's CA
let stranger; // a browser that does not (yet)
let trustHome;
let strangerHome;

function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca: caPem, headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
      })
      .on('error', reject);
  });
}

const ownerStatus = async () => JSON.parse((await get(`${server.origin}/status.json`, { Authorization: `Bearer ${ADMIN}` })).body);

/** The text of the one QR code in a PNG, read by zbarimg. */
function decodeQr(png) {
  const file = join(stateDir, `qr-${Date.now()}.png`);
  writeFileSync(file, png);
  return execFileSync('zbarimg', ['--raw', '-q', '-Sbinary', file], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().replace(/\n$/, '');
}

before(async () => {
  artifacts = needBinary();
  stateDir = tempDir('setup-state');
  server = await startServer({
    stateDir,
    args: ['--http-listen', '127.0.0.1:0', '--access-key', ACCESS, '--admin-key', ADMIN, '--max-per-ip', '64'],
  });
  caPem = readFileSync(join(stateDir, 'ca.crt'));
  httpPort = JSON.parse((await get(`${server.origin}/healthz`)).body).http_port;
  trustHome = trustingHome(join(stateDir, 'ca.crt'));
  strangerHome = tempDir('stranger-home');
  const launch = (home) => chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, env: { ...process.env, HOME: home } });
  trusting = await launch(trustHome);
  stranger = await launch(strangerHome);
});

after(async () => {
  await trusting?.close();
  await stranger?.close();
  await tearDown({ server, dirs: [stateDir, trustHome, strangerHome] });
});

const setupUrl = () => `http://localhost:${httpPort}/`;

test('the set-up page speaks the browser language and puts the visitor’s own platform first', async () => {
  for (const [platform, ua] of Object.entries(UA)) {
    for (const locale of ['ko-KR', 'en-US']) {
      const ctx = await stranger.newContext({ userAgent: ua, locale, viewport: { width: 820, height: 1180 }, isMobile: true, hasTouch: true });
      const page = await ctx.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => m.type() === 'error' && !/icon\.svg|ERR_CERT|net::/.test(m.text()) && errors.push(m.text()));
      await page.goto(setupUrl());
      const lang = locale.slice(0, 2);
      assert.equal(await page.evaluate(() => document.documentElement.lang), lang);
      assert.equal(await page.evaluate(() => document.body.dataset.platform), platform === 'ipad' ? 'ios' : 'android');
      const first = await page.evaluate(() => document.querySelector('#platforms details').id);
      assert.equal(first, platform === 'ipad' ? 'p-ios' : 'p-android');
      const open = await page.evaluate(() => [...document.querySelectorAll('#platforms details')].filter((d) => d.open).map((d) => d.id));
      assert.deepEqual(open, [first]);
      const title = await page.locator('h1').innerText();
      assert.equal(title, lang === 'ko' ? '이 태블릿 설정하기' : 'Set up this tablet');
      // This browser does not trust the CA: the check says so and offers no button.
      await waitFor({ label: 'stranger', probe: (fn) => page.evaluate(fn) }, 'the check to fail', () => document.getElementById('ready').dataset.state === 'no');
      assert.equal(await page.locator('#open').isVisible(), false);
      // The fingerprint is the one the journal shows.
      const fp = await page.locator('#fingerprint').innerText();
      assert.ok(server.log().includes(`CA fingerprint (SHA-256): ${fp}`), fp);
      await page.screenshot({ path: join(artifacts, `setup-${platform}-${lang}.png`), fullPage: true });
      assert.deepEqual(errors, []);
      await ctx.close();
    }
  }
});

test('the set-up page’s QR code opens the set-up page', async () => {
  const ctx = await stranger.newContext({ viewport: { width: 820, height: 1180 } });
  const page = await ctx.newPage();
  await page.goto(setupUrl());
  const png = await page.locator('#qr svg').screenshot();
  assert.equal(decodeQr(png), setupUrl());
  assert.equal(await page.locator('#setup-url').innerText(), setupUrl());
  await ctx.close();
});

test('once the certificate is trusted, the check turns into one big Open button that opens the intercom', async () => {
  const ctx = await trusting.newContext({ userAgent: UA.android, locale: 'en-US', viewport: { width: 820, height: 1180 } });
  const page = await ctx.newPage();
  await page.goto(setupUrl());
  const tablet = { label: 'trusting', probe: (fn) => page.evaluate(fn) };
  await waitFor(tablet, 'the check to pass', () => document.getElementById('ready').dataset.state === 'ready');
  assert.equal(await page.locator('#open').isVisible(), true);
  assert.equal(await page.locator('#open').innerText(), 'Open the intercom');
  await page.screenshot({ path: join(artifacts, 'setup-ready.png'), fullPage: true });
  await page.click('#open');
  await page.waitForURL(`${server.origin}/`);
  assert.equal(await page.title(), 'Intercom');
  // /setup on HTTPS checks the WebSocket too; from a trusting browser it opens.
  await page.goto(`${server.origin}/setup`);
  await waitFor(tablet, 'the HTTPS check to pass', () => document.getElementById('ready').dataset.state === 'ready');
  await ctx.close();
});

test('the owner’s page asks for the admin key, then shows the stations, a call and a page in progress', async () => {
  const ctx = await trusting.newContext({ viewport: { width: 1280, height: 1000 } });
  // Five stations on one page of the appliance's own origin: kitchen calls door, door
  // answers; office pages upstairs, where hall listens and bath is in do-not-disturb.
  const stations = await ctx.newPage();
  await stations.goto(`${server.origin}/healthz`);
  await stations.evaluate(async (key) => {
    const open = (name, extra = {}) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://${location.host}/ws`);
        ws.onopen = () => ws.send(JSON.stringify({ type: 'register', name, key, features: ['page'], ...extra }));
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          if (m.type === 'registered') resolve(ws);
          if (m.type === 'call') ws.send(JSON.stringify({ type: 'accept', to: m.from }));
        };
        ws.onerror = reject;
      });
    window.sockets = [
      await open('kitchen'),
      await open('door'),
      await open('hall', { groups: ['upstairs'] }),
      await open('office'),
      await open('bath', { groups: ['upstairs'], dnd: true }),
    ];
    window.sockets[0].send(JSON.stringify({ type: 'call', to: 'door' }));
    window.sockets[3].send(JSON.stringify({ type: 'page', group: 'upstairs' }));
  }, ACCESS);
  for (;;) {
    const s = await ownerStatus();
    if (s.calls.some((c) => c.state === 'active') && s.calls.some((c) => c.state === 'paging')) break;
    await new Promise((r) => setTimeout(r, 100));
  }

  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const resp = await page.goto(`${server.origin}/status`);
  assert.equal(resp.status(), 401);
  assert.equal(await page.locator('#key-form').isVisible(), true);
  assert.equal(await page.locator('#owner').isVisible(), false);
  await page.fill('#key', 'not-the-key-at-all');
  await page.click('#key-save');
  await page.locator('#key-wrong').waitFor({ state: 'visible' });
  await page.fill('#key', ADMIN);
  await page.click('#key-save');
  await page.locator('#owner').waitFor({ state: 'visible' });
  await page.locator('#stations tbody tr').nth(4).waitFor();
  const rows = await page.locator('#stations tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert.deepEqual(
    rows.map((r) => r.slice(0, 5)),
    [
      ['bath', 'do not disturb', 'upstairs', '', '127.0.0.1'],
      ['door', 'busy', '', 'kitchen', '127.0.0.1'],
      ['hall', 'busy', 'upstairs', 'office', '127.0.0.1'],
      ['kitchen', 'busy', '', 'door', '127.0.0.1'],
      ['office', 'busy', '', 'upstairs', '127.0.0.1'],
    ],
  );
  assert.deepEqual((await page.locator('#calls li').allInnerTexts()).sort(), ['door and kitchen are talking', 'office is paging upstairs']);
  const events = await page.locator('#events').innerText();
  assert.match(events, /kitchen -> call door/);
  assert.match(events, /door -> accept kitchen/);
  assert.ok((await page.locator('#chart svg rect.calls').count()) >= 1, 'the chart has a bar for the call');
  const fp = await page.locator('#certs dd').first().innerText();
  assert.ok(server.log().includes(`CA fingerprint (SHA-256): ${fp}`), fp);
  await page.screenshot({ path: join(artifacts, 'owner-status.png'), fullPage: true });

  // The key is kept: a reload goes straight to the page.
  await page.reload();
  await page.locator('#owner').waitFor({ state: 'visible' });
  assert.deepEqual(errors, []);

  // In Korean for a Korean browser.
  const ko = await trusting.newContext({ viewport: { width: 1280, height: 1000 }, locale: 'ko-KR' });
  await ko.addInitScript((k) => localStorage.setItem('intercom.admin', k), ADMIN);
  const kp = await ko.newPage();
  kp.on('pageerror', (e) => errors.push(e.message));
  await kp.goto(`${server.origin}/status`);
  await kp.locator('#stations tbody tr').nth(4).waitFor();
  assert.equal(await kp.locator('#stations th').first().innerText(), '이름');
  assert.deepEqual((await kp.locator('#calls li').allInnerTexts()).sort(), ['door ↔ kitchen 통화 중', 'office → upstairs 방송 중']);
  assert.equal(await kp.locator('#stations tbody tr td.status-dnd').innerText(), '방해 금지');
  await kp.screenshot({ path: join(artifacts, 'owner-status-ko.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await ko.close();
  await stations.evaluate(() => window.sockets.forEach((s) => s.close()));
  await ctx.close();
});

test('add a tablet: the kiosk address as a QR code, and a tablet that opens it keeps its key', async () => {
  const ctx = await trusting.newContext({ viewport: { width: 1280, height: 1000 } });
  await ctx.addInitScript((k) => localStorage.setItem('intercom.admin', k), ADMIN);
  const page = await ctx.newPage();
  await page.goto(`${server.origin}/status`);
  await page.locator('#owner').waitFor({ state: 'visible' });
  await page.fill('#add-name', '현관');
  await page.fill('#add-groups', 'downstairs, front');
  await page.check('#add-autoanswer');
  await page.check('#add-door');
  await page.check('#add-camera-off');
  const want = `${server.origin}/?name=%ED%98%84%EA%B4%80&kiosk=1&groups=downstairs%2Cfront&autoanswer=1&door=1&video=0&key=${ACCESS}`;
  await waitFor({ label: 'owner', probe: (fn, a) => page.evaluate(fn, a) }, 'the QR code', (w) => document.getElementById('kiosk-qr').dataset.for === w && document.getElementById('kiosk-qr').complete, want);
  assert.equal(await page.locator('#kiosk-url').innerText(), want);
  await page.locator('#add-result').screenshot({ path: join(artifacts, 'owner-add-tablet.png') });
  const png = await page.locator('#kiosk-qr').screenshot();
  assert.equal(decodeQr(png), want);

  // A new tablet opens the address once; the key and settings stay for every launch.
  const tablet = await trusting.newContext({ viewport: { width: 800, height: 1280 } });
  const t = await tablet.newPage();
  await t.goto(want);
  const registered = async () => {
    for (let i = 0; i < 100; i++) {
      if ((await ownerStatus()).stations.some((s) => s.name === '현관')) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  };
  assert.ok(await registered(), 'the kiosk registered');
  assert.equal(await t.evaluate(() => localStorage.getItem('intercom.key')), ACCESS);
  await t.goto('about:blank');
  for (let i = 0; i < 100 && (await ownerStatus()).stations.some((s) => s.name === '현관'); i++) await new Promise((r) => setTimeout(r, 100));
  await t.goto(`${server.origin}/`);
  assert.ok(await registered(), 'the kiosk registered again from its bare address');
  await tablet.close();
  await ctx.close();
});

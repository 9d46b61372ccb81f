// The thin driver layer: start and stop the real intercomd, launch Debian's
// Chromium as a "tablet" that trusts the appliance's CA, and make a fake camera
// picture per tablet so a test can tell whose picture it is looking at.
// Everything the tests check is read from the page through window.intercomTest,
// which the page sets up only when the tablet asks for it before the page loads.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ARTIFACTS = join(ROOT, 'target', 'e2e');
export const BINARY = process.env.INTERCOMD || join(ROOT, 'target', 'release', 'intercomd');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export function tempDir(prefix) {
  return mkdtempSync(join(tmpdir(), `intercom-e2e-${prefix}-`));
}

/** Runs intercomd until stop(); resolves once it logged "listening on ip:port".
 *  `prefix` runs it through a command (e.g. `ip netns exec NS`), `host` is the
 *  address it listens on and the page's origin. */
export async function startServer({ stateDir, port = 0, args = [], prefix = [], host = '127.0.0.1' }) {
  const argv = ['--listen', `${host}:${port}`, '--state-dir', stateDir, '--log-level', 'info', '--turn', 'off', ...args];
  const [cmd, ...pre] = [...prefix, BINARY];
  const child = spawn(cmd, [...pre, ...argv], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const listening = new Promise((resolveListen, reject) => {
    const timer = setTimeout(() => reject(new Error(`intercomd did not start listening in 15 s:\n${log}`)), 15000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      log += chunk;
      if (process.env.E2E_SERVER_LOG) process.stderr.write(chunk);
      const m = /listening on (\d+\.\d+\.\d+\.\d+):(\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolveListen(Number(m[2]));
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`intercomd exited (${code ?? signal}) before listening:\n${log}`));
    });
  });
  const actualPort = await listening;
  const exited = new Promise((r) => child.on('exit', r));
  return {
    port: actualPort,
    origin: host === '127.0.0.1' ? `https://localhost:${actualPort}` : `https://${host}:${actualPort}`,
    log: () => log,
    /** SIGKILL: a crash or a power cut, nothing said goodbye. */
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

/** A Chromium profile home whose NSS database trusts the appliance's CA, the
 *  way a person installs /ca.crt on a tablet once. */
export function trustingHome(caFile) {
  const home = tempDir('home');
  const db = join(home, '.pki', 'nssdb');
  mkdirSync(db, { recursive: true });
  execFileSync('certutil', ['-d', `sql:${db}`, '-N', '--empty-password']);
  execFileSync('certutil', ['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'intercomd local CA', '-i', caFile]);
  return home;
}

// ---------------------------------------------------------------- fake camera

/** BT.601 limited-range YUV of an sRGB colour given as 0..255. */
function yuv([r, g, b]) {
  const R = r / 255;
  const G = g / 255;
  const B = b / 255;
  return [
    Math.round(16 + 65.481 * R + 128.553 * G + 24.966 * B),
    Math.round(128 - 37.797 * R - 74.203 * G + 112 * B),
    Math.round(128 + 112 * R - 93.786 * G - 18.214 * B),
  ];
}

/**
 * Writes a 2 s looping Y4M clip: a coloured wall with a person-like silhouette
 * that sways, so the picture moves (frames keep flowing) and each tablet's
 * camera has its own colour.
 */
export function makeFakeCamera(file, { wall, wall2, person }) {
  const W = 640;
  const H = 480;
  const FRAMES = 30;
  const frame = Buffer.alloc((W * H * 3) / 2);
  const chunks = [Buffer.from(`YUV4MPEG2 W${W} H${H} F15:1 Ip A1:1 C420jpeg\n`)];
  const P = yuv(person);
  for (let f = 0; f < FRAMES; f++) {
    const sway = Math.sin((f / FRAMES) * Math.PI * 2) * 24;
    const cx = W / 2 + sway;
    const inside = (x, y) => {
      const hx = (x - cx) / 78;
      const hy = (y - 200) / 92;
      if (hx * hx + hy * hy <= 1) return true; // head
      const sx = (x - (W / 2 + sway * 0.5)) / 200;
      const sy = (y - 500) / 200;
      return sx * sx + sy * sy <= 1; // shoulders
    };
    let i = 0;
    for (let y = 0; y < H; y++) {
      const k = y / H;
      const bg = yuv(wall.map((c, n) => Math.round(c * (1 - k) + wall2[n] * k)));
      for (let x = 0; x < W; x++) frame[i++] = inside(x, y) ? P[0] : bg[0];
    }
    for (let plane = 1; plane <= 2; plane++) {
      for (let y = 0; y < H / 2; y++) {
        const k = (y * 2) / H;
        const bg = yuv(wall.map((c, n) => Math.round(c * (1 - k) + wall2[n] * k)));
        for (let x = 0; x < W / 2; x++) frame[i++] = inside(x * 2, y * 2) ? P[plane] : bg[plane];
      }
    }
    i = 0;
    chunks.push(Buffer.from('FRAME\n'), Buffer.from(frame));
  }
  writeFileSync(file, Buffer.concat(chunks));
  return file;
}

// ---------------------------------------------------------------- browsers

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  // Kiosk tablets are set up to play sound; the page's own "tap to enable
  // sound" path is for browsers that are not.
  '--autoplay-policy=no-user-gesture-required',
];

/** One tablet: its own Chromium process, fresh profile, own fake camera.
 *  `netns` runs that Chromium inside the named network namespace. */
export async function launchTablet({ label, caFile, camera, viewport, netns }) {
  const userDataDir = tempDir(`profile-${label}`);
  const home = trustingHome(caFile);
  let executablePath = CHROMIUM;
  if (netns) {
    executablePath = join(userDataDir, 'chromium-in-netns');
    writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec ${netns} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
  }
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [...CHROMIUM_FLAGS, `--use-file-for-fake-video-capture=${camera}`],
    env: { ...process.env, HOME: home },
    viewport,
    deviceScaleFactor: 1,
    ignoreHTTPSErrors: false,
    timeout: 60000,
  });
  // Every page of this tablet loads the page's test hooks (www/testhooks.js).
  await context.addInitScript(() => {
    window.intercomTestHooks = true;
  });
  const page = context.pages()[0] || (await context.newPage());
  const consoleLines = [];
  page.on('console', (msg) => consoleLines.push(`[${label}] ${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => consoleLines.push(`[${label}] pageerror: ${err.message}`));
  return {
    label,
    context,
    page,
    consoleLines,
    /** Evaluates fn(arg) in the page, where it reads window.intercomTest. */
    probe(fn, arg) {
      return page.evaluate(fn, arg);
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Waits until fn(arg), evaluated in the page, is truthy; the error
 *  message says what was awaited and what the page last reported. */
export async function waitFor(tablet, what, fn, arg, { timeout = 15000, report } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await tablet.probe(fn, arg);
      if (last) return last;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline) {
      const seen = report ? await tablet.probe(report).catch((e) => e.message) : last;
      throw new Error(`${tablet.label}: timed out after ${timeout} ms waiting for ${what}; page reports ${JSON.stringify(seen)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

export function ensureArtifacts() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}

export function haveBinary() {
  return existsSync(BINARY);
}

// ---------------------------------------------------------------- a test file's before/after

/** The start of a test file's before(): the release binary must be there. Returns
 *  the folder for screenshots. */
export function needBinary() {
  if (!haveBinary()) throw new Error(`no server binary at ${BINARY}: run cargo build --release`);
  return ensureArtifacts();
}

/** A test file's after(): prints the tablets' console lines when E2E_CONSOLE is set,
 *  closes the tablets, stops the server and removes the temporary folders. Any of them
 *  may be missing, where before() failed part way. */
export async function tearDown({ tablets = [], server, dirs = [] }) {
  const open = tablets.filter(Boolean);
  if (process.env.E2E_CONSOLE) for (const t of open) console.log(t.consoleLines.join('\n'));
  await Promise.all(open.map((t) => t.close()));
  await server?.stop();
  for (const dir of dirs) if (dir) rmSync(dir, { recursive: true, force: true });
}

/** Waits until the page shows `screen` (window.intercomTest.state()). */
export function waitScreen(tablet, screen, { timeout, report } = {}) {
  return waitFor(tablet, `screen "${screen}"`, (want) => window.intercomTest.state() === want, screen, { timeout, report });
}

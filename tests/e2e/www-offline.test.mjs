// Nothing in www/ may load from outside the appliance: it runs on a LAN with
// no internet. Every src, href, import, fetch and url() must be relative (or
// same-origin), never an absolute URL to another host.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from './harness.mjs';

const WWW = join(ROOT, 'www');
const TEXT = /\.(html?|m?js|css|svg|json|webmanifest|txt)$/i;

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

// Each pattern captures the URL a browser would load.
const PATTERNS = [
  /\b(?:src|href|action|poster|data|srcset|xlink:href)\s*=\s*["']?\s*([^"'\s>]+)/gi, // HTML/SVG attributes
  /\bimport\s+(?:[\w*{}\s,]+from\s+)?["']([^"']+)["']/g, // static import
  /\bimport\s*\(\s*["'`]([^"'`]+)["'`]/g, // dynamic import
  /\bfetch\s*\(\s*["'`]([^"'`]+)["'`]/g, // fetch("…")
  /\burl\s*\(\s*["']?([^"')]+)["']?\s*\)/gi, // CSS url(…)
  /@import\s+["']([^"']+)["']/gi, // CSS @import "…"
  /\b(?:new\s+(?:WebSocket|EventSource|Worker|SharedWorker)|importScripts|sendBeacon|open)\s*\(\s*["'`]([^"'`]+)["'`]/g,
  /["'](?:src|href|start_url|scope|action)["']\s*:\s*["']([^"']+)["']/g, // manifest fields
  /\.(?:src|href)\s*=\s*["'`]([^"'`]+)["'`]/g, // el.src = "…"
];

/** Absolute (scheme:// or //host) URLs go off the appliance; data:, blob:,
 *  fragments and relative paths stay on it. */
function external(url) {
  return /^(?:[a-z][a-z0-9+.-]*:)?\/\//i.test(url.trim());
}

export function offenders(text) {
  const found = [];
  for (const re of PATTERNS) for (const m of text.matchAll(re)) if (external(m[1])) found.push(m[0]);
  return found;
}

test('the checker itself catches absolute URLs and lets local ones through', () => {
  assert.deepEqual(offenders('<script src="https://cdn.example.com/x.js"></script>').length, 1);
  assert.deepEqual(offenders('<link href=//fonts.example.com/f.css>').length, 1);
  assert.deepEqual(offenders("import x from 'https://esm.example/x.js';").length, 1);
  assert.deepEqual(offenders("await import('https://esm.example/x.js')").length, 1);
  assert.deepEqual(offenders("fetch('http://api.example/')").length, 1);
  assert.deepEqual(offenders('body { background: url( "https://img.example/a.png" ) }').length, 1);
  assert.deepEqual(offenders('{"src": "https://img.example/icon.png"}').length, 1);
  assert.deepEqual(offenders('<img src="icon.png"> <use href="#i-x"/> url(#g) url(data:image/png;base64,AA) fetch("/healthz") import { t } from "./i18n.js";'), []);
});

test('no file in www/ loads anything from another host', () => {
  const all = files(WWW).filter((p) => TEXT.test(p));
  assert.ok(all.some((p) => p.endsWith('index.html')), 'www/index.html exists');
  const bad = [];
  for (const p of all) for (const hit of offenders(readFileSync(p, 'utf8'))) bad.push(`${relative(ROOT, p)}: ${hit}`);
  assert.deepEqual(bad, [], `external URLs in www/:\n${bad.join('\n')}`);
});

// build.rs embeds www/ byte for byte, so this is also what the client adds to the
// binary. 160 KiB held the client with the wall-iPad features (the 180×180 touch
// icon alone is 11 KB); ring groups, announcements, do-not-disturb, preview, the
// door station and missed calls took it to about 170 KiB, and the set-up page and
// the owner's page (guide.html, setup.*, status.*) add 27 KB. 224 KiB holds both.
const WWW_CAP = 224 * 1024;

test('www/ stays under 224 KiB', () => {
  const total = files(WWW).reduce((n, p) => n + statSync(p).size, 0);
  assert.ok(total < WWW_CAP, `www/ is ${total} bytes`);
});

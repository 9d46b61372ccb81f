// Tones made with Web Audio (no audio files): the incoming ring, the ringback a
// caller hears, and a short chime. Browsers keep audio suspended until the first
// touch or key press, so unlock() is wired to those and `unlocked` says whether
// sound can play yet.

let ctx = null;
let loop = null;
let playing = null; // 'ring' | 'ringback' | null
const listeners = new Set();

function context() {
  if (!ctx) {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    ctx = new AC();
    ctx.onstatechange = () => listeners.forEach((fn) => fn(isUnlocked()));
  }
  return ctx;
}

export function isUnlocked() {
  return !!ctx && ctx.state === 'running';
}

/** Calls fn(unlocked) whenever that changes. */
export function onUnlockChange(fn) {
  listeners.add(fn);
}

/** Resumes the audio context; call from a user gesture. Also plays a silent
 *  buffer, which older WebKit needs before it lets any sound out. */
export async function unlock() {
  const c = context();
  if (!c) return false;
  try {
    if (c.state !== 'running') await c.resume();
    const src = c.createBufferSource();
    src.buffer = c.createBuffer(1, 1, 22050);
    src.connect(c.destination);
    src.start(0);
  } catch {
    // stays locked; the next gesture tries again
  }
  listeners.forEach((fn) => fn(isUnlocked()));
  return isUnlocked();
}

/** Tries to start audio without a gesture (kiosk browsers often allow it). */
export function probe() {
  const c = context();
  if (c && c.state !== 'running') c.resume().catch(() => {});
  return isUnlocked();
}

function note(c, freq, start, dur, gain, type = 'sine') {
  const osc = c.createOscillator();
  const g = c.createGain();
  osc.type = type;
  osc.frequency.value = freq;
  g.gain.setValueAtTime(0.0001, start);
  g.gain.exponentialRampToValueAtTime(gain, start + 0.02);
  g.gain.exponentialRampToValueAtTime(0.0001, start + dur);
  osc.connect(g).connect(c.destination);
  osc.start(start);
  osc.stop(start + dur + 0.05);
}

// Incoming: a two-note doorbell chime (E6, C6) with a soft overtone, every 2.5 s.
function chimeOnce(c, at) {
  note(c, 1318.5, at, 1.1, 0.22);
  note(c, 2637, at, 0.5, 0.04);
  note(c, 1046.5, at + 0.45, 1.5, 0.22);
  note(c, 2093, at + 0.45, 0.6, 0.04);
}

// Ringback for the caller: a quiet dual tone (440 + 480 Hz), 1 s on, 2 s off.
function ringbackOnce(c, at) {
  note(c, 440, at, 1.0, 0.05);
  note(c, 480, at, 1.0, 0.05);
}

function startLoop(name, fn, period) {
  stop();
  playing = name;
  const c = context();
  if (!c) return;
  const tick = () => {
    if (c.state === 'running') fn(c, c.currentTime + 0.05);
  };
  tick();
  loop = setInterval(tick, period);
}

export function ring() {
  startLoop('ring', chimeOnce, 2500);
}

export function ringback() {
  startLoop('ringback', ringbackOnce, 3000);
}

export function stop() {
  if (loop) clearInterval(loop);
  loop = null;
  playing = null;
}

/** Which tone is looping: 'ring', 'ringback' or null. */
export function current() {
  return playing;
}

/** A short rising blip, e.g. when a call connects. */
export function blip() {
  const c = context();
  if (!c || c.state !== 'running') return;
  const at = c.currentTime + 0.02;
  note(c, 660, at, 0.15, 0.1);
  note(c, 990, at + 0.12, 0.2, 0.1);
}

/** A short falling blip when a call ends. */
export function endTone() {
  const c = context();
  if (!c || c.state !== 'running') return;
  const at = c.currentTime + 0.02;
  note(c, 660, at, 0.18, 0.1);
  note(c, 440, at + 0.16, 0.3, 0.1);
}

// Tones made with Web Audio (no audio files): the incoming ring, the ringback a
// caller hears, and a short chime. Browsers keep audio suspended until the first
// touch or key press, so unlock() is wired to those and `unlocked` says whether
// sound can play yet.
//
// The incoming ring plays through an <audio> element instead, from a WAV rendered
// here once: iOS silences Web Audio with the Silent switch, not a media element.
// Where navigator.audioSession exists (Safari 16.4+) the page asks for 'playback'
// while idle or ringing and 'auto' in a call (setSession).

let ctx = null;
let loop = null;
let playing = null; // 'ring' | 'ringback' | null
const listeners = new Set();
let ringEl = null; // the <audio> element of the incoming ring
let ringPrimed = false; // played once inside a gesture (iOS then lets it play later)
let ringRetry = false; // play() was refused: muted for now, unmuted on the next tap
let lastRingPlay = null; // 'resolved' | 'rejected' | null, for the browser test

const RATE = 16000;

/** The doorbell chime (E6, C6, with overtones) as 2.5 s of 16-bit mono WAV. */
function ringWav() {
  const n = Math.round(RATE * 2.5);
  const buf = new ArrayBuffer(44 + n * 2);
  const v = new DataView(buf);
  const text = (at, str) => {
    for (let i = 0; i < str.length; i++) v.setUint8(at + i, str.charCodeAt(i));
  };
  text(0, 'RIFF');
  v.setUint32(4, 36 + n * 2, true);
  text(8, 'WAVEfmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true); // PCM
  v.setUint16(22, 1, true); // mono
  v.setUint32(24, RATE, true);
  v.setUint32(28, RATE * 2, true);
  v.setUint16(32, 2, true);
  v.setUint16(34, 16, true);
  text(36, 'data');
  v.setUint32(40, n * 2, true);
  const notes = [
    [1318.5, 0, 1.1, 0.22],
    [2637, 0, 0.5, 0.04],
    [1046.5, 0.45, 1.5, 0.22],
    [2093, 0.45, 0.6, 0.04],
  ];
  for (let i = 0; i < n; i++) {
    const t = i / RATE;
    let x = 0;
    for (const [f, start, dur, gain] of notes) {
      const u = t - start;
      if (u < 0 || u > dur) continue;
      const env = Math.min(1, u / 0.02) * Math.exp((-5 * u) / dur);
      x += gain * env * Math.sin(2 * Math.PI * f * u);
    }
    v.setInt16(44 + i * 2, Math.max(-1, Math.min(1, x * 1.6)) * 32767, true);
  }
  return new Blob([buf], { type: 'audio/wav' });
}

function ringElement() {
  if (!ringEl) {
    ringEl = document.createElement('audio');
    ringEl.loop = true;
    ringEl.preload = 'auto';
    ringEl.setAttribute('playsinline', '');
    ringEl.src = URL.createObjectURL(ringWav());
    document.body.append(ringEl);
  }
  return ringEl;
}

/** Plays the ring element; if the browser refuses, plays it muted and retries
 *  unmuted on the next tap (unlock). */
function playRing() {
  const el = ringElement();
  el.muted = false;
  el.currentTime = 0;
  let p;
  try {
    p = el.play();
  } catch (err) {
    p = Promise.reject(err);
  }
  Promise.resolve(p).then(
    () => {
      lastRingPlay = 'resolved';
      ringRetry = false;
      if (playing !== 'ring') el.pause();
    },
    () => {
      lastRingPlay = 'rejected';
      if (playing !== 'ring') return;
      ringRetry = true;
      el.muted = true;
      el.play().catch(() => {});
    },
  );
}

/** What the ring element is doing, for the browser test. */
export function ringState() {
  return ringEl ? { paused: ringEl.paused, muted: ringEl.muted, play: lastRingPlay, retry: ringRetry } : null;
}

/** Asks iOS for 'playback' (heard with the Silent switch on) or 'auto' (in a call). */
export function setSession(type) {
  const session = navigator.audioSession;
  if (!session || session.type === type) return;
  try {
    session.type = type;
  } catch {
    // an older implementation without this type
  }
}

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
  const el = ringElement();
  if (playing === 'ring' && (ringRetry || el.paused)) {
    playRing();
  } else if (!ringPrimed && playing !== 'ring') {
    // Playing the element once inside a gesture lets it ring later without one.
    el.muted = true;
    el.play().then(
      () => {
        ringPrimed = true;
        if (playing !== 'ring') {
          el.pause();
          el.muted = false;
        }
      },
      () => {},
    );
  }
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
  stop();
  playing = 'ring';
  playRing();
}

export function ringback() {
  startLoop('ringback', ringbackOnce, 3000);
}

export function stop() {
  if (ringEl && !ringEl.paused) ringEl.pause();
  ringRetry = false;
  if (loop) clearInterval(loop);
  loop = null;
  playing = null;
}

/** Which tone is looping: 'ring', 'ringback' or null. */
export function current() {
  return playing;
}

/** Plays [frequency, start after now (s), length (s), gain] notes if sound is on;
 *  false while it is locked (no tap yet) or there is no Web Audio. */
function tune(notes) {
  const c = context();
  if (!c || c.state !== 'running') return false;
  const at = c.currentTime + 0.02;
  for (const [freq, after, dur, gain] of notes) note(c, freq, at + after, dur, gain);
  return true;
}

/** A short rising blip, e.g. when a call connects. */
export function blip() {
  tune([
    [660, 0, 0.15, 0.1],
    [990, 0.12, 0.2, 0.1],
  ]);
}

/** A short falling blip when a call ends. */
export function endTone() {
  tune([
    [660, 0, 0.18, 0.1],
    [440, 0.16, 0.3, 0.1],
  ]);
}

/** The announcement chime: three rising notes, under a second, before a page's voice. */
export function chime() {
  return tune([
    [784, 0, 0.35, 0.12],
    [988, 0.18, 0.35, 0.12],
    [1175, 0.36, 0.5, 0.12],
  ]);
}

// The call in progress, from the first ring to its end: who with, its phase, the
// camera and microphone, the peer connection (link.js) and every timer it started.
// end() tears all of that down exactly once; an ended call emits nothing and runs
// no timer, so a step that awaited something only has to ask whether its call is
// still the current one (app.js `current`).
//
// Phases: 'ringing-out' (we call) or 'ringing-in' (we are called), then
// 'connecting' once accepted, 'in-call' once media first connects, and 'ended'.
// Events (on/emit): 'phase', 'media' (the link's state changed), 'remote' (remote
// tracks or media flags changed), 'local' (a local track was muted, unmuted or
// replaced), 'failed' (the link gave up on the media path).
//
// Preview: a caller keeps one link per ringing callee it shows its picture to
// (`previews`, at most PREVIEW_MAX); the one who answers keeps its link, the others
// close. A callee shown a preview has its link before answering, receive-only
// until connect() attaches the camera and microphone after the tap on Answer.
// A group ring has no partner until someone answers (`group`, `ringing`).
//
// iOS mutes or ends local capture on its own (background, Siri, a FaceTime call,
// Split View): a track that ends is acquired again and put on its sender.

import { Emitter } from './emitter.js';
import { Link } from './link.js';
import { getLocalMedia, getTrack, stopStream } from './media.js';

export const PREVIEW_MAX = 8;

export class Call extends Emitter {
  constructor(partner, phase, group = null) {
    super();
    this.partner = partner; // null while a group ring we started is unanswered
    this.group = group;
    this.ringing = []; // who a ring we started is ringing (`ringing.to`)
    this.previews = new Map(); // name -> Link, while we ring them
    this.at = Date.now(); // when it started ringing (missed calls)
    this.phase = phase;
    this.role = phase === 'ringing-in' ? 'callee' : 'caller';
    this.mediaPromise = null;
    this.media = null; // what getLocalMedia() gave, once the link uses it
    this.link = null;
    this.pendingSignals = []; // signal payloads that arrived before the link
    this.startedAt = 0; // when media first connected
    this.sending = { audio: true, video: true }; // our microphone and camera
    this.pttHeld = false;
    this.remoteBlocked = false; // autoplay refused the remote sound until a tap
    this.timers = new Set();
    this.localPaused = { audio: false, video: false }; // muted by the system, not by us
    this.replaced = 0; // local tracks acquired again after ending
  }

  get ended() {
    return this.phase === 'ended';
  }

  emit(type) {
    if (!this.ended) super.emit(type);
  }

  setPhase(phase) {
    if (this.ended || this.phase === phase) return;
    this.phase = phase;
    this.emit('phase');
  }

  /** Opens the camera and microphone on first use; the same promise after that. */
  localMedia() {
    if (!this.mediaPromise) this.mediaPromise = getLocalMedia();
    return this.mediaPromise;
  }

  /** Runs fn after ms, unless the call has ended by then. */
  after(ms, fn) {
    const id = setTimeout(() => {
      this.timers.delete(id);
      if (!this.ended) fn();
    }, ms);
    this.timers.add(id);
  }

  /** Runs fn every ms until the call ends. */
  every(ms, fn) {
    this.timers.add(setInterval(fn, ms));
  }

  /** Starts the peer connection with `media` (from localMedia()); `send` relays a
   *  signal payload to the partner; `sending` says which of our tracks start enabled. */
  connect(media, { iceServers, send, sending }) {
    this.useMedia(media, sending);
    if (this.link) {
      this.link.attachLocal(media); // the callee's preview link
      return;
    }
    const pre = this.previews.get(this.partner);
    this.previews.delete(this.partner);
    this.dropPreviews();
    this.wire(pre || new Link({ role: this.role, iceServers, local: media, send }));
  }

  /** Our camera and microphone, with the tracks enabled as `sending` says (once). */
  useMedia(media, sending) {
    if (this.media) return;
    this.media = media;
    this.sending = { audio: media.audio && sending.audio, video: media.video && sending.video };
    for (const tr of media.stream.getTracks()) {
      tr.enabled = this.sending[tr.kind] === true;
      this.watch(tr);
    }
  }

  /** Caller: starts showing our picture to `name` while it rings (useMedia first). */
  openPreview(name, { iceServers, send }) {
    if (this.ended || !this.media || this.previews.has(name) || this.previews.size >= PREVIEW_MAX) return;
    const link = new Link({ role: 'caller', iceServers, local: this.media, send });
    link.on('failed', () => this.dropPreview(name));
    this.previews.set(name, link);
  }

  dropPreview(name) {
    const link = this.previews.get(name);
    if (link) link.close();
    this.previews.delete(name);
  }

  dropPreviews() {
    for (const name of [...this.previews.keys()]) this.dropPreview(name);
  }

  /** Callee: the caller's preview offer arrived while ringing; receive only. */
  receivePreview({ iceServers, send }) {
    if (!this.link && !this.ended) this.wire(new Link({ role: 'callee', iceServers, local: null, send }));
  }

  wire(link) {
    this.link = link;
    const connected = () => {
      if (link.status === 'connected' && this.phase === 'connecting') {
        this.startedAt = Date.now();
        this.setPhase('in-call');
      }
    };
    link.on('state', () => {
      connected();
      this.emit('media');
    });
    link.on('remote', () => this.emit('remote'));
    link.on('failed', () => this.emit('failed'));
    for (const data of this.pendingSignals) link.handle(data);
    this.pendingSignals = [];
    connected(); // a preview link may have connected already
    if (link.remoteStream.getTracks().length) this.emit('remote');
  }

  /** Follows a local track: mute/unmute is shown, an end is repaired. */
  watch(track) {
    const paused = () => {
      this.localPaused[track.kind] = track.muted;
      this.emit('local');
    };
    track.addEventListener('mute', paused);
    track.addEventListener('unmute', paused);
    track.addEventListener('ended', () => this.reacquire(track));
  }

  /** Gets a new track in place of `old`, which the system ended, and sends it. */
  async reacquire(old) {
    const stream = this.media && this.media.stream;
    if (this.ended || !stream || !stream.getTracks().includes(old)) return;
    const track = await getTrack(old.kind);
    if (!track) return;
    if (this.ended || !stream.getTracks().includes(old)) {
      track.stop();
      return;
    }
    stream.removeTrack(old);
    stream.addTrack(track);
    track.enabled = this.sending[track.kind] === true;
    this.localPaused[track.kind] = false;
    this.watch(track);
    if (this.link) this.link.replaceTrack(track);
    for (const link of this.previews.values()) link.replaceTrack(track);
    this.replaced++;
    this.emit('local');
  }

  /** A `signal` payload from the partner: to the link, or kept until there is one. */
  signal(data) {
    if (this.link) this.link.handle(data);
    else if (!this.ended) this.pendingSignals.push(data);
  }

  /** Turns our microphone ('audio') or camera ('video') on or off and tells the partner. */
  setSending(kind, on) {
    this.sending[kind] = on;
    if (this.link) this.link.setTrackEnabled(kind, on);
  }

  /** Stops timers, the link and the camera (also one still opening). True the
   *  first time, false after: whoever gets true does the rest of the ending. */
  end() {
    if (this.ended) return false;
    this.phase = 'ended';
    for (const id of this.timers) clearTimeout(id); // clears intervals too
    this.timers.clear();
    if (this.link) this.link.close();
    this.dropPreviews();
    if (this.mediaPromise) this.mediaPromise.then((m) => stopStream(m.stream));
    this.pendingSignals = [];
    return true;
  }
}

// The RTCPeerConnection of a call (call.js): perfect negotiation over the server's
// `signal` relay, trickle ICE, ICE restart when the media path breaks, and teardown.
//
// Roles: the caller creates the first offer, once the callee has accepted or,
// where the server relays signals while ringing (`preview`), as soon as it rings.
// The callee is the polite peer: on glare it rolls its own offer back, the caller
// ignores the callee's. Both always negotiate one audio and one video transceiver,
// so a side without a camera still receives the other's picture.
//
// A callee may start with `local` null (preview while ringing, or listening to an
// announcement): it answers receive-only and sends nothing; attachLocal() puts its
// camera and microphone on later, which renegotiates. A pager's links carry
// `kinds: ['audio']` and `direction: 'sendonly'`.
//
// Signal payloads: {description}, {candidate}, {media: {audio, video}}.
// Events (on/emit): 'state' (any connection state change), 'remote' (remote tracks or
// media flags changed), 'failed' (gave up on the media path).

import { Emitter } from './emitter.js';

const RESTART_AFTER_DISCONNECT_MS = 2500;
const GIVE_UP_MS = 30000;

export class Link extends Emitter {
  constructor({ role, iceServers, local, send, kinds = ['audio', 'video'], direction = 'sendrecv' }) {
    super();
    this.role = role;
    this.polite = role === 'callee';
    this.local = local; // { stream, audio, video }, or null: receive only
    this.kinds = kinds;
    this.direction = direction;
    this.sendSignal = send;
    this.remoteStream = new MediaStream();
    this.remoteMedia = { audio: true, video: true };
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.attached = false;
    this.closed = false;
    this.everConnected = false;
    this.restarts = 0;
    this.restartTimer = null;
    this.giveUpTimer = null;

    let pc;
    try {
      pc = new RTCPeerConnection({ iceServers: Array.isArray(iceServers) ? iceServers : [] });
    } catch (err) {
      // A malformed --ice-servers entry: host candidates still work on one LAN.
      console.warn('iceServers refused', err);
      pc = new RTCPeerConnection();
    }
    this.pc = pc;
    pc.onnegotiationneeded = () => this.negotiate();
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.send({ candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ track, streams }) => {
      // Show the stream the tracks arrive in (an empty MediaStream filled later is
      // reported to stay black on iOS); our own stream only when the sender named none.
      const stream = streams && streams[0];
      if (stream && stream !== this.remoteStream) {
        for (const tr of this.remoteStream.getTracks()) if (!stream.getTracks().includes(tr)) stream.addTrack(tr);
        this.remoteStream = stream;
      }
      if (!this.remoteStream.getTracks().includes(track)) this.remoteStream.addTrack(track);
      track.onmute = track.onunmute = track.onended = () => this.emit('remote');
      this.emit('remote');
    };
    pc.oniceconnectionstatechange = () => this.onIceState();
    pc.onconnectionstatechange = () => this.onIceState();
    pc.onsignalingstatechange = () => this.emit('state');

    if (role === 'caller') {
      this.attachAsCaller();
      this.armGiveUp();
    }
  }

  emit(type) {
    if (!this.closed) super.emit(type);
  }

  send(data) {
    if (!this.closed) this.sendSignal(data);
  }

  attachAsCaller() {
    const { stream } = this.local;
    for (const kind of this.kinds) {
      const track = stream.getTracks().find((t) => t.kind === kind);
      if (track) this.pc.addTransceiver(track, { direction: this.direction, streams: [stream] });
      else this.pc.addTransceiver(kind, { direction: 'recvonly' });
    }
    this.preferCodecs();
    this.attached = true;
  }

  /** After the caller's first offer: put our tracks on the transceivers it created. */
  attachAsCallee() {
    const { stream } = this.local;
    for (const track of stream.getTracks()) {
      const tr = this.pc
        .getTransceivers()
        .find((t) => !t.stopped && t.receiver.track.kind === track.kind && !t.sender.track);
      if (tr) {
        tr.sender.replaceTrack(track);
        if (tr.sender.setStreams) tr.sender.setStreams(stream);
        tr.direction = 'sendrecv';
      } else {
        this.pc.addTrack(track, stream);
      }
    }
    this.preferCodecs();
    this.attached = true;
  }

  /** The person answered: our camera and microphone go on now (renegotiating if
   *  the caller's offer was already answered receive-only). */
  attachLocal(local) {
    this.local = local;
    if (this.attached || this.closed) return;
    if (this.pc.remoteDescription) {
      this.attachAsCallee();
      this.sendMediaState();
    }
    this.armGiveUp();
  }

  /** Puts H.264 first, then VP8, on the video transceivers: the answer takes the
   *  first codec both ends have, so H.264 (hardware on iPads) where both support
   *  it, VP8 otherwise. Browsers without setCodecPreferences keep their order. */
  preferCodecs() {
    const caps = window.RTCRtpReceiver && RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video');
    if (!caps || !Array.isArray(caps.codecs)) return;
    const rank = (c) => {
      const type = String(c.mimeType).toLowerCase();
      if (type === 'video/h264') return /packetization-mode=1/.test(c.sdpFmtpLine || '') ? 0 : 1;
      return type === 'video/vp8' ? 2 : 3;
    };
    const codecs = caps.codecs.map((c, i) => ({ c, i })).sort((a, b) => rank(a.c) - rank(b.c) || a.i - b.i).map((x) => x.c);
    for (const tr of this.pc.getTransceivers()) {
      if (tr.stopped || !tr.setCodecPreferences || tr.receiver.track.kind !== 'video') continue;
      try {
        tr.setCodecPreferences(codecs);
      } catch (err) {
        console.warn('codec preferences refused', err);
      }
    }
  }

  /** Puts `track` on the sender of its kind, in place of one that ended. */
  replaceTrack(track) {
    for (const tr of this.pc.getTransceivers()) {
      if (tr.stopped || tr.receiver.track.kind !== track.kind) continue;
      if (tr.sender.track || tr.direction === 'sendrecv' || tr.direction === 'sendonly') {
        tr.sender.replaceTrack(track).catch((err) => console.warn('replaceTrack failed', err));
        return;
      }
    }
  }

  /** setLocalDescription() without arguments picks offer or answer itself;
   *  browsers before 2021 (Safari < 14.1) need it spelled out. */
  async setLocal(options) {
    const pc = this.pc;
    if (!options) {
      try {
        await pc.setLocalDescription();
        return;
      } catch (err) {
        if (!(err instanceof TypeError)) throw err;
      }
    }
    const desc = pc.signalingState === 'have-remote-offer' ? await pc.createAnswer() : await pc.createOffer(options);
    await pc.setLocalDescription(desc);
  }

  async negotiate(iceRestart = false) {
    if (this.closed) return;
    try {
      this.makingOffer = true;
      await this.setLocal(iceRestart ? { iceRestart: true } : undefined);
      this.send({ description: this.pc.localDescription.toJSON() });
    } catch (err) {
      console.warn('offer failed', err);
    } finally {
      this.makingOffer = false;
    }
  }

  /** Handles one `signal` payload from the partner. */
  async handle(data) {
    if (this.closed || !data || typeof data !== 'object') return;
    const pc = this.pc;
    try {
      if (data.description) {
        const desc = data.description;
        const collision = desc.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
        this.ignoreOffer = !this.polite && collision;
        if (this.ignoreOffer) return;
        // The polite side gives way. Newer browsers roll back by themselves;
        // saying it explicitly keeps older ones out of an invalid state.
        if (collision && pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
        await pc.setRemoteDescription(desc);
        if (desc.type === 'offer') {
          if (!this.attached && this.local) {
            this.attachAsCallee();
            this.armGiveUp();
          }
          await this.setLocal();
          this.send({ description: pc.localDescription.toJSON() });
          this.sendMediaState();
        }
      } else if (data.candidate) {
        try {
          await pc.addIceCandidate(data.candidate);
        } catch (err) {
          if (!this.ignoreOffer) console.warn('candidate rejected', err);
        }
      } else if (data.media) {
        this.remoteMedia = { audio: data.media.audio !== false, video: data.media.video !== false };
        this.emit('remote');
      }
    } catch (err) {
      console.warn('signal failed', err);
    }
  }

  /** Tells the partner whether our microphone and camera are on. */
  sendMediaState() {
    if (!this.local) return;
    const a = this.local.stream.getAudioTracks()[0];
    const v = this.local.stream.getVideoTracks()[0];
    this.send({ media: { audio: !!a && a.enabled, video: !!v && v.enabled } });
  }

  setTrackEnabled(kind, on) {
    if (!this.local) return;
    for (const track of this.local.stream.getTracks()) if (track.kind === kind) track.enabled = on;
    this.sendMediaState();
  }

  onIceState() {
    if (this.closed) return;
    const ice = this.pc.iceConnectionState;
    if (ice === 'connected' || ice === 'completed') {
      clearTimeout(this.restartTimer);
      clearTimeout(this.giveUpTimer);
      this.restartTimer = this.giveUpTimer = null;
      if (!this.everConnected) {
        this.everConnected = true;
        this.sendMediaState();
      }
    } else if (ice === 'failed') {
      this.restartIce();
      this.armGiveUp();
    } else if (ice === 'disconnected') {
      clearTimeout(this.restartTimer);
      this.restartTimer = setTimeout(() => {
        if (!this.closed && this.pc.iceConnectionState === 'disconnected') this.restartIce();
      }, RESTART_AFTER_DISCONNECT_MS);
      this.armGiveUp();
    }
    this.emit('state');
  }

  restartIce() {
    this.restarts++;
    if (this.pc.restartIce) this.pc.restartIce();
    else this.negotiate(true);
  }

  armGiveUp() {
    if (this.giveUpTimer) return;
    this.giveUpTimer = setTimeout(() => {
      this.giveUpTimer = null;
      const ice = this.pc.iceConnectionState;
      if (!this.closed && ice !== 'connected' && ice !== 'completed') this.emit('failed');
    }, GIVE_UP_MS);
  }

  /** 'connecting' | 'connected' | 'restoring' */
  get status() {
    const ice = this.pc.iceConnectionState;
    if (ice === 'connected' || ice === 'completed') return 'connected';
    return this.everConnected ? 'restoring' : 'connecting';
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.giveUpTimer);
    this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = null;
    this.pc.oniceconnectionstatechange = this.pc.onconnectionstatechange = null;
    this.pc.onsignalingstatechange = null;
    try {
      this.pc.close();
    } catch {
      // already closed
    }
  }
}

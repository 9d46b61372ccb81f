// window.intercomTest: views of the page for the end-to-end tests (tests/e2e/).
// app.js loads this module only when the test set window.intercomTestHooks before
// the page loaded. Apart from restartIce() and endLocalVideo() nothing here changes
// anything.

import * as sound from './sound.js';

const $ = (id) => document.getElementById(id);

function candidateView(c) {
  return c ? { address: c.address || c.ip || '', port: c.port, type: c.candidateType, protocol: c.protocol, relayProtocol: c.relayProtocol || null } : null;
}

/** Mean colour of a video's picture, to tell whose camera it shows. */
function meanColor(v) {
  if (!v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = 32;
  c.height = 24;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0, 32, 24);
  const d = g.getImageData(0, 0, 32, 24).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) sum[k] += d[i + k];
  return sum.map((x) => Math.round(x / (d.length / 4)));
}

/** Bytes received and sent per kind, and the selected candidate pair. */
async function stats(pc) {
  const report = await pc.getStats();
  const out = { inbound: {}, outbound: {}, pair: null };
  const byId = new Map();
  report.forEach((r) => byId.set(r.id, r));
  let pairId = null;
  report.forEach((r) => {
    if (r.type === 'inbound-rtp') out.inbound[r.kind] = (out.inbound[r.kind] || 0) + (r.bytesReceived || 0);
    if (r.type === 'outbound-rtp') out.outbound[r.kind] = (out.outbound[r.kind] || 0) + (r.bytesSent || 0);
    if (r.type === 'outbound-rtp' && r.kind === 'video' && r.codecId) out.videoCodecId = r.codecId;
    if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
    if (r.type === 'local-candidate' || r.type === 'remote-candidate') {
      (out[r.type === 'local-candidate' ? 'localCandidates' : 'remoteCandidates'] ||= []).push(candidateView(r));
    }
  });
  if (!pairId) report.forEach((r) => {
    if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pairId = r.id;
  });
  const codec = out.videoCodecId && byId.get(out.videoCodecId);
  out.videoCodec = codec ? codec.mimeType : null;
  delete out.videoCodecId;
  const pair = pairId && byId.get(pairId);
  if (pair) {
    out.pair = {
      state: pair.state,
      local: candidateView(byId.get(pair.localCandidateId)),
      remote: candidateView(byId.get(pair.remoteCandidateId)),
    };
  }
  return out;
}

/** `S`, `sig`, `screen()` and `remoteHasVideo()` are app.js's own. */
/** Sums stats() over several peer connections (a pager's links). */
async function sumStats(pcs) {
  const out = { inbound: {}, outbound: {}, links: pcs.length };
  for (const pc of pcs) {
    const s = await stats(pc);
    for (const dir of ['inbound', 'outbound']) for (const [k, v] of Object.entries(s[dir])) out[dir][k] = (out[dir][k] || 0) + v;
  }
  return out;
}

export function install({ S, sig, screen, remoteHasVideo, keepAwake, unseen }) {
  const link = () => (S.call && S.call.link) || null;
  const pc = () => (link() ? link().pc : null);
  const ofPc = (field) => () => (pc() ? pc()[field] : null);
  window.intercomTest = {
    state: screen,
    connection: () => sig.state,
    registrations: () => sig.registrations,
    sockets: () => [sig.ws, sig.candidate].filter((w) => w && w.readyState <= 1).length,
    me: () => S.me,
    partner: () => (S.call ? S.call.partner : null),
    peers: () => Object.fromEntries(S.peers),
    notice: () => S.notice,
    /** The line saying auto-answer needs an access key, if the current screen shows it. */
    autoAnswerNote: () => {
      const el = document.querySelector(`#screen-${screen()} .aa-note`);
      return el && !el.hidden ? el.textContent : null;
    },
    tone: () => sound.current(),
    /** The ring's <audio> element: {paused, muted, play: 'resolved' | 'rejected'}. */
    ring: () => sound.ringState(),
    /** The fallback video that keeps the screen on: {paused, muted, loop, playsInline}. */
    keepAwake: () => {
      const v = keepAwake();
      return v ? { paused: v.paused, muted: v.muted, loop: v.loop, playsInline: v.hasAttribute('playsinline') } : null;
    },
    failedOpens: () => sig.failedOpens,
    /** The certificate hint in the banner, if shown: its text and the guide link. */
    trustHint: () => ($('trust-hint').hidden || $('banner').hidden ? null : { text: $('trust-hint').textContent.trim(), href: $('trust-link').hidden ? null : $('trust-link').href }),
    setupKeyField: () => !$('setup-key-field').hidden,
    setupError: () => ($('setup-error').hidden ? null : $('setup-error').textContent),
    /** The local video track: its id, state, and how many tracks were acquired again. */
    localVideo: () => {
      const s = S.call && S.call.media && S.call.media.stream;
      const tr = s && s.getVideoTracks()[0];
      const sender = pc() && pc().getSenders().find((x) => x.track && x.track.kind === 'video');
      return tr ? { id: tr.id, state: tr.readyState, sent: sender ? sender.track.id : null, replaced: S.call.replaced } : null;
    },
    /** The other action hook: the system ends our camera, as iOS does on Siri or Split View. */
    endLocalVideo: () => {
      const s = S.call && S.call.media && S.call.media.stream;
      const tr = s && s.getVideoTracks()[0];
      if (!tr) return false;
      tr.stop();
      tr.dispatchEvent(new Event('ended'));
      return true;
    },
    soundUnlocked: () => sound.isUnlocked(),
    banner: () => ($('banner').hidden ? null : $('banner-text').textContent),
    focused: () => (document.activeElement ? document.activeElement.id || null : null),
    pcState: ofPc('connectionState'),
    iceState: ofPc('iceConnectionState'),
    signalingState: ofPc('signalingState'),
    mediaNote: () => ($('media-note').hidden ? null : $('media-note').dataset.key),
    /** Whether our microphone / camera tracks are sending (enabled). */
    localTracks: () => {
      const s = S.call && S.call.media && S.call.media.stream;
      const on = (kind) => !!s && s.getTracks().some((tr) => tr.kind === kind && tr.enabled && tr.readyState === 'live');
      return { audio: on('audio'), video: on('video') };
    },
    /** What the partner last told us about its microphone and camera. */
    remoteMedia: () => (link() ? { ...link().remoteMedia, showing: remoteHasVideo() } : null),
    /** The ICE username fragment in use, to see that an ICE restart happened. */
    iceUfrag: () => {
      const sdp = pc() && pc().localDescription && pc().localDescription.sdp;
      const m = sdp && /a=ice-ufrag:(\S+)/.exec(sdp);
      return m ? m[1] : null;
    },
    /** The one action hook: restart ICE as if the network path had failed. */
    restartIce: () => link() && link().restartIce(),
    remoteVideo: () => {
      const v = $('remote-video');
      return { videoWidth: v.videoWidth, videoHeight: v.videoHeight, currentTime: v.currentTime, paused: v.paused };
    },
    /** Mean colour of the remote picture, to tell whose camera it shows. */
    remoteColor: () => meanColor($('remote-video')),
    stats: async () => (pc() ? stats(pc()) : null),
    /** Ring groups as the list shows them: {name: members}. */
    groups: () => Object.fromEntries(S.groupsOf),
    features: () => [...S.features],
    dnd: () => S.dnd,
    /** Who a ring we started is ringing, and whom we show a preview. */
    ringing: () => (S.call ? { group: S.call.group, to: S.call.ringing, previews: [...S.call.previews.keys()] } : null),
    /** Bytes each way over the preview links of a ring we started. */
    previewStats: async () => (S.call ? sumStats([...S.call.previews.values()].map((l) => l.pc)) : null),
    incomingText: () => $('in-name').textContent,
    previewShown: () => !$('in-video').hidden && $('in-video').videoWidth > 0,
    /** The announcement in progress: role, group, pager, listeners. */
    page: () => (S.page ? { role: S.page.role, group: S.page.group, from: S.page.from || null, to: S.page.to, blocked: !!S.page.blocked } : null),
    pageStats: async () => (S.page ? sumStats([...S.page.links.values()].map((l) => l.pc)) : null),
    pageAudio: () => {
      const el = $('page-audio');
      return { paused: el.paused, muted: el.muted, tracks: el.srcObject ? el.srcObject.getAudioTracks().length : 0 };
    },
    missed: () => S.missed.slice(),
    missedBadge: () => ($('missed-badge').hidden ? 0 : Number($('missed-badge').textContent)),
    unseen,
  };
}

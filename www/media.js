// Getting the camera and microphone, falling back step by step so a call still
// connects without a camera (or without permission for it): camera + microphone,
// then microphone only, then camera only, then nothing (listen only).

const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const VIDEO = {
  facingMode: 'user',
  width: { ideal: 1280, max: 1920 },
  height: { ideal: 720, max: 1080 },
  frameRate: { ideal: 30, max: 30 },
};

/** 'denied' when the person or the browser refused, 'missing' when there is no
 *  such device (or it is busy), 'insecure' when the page is not https. */
function reason(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') return 'denied';
  return 'missing';
}

async function tryGet(constraints) {
  try {
    return { stream: await navigator.mediaDevices.getUserMedia(constraints) };
  } catch (err) {
    return { error: reason(err) };
  }
}

/**
 * Resolves to { stream, audio, video, videoReason, audioReason }. `audio`/`video`
 * say which tracks the stream has; the reasons say why one is missing.
 * Never rejects.
 */
export async function getLocalMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return { stream: new MediaStream(), audio: false, video: false, audioReason: 'insecure', videoReason: 'insecure' };
  }
  const both = await tryGet({ audio: AUDIO, video: VIDEO });
  if (both.stream) return describe(both.stream);
  const audioOnly = await tryGet({ audio: AUDIO });
  if (audioOnly.stream) return { ...describe(audioOnly.stream), videoReason: both.error };
  const videoOnly = await tryGet({ video: VIDEO });
  if (videoOnly.stream) return { ...describe(videoOnly.stream), audioReason: audioOnly.error };
  return { stream: new MediaStream(), audio: false, video: false, audioReason: audioOnly.error, videoReason: videoOnly.error };
}

function describe(stream) {
  return {
    stream,
    audio: stream.getAudioTracks().length > 0,
    video: stream.getVideoTracks().length > 0,
    audioReason: null,
    videoReason: null,
  };
}

/** One new track of `kind` ('audio' or 'video'), or null: to replace a track the
 *  system ended (iOS ends capture on Siri, a FaceTime call, Split View). */
export async function getTrack(kind) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return null;
  const got = await tryGet(kind === 'audio' ? { audio: AUDIO } : { video: VIDEO });
  return got.stream ? got.stream.getTracks()[0] || null : null;
}

export function stopStream(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

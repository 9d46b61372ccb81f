// Every string a person can see, in one table. English and Korean.
// t(key, {name}) fills {name}-style placeholders; the language comes from
// ?lang= or navigator.language, falling back to English. Lookups read own
// properties only, so no key can reach Object.prototype.

const STRINGS = {
  en: {
    appName: 'Intercom',
    setupTitle: 'Name this intercom',
    setupHint: 'Others will see this name and tap it to call you. For example: Front door, Kitchen.',
    nameLabel: 'Name',
    namePlaceholder: 'Front door',
    save: 'Save',
    cancel: 'Cancel',
    settings: 'Settings',
    settingsTitle: 'Settings',
    pttLabel: 'Push to talk',
    pttHint: 'Hold a big button to speak. Useful in noisy hallways.',
    cameraStartLabel: 'Start calls with camera on',
    done: 'Done',
    youAre: 'This is {name}',
    whoToCall: 'Who do you want to call?',
    available: 'Available',
    busy: 'Busy',
    busyLong: 'Busy, in a call',
    callName: 'Call {name}',
    callNameBusy: '{name} is busy',
    nobody: 'No one else is here yet.',
    nobodyHint: 'Open this page on another tablet or phone to call it.',
    connecting: 'Connecting…',
    reconnecting: 'Connection lost. Reconnecting…',
    reconnectingIn: 'Connection lost. Reconnecting in {s} s…',
    retryNow: 'Retry now',
    nameHeld: '“{name}” is still in use by an earlier connection. Retrying…',
    calling: 'Calling',
    ringingHint: 'Waiting for {name} to answer',
    incoming: 'Incoming call',
    incomingFrom: '{name} is calling',
    accept: 'Answer',
    decline: 'Decline',
    hangup: 'Hang up',
    mute: 'Mute',
    unmute: 'Unmute',
    micOff: 'Microphone off',
    cameraOff: 'Camera off',
    cameraOn: 'Camera on',
    noCamera: 'No camera',
    holdToTalk: 'Hold to talk',
    talking: 'Talking…',
    connectingMedia: 'Connecting…',
    restoring: 'Connection is weak. Restoring…',
    inCallWith: 'In call with {name}',
    audioOnlyNoCamera: 'Audio only: no camera on this device.',
    audioOnlyDenied: 'Audio only: camera access was refused.',
    listenOnly: 'No microphone: {name} cannot hear you.',
    remoteNoVideo: '{name} is not sending video',
    remoteMuted: '{name} muted their microphone',
    declined: '{name} declined the call.',
    noAnswer: 'No answer from {name}.',
    isBusy: '{name} is busy right now. Try again later.',
    missed: 'Missed call from {name}.',
    callEnded: 'Call with {name} ended.',
    peerLost: 'Lost connection to {name}.',
    mediaFailed: 'The call could not connect.',
    peerGone: '{name} is no longer online.',
    callLostServer: 'The call ended: the intercom was restarted.',
    nameTaken: 'That name is already in use on another device. Choose another.',
    nameInvalid: 'Use 1 to 32 characters, no spaces at the start or end.',
    full: 'The intercom is full. Try again later.',
    unauthorized: 'This intercom needs an access key. Ask whoever set it up.',
    keyLabel: 'Access key',
    keyNeeded: 'This intercom needs an access key. Enter it below.',
    keyWrong: 'That access key is not right. Check it and try again.',
    clearSettings: 'Forget this tablet\'s settings',
    clearSettingsHint: 'Name, access key and kiosk options are kept on this tablet (a stolen tablet holds the key).',
    trustHint: 'This tablet does not trust the intercom\'s certificate yet.',
    trustLink: 'How to set it up',
    localPaused: 'Your camera or microphone was paused by the tablet.',
    replaced: 'This intercom was opened in another window.',
    useHere: 'Use it here',
    tapForSound: 'Tap once to enable sound',
    autoAnswerOff: 'Auto-answer is off: it needs an access key on the intercom.',
    noWebrtc: 'This browser cannot make video calls.',
    notSecure: 'Open this page over https:// to use the camera and microphone.',
    edit: 'Change name',
    close: 'Close',
  },
  ko: {
    appName: '인터폰',
    setupTitle: '이 인터폰의 이름',
    setupHint: '다른 기기에서 이 이름을 눌러 전화합니다. 예: 현관, 주방.',
    nameLabel: '이름',
    namePlaceholder: '현관',
    save: '저장',
    cancel: '취소',
    settings: '설정',
    settingsTitle: '설정',
    pttLabel: '눌러서 말하기',
    pttHint: '큰 버튼을 누르고 있는 동안만 말합니다. 시끄러운 곳에서 유용합니다.',
    cameraStartLabel: '통화 시작 시 카메라 켜기',
    done: '완료',
    youAre: '이 기기: {name}',
    whoToCall: '누구에게 전화할까요?',
    available: '통화 가능',
    busy: '통화 중',
    busyLong: '통화 중입니다',
    callName: '{name} 호출',
    callNameBusy: '{name}: 통화 중',
    nobody: '아직 다른 기기가 없습니다.',
    nobodyHint: '다른 태블릿이나 휴대폰에서 이 페이지를 열면 전화할 수 있습니다.',
    connecting: '연결 중…',
    reconnecting: '연결이 끊겼습니다. 다시 연결하는 중…',
    reconnectingIn: '연결이 끊겼습니다. {s}초 후 다시 연결…',
    retryNow: '지금 다시 시도',
    nameHeld: '‘{name}’ 이름이 이전 연결에서 아직 사용 중입니다. 다시 시도하는 중…',
    calling: '전화 거는 중',
    ringingHint: '{name} 응답 기다리는 중',
    incoming: '전화가 왔습니다',
    incomingFrom: '발신: {name}',
    accept: '받기',
    decline: '거절',
    hangup: '끊기',
    mute: '음소거',
    unmute: '음소거 해제',
    micOff: '마이크 꺼짐',
    cameraOff: '카메라 끄기',
    cameraOn: '카메라 켜기',
    noCamera: '카메라 없음',
    holdToTalk: '누르고 말하기',
    talking: '말하는 중…',
    connectingMedia: '연결 중…',
    restoring: '연결이 약합니다. 복구하는 중…',
    inCallWith: '통화 중: {name}',
    audioOnlyNoCamera: '음성 통화: 이 기기에 카메라가 없습니다.',
    audioOnlyDenied: '음성 통화: 카메라 사용이 거부되었습니다.',
    listenOnly: '마이크 없음: {name}에서 내 목소리가 들리지 않습니다.',
    remoteNoVideo: '{name}: 영상 없음',
    remoteMuted: '{name}: 마이크 꺼짐',
    declined: '{name}: 통화를 거절했습니다.',
    noAnswer: '{name}: 응답이 없습니다.',
    isBusy: '{name}: 지금 통화 중입니다. 잠시 후 다시 걸어 주세요.',
    missed: '부재중 전화: {name}',
    callEnded: '통화 종료: {name}',
    peerLost: '{name}: 연결이 끊겼습니다.',
    mediaFailed: '통화를 연결하지 못했습니다.',
    peerGone: '{name}: 더 이상 연결되어 있지 않습니다.',
    callLostServer: '인터폰이 다시 시작되어 통화가 끝났습니다.',
    nameTaken: '이 이름은 다른 기기에서 사용 중입니다. 다른 이름을 고르세요.',
    nameInvalid: '1~32자로 입력하고, 앞뒤에 공백을 넣지 마세요.',
    full: '인터폰에 연결된 기기가 너무 많습니다. 잠시 후 다시 시도하세요.',
    unauthorized: '이 인터폰은 접근 키가 필요합니다. 설치한 분께 문의하세요.',
    keyLabel: '접근 키',
    keyNeeded: '이 인터폰은 접근 키가 필요합니다. 아래에 입력하세요.',
    keyWrong: '접근 키가 맞지 않습니다. 확인 후 다시 입력하세요.',
    clearSettings: '이 태블릿의 설정 지우기',
    clearSettingsHint: '이름, 접근 키, 키오스크 설정이 이 태블릿에 저장됩니다(태블릿을 도난당하면 키도 함께 넘어갑니다).',
    trustHint: '이 태블릿이 아직 인터폰 인증서를 신뢰하지 않습니다.',
    trustLink: '설정 방법',
    localPaused: '태블릿이 카메라나 마이크를 일시 중지했습니다.',
    replaced: '이 인터폰이 다른 창에서 열렸습니다.',
    useHere: '여기서 사용',
    tapForSound: '소리를 켜려면 한 번 누르세요',
    autoAnswerOff: '자동 응답 꺼짐: 인터폰에 접근 키가 있어야 합니다.',
    noWebrtc: '이 브라우저는 영상 통화를 지원하지 않습니다.',
    notSecure: '카메라와 마이크를 쓰려면 https:// 주소로 여세요.',
    edit: '이름 바꾸기',
    close: '닫기',
  },
};

export const LANGS = Object.keys(STRINGS);

/** Whether `key` is `table`'s own entry (Object.hasOwn needs Safari 15.4). */
const own = (table, key) => Object.prototype.hasOwnProperty.call(table, key);

/** Picks the language: ?lang= first, then the browser's preference list. */
export function pickLang(search = location.search, prefs = navigator.languages || [navigator.language]) {
  const asked = new URLSearchParams(search).get('lang');
  const candidates = asked ? [asked, ...prefs] : prefs;
  for (const c of candidates) {
    const base = String(c || '').toLowerCase().split('-')[0];
    if (own(STRINGS, base)) return base;
  }
  return 'en';
}

let current = 'en';

export function setLang(lang) {
  current = own(STRINGS, lang) ? lang : 'en';
  document.documentElement.lang = current;
}

export function lang() {
  return current;
}

export function t(key, vars = {}) {
  const s = own(STRINGS[current], key) ? STRINGS[current][key] : own(STRINGS.en, key) ? STRINGS.en[key] : String(key);
  return s.replace(/\{(\w+)\}/g, (_, k) => (own(vars, k) ? String(vars[k]) : ''));
}

/** Fills every [data-i18n] element's text and [data-i18n-label] element's aria-label/title. */
export function translateDom(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll('[data-i18n-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nLabel));
    el.title = t(el.dataset.i18nLabel);
  }
  document.title = t('appName');
}

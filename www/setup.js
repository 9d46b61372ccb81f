// The set-up page (guide.html): the visitor's own platform's steps first, and a live
// "Is this tablet ready?" check. The check loads a small image from the appliance's
// HTTPS origin: a browser loads it only when it trusts the certificate, and an image
// needs no CORS. Loads nothing else; works without this script (every step shown).

const https = document.body.dataset.https;
const ready = document.getElementById('ready');
const CHECK_EVERY_MS = 3000;

/** ios, android, firefox or desktop, from the user agent. */
function platform() {
  const ua = navigator.userAgent;
  // iPadOS presents itself as a Mac; only the iPad has a touch screen.
  if (/iPad|iPhone|iPod/.test(ua) || (/Macintosh/.test(ua) && navigator.maxTouchPoints > 1)) return 'ios';
  if (/Android/.test(ua)) return 'android';
  if (/Firefox\//.test(ua)) return 'firefox';
  return 'desktop';
}

const mine = platform();
document.body.dataset.platform = mine;
const list = document.getElementById('platforms');
for (const d of list.querySelectorAll('details.platform')) {
  const own = d.id === `p-${mine}`;
  d.open = own;
  d.classList.toggle('mine', own);
  if (own) list.prepend(d);
}

let timer = null;
function check() {
  const img = new Image();
  img.onload = () => {
    ready.dataset.state = 'ready';
    clearTimeout(timer);
  };
  img.onerror = () => {
    ready.dataset.state = 'no';
    timer = setTimeout(check, CHECK_EVERY_MS);
  };
  img.src = `${https}/icon.svg?ready=${Date.now()}`;
}
check();

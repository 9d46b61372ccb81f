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

/** Whether an image from the HTTPS origin loads: only once the browser trusts it. */
function imageLoads() {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(true);
    img.onerror = () => resolve(false);
    img.src = `${https}/icon.svg?ready=${Date.now()}`;
  });
}

/** On the HTTPS page itself: whether the intercom's WebSocket opens. A page reached by
 *  clicking through a certificate warning loads images, but some browsers (Safari)
 *  still refuse its socket, and a tablet in that state is not ready. */
function socketOpens() {
  if (location.protocol !== 'https:') return Promise.resolve(true);
  return new Promise((resolve) => {
    const url = new URL('/ws', location.href);
    url.protocol = 'wss:';
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      resolve(false);
      return;
    }
    const done = (ok) => {
      ws.onopen = ws.onerror = ws.onclose = null;
      ws.close();
      resolve(ok);
    };
    ws.onopen = () => done(true);
    ws.onerror = () => done(false);
    ws.onclose = () => done(false);
  });
}

async function check() {
  const ok = (await imageLoads()) && (await socketOpens());
  ready.dataset.state = ok ? 'ready' : 'no';
  if (!ok) setTimeout(check, CHECK_EVERY_MS);
}
check();

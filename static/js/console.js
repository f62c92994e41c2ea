// Nubo's console page (templates/console/vnc.html): noVNC's RFB connected through
// Nubo's console proxy, with status, scale to window, full screen, Ctrl-Alt-Del,
// paste (typed as keys) and reconnect. The websocket URL carries a single-use
// token: a reconnect within the reconnect window reuses it; later ones, or one
// the proxy refuses, ask the server for a new token (the page's hidden form).
import RFB from "../vendor/novnc/core/rfb.js";
import KeyTable from "../vendor/novnc/core/input/keysym.js";
import keysyms from "../vendor/novnc/core/input/keysymdef.js";

const $ = (id) => document.getElementById(id);
const screen = $("console-screen");
const status = $("console-status");
const reconnectButton = $("console-reconnect");
const windowMs = Number(screen.dataset.window || 0) * 1000;
// Characters typed with Shift on a US layout.
const SHIFTED = /[A-Z~!@#$%^&*()_+{}|:"<>?]/;

function websocketUrl() {
  let url = screen.dataset.url;
  if (!url) {  // /console/#token=...: createConsoleEndpoint's url
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (!token || !screen.dataset.base) return "";
    const base = screen.dataset.base;
    url = `${base}${base.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
    history.replaceState(null, "", location.pathname);  // the token leaves the address bar and history
  }
  // Behind TLS the page is https: the proxy must be reached over wss too.
  return location.protocol === "https:" && url.startsWith("ws:") ? "wss:" + url.slice(3) : url;
}

const url = websocketUrl();
let rfb = null;
let closedAt = 0;
let attempts = 0;

function setStatus(text, state) {
  status.textContent = text;
  status.dataset.state = state;
  reconnectButton.hidden = state === "connected" || state === "connecting";
}

function connect() {
  if (!url) {
    setStatus("No console token: open the console from the VM's page", "error");
    return;
  }
  setStatus("Connecting…", "connecting");
  attempts += 1;
  let connected = false;
  rfb = new RFB(screen, url, { shared: true });
  rfb.background = "#000";
  rfb.scaleViewport = $("console-scale").checked;
  rfb.addEventListener("connect", () => {
    connected = true;
    setStatus("Connected", "connected");
    rfb.focus();
  });
  rfb.addEventListener("disconnect", (e) => {
    rfb = null;
    if (!connected && attempts > 1 && $("console-new")) {
      $("console-new").submit();  // the proxy refused the old token: ask for a new one
      return;
    }
    if (connected) closedAt = Date.now();
    setStatus(e.detail.clean ? "Disconnected" : "Connection lost", "disconnected");
  });
  rfb.addEventListener("credentialsrequired", () => {
    setStatus("The VM's console asks for a password: Nubo never gives VNC passwords to browsers", "error");
    rfb.disconnect();
  });
  rfb.addEventListener("securityfailure", (e) => {
    setStatus(`Security failure: ${e.detail.reason || e.detail.status}`, "error");
  });
  rfb.addEventListener("desktopname", (e) => {
    document.title = `${e.detail.name} · Console · Nubo`;
  });
}

function reconnect() {
  const form = $("console-new");
  if (form && Date.now() - closedAt > windowMs) {
    form.submit();  // the token's reconnect window has passed: a new token
  } else {
    connect();
  }
}

function typeText(text) {
  if (!rfb) return;
  rfb.clipboardPasteFrom(text);  // the server's clipboard, where the guest uses it
  for (const ch of text.replace(/\r\n?/g, "\n")) {
    const keysym = ch === "\n" ? KeyTable.XK_Return : ch === "\t" ? KeyTable.XK_Tab : keysyms.lookup(ch.codePointAt(0));
    const shift = SHIFTED.test(ch);
    if (shift) rfb.sendKey(KeyTable.XK_Shift_L, null, true);
    rfb.sendKey(keysym, null);
    if (shift) rfb.sendKey(KeyTable.XK_Shift_L, null, false);
  }
  rfb.focus();
}

$("console-scale").addEventListener("change", (e) => {
  if (rfb) rfb.scaleViewport = e.target.checked;
});
$("console-fullscreen").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else screen.requestFullscreen();
});
$("console-cad").addEventListener("click", () => rfb && rfb.sendCtrlAltDel());
$("console-paste-toggle").addEventListener("click", () => {
  const box = $("console-paste");
  box.hidden = !box.hidden;
  if (!box.hidden) $("console-paste-text").focus();
});
$("console-paste-send").addEventListener("click", () => {
  typeText($("console-paste-text").value);
  $("console-paste-text").value = "";
});
reconnectButton.addEventListener("click", reconnect);
connect();

// Live updates (app/web/stream.py): <body sse-connect="/stream"> opens one Server-Sent Events
// stream per page; regions listen with hx-trigger="sse:<kind> ..." and re-fetch themselves.
// This file covers what the stream cannot:
// - refused (503 beyond live.streams.max) or broken for good: every region re-fetches
//   itself every FALLBACK_MS until the stream opens again (htmx-ext-sse retries on its own);
// - back after a break: every region once, for what happened meanwhile.
(function () {
  "use strict";
  var FALLBACK_MS = 15000;
  var timer = null;
  var missed = false;

  function refreshAll() {
    document.querySelectorAll("[hx-trigger*='sse:']").forEach(function (el) {
      var first = (el.getAttribute("hx-trigger") || "").match(/sse:[\w-]+/);
      if (first) { htmx.trigger(el, first[0]); }
    });
  }

  document.addEventListener("htmx:sseError", function (e) {
    missed = true;
    var source = e.detail && e.detail.source;
    if (source && source.readyState === EventSource.CLOSED && timer === null) {
      document.body.classList.add("live-polling");
      timer = window.setInterval(refreshAll, FALLBACK_MS);
    }
  });
  document.addEventListener("htmx:sseOpen", function () {
    document.body.classList.remove("live-polling");
    document.body.classList.add("live-on");
    if (timer !== null) { window.clearInterval(timer); timer = null; }
    if (missed) { missed = false; refreshAll(); }
  });
})();

// A region re-fetched because of the stream (or the fallback) keeps the address bar as it is:
// list fragments answer with HX-Push-Url, which would push one history entry per refresh.
document.addEventListener("htmx:beforeHistoryUpdate", function (e) {
  var cfg = e.detail && e.detail.requestConfig;
  var ev = cfg && cfg.triggeringEvent;
  if (ev && typeof ev.type === "string" && ev.type.indexOf("sse:") === 0 && e.detail.history) {
    e.detail.history.type = "replace";
  }
});


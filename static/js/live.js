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


// Pacing of stream-driven refreshes, per region: the first change is fetched FIRST_MS after it
// arrives (a burst is one fetch), then at most one fetch every GAP_MS while changes keep
// coming, and always one after the last of them. htmx's own modifiers cannot do both: a
// `delay` restarts on every event and never fires while a busy cloud keeps changing; a
// `throttle` drops the events of its window, the last change of a burst with them.
// A region is known by where its answer goes (its hx-target, else its own id), not by its
// element nor by the address it fetches: many regions replace themselves (outerHTML), and
// their successor keeps the pace, though it may fetch another address (the user sorted).
(function () {
  "use strict";
  var FIRST_MS = 150;
  var GAP_MS = 1000;
  var regions = new Map();  // key -> {timer, last, issue, elt, type, pass, due}

  function keyOf(elt) {
    return elt.getAttribute("hx-target") || (elt.id ? "#" + elt.id : elt.getAttribute("hx-get") || "");
  }

  function fromStream(ev) { return !!ev && typeof ev.type === "string" && ev.type.indexOf("sse:") === 0; }

  // The live element that stands for a region now (its old one may have been replaced).
  function successor(key) {
    return Array.prototype.find.call(document.querySelectorAll("[hx-trigger*='sse:']"),
                                     function (x) { return keyOf(x) === key; });
  }

  document.addEventListener("htmx:confirm", function (e) {
    var ev = e.detail && e.detail.triggeringEvent;
    if (!fromStream(ev)) { return; }
    var elt = e.detail.elt;
    var key = keyOf(elt);
    var st = regions.get(key);
    if (!st) { st = {timer: null, last: 0, issue: null, elt: null, type: null, pass: false, due: false}; regions.set(key, st); }
    if (st.pass) { st.pass = false; return; }  // the successor's fetch, due now (below)
    e.preventDefault();  // issued below, once, with the latest news
    st.issue = e.detail.issueRequest;
    st.elt = elt;
    st.type = ev.type;
    if (st.timer === null && !st.due) { schedule(key, st); }  // else a fetch is due: it shows this change too
  });

  function schedule(key, st) {
    var wait = Math.max(FIRST_MS, st.last + GAP_MS - Date.now());
    st.timer = window.setTimeout(function () { st.timer = null; fire(key, st); }, wait);
  }

  function fire(key, st) {
    // Replaced meanwhile (its region refreshed itself): its successor fetches instead.
    var elt = document.body.contains(st.elt) ? st.elt : successor(key);
    if (!elt) { return; }
    if (elt.nuboBusy) {
      // Its own fetch is still out. htmx would queue this one on the element and drop it if
      // that answer replaces the element (outerHTML), losing the change: it waits instead,
      // and goes once that fetch ends (htmx:afterRequest below).
      st.due = true;
      elt.classList.add("live-due");
      return;
    }
    st.last = Date.now();
    if (elt === st.elt) { st.issue(true); return; }
    st.pass = true;
    htmx.trigger(elt, st.type);
  }

  // A live element's fetches, whatever started them (the stream, a poll, a load): marked out
  // from the moment the request is sent until htmx is done with its answer. afterRequest comes
  // on the element's closest remaining parent when the answer replaced it (htmx's own rule),
  // so a listener on the document hears it either way; requestConfig.elt names the element
  // (detail.elt is the one the event came on).
  document.addEventListener("htmx:beforeSend", function (e) {
    var elt = e.detail.elt;
    if (elt && (elt.getAttribute("hx-trigger") || "").indexOf("sse:") >= 0) { elt.nuboBusy = true; }
  });
  function done(e) {
    var elt = e.detail.requestConfig && e.detail.requestConfig.elt;
    if (!elt || !elt.nuboBusy) { return; }
    elt.nuboBusy = false;
    elt.classList.remove("live-due");
    var key = keyOf(elt);
    var st = regions.get(key);
    // FIRST_MS at least: a successor is wired to the stream only once htmx settles it.
    if (st && st.due && st.timer === null) { st.due = false; schedule(key, st); }
  }
  document.addEventListener("htmx:afterRequest", done);
  document.addEventListener("htmx:onLoadError", done);  // its swap threw: no afterRequest then

  // A stream-driven fetch asked for the region as it was when the fetch left. If the user
  // changed the region meanwhile (sorted, searched, paged: another request swapped it), that
  // answer is stale in what it shows and in the address it would put in the bar: it is
  // dropped, and the region's successor fetches again with the user's choice. The check sits
  // on the live element itself: once its region is replaced it is out of the document, and
  // its events no longer reach a listener on the document.
  var swaps = new WeakMap();  // target element -> swaps by requests not from the stream
  document.addEventListener("htmx:afterSwap", function (e) {
    var d = e.detail;
    if (!fromStream(d.requestConfig && d.requestConfig.triggeringEvent)) {
      swaps.set(d.target, (swaps.get(d.target) || 0) + 1);
    }
  });
  function dropStale(e) {
    var d = e.detail;
    if (d.xhr.nuboSwaps === undefined) { return; }
    if (document.body.contains(d.target) && (swaps.get(d.target) || 0) === d.xhr.nuboSwaps) { return; }
    e.preventDefault();  // htmx stops there: no swap, no history entry
    var next = successor(keyOf(d.elt));
    if (next) { htmx.trigger(next, d.requestConfig.triggeringEvent.type); }
  }
  document.addEventListener("htmx:beforeRequest", function (e) {
    var d = e.detail;
    if (!fromStream(d.requestConfig && d.requestConfig.triggeringEvent)) { return; }
    d.xhr.nuboSwaps = swaps.get(d.target) || 0;
    if (!d.elt.nuboGuarded) { d.elt.nuboGuarded = true; d.elt.addEventListener("htmx:beforeOnLoad", dropStale); }
  });
})();

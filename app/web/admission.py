"""Admission: at most NUBO_WEB_ACTIVE requests of a web process run at once (default 4); the
others wait for a turn, in order of arrival, without taking CPU.

A web process has NUBO_WEB_THREADS threads (32) so that the live pages' streams fit (each
holds a thread while it is open). But Python runs one thread at a time: 32 requests let in
together are sliced against each other every few milliseconds (the GIL), so each takes about
as long as all of them, and the switching costs CPU of its own. With 50 API clients on two
cores (bench/RESULTS.md, stack_bench load): 32 requests at once gave p99 629 ms at 183 calls/s,
4 at once 311 ms at 252 calls/s.

A turn covers the view and the building of its answer. A streamed answer (a live page's
server-sent events) gives its turn back when its view returns, before its body is sent, so an
open stream never holds one. A request that waits on something slow (a host that answers in
seconds) holds its turn meanwhile: set NUBO_WEB_ACTIVE higher if such calls are many, or 0
for no limit.
"""
from __future__ import annotations

import os
import threading
from collections import deque


class Admission:
    """WSGI middleware: `app.wsgi_app = Admission(app.wsgi_app, slots)`. Turns are handed over
    in order of arrival (a finishing request gives its turn to the longest waiting one
    directly): with a plain semaphore a request arriving just then could take it first, and
    the waiting ones made the tail (p99 564 ms; first-come first-served: 311 ms)."""

    def __init__(self, wsgi_app, slots: int):
        self.wsgi_app = wsgi_app
        self._lock = threading.Lock()
        self._free = slots
        self._waiting: deque[threading.Lock] = deque()

    def __call__(self, environ, start_response):
        self._take()
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            self._give()

    def _take(self) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        turn.acquire()  # until _give hands this turn over

    def _give(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._free += 1


def install(app) -> None:
    """Limit the app's concurrent requests to NUBO_WEB_ACTIVE (the web process: wsgi.py)."""
    slots = int(os.environ.get("NUBO_WEB_ACTIVE", "4"))
    if slots > 0:
        app.wsgi_app = Admission(app.wsgi_app, slots)

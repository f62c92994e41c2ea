"""GET /stream: the change stream as Server-Sent Events, for the logged-in viewer's eyes only.

Each change the viewer may see (app/services/changes/tail.py Viewer) is sent twice: as the
event named by its kind ("vm", "host", ...; lists listen to it) and as "<kind>-<uuid>" (a
detail page listens to its own thing); the data is the uuid, nothing else: pages re-fetch
their own fragment, through the normal authorization. The SSE id is the change's id, so a
browser that reconnects (Last-Event-ID) gets what it missed. An idle stream sends a comment
every live.heartbeat.seconds; each stream ends after live.stream.seconds (the browser comes
back at once). Each stream holds one of the web process's threads: beyond live.streams.max
at once the answer is 503, and the page refreshes by polling instead (static/js/live.js).
"""
from __future__ import annotations

import queue
import threading
import time

from flask import Blueprint, Response, current_app, request
from flask_login import current_user, login_required

from app.extensions import db
from app.services import settings
from app.services.changes import tail

bp = Blueprint("stream", __name__)

_open = 0
_open_lock = threading.Lock()


def open_streams() -> int:
    return _open


def _take(cap: int) -> bool:
    global _open
    with _open_lock:
        if _open >= cap:
            return False
        _open += 1
        return True


def _give() -> None:
    global _open
    with _open_lock:
        _open -= 1


_stopping = False


def shutdown() -> None:
    """The worker is stopping (gunicorn.conf.py, on SIGTERM): every open stream ends now and
    no new one starts (a browser reconnects at once, maybe on a kept-alive connection), so
    the graceful shutdown does not wait for them; the browsers reconnect elsewhere."""
    global _stopping
    _stopping = True
    tail.stop_all()


def _message(item: tail.Item) -> str:
    data = item.uuid or ""
    return (f"id: {item.id}\nevent: {item.kind}\ndata: {data}\n\n"
            + (f"event: {item.kind}-{item.uuid}\ndata: {data}\n\n" if item.uuid else ""))


@bp.get("/stream")
@login_required
def stream():
    if _stopping or not _take(settings.get("live.streams.max")):
        return Response("Too many live streams on this process; the page refreshes by polling.\n", status=503,
                        mimetype="text/plain", headers={"Retry-After": "60", "Cache-Control": "no-store"})
    try:
        viewer = tail.viewer_for(current_user)
        seconds = settings.get("live.stream.seconds")
        heartbeat = settings.get("live.heartbeat.seconds")
        t = tail.tailer(current_app._get_current_object())
        sub = t.subscribe(viewer)
        try:
            after = int(request.headers.get("Last-Event-ID") or request.args.get("after") or -1)
        except ValueError:
            after = -1
        backlog = t.replay(after, viewer) if after >= 0 else []
        start = t.position()
        db.session.remove()  # nothing held while the stream is open
    except BaseException:
        _give()
        raise

    def events():
        sent = {i.id for i in backlog}
        try:
            # retry: how soon the browser comes back after the stream ends; the id: where a
            # reconnect resumes when nothing has been sent yet (no event is dispatched for it).
            yield f"retry: 1000\nid: {max(start, after, *sent) if sent else max(start, after)}\n\n"
            for item in backlog:
                yield _message(item)
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    item = sub.queue.get(timeout=min(heartbeat, left))
                except queue.Empty:  # a comment, which finds a client that went away
                    yield ": keep-alive\n\n"
                    continue
                if item is None:  # fell behind, or the process stops: the browser resumes
                    return
                if item.id not in sent:
                    yield _message(item)
        finally:
            t.unsubscribe(sub)
            _give()

    return Response(events(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


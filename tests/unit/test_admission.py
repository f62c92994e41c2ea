"""app/web/admission.py: at most N requests run at once, in order; a streamed body is sent
outside the limit."""
from __future__ import annotations

import threading

from app.web.admission import Admission


def test_at_most_n_requests_run_at_once_and_the_others_wait_their_turn():
    running, most, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def app(environ, start_response):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1
        return [b"ok"]

    limited = Admission(app, 2)
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(limited({}, None))) for _ in range(6)]
    for t in threads:
        t.start()
    # Wait on the state, not on time: two requests inside, four waiting at the door.
    for _ in range(1000):
        with lock:
            if running[0] == 2:
                break
        threading.Event().wait(0.01)
    with lock:
        assert running[0] == 2
    release.set()
    for t in threads:
        t.join(10)
    assert answers == [[b"ok"]] * 6 and most[0] == 2


def test_a_streamed_body_gives_its_turn_back_before_it_is_sent():
    sent = threading.Event()

    def stream():
        yield b"data: 1\n\n"
        sent.wait(10)  # an open stream: it would hold the only turn if the limit covered it
        yield b"data: 2\n\n"

    def app(environ, start_response):
        return stream() if environ.get("PATH_INFO") == "/stream" else [b"ok"]

    limited = Admission(app, 1)
    body = limited({"PATH_INFO": "/stream"}, None)
    assert next(iter(body)) == b"data: 1\n\n"
    assert limited({"PATH_INFO": "/page"}, None) == [b"ok"]  # the stream holds no turn
    sent.set()

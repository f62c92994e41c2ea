"""Keep-alive under the real gunicorn (gunicorn.conf.py, as the Procfile's web process):
clients that reuse one connection and poll at 0.5-5 s (Ansible: 2 s) never see a reset,
and each keeps its one connection the whole time. With gunicorn's default 2 s
keep-alive the server closed idle connections just as clients reused them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from app.api.signing import sign
from tests.e2e.conftest import BIN, ROOT, Stack, wait_http

# Its own group: 20 s of mostly waiting, alongside the other tests.
pytestmark = pytest.mark.xdist_group("keepalive")

INTERVALS = (0.5, 1, 2, 3, 5)
# 20 s: four polls on one connection for the slowest client, 40 for the fastest; with gunicorn's
# old 2 s keep-alive every client saw resets within seconds. NUBO_TEST_KEEPALIVE_SECONDS=120
# soaks it longer.
DURATION = float(os.environ.get("NUBO_TEST_KEEPALIVE_SECONDS", "20"))


@pytest.fixture
def web(tmp_path):
    """Only the web process: `flask db upgrade`, `flask bootstrap`, then gunicorn as the Procfile runs it."""
    s = Stack(tmp_path / "instance", {"NUBO_ADMIN_PASSWORD": "keepalive-e2e-pass"})  # the password policy's
    s.flask("db", "upgrade")
    s.flask("bootstrap")
    keys = json.loads(s.flask("user", "keys", "admin").stdout.strip().splitlines()[-1])
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                            env={**s.env, "NUBO_PROCESS": "web"}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_http(s.url + "/healthz")
        yield s.url, keys
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


def _poll(url: str, keys: dict, interval: float) -> tuple[int, list[str], int]:
    """One client: one requests.Session, a signed API call every `interval` seconds.
    Returns (calls, errors, TCP connections used): urllib3 reconnects silently when it
    finds its connection closed while idle, so the local ports tell how often that was."""
    session = requests.Session()
    calls, errors, ports = 0, [], set()
    deadline = time.monotonic() + DURATION
    while time.monotonic() < deadline:
        params = {"command": "listZones", "response": "json", "apiKey": keys["apikey"]}
        params["signature"] = sign(params, keys["secretkey"])
        try:
            resp = session.get(url + "/client/api", params=params, timeout=30, stream=True)
            ports.add(resp.raw.connection.sock.getsockname()[1])  # which TCP connection answered
            if resp.status_code != 200 or "listzonesresponse" not in resp.json():
                errors.append(f"{resp.status_code} {resp.text[:200]}")
        except requests.RequestException as e:
            errors.append(repr(e))
        calls += 1
        time.sleep(interval)  # the client's own poll interval is what is under test
    return calls, errors, len(ports)


def test_persistent_clients_polling_see_no_reset(web):
    url, keys = web
    with ThreadPoolExecutor(len(INTERVALS)) as ex:
        results = dict(zip(INTERVALS, ex.map(lambda i: _poll(url, keys, i), INTERVALS)))
    print({i: (calls, len(errors), conns) for i, (calls, errors, conns) in results.items()})
    for interval, (calls, errors, conns) in results.items():
        assert errors == [], f"every {interval} s: {errors[:3]}"
        assert calls >= DURATION / (interval + 1) - 1
        assert conns == 1, f"every {interval} s: {conns} connections (the server closed idle ones)"

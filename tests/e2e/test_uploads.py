"""Slow uploads cannot starve the web process: the real Procfile (honcho) runs uploads in
their own `upload` process. Trickling clients on loopback hold upload slots while
/healthz and an API call on the web process still answer at once; then the uploads
complete, time out cleanly (408, no partial file, the URL usable again), or were
refused at once when every slot was taken (503) and succeed on retry."""
from __future__ import annotations

import os
import select
import socket
import threading
import time

import pytest
import requests

from tests.e2e.conftest import Stack, wait_http

pytestmark = pytest.mark.xdist_group("uploads")

SLOTS, CLIENTS, IDLE = 6, 10, 3
PAYLOAD = os.urandom(256 << 10)


class Trickle(threading.Thread):
    """A client POSTing PAYLOAD 512 bytes at a time, keeping the last bytes until told to
    finish (send them) or stall (send nothing more)."""

    def __init__(self, url: str, params: dict):
        super().__init__(daemon=True)
        self.url, self.params = url, params
        self.finish, self.stall = threading.Event(), threading.Event()
        self.sent, self.status, self.body, self.answered_after = 0, None, b"", None

    def run(self):
        host, port = self.url.split("//")[1].split("/")[0].split(":")
        t0 = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=60) as s:
            s.sendall((f"POST /upload/template HTTP/1.1\r\nHost: {host}:{port}\r\n"
                       f"Content-Type: application/octet-stream\r\nContent-Length: {len(PAYLOAD)}\r\n"
                       f"X-signature: {self.params['signature']}\r\nX-metadata: {self.params['metadata']}\r\n"
                       f"X-expires: {self.params['expires']}\r\nConnection: close\r\n\r\n").encode())
            while True:
                if select.select([s], [], [], 0.05)[0]:
                    break  # answered before the body was all sent (busy, or timed out)
                if self.finish.is_set():
                    s.sendall(PAYLOAD[self.sent:])
                    self.sent = len(PAYLOAD)
                    break
                if self.stall.is_set():
                    break
                if self.sent < len(PAYLOAD) - 1024:
                    s.sendall(PAYLOAD[self.sent:self.sent + 512])
                    self.sent += 512
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        self.answered_after = time.monotonic() - t0
        head, _, self.body = data.partition(b"\r\n\r\n")
        self.status = int(head.split()[1])


def _state(api, template_id):
    return api.listTemplates(templatefilter="self", id=template_id)["template"][0]


def _wait(predicate, timeout=30.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := predicate()):
            return value
        time.sleep(0.1)
    raise TimeoutError(what)


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path / "instance", {"NUBO_UPLOAD_SLOTS": str(SLOTS),
                                       "NUBO_UPLOAD_IDLE_TIMEOUT": str(IDLE),
                                       "NUBO_ADMIN_PASSWORD": "uploads-e2e-pass"})  # the password policy's
    yield s
    s.discard()


def test_slow_uploads_do_not_starve_the_web_process(stack, tmp_path):
    stack.start()
    upload_base = stack.upload_url
    wait_http(upload_base + "/healthz")
    assert "upload.1 started" in stack.log.read_text()
    api = stack.api()
    z = api.createZone(name="UZ", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2")["zone"]
    api.addImageStore(provider="Local", url=f"file://{tmp_path}/sec", zoneid=z["id"], name="sec")
    params = [api.getUploadParamsForTemplate(name=f"up{i}", displaytext="up", zoneid=z["id"], hypervisor="KVM",
                                             format="RAW")["getuploadparams"] for i in range(CLIENTS)]
    assert {p["postURL"] for p in params} == {upload_base + "/upload/template"}
    # The web process takes no uploads (the signed URL names the upload process).
    p0 = params[0]
    misdirected = requests.post(stack.url + "/upload/template", data=b"x", timeout=10, headers={
        "X-signature": p0["signature"], "X-metadata": p0["metadata"], "X-expires": p0["expires"]})
    assert misdirected.status_code == 421 and upload_base in misdirected.json()["errortext"]
    # The upload process serves nothing else.
    assert requests.get(upload_base + "/login", timeout=10).status_code == 404

    clients = [Trickle(p["postURL"], p) for p in params]
    for c in clients:
        c.start()
    # SLOTS uploads are taken (Downloading), the others refused at once with 503.
    _wait(lambda: sum(_state(api, p["id"])["status"].endswith("% Downloaded") for p in params) == SLOTS,
          what="every slot taken")
    refused = _wait(lambda: [c for c in clients if c.status == 503] if sum(
        c.status == 503 for c in clients) == CLIENTS - SLOTS else None, what="the rest refused")
    slow = [c for c in clients if c not in refused]
    assert all(c.status is None for c in slow) and all(c.answered_after < 10 for c in refused)

    # The web process answers at once meanwhile.
    for _ in range(5):
        t0 = time.monotonic()
        assert requests.get(stack.url + "/healthz", timeout=5).status_code == 200
        assert api.listZones()["count"] == 1
        assert time.monotonic() - t0 < 2.0

    # Half finish; the other half go silent and are ended after IDLE seconds.
    done, stalled = slow[: len(slow) // 2], slow[len(slow) // 2:]
    for c in done:
        c.finish.set()
    for c in stalled:
        c.stall.set()
    for c in clients:
        c.join(timeout=60)
    assert [c.status for c in done] == [200] * len(done), [c.body for c in done]
    assert [c.status for c in stalled] == [408] * len(stalled), [c.body for c in stalled]
    by_url = {c.params["id"]: c for c in clients}
    for c in done:
        row = _wait(lambda: (r := _state(api, c.params["id"]))["isready"] and r, what="ready")
        assert row["size"] == len(PAYLOAD)
    for c in stalled:
        assert _state(api, c.params["id"])["status"].startswith("Failed")
    assert not list((tmp_path / "sec").rglob("*.part"))  # no partial file stays

    # Slots are all free again: the refused and the timed-out ones upload now.
    for c in refused + stalled:
        p = c.params
        ok = requests.post(p["postURL"], data=PAYLOAD, timeout=30, headers={
            "X-signature": p["signature"], "X-metadata": p["metadata"], "X-expires": p["expires"]})
        assert ok.status_code == 200, ok.text
    rows = api.listTemplates(templatefilter="self")["template"]
    assert len(rows) == CLIENTS and all(r["isready"] for r in rows) and len(by_url) == CLIENTS
    # The browser's upload page posts from the portal's origin: CORS preflight answered.
    pre = requests.options(upload_base + "/upload/template", timeout=10, headers={
        "Origin": stack.url, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-signature,x-metadata,x-expires"})
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == "*"

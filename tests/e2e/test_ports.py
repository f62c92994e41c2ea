"""free_port() races: another process may take the port before the child binds
it. Stack.start() and console_proxy() must notice (the child says it holds the
port, or fails with "in use") and retry on new ports, never talk to whoever
squats on the old one."""
import http.server
import re
import socket
import threading

import pytest
import requests

import tests.console_support as console_support
import tests.e2e.conftest as e2e
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.browser


class Squatter(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # answers /login with 200, as wait_http() wants
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not nubo")

    def log_message(self, *args):
        pass


@pytest.fixture
def squatted(monkeypatch):
    """Two taken ports (an HTTP server and a bare listener) that free_port() hands out first."""
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Squatter)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    bare = socket.socket()
    bare.bind(("127.0.0.1", 0))
    bare.listen()
    taken = [web.server_address[1], bare.getsockname()[1]]
    queue, real = list(taken), e2e.free_port
    for module in (e2e, console_support):
        monkeypatch.setattr(module, "free_port", lambda: queue.pop(0) if queue else real())
    yield taken
    web.shutdown()
    web.server_close()
    bare.close()


def test_stack_retries_on_new_ports_when_its_ports_are_taken(squatted, tmp_path):
    stack = Stack(tmp_path / "instance")
    assert [stack.port, stack.console_port] == squatted
    try:
        stack.start()
        assert stack.port not in squatted and stack.console_port not in squatted
        html = requests.get(stack.url + "/login", timeout=10).text
        assert re.search(r'name="csrf-token"', html)  # Nubo's login page, not the squatter
        with socket.create_connection(("127.0.0.1", stack.console_port), timeout=5):
            pass
        assert stack.proc.poll() is None  # every process still up (the console proxy too)
    finally:
        stack.stop()


def test_console_proxy_retries_on_a_new_port(squatted, app, tmp_path):
    with console_support.console_proxy(app.config, tmp_path / "console.log") as port:
        assert port not in squatted
        assert f"proxying from 127.0.0.1:{port}" in (tmp_path / "console.log").read_text()

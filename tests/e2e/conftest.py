"""End-to-end fixtures: the real processes (honcho + Procfile) and Debian's Chromium."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class Stack:
    """`flask db upgrade`, `flask bootstrap`, then `honcho start`, as `make run` does."""

    def __init__(self, instance: Path, extra_env: dict | None = None):
        self.port, self.console_port = free_port(), free_port()
        self.env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
                    "NUBO_INSTANCE_PATH": str(instance), "NUBO_BIND": "127.0.0.1",
                    "NUBO_PORT": str(self.port), "NUBO_CONSOLE_PORT": str(self.console_port),
                    "NUBO_ADMIN_PASSWORD": "e2e-admin-pass", "NUBO_SEED_DEMO": "0",
                    "NUBO_WEB_WORKERS": "1", "NUBO_WORKER_THREADS": "2", **(extra_env or {})}
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = instance / "honcho.log"

    def flask(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, check=True)

    def api(self):
        """The real `cs` client, signed with the admin's keys."""
        import json

        from cs import CloudStack
        keys = json.loads(self.flask("user", "keys", "admin").stdout.strip().splitlines()[-1])
        return CloudStack(endpoint=self.url + "/client/api", key=keys["apikey"], secret=keys["secretkey"])

    def start(self, concurrency: str | None = None) -> float:
        """concurrency: honcho's -c, e.g. "worker=2" for two huey consumer processes."""
        t0 = time.monotonic()
        self.flask("db", "upgrade")
        self.bootstrap_output = self.flask("bootstrap").stdout
        extra = ["-c", concurrency] if concurrency else []
        self.proc = subprocess.Popen([str(BIN / "honcho"), "start", *extra], cwd=ROOT, env=self.env,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_http(self.url + "/login")
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path / "instance")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = ctx.new_page()
    yield pg
    ctx.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

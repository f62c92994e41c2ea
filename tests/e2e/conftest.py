"""End-to-end fixtures: the real processes (honcho + Procfile) and Debian's Chromium."""
from __future__ import annotations

import json
import os
import shutil
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


# What a server prints when its port was taken (gunicorn; websockify / Python).
IN_USE = ("Connection in use", "Address already in use")
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, for a server in ANOTHER process to bind.
    This races (anyone may take it before the child binds), so the caller must
    check that the child really bound it and retry with a new port when it did
    not (Stack.start, console_support.console_proxy). A server in this process
    binds port 0 itself and reads the port back instead. Never the same port
    twice in one test process."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_bound(proc: subprocess.Popen, log: Path, offset: int, lines: list[str], timeout: float = 60.0) -> str | None:
    """Waits until each of `lines` appears in `log` after `offset`: what the child
    prints once it holds its port (so a server of someone else's on the port is
    never taken for ours). None then; if the child exits first, what it logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        if all(line in text for line in lines):
            return None
        if proc.poll() is not None:
            return text
        time.sleep(0.1)
    raise TimeoutError(f"{log}: no {lines} within {timeout}s")


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

    def __init__(self, instance: Path, extra_env: dict | None = None, template: "StackTemplate | None" = None):
        self.env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
                    "NUBO_INSTANCE_PATH": str(instance), "NUBO_BIND": "127.0.0.1",
                    "NUBO_ADMIN_PASSWORD": "e2e-operator-pass", "NUBO_SEED_DEMO": "0",
                    "NUBO_WEB_WORKERS": "1", "NUBO_WORKER_THREADS": "2", **(extra_env or {})}
        self._new_ports()
        self.proc: subprocess.Popen | None = None
        self.instance = instance
        self.log = instance / "honcho.log"
        # An instance already migrated and bootstrapped (the `stack` fixture's): the first start
        # copies it instead of running `flask db upgrade` and `flask bootstrap` again (~6 s).
        # Set it to None for a real first start (tests/e2e/test_processes.py).
        self.template = template
        self._keys: dict | None = None

    def _new_ports(self) -> None:
        self.port, self.console_port, self.upload_port = free_port(), free_port(), free_port()
        self.env.update(NUBO_PORT=str(self.port), NUBO_CONSOLE_PORT=str(self.console_port),
                        NUBO_UPLOAD_PORT=str(self.upload_port))  # the Procfile's upload process
        self.url = f"http://127.0.0.1:{self.port}"
        self.upload_url = f"http://127.0.0.1:{self.upload_port}"

    def flask(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, check=True)

    def api(self):
        """The real `cs` client, signed with the admin's keys."""
        import json

        from cs import CloudStack
        if self._keys is None:  # made once per stack (a template's come with it)
            self._keys = json.loads(self.flask("user", "keys", "admin").stdout.strip().splitlines()[-1])
        keys = self._keys
        # cs polls an async job every 2 s by default; a Simulator job ends in well under that.
        return CloudStack(endpoint=self.url + "/client/api", key=keys["apikey"], secret=keys["secretkey"],
                          poll_interval=0.2)

    def start(self, concurrency: str | None = None) -> float:
        """concurrency: honcho's -c, e.g. "worker=2" for two huey consumer processes."""
        t0 = time.monotonic()
        if self.template is not None and self.template.fits(self.env):
            shutil.copytree(self.template.instance, self.instance, dirs_exist_ok=True)
            self.bootstrap_output, self._keys = self.template.bootstrap_output, self.template.keys
        else:
            done = self.flask("db", "upgrade")
            self.upgrade_output = done.stdout + done.stderr  # alembic logs each migration it runs
            self.bootstrap_output = self.flask("bootstrap").stdout
        self.template = None  # a restart migrates and bootstraps, as `make run` does
        extra = ["-c", concurrency] if concurrency else []
        for _ in range(5):
            offset = self.log.stat().st_size if self.log.exists() else 0
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen([str(BIN / "honcho"), "start", *extra], cwd=ROOT, env=self.env,
                                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            # Ours only once gunicorn and the console proxy say they hold the ports.
            exited = wait_bound(self.proc, self.log, offset,
                                [f"Listening at: {self.url}", f"Listening at: {self.upload_url}",
                                 f"proxying from 127.0.0.1:{self.console_port}"])
            if exited is None:
                wait_http(self.url + "/login")
                return time.monotonic() - t0
            self.stop()
            if not any(m in exited for m in IN_USE):
                raise RuntimeError(f"honcho stopped:\n{exited[-3000:]}")
            self._new_ports()  # someone took a port between free_port() and the bind
        raise RuntimeError("no free ports after 5 attempts")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def discard(self) -> None:
        """The test is over: every process is killed at once. A graceful stop() waits up to 2 s
        for the web process's kept-alive connections (gunicorn's STOP_KEEPALIVE_LINGER), which
        nothing needs at a test's end; the tests of a stop or restart call stop(). honcho starts
        each process in a session of its own, so the whole tree is killed, not honcho's group:
        stopped first, parents before children (a gunicorn master cannot fork a new worker),
        then killed."""
        if self.proc and self.proc.poll() is None:
            tree = [self.proc.pid, *descendants(self.proc.pid)]
            for pid in tree:
                _signal(pid, signal.SIGSTOP)
            tree = [*tree, *descendants(self.proc.pid)]
            for pid in tree:
                _signal(pid, signal.SIGKILL)
            self.proc.wait()
            deadline = time.monotonic() + 10  # killed is not yet gone: wait until each is
            while any(_running(pid) for pid in tree) and time.monotonic() < deadline:
                time.sleep(0.02)
            left = [pid for pid in tree if _running(pid)]
            assert not left, f"stack processes outlived their kill: {left}"  # would load the next tests
        self.proc = None


def _running(pid: int) -> bool:
    """Not gone and not a zombie (an orphan's zombie waits for init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, parents before children (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            out.append(child)
            todo.append(child)
    return out


class StackTemplate:
    """A Stack's instance directory after `flask db upgrade` and `flask bootstrap` with the
    default settings (SQLite, no demo zone), and the admin's API keys, made once per worker."""

    def __init__(self, instance: Path):
        s = Stack(instance)
        s.flask("db", "upgrade")
        self.bootstrap_output = s.flask("bootstrap").stdout
        self.keys = json.loads(s.flask("user", "keys", "admin").stdout.strip().splitlines()[-1])
        self.instance, self.env = instance, s.env

    def fits(self, env: dict) -> bool:
        """The stack would have made the same instance (a test may change its env before start)."""
        return all(env.get(k) == self.env.get(k) for k in self.env if k.startswith("NUBO_") and k not in
                   ("NUBO_INSTANCE_PATH", "NUBO_PORT", "NUBO_CONSOLE_PORT", "NUBO_UPLOAD_PORT")) \
            and not any(k.startswith("NUBO_") and k not in self.env for k in env)


@pytest.fixture(scope="session")
def stack_template(tmp_path_factory) -> StackTemplate:
    return StackTemplate(tmp_path_factory.mktemp("stack-template") / "instance")


@pytest.fixture
def stack(tmp_path, stack_template):
    s = Stack(tmp_path / "instance", template=stack_template)
    yield s
    s.discard()


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory, stack_template):
    """One running stack per worker (default settings) for the browser tests that need no fresh
    cloud: each changes only what no other of them looks at (the login page with a wrong password,
    the Custom hypervisor's name, one setting, offerings in domains of its own). Started already;
    saves a start (~10-15 s) per test."""
    s = Stack(tmp_path_factory.mktemp("shared-stack") / "instance", template=stack_template)
    s.start()
    yield s
    s.discard()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import expect, sync_playwright
    # Playwright's expect() gives up after 5 s by default: on two busy cores a page
    # can take longer to show a state it will reach. Waits stay on the state.
    expect.set_options(timeout=90_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


# Every page reports what the Content-Security-Policy blocked: Chromium logs each
# violation on the console and fires securitypolicyviolation (the init script runs
# outside the page's CSP, as the browser's own, so the policy cannot silence it).
CSP_REPORTER = """document.addEventListener('securitypolicyviolation', e => console.error(
  'CSP violation: ' + e.effectiveDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' +
  e.sourceFile + ':' + e.lineNumber + ' (' + (e.sample || '') + ') on ' +
  (e.target && e.target.outerHTML ? e.target.outerHTML.slice(0, 160) : String(e.target))), true);"""


def watch_csp(ctx, seen: list[str] | None = None) -> list[str]:
    """The CSP violations of every page of a browser context, as they happen."""
    seen = [] if seen is None else seen
    ctx.add_init_script(CSP_REPORTER)

    def on_console(msg):
        text = msg.text
        if msg.type == "error" and ("CSP violation" in text or "Content Security Policy" in text):
            seen.append(f"{msg.page.url if msg.page else '?'}: {text}")
    ctx.on("console", on_console)
    return seen


def assert_no_csp_violations(seen: list[str]) -> None:
    assert not seen, "Content-Security-Policy violations:\n" + "\n".join(seen)


@pytest.fixture
def csp_violations() -> list[str]:
    """What the CSP blocked on the `page` fixture's pages (checked empty at its end)."""
    return []


@pytest.fixture
def page(browser, csp_violations):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    seen = watch_csp(ctx, csp_violations)
    pg = ctx.new_page()
    # The state a page shows is waited on, never a time: the limit only ends a run
    # that truly hangs, and is generous so that two busy cores never reach it.
    ctx.set_default_timeout(90_000)
    yield pg
    ctx.close()
    assert_no_csp_violations(seen)


def htmx_settled(page) -> None:
    """Wait until htmx has finished its swaps: new content becomes live (hx-* processed)
    only when it settles, so a click on a just-swapped-in link or button before then
    is a plain navigation. The state on the page, not a time."""
    from playwright.sync_api import expect
    expect(page.locator(".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added")).to_have_count(0)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def nav_link(page, name: str):
    """The sidebar's link `name` (templates/base.html), made visible: its group is opened,
    and on a phone the Menu too, as a person would before clicking it."""
    import re
    link = page.locator("nav.mainnav a").filter(has_text=re.compile(rf"^\s*{re.escape(name)}\s*$")).first
    link.evaluate("a => { for (let d = a.closest('details'); d; d = d.parentElement.closest('details')) d.open = true; }")
    return link

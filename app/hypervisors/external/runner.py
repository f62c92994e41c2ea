"""Runs an extension's executable exactly as CloudStack 4.21's ExternalPathPayloadProvisioner
does: `<path> <action> <payload.json> <timeout-seconds>`, no stdin, stdout and stderr merged,
killed at the timeout. Exit 0 is success; anything else is a failure reported with the exit
code and the output ("Exit code: N, Output: ..."); a call killed at its timeout is "Timeout".

The payload file is written 0600 (O_EXCL, never following a link) in the extension's own
payload directory (0700). As CloudStack's deleteExtensionPayloadFile, only a successful call
of a trivial action (`status`, the monitor's many calls) has its file removed at once; every
other call's is kept (for the extension to read back, and for diagnosis) until sweep() finds
it older than the keep time. A dumb executor: the caller decided everything."""
from __future__ import annotations

import json
import os
import signal
import threading
import subprocess
import time
import uuid as uuidlib
from dataclasses import dataclass

# Actions whose payload file goes as soon as they succeed (ExternalPathPayloadProvisioner's
# TRIVIAL_ACTIONS).
TRIVIAL_ACTIONS = ("status",)

# The output kept from one call (an extension printing without end is cut, not buffered whole).
MAX_OUTPUT = 1 << 20


@dataclass(frozen=True)
class Call:
    path: str  # the executable, already checked by the service (inside its directory, executable)
    action: str  # prepare, create, start, stop, reboot, delete, status, getconsole, or a custom action
    payload: dict
    timeout: int  # seconds
    payload_dir: str  # <extensions payload directory>/<extension name>


@dataclass(frozen=True)
class Result:
    ok: bool
    output: str  # stdout+stderr, stripped
    exit_code: int | None = None  # None: it never finished (timeout) or never ran
    timed_out: bool = False
    kept_payload: str | None = None  # the payload file left behind (every call but a successful status)

    @property
    def message(self) -> str:
        """CloudStack's wording of a failure."""
        if self.timed_out:
            return "Timeout"
        if self.exit_code is None:
            return self.output
        return f"Exit code: {self.exit_code}, Output: {self.output}"


def write_payload(payload_dir: str, action: str, payload: dict) -> str:
    os.makedirs(payload_dir, mode=0o700, exist_ok=True)
    os.chmod(payload_dir, 0o700)
    path = os.path.join(payload_dir, f"{action}-{uuidlib.uuid4().hex}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    return path


def _read_capped(stream) -> str:
    data = stream.read(MAX_OUTPUT)
    while stream.read(65536):  # drain the rest so the process is never blocked on a full pipe
        pass
    return data.decode("utf-8", "replace")


def run(call: Call) -> Result:
    try:
        payload_file = write_payload(call.payload_dir, call.action, call.payload)
    except OSError as e:
        return Result(False, f"The payload file could not be written: {e.strerror}")
    try:
        proc = subprocess.Popen([call.path, call.action, payload_file, str(call.timeout)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    except OSError as e:
        return Result(False, f"The extension could not be run: {e.strerror}", kept_payload=payload_file)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(_read_capped(proc.stdout)), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=call.timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        reader.join(5)
        return Result(False, (out[0] if out else "").strip(), timed_out=True, kept_payload=payload_file)
    reader.join(5)  # a child that kept the pipe open is killed with its group below
    if reader.is_alive():
        _kill(proc)
        reader.join(5)
    output = (out[0] if out else "").strip()
    if proc.returncode != 0:
        return Result(False, output, exit_code=proc.returncode, kept_payload=payload_file)
    if call.action in TRIVIAL_ACTIONS:
        _remove(payload_file)
        return Result(True, output, exit_code=0)
    return Result(True, output, exit_code=0, kept_payload=payload_file)


def _kill(proc: subprocess.Popen) -> None:
    """The whole process group (a shell script's children too), at once."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def sweep(payload_dir: str, keep_seconds: float, now: float | None = None) -> int:
    """Remove payload files older than keep_seconds."""
    now = now or time.time()
    removed = 0
    try:
        names = os.listdir(payload_dir)
    except FileNotFoundError:
        return 0
    for name in names:
        if not name.endswith(".json"):
            continue
        path = os.path.join(payload_dir, name)
        try:
            if now - os.lstat(path).st_mtime > keep_seconds:
                os.unlink(path)
                removed += 1
        except FileNotFoundError:
            pass
    return removed

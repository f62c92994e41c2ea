"""How the host-side executor reaches a host: run a command, write a file. LocalChannel runs
on this machine (a libvirt URI without a remote host, e.g. qemu:///system); SSHChannel (in
ssh.py) reaches a remote KVM host as CloudStack's KVM discoverer does. Commands are argv lists,
never shell strings, so nothing from the database is ever interpreted by a shell."""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass


class ChannelError(Exception):
    """A command failed or the host could not be reached; the message says which and why."""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


class Channel:
    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float = 30) -> Result:
        raise NotImplementedError

    def write_file(self, path: str, data: str, mode: int = 0o644) -> None:
        """Write atomically (temporary file + rename), making the directory if missing."""
        raise NotImplementedError

    def read_file(self, path: str) -> str | None:
        """The file's text, None when it does not exist."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalChannel(Channel):
    def run(self, argv, *, input=None, check=True, timeout=30):
        try:
            p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ChannelError(f"{argv[0]}: {e}") from None
        if check and p.returncode != 0:
            raise ChannelError(f"{' '.join(argv)}: {(p.stderr or p.stdout).strip()[:500]}")
        return Result(p.returncode, p.stdout, p.stderr)

    def write_file(self, path, data, mode=0o644):
        d = os.path.dirname(path)
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def read_file(self, path):
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return None

"""SSHChannel against a real OpenSSH server started by the test on 127.0.0.1 (a free port, its
own host key and authorized_keys in a temporary directory; Debian openssh-server)."""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from tests.helpers import requires

from app.network.host.channel import ChannelError
from app.network.host.ssh import SSHChannel

SSHD = "/usr/sbin/sshd"

@pytest.fixture(autouse=True, scope="module")
def _tools():
    requires.need(SSHD, "ssh-keygen", why="scripts/sysdeps.sh test installs openssh-server")



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path, kind="ed25519") -> tuple[str, str]:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path.read_text(), (path.parent / (path.name + ".pub")).read_text()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o700)
    _, host_pub = _keygen(d / "host_key")
    client_key, client_pub = _keygen(d / "client_key")
    (d / "authorized_keys").write_text(client_pub)
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n"
        f"PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "Subsystem sftp internal-sftp\n")
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not start: {proc.stderr.read().decode()[-500:]}")
            time.sleep(0.05)
    try:
        yield {"port": port, "host_key": host_pub, "client_key": client_key, "dir": d}
    finally:
        proc.terminate()
        proc.wait(5)


def _channel(sshd, **kw) -> SSHChannel:
    args = dict(port=sshd["port"], username="root", private_key_pem=sshd["client_key"],
                known_host_key=sshd["host_key"])
    args.update(kw)
    return SSHChannel("127.0.0.1", **args)


def test_run_write_read(sshd, tmp_path):
    ch = _channel(sshd)
    try:
        r = ch.run(["printf", "%s|", "a b", "$(id)", "it's"])
        assert r.returncode == 0 and r.stdout == "a b|$(id)|it's|"  # quoted: no shell expansion
        assert ch.run(["cat"], input="through stdin").stdout == "through stdin"
        assert ch.run(["false"], check=False).returncode == 1
        with pytest.raises(ChannelError, match="ls"):
            ch.run(["ls", str(tmp_path / "nope")])
        path = str(tmp_path / "sub" / "dir" / "file.conf")
        ch.write_file(path, "hello\nworld\n", mode=0o600)
        assert open(path).read() == "hello\nworld\n"
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".tmp-")]
        assert ch.read_file(path) == "hello\nworld\n"
        assert ch.read_file(str(tmp_path / "missing")) is None
        # One SFTP session for every file; the directory made once, and again when it went.
        session = ch._sftp()
        ch.write_file(path, "again\n")
        assert ch._sftp() is session and open(path).read() == "again\n"
        ch.run(["rm", "-rf", str(tmp_path / "sub")])
        ch.write_file(path, "after rm\n")
        assert open(path).read() == "after rm\n"
    finally:
        ch.close()
        ch.close()


def test_wrong_or_missing_host_key_refused(sshd, tmp_path):
    _, other_pub = _keygen(tmp_path / "other")
    ch = _channel(sshd, known_host_key=other_pub)
    with pytest.raises(ChannelError, match="not the pinned one"):
        ch.run(["true"])
    with pytest.raises(ChannelError, match="pinned"):
        _channel(sshd, known_host_key="")
    with pytest.raises(ChannelError, match="not a valid SSH public key|'<type> <base64>'"):
        _channel(sshd, known_host_key="ssh-ed25519 !!!")


def test_bad_credentials_and_unreachable(sshd, tmp_path):
    wrong, _ = _keygen(tmp_path / "wrong")
    with pytest.raises(ChannelError, match="refused the SSH credentials"):
        _channel(sshd, private_key_pem=wrong).run(["true"])
    with pytest.raises(ChannelError, match="Cannot reach"):
        _channel(sshd, port=_free_port()).run(["true"])


def test_libvirt_driver_runs_network_steps_over_ssh(sshd, tmp_path):
    """A qemu+ssh:// host's network steps go through SSHChannel with the host's fields."""
    from app.hypervisors.base import AuthenticationFailed, HostConnection, HostUnreachable
    from app.hypervisors.libvirt.types import KVM

    def driver(host_key: str, port: int | None = None):
        return KVM.make_driver(HostConnection(
            url=f"qemu+ssh://root@127.0.0.1:{port or sshd['port']}/system", address="127.0.0.1",
            fields={"ssh_private_key": sshd["client_key"], "ssh_host_key": host_key}))

    d = driver(sshd["host_key"])
    try:
        assert d.check_labels(["lo", "nolabel0"]) == ["nolabel0"]
    finally:
        d.close()
    _, other_pub = _keygen(tmp_path / "other")
    with pytest.raises(AuthenticationFailed, match="pinned"):
        driver(other_pub).check_labels(["lo"])
    with pytest.raises(HostUnreachable):
        driver(sshd["host_key"], port=_free_port()).check_labels(["lo"])

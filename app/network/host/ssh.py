"""SSHChannel: the host channel to a remote KVM host, as CloudStack's KVM discoverer reaches
its hosts. paramiko (a maintained SSH client with host-key checking) does the protocol; the
host key is pinned: an unknown or changed key is refused before any credential is sent.

Commands are argv lists joined with shlex.quote, so the remote shell sees each value as one
word and interprets nothing; files are written over SFTP to a temporary name and renamed."""
from __future__ import annotations

import base64
import io
import posixpath
import shlex
import socket
import threading
import uuid

import paramiko

from app.network.host.channel import Channel, ChannelError, Result

_KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def parse_host_key(text: str) -> paramiko.PKey:
    """A pinned host key: "<type> <base64>" (a known_hosts or .pub line; a leading host name
    and any comment are ignored)."""
    parts = (text or "").split()
    for i, p in enumerate(parts[:-1]):
        if p.startswith(("ssh-", "ecdsa-")):
            try:
                return paramiko.PKey.from_type_string(p, base64.b64decode(parts[i + 1]))
            except Exception as e:  # binascii.Error, paramiko.SSHException, UnknownKeyType
                raise ChannelError(f"The pinned host key is not a valid SSH public key: {e}") from None
    raise ChannelError("The pinned host key is not '<type> <base64>' (e.g. a line of ssh-keyscan)")


def load_private_key(pem: str, password: str | None = None) -> paramiko.PKey:
    for cls in _KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(pem), password=password or None)
        except paramiko.SSHException:
            continue
    raise ChannelError("The SSH private key is not an Ed25519, ECDSA or RSA key Nubo can read")


class SSHUnreachable(ChannelError):
    """The host did not answer on its SSH port."""


class SSHRefused(ChannelError):
    """The host refused the credentials, or offered a host key that is not the pinned one."""


class _Pinned(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        raise SSHRefused(f"{hostname} offered an SSH host key that is not the pinned one "
                           f"({key.get_name()} {key.fingerprint}): refusing to connect")


class SSHChannel(Channel):
    def __init__(self, host: str, port: int = 22, username: str = "root", *, private_key_pem: str | None = None,
                 password: str | None = None, known_host_key: str, timeout: float = 15):
        if not known_host_key:
            raise ChannelError(f"No pinned SSH host key for {host}: Nubo never trusts an unknown host key")
        self.host, self.port, self.username = host, int(port), username
        self._pkey = load_private_key(private_key_pem) if private_key_pem else None
        self._password = password
        self._host_key = parse_host_key(known_host_key)
        self._timeout = timeout
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()
        # One SFTP session per connection and the directories already made: writing a router's
        # files would otherwise cost two more round trips per file (mkdir, a new session).
        self._sftp_client: paramiko.SFTPClient | None = None
        self._sftp_lock = threading.RLock()
        self._dirs: set[str] = set()

    def _connect(self) -> paramiko.SSHClient:
        with self._lock:
            if self._client is not None and self._client.get_transport() is not None \
                    and self._client.get_transport().is_active():
                return self._client
            client = paramiko.SSHClient()
            name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
            # The only key this client knows is the pinned one; anything else hits _Pinned.
            client.get_host_keys().add(name, self._host_key.get_name(), self._host_key)
            client.set_missing_host_key_policy(_Pinned())
            try:
                client.connect(self.host, port=self.port, username=self.username, pkey=self._pkey,
                               password=self._password, timeout=self._timeout, banner_timeout=self._timeout,
                               auth_timeout=self._timeout, look_for_keys=False, allow_agent=False)
            except ChannelError:
                client.close()
                raise
            except paramiko.BadHostKeyException as e:
                client.close()
                raise SSHRefused(f"{self.host} offered an SSH host key that is not the pinned one "
                                   f"({e.key.get_name()} {e.key.fingerprint}): refusing to connect") from None
            except paramiko.AuthenticationException as e:
                client.close()
                raise SSHRefused(f"{self.username}@{self.host} refused the SSH credentials: {e}") from None
            except (OSError, socket.timeout, paramiko.SSHException) as e:
                client.close()
                raise SSHUnreachable(f"Cannot reach {self.host}:{self.port} over SSH: {e}") from None
            self._client = client
            return client

    def run(self, argv, *, input=None, check=True, timeout=30):
        command = " ".join(shlex.quote(str(a)) for a in argv)
        client = self._connect()
        try:
            stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
            if input is not None:
                stdin.write(input)
            stdin.channel.shutdown_write()
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            rc = stdout.channel.recv_exit_status()
        except (OSError, socket.timeout, paramiko.SSHException) as e:
            raise ChannelError(f"{argv[0]} on {self.host}: {e}") from None
        if check and rc != 0:
            raise ChannelError(f"{' '.join(argv)} on {self.host}: {(err or out).strip()[:500]}")
        return Result(rc, out, err)

    def _sftp(self) -> paramiko.SFTPClient:
        """The connection's SFTP session (opened again after the connection was)."""
        client = self._connect()
        sftp = self._sftp_client
        if sftp is not None and sftp.get_channel() is not None and not sftp.get_channel().closed \
                and sftp.get_channel().get_transport() is client.get_transport():
            return sftp
        try:
            self._sftp_client = client.open_sftp()
        except (OSError, paramiko.SSHException) as e:
            raise ChannelError(f"SFTP to {self.host}: {e}") from None
        self._dirs.clear()
        return self._sftp_client

    def write_file(self, path, data, mode=0o644):
        d = posixpath.dirname(path)
        tmp = posixpath.join(d, f".tmp-{uuid.uuid4().hex[:12]}")
        with self._sftp_lock:
            sftp = self._sftp()
            if d not in self._dirs:
                self.run(["mkdir", "-p", d])
                self._dirs.add(d)
            try:
                try:
                    f = sftp.open(tmp, "w")
                except FileNotFoundError:  # removed since (a router destroyed): made again
                    self.run(["mkdir", "-p", d])
                    f = sftp.open(tmp, "w")
                with f:
                    f.write(data.encode())
                sftp.chmod(tmp, mode)
                sftp.posix_rename(tmp, path)
            except (OSError, paramiko.SSHException) as e:
                try:
                    sftp.remove(tmp)
                except (OSError, paramiko.SSHException):
                    pass
                raise ChannelError(f"Cannot write {path} on {self.host}: {e}") from None

    def read_file(self, path):
        with self._sftp_lock:
            sftp = self._sftp()
            try:
                with sftp.open(path, "r") as f:
                    return f.read().decode()
            except FileNotFoundError:
                return None
            except (OSError, paramiko.SSHException) as e:
                raise ChannelError(f"Cannot read {path} on {self.host}: {e}") from None

    def close(self) -> None:
        with self._sftp_lock:
            if self._sftp_client is not None:
                try:
                    self._sftp_client.close()
                except (OSError, paramiko.SSHException):
                    pass
                self._sftp_client = None
            self._dirs.clear()
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

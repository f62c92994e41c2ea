"""The one libvirt driver, shared by KVM, Xen (libxl), LXC, OpenVZ and Custom.

Everything type-specific comes from the host's resolved Flavour (flavours.py);
the domain XML from domain_xml.py. libvirtError never leaves this module: it is
translated into base.py's exceptions with a message fit for an admin.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import logging
import os
import shutil
import socket
import threading
import time
import xml.etree.ElementTree as ET
from typing import Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import libvirt

from app.hypervisors.base import (
    AuthenticationFailed, ConsoleKind, ConsoleTarget, DiskSpec, Driver, DriverContext, DriverError,
    HostConnection, HostFacts, HostStats, HostUnreachable, MigrationProgress, MigrationSpec, OperationFailed,
    OperationNotSupported,
    OperationTimedOut, PoolInfo, PowerState, StoragePoolSpec, TemplateSource, VMInfo, VMNotFound, VMSnapshotInfo,
    VMSnapshotSpec, VMSpec, VMStats, VolumeInfo, VolumeSpec, WrongHypervisor,
)
from app.hypervisors.libvirt import domain_xml as dx
from app.hypervisors.libvirt import flavours
from app.hypervisors.libvirt.flavours import Flavour
from app.network.host import secgroups, segments
from app.network.host.channel import Channel, ChannelError, LocalChannel
from app.network.host.specs import RouterFacts, RouterSpec, SegmentSpec, VmRuleset

log = logging.getLogger("nubo.hypervisors.libvirt")

# libvirt prints every error to stderr by default; we translate them instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

DEFAULT_IMAGES_DIR = "/var/lib/libvirt/images"
MIGRATION_POLL_SECONDS = 0.5  # how often a running migration's statistics are read
MIGRATION_ABORT_SECONDS = 60.0  # how long an aborted migration may take to let go

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.UNKNOWN,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,  # running, waiting on I/O
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.STOPPING,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.STOPPED,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.PAUSED,
}
# Lifecycle events -> the state the VM is now in (DEFINED/UNDEFINED change no state).
_EVENT_STATES = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_RESUMED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: PowerState.STOPPING,
    libvirt.VIR_DOMAIN_EVENT_STOPPED: PowerState.STOPPED,
    libvirt.VIR_DOMAIN_EVENT_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: PowerState.PAUSED,
}
_AUTH_ERRORS = {libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_CANCELLED,
                getattr(libvirt, "VIR_ERR_AUTH_UNAVAILABLE", -1)}
_UNREACHABLE_ERRORS = {libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_SYSTEM_ERROR,
                       libvirt.VIR_ERR_INTERNAL_ERROR}
_UNSUPPORTED_ERRORS = {libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
                       libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED}
_MISSING_POOL_OR_VOL = {libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL}
# Seconds a remote host's libvirt port (or SSH) gets to answer a connection (_check_reachable).
CONNECT_TIMEOUT = 5.0
_TRANSPORT_PORTS = {"ssh": 22, "libssh2": 22, "libssh": 22, "tcp": 16509, "tls": 16514, "": 16514}
# HA heartbeats on shared primary storage: scripts/host/nubo-heartbeat.sh on each host writes
# <pool target>/nubo-ha/hb-<the host's address>; a neighbour reads them (heartbeat_age).
HA_DIR = "nubo-ha"


def heartbeat_file(host_key: str) -> str:
    """The heartbeat file's name for a host (the writer script makes the same)."""
    return "hb-" + re.sub(r"[^A-Za-z0-9._:-]", "_", host_key)


def translate(e: libvirt.libvirtError, what: str) -> DriverError:
    """A libvirtError as the driver layer's exception."""
    code = e.get_error_code()
    msg = f"{what}: {e.get_error_message() or e}"
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return VMNotFound(msg)
    if code in _AUTH_ERRORS:
        return AuthenticationFailed(msg)
    if code in _UNSUPPORTED_ERRORS:
        return OperationNotSupported(msg)
    if code in (libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_ERR_AGENT_UNRESPONSIVE):
        return OperationTimedOut(msg)
    if code in (libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT):
        return HostUnreachable(msg)
    return OperationFailed(msg)


@contextlib.contextmanager
def _libvirt(what: str) -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as e:
        raise translate(e, what) from None


# --- The process-wide event loop (libvirt needs exactly one) -------------------

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and run it on a daemon
    thread, once per process. Only connections opened afterwards get events."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # never let the loop die
                    log.exception("libvirt event loop")
                    time.sleep(1)

        _loop_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _loop_thread.start()


_PRIVATE_TMP: str | None = None


def _private_tmp() -> str:
    """A 0700 directory of this process for drivers made without an instance path."""
    global _PRIVATE_TMP
    if _PRIVATE_TMP is None:
        import tempfile
        _PRIVATE_TMP = tempfile.mkdtemp(prefix="nubo-driver-")
    return _PRIVATE_TMP


def _known_hosts_line(host: str, port: int | None, pinned: str) -> str:
    """One OpenSSH known_hosts line for the pinned key ("<type> <base64>", a leading host
    name or a trailing comment dropped)."""
    words = pinned.split()
    i = next((n for n, w in enumerate(words[:-1]) if w.startswith(("ssh-", "ecdsa-"))), 0)
    name = host if not port or port == 22 else f"[{host}]:{port}"
    return f"{name} {words[i]} {words[i + 1] if i + 1 < len(words) else ''}\n"


class LibvirtDriver(Driver):
    """One host reached by a libvirt URI. `flavour` is the type's base flavour
    (the type passes it through make_driver); it is resolved against the host on
    first connection."""

    def __init__(self, conn: HostConnection, context: DriverContext | None = None,
                 flavour: Flavour | None = None):
        super().__init__(conn, context)
        self.base_flavour = flavour or flavours.KVM
        self._conn: libvirt.virConnect | None = None
        self._flavour: Flavour | None = None
        self._events_conn: libvirt.virConnect | None = None
        self._event_ids: list[int] = []
        self._cpu_sample: tuple[float, int, int] | None = None
        self._closed = False
        self._channel: Channel | None = None

    # --- connection ---------------------------------------------------------

    @property
    def uri(self) -> str:
        return self.conn.url

    def _open(self) -> libvirt.virConnect:
        flavours.check_uri(self.base_flavour, self.uri, testing=self.context.testing)
        fields = self.conn.fields
        username, password = fields.get("username") or "", fields.get("password") or ""

        def request_cred(creds, _opaque):
            for cred in creds:
                if cred[0] == libvirt.VIR_CRED_AUTHNAME:
                    cred[4] = username or cred[3]
                elif cred[0] in (libvirt.VIR_CRED_PASSPHRASE, libvirt.VIR_CRED_NOECHOPROMPT):
                    cred[4] = password
            return 0

        auth = [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE, libvirt.VIR_CRED_NOECHOPROMPT],
                request_cred, None]
        self._check_reachable()
        try:
            conn = libvirt.openAuth(self._uri_with_key(), auth, 0)
        except libvirt.libvirtError as e:
            code, text = e.get_error_code(), (e.get_error_message() or str(e))
            if code in _AUTH_ERRORS or "authentication" in text.lower() or "permission denied" in text.lower():
                raise AuthenticationFailed(f"{self.conn.address} refused the credentials: {text}") from None
            if code == libvirt.VIR_ERR_NO_CONNECT and "no connection driver" in text:
                err = HostUnreachable(f"This libvirt has no driver for {self.uri} ({text})")
                err.no_driver = True  # check_host may know better: another hypervisor runs here
                raise err from None
            if code in _UNREACHABLE_ERRORS or code == libvirt.VIR_ERR_NO_CONNECT:
                raise HostUnreachable(f"Cannot reach {self.conn.address}: {text}") from None
            raise translate(e, f"Cannot connect to {self.conn.address}") from None
        if not flavours.is_local_uri(self.uri):
            with contextlib.suppress(libvirt.libvirtError):
                conn.setKeepAlive(5, 3)
        return conn

    def _check_reachable(self) -> None:
        """A remote host's port answers within CONNECT_TIMEOUT, or HostUnreachable. libvirt's
        remote transports have no connect timeout: a host whose power was cut while its address
        was still in the ARP cache held a ping (and the monitor's sweep, and so HA) for the ~70 s
        of TCP's SYN retries (seen in the lab, scripts/lab.sh fail)."""
        parts = urlsplit(self.uri)
        transport = parts.scheme.partition("+")[2]
        port = parts.port or _TRANSPORT_PORTS.get(transport)
        if not parts.hostname or port is None:
            return  # local, or a transport without a TCP port of its own (unix, ext)
        try:
            socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT).close()
        except OSError as e:
            raise HostUnreachable(f"Cannot reach {self.conn.address}: port {port} does not answer "
                                  f"({e.strerror or e})") from None

    def _uri_with_key(self) -> str:
        """The URI libvirt opens. An SSH private key given in the form is written to a
        private file under the instance path and handed to libvirt's SSH transports as
        keyfile=. With a pinned host key (ssh_host_key, unless the check is off) a
        qemu+ssh:// URI is opened over libvirt's libssh2 transport with a known_hosts
        file holding only that key: the ssh transport runs OpenSSH, which reads only the
        Nubo user's ~/.ssh/known_hosts, so the pinned key would not be checked (a new
        host would be refused, or accepted blindly with no_verify=1). Not the libssh
        transport: in libvirt 9.0 its replies of some kilobytes stall (getCapabilities
        never returned in a lab host, scripts/lab.sh)."""
        key = (self.conn.fields.get("ssh_private_key") or "").strip()
        pinned = (self.conn.fields.get("ssh_host_key") or "").strip()
        parts = urlsplit(self.uri)
        scheme, _, transport = parts.scheme.partition("+")
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "keyfile"]
        verify = self.conn.fields.get("ssh_host_key_check") != "off" and ("no_verify", "1") not in query
        if transport == "ssh" and pinned and verify:
            transport = "libssh2"
            query = [(k, v) for k, v in query if k not in ("no_tty", "no_verify", "known_hosts",
                                                          "known_hosts_verify")]
            query.append(("known_hosts", self._private_file("known_hosts", _known_hosts_line(
                parts.hostname or self.conn.address, parts.port, pinned))))
            query.append(("known_hosts_verify", "normal"))
            if key:
                query.append(("sshauth", "privkey"))
        elif not key or "ssh" not in transport:
            return self.uri
        if key:
            query.append(("keyfile", self._private_file("id", key + "\n")))
        return urlunsplit(parts._replace(scheme=f"{scheme}+{transport}", query=urlencode(query)))

    def _private_file(self, prefix: str, text: str) -> str:
        """A file only the Nubo user reads, under the instance path, named by its content."""
        keydir = os.path.join(self.context.instance_path or _private_tmp(), "ssh")
        os.makedirs(keydir, mode=0o700, exist_ok=True)
        path = os.path.join(keydir, f"{prefix}_" + hashlib.sha256(text.encode()).hexdigest()[:16])
        if not os.path.exists(path):
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)  # whole or absent: another thread may be writing it too
        return path

    @property
    def lv(self) -> libvirt.virConnect:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    @property
    def flavour(self) -> Flavour:
        if self._flavour is None:
            with _libvirt("Cannot read the host's capabilities"):
                conn_type, caps = self.lv.getType(), self.lv.getCapabilities()
            self._flavour = flavours.resolve(self.base_flavour, self.context.settings, conn_type, caps,
                                             self.conn.fields.get("acceleration") or "auto")
        return self._flavour

    def close(self) -> None:
        self._closed = True
        for conn, ids in ((self._events_conn, self._event_ids),):
            if conn is not None:
                for cb_id in ids:
                    with contextlib.suppress(libvirt.libvirtError):
                        conn.domainEventDeregisterAny(cb_id)
                with contextlib.suppress(libvirt.libvirtError):
                    conn.unregisterCloseCallback()
        self._event_ids = []
        for conn in (self._events_conn, self._conn):
            if conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
        self._conn = self._events_conn = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    # --- host ---------------------------------------------------------------

    def check_host(self) -> HostFacts:
        local = flavours.local_host_kind() if flavours.is_local_uri(self.uri) else None
        try:
            lv = self.lv
        except HostUnreachable as e:
            # xen:///system on a KVM host (or qemu:// on a dom0) finds no driver:
            # say which hypervisor the host really runs.
            want = self.base_flavour.domain_type
            if getattr(e, "no_driver", False) and local and local != want and want in ("kvm", "xen"):
                raise WrongHypervisor(f"The host runs {'Xen' if local == 'xen' else 'KVM'}, "
                                      f"not {self.base_flavour.type_name}") from None
            raise
        with _libvirt("Cannot read the host's facts"):
            conn_type = lv.getType()
            caps = lv.getCapabilities()
            flavours.check_host_type(self.base_flavour, conn_type, caps, local)
            info = lv.getInfo()  # [arch, memory MiB, cpus, MHz, nodes, sockets/node, cores/socket, threads]
            version = lv.getVersion()
            hostname = lv.getHostname()
        self._flavour = flavours.resolve(self.base_flavour, self.context.settings, conn_type, caps,
                                         self.conn.fields.get("acceleration") or "auto")
        arch = ET.fromstring(caps).findtext("host/cpu/arch") or info[0]
        path, size, free = self._local_storage()
        return HostFacts(
            hypervisor=self.base_flavour.type_name,
            version=_version_string(version),
            arch=arch,
            cpu_sockets=max(1, int(info[4]) * int(info[5])),
            cpu_cores=int(info[2]),
            cpu_mhz=int(info[3]),
            memory_bytes=int(info[1]) * 1024 * 1024,
            hostname=hostname,
            local_storage_path=path,
            local_storage_bytes=size,
            local_storage_free=free,
        )

    def _local_storage(self) -> tuple[str | None, int, int]:
        """The host's local storage: a `dir` pool (the one named 'default' first),
        else the default images directory when the host is this machine."""
        if self.flavour.storage:
            try:
                pools = [p for p in self.lv.listAllStoragePools() if p.isActive()]
            except libvirt.libvirtError:
                pools = []
            pools.sort(key=lambda p: p.name() != "default")
            for p in pools:
                with contextlib.suppress(libvirt.libvirtError):
                    root = ET.fromstring(p.XMLDesc(0))
                    if root.get("type") == "dir":
                        _, capacity, _, available = p.info()
                        return root.findtext("target/path"), int(capacity), int(available)
        if flavours.is_local_uri(self.uri) and os.path.isdir(DEFAULT_IMAGES_DIR):
            usage = shutil.disk_usage(DEFAULT_IMAGES_DIR)
            return DEFAULT_IMAGES_DIR, usage.total, usage.free
        return DEFAULT_IMAGES_DIR, 0, 0

    def host_stats(self) -> HostStats:
        lv = self.lv
        with _libvirt("Cannot read host statistics"):
            info = lv.getInfo()
            total = int(info[1]) * 1024 * 1024
            try:
                mem = lv.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
                total = mem["total"] * 1024
                free = (mem.get("free", 0) + mem.get("buffers", 0) + mem.get("cached", 0)) * 1024
            except libvirt.libvirtError:
                free = int(lv.getFreeMemory())
        return HostStats(cpu_pct=self._cpu_pct(), memory_total_bytes=total, memory_free_bytes=min(free, total))

    def _cpu_pct(self) -> float:
        """Busy share of the host CPUs since the last call (the first call takes two
        samples 0.2 s apart). getCPUStats gives cumulative nanoseconds."""
        def sample() -> tuple[float, int, int]:
            s = self.lv.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
            busy = sum(v for k, v in s.items() if k != "idle" and k != "iowait")
            return time.monotonic(), busy, busy + s.get("idle", 0) + s.get("iowait", 0)
        try:
            if self._cpu_sample is None:
                self._cpu_sample = sample()
                time.sleep(0.2)
            now = sample()
        except libvirt.libvirtError:
            return 0.0
        prev, self._cpu_sample = self._cpu_sample, now
        total = now[2] - prev[2]
        return round(100.0 * (now[1] - prev[1]) / total, 1) if total > 0 else 0.0

    # --- storage ------------------------------------------------------------

    def _require_storage(self) -> None:
        if not self.flavour.storage:
            raise OperationNotSupported(f"{self.flavour.type_name} hosts have no libvirt storage driver")

    def _pool_xml(self, pool: StoragePoolSpec) -> str:
        kind = pool.kind.upper()
        if kind in ("FILESYSTEM", "DIR", "LOCAL"):
            el = ET.Element("pool", {"type": "dir"})
            ET.SubElement(el, "name").text = pool.uuid
            ET.SubElement(el, "uuid").text = pool.uuid
            ET.SubElement(ET.SubElement(el, "target"), "path").text = pool.path
        elif kind == "NFS":
            if not pool.server:
                raise OperationFailed("An NFS pool needs its server")
            el = ET.Element("pool", {"type": "netfs"})
            ET.SubElement(el, "name").text = pool.uuid
            ET.SubElement(el, "uuid").text = pool.uuid
            src = ET.SubElement(el, "source")
            ET.SubElement(src, "host", {"name": pool.server})
            ET.SubElement(src, "dir", {"path": pool.path})
            ET.SubElement(src, "format", {"type": "nfs"})
            ET.SubElement(ET.SubElement(el, "target"), "path").text = f"/mnt/{pool.uuid}"
        else:
            raise OperationNotSupported(f"libvirt hosts cannot use {pool.kind} primary storage")
        return ET.tostring(el, encoding="unicode")

    def _lookup_pool(self, pool: StoragePoolSpec) -> libvirt.virStoragePool | None:
        try:
            return self.lv.storagePoolLookupByName(pool.uuid)
        except libvirt.libvirtError as e:
            if e.get_error_code() in _MISSING_POOL_OR_VOL:
                return None
            raise translate(e, f"Cannot look up storage pool {pool.name}") from None

    def _active_pool(self, pool: StoragePoolSpec) -> libvirt.virStoragePool:
        p = self._lookup_pool(pool)
        if p is None or not p.isActive():
            return self._prepare(pool)
        return p

    def _prepare(self, pool: StoragePoolSpec) -> libvirt.virStoragePool:
        self._require_storage()
        p = self._lookup_pool(pool)
        with _libvirt(f"Cannot prepare storage pool {pool.name}"):
            if p is None:
                p = self.lv.storagePoolDefineXML(self._pool_xml(pool), 0)
                try:
                    if not p.isActive():
                        with contextlib.suppress(libvirt.libvirtError):
                            p.build(0)  # mkdir for dir pools, mount point for netfs
                        p.create(0)
                    p.setAutostart(1)
                except libvirt.libvirtError:
                    with contextlib.suppress(libvirt.libvirtError):
                        p.undefine()  # nothing half-created
                    raise
            elif not p.isActive():
                with contextlib.suppress(libvirt.libvirtError):
                    p.build(0)
                p.create(0)
            with contextlib.suppress(libvirt.libvirtError):
                p.refresh(0)
        return p

    def prepare_storage_pool(self, pool: StoragePoolSpec) -> PoolInfo:
        return self._info(self._prepare(pool))

    def pool_info(self, pool: StoragePoolSpec) -> PoolInfo:
        p = self._active_pool(pool)
        with contextlib.suppress(libvirt.libvirtError):
            p.refresh(0)
        return self._info(p)

    @staticmethod
    def _info(p: libvirt.virStoragePool) -> PoolInfo:
        with _libvirt("Cannot read storage pool"):
            _, capacity, allocation, available = p.info()
        return PoolInfo(capacity_bytes=int(capacity), available_bytes=int(available),
                        allocated_bytes=int(allocation))

    def delete_storage_pool(self, pool: StoragePoolSpec) -> None:
        self._require_storage()
        p = self._lookup_pool(pool)
        if p is None:
            return
        with _libvirt(f"Cannot remove storage pool {pool.name}"):
            if p.isActive():
                p.destroy()  # unmounts netfs; leaves a dir pool's files alone
            p.undefine()

    def create_volume(self, vol: VolumeSpec) -> VolumeInfo:
        fmt = vol.format.upper()
        if fmt not in ("QCOW2", "RAW"):
            raise OperationNotSupported(f"libvirt volumes are QCOW2 or RAW, not {vol.format}")
        p = self._active_pool(vol.pool)
        el = ET.Element("volume")
        ET.SubElement(el, "name").text = vol.name
        capacity = int(vol.size_bytes)
        base = None
        if vol.base_path:
            base = self._volume_by_path(vol.base_path)
            with _libvirt("Cannot read the base image"):
                capacity = max(capacity, int(base.info()[1]))
        ET.SubElement(el, "capacity", {"unit": "bytes"}).text = str(capacity)
        ET.SubElement(ET.SubElement(el, "target"), "format", {"type": fmt.lower()})
        with _libvirt(f"Cannot create volume {vol.name}"):
            if base is not None and fmt == "QCOW2" and vol.thin:
                # Thin copy: a qcow2 overlay whose reads fall through to the template.
                bs = ET.SubElement(el, "backingStore")
                ET.SubElement(bs, "path").text = vol.base_path
                ET.SubElement(bs, "format", {"type": _volume_format(base)})
                v = p.createXML(ET.tostring(el, encoding="unicode"), 0)
            elif base is not None:
                v = p.createXMLFrom(ET.tostring(el, encoding="unicode"), base, 0)  # full copy
            else:
                v = p.createXML(ET.tostring(el, encoding="unicode"), 0)
        return _volume_info(v)

    def import_template(self, pool: StoragePoolSpec, name: str, source: TemplateSource) -> VolumeInfo:
        """Create the volume and stream the image into it (virStorageVolUpload): from the
        management server's copy, or straight from the URL for direct download."""
        from app.hypervisors.sources import Verifier, open_source
        fmt = source.format.upper()
        if fmt not in ("QCOW2", "RAW", "ISO"):
            raise OperationNotSupported(f"libvirt templates are QCOW2, RAW or ISO, not {source.format}")
        accepted = ("ISO", "RAW") if fmt == "ISO" else (fmt,)  # libvirt probes ISO 9660 images as "iso"
        existing = self._volume(pool, name)
        if existing is not None:
            return _volume_info(existing)
        p = self._active_pool(pool)
        chunks, size = open_source(source)
        el = ET.Element("volume")
        ET.SubElement(el, "name").text = name
        ET.SubElement(el, "capacity", {"unit": "bytes"}).text = str(size)
        ET.SubElement(el, "allocation", {"unit": "bytes"}).text = "0"
        # The bytes are written as they are; a raw target keeps libvirt from formatting the file first.
        ET.SubElement(ET.SubElement(el, "target"), "format", {"type": "raw"})
        with _libvirt(f"Cannot create volume {name}"):
            v = p.createXML(ET.tostring(el, encoding="unicode"), 0)
        verifier = Verifier(source.checksum)
        try:
            stream = self.lv.newStream(0)
            with _libvirt(f"Cannot upload the template into {pool.name}"):
                v.upload(stream, 0, size, 0)
                for chunk in chunks:
                    verifier.update(chunk)
                    stream.send(chunk)
                stream.finish()
            verifier.check()
            with _libvirt("Cannot refresh the pool"):
                p.refresh(0)  # libvirt probes the file: a qcow2 image is seen as qcow2
                v = p.storageVolLookupByName(name)
        except BaseException:
            with contextlib.suppress(Exception):
                stream.abort()
            with contextlib.suppress(libvirt.libvirtError):
                v.delete(0)  # nothing half-imported
            raise
        info = _volume_info(v)
        if info.format not in accepted:
            with contextlib.suppress(libvirt.libvirtError):
                v.delete(0)
            raise OperationFailed(f"The image is {info.format}, not {fmt}")
        return info

    def _volume_by_path(self, path: str) -> libvirt.virStorageVol:
        try:
            return self.lv.storageVolLookupByPath(path)
        except libvirt.libvirtError as e:
            if e.get_error_code() in _MISSING_POOL_OR_VOL:
                raise OperationFailed(f"The image {path} is not in any storage pool of the host") from None
            raise translate(e, f"Cannot find {path}") from None

    def _volume(self, pool: StoragePoolSpec, name: str) -> libvirt.virStorageVol | None:
        p = self._lookup_pool(pool)
        if p is None or not p.isActive():
            return None
        try:
            return p.storageVolLookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() in _MISSING_POOL_OR_VOL:
                return None
            raise translate(e, f"Cannot look up volume {name}") from None

    def heartbeat_age(self, pool: StoragePoolSpec, host_key: str) -> float | None:
        """Through this host's libvirtd only (agentless): a transient dir pool on the shared
        pool's nubo-ha directory, refreshed; a probe file made there now dates "now" in the
        storage's own clock, so the age is mtime(probe) - mtime(heartbeat) whatever the
        clocks of Nubo and the hosts say. Nothing is left behind."""
        self._require_storage()
        p = self._active_pool(pool)  # mounted here (an NFS pool is mounted when missing)
        with _libvirt(f"Cannot read storage pool {pool.name}"):
            target = ET.fromstring(p.XMLDesc(0)).findtext("target/path")
        el = ET.Element("pool", {"type": "dir"})
        ET.SubElement(el, "name").text = f"nubo-ha-{pool.uuid}"
        ET.SubElement(ET.SubElement(el, "target"), "path").text = f"{target}/{HA_DIR}"
        try:
            hp = self.lv.storagePoolCreateXML(ET.tostring(el, encoding="unicode"), 0)
        except libvirt.libvirtError as e:
            try:  # left by a check killed midway: use it
                hp = self.lv.storagePoolLookupByName(f"nubo-ha-{pool.uuid}")
            except libvirt.libvirtError:
                if not os.path.isabs(target or ""):
                    raise translate(e, f"Cannot read the heartbeats on {pool.name}") from None
                return None  # no nubo-ha directory: no host has ever written a heartbeat there
        probe_name = "probe-" + re.sub(r"[^A-Za-z0-9._:-]", "_", self.conn.address or "host")
        probe = None
        try:
            with _libvirt(f"Cannot read the heartbeats on {pool.name}"):
                if not hp.isActive():
                    hp.create(0)
                hp.refresh(0)
                try:
                    hb = hp.storageVolLookupByName(heartbeat_file(host_key))
                except libvirt.libvirtError as e:
                    if e.get_error_code() in _MISSING_POOL_OR_VOL:
                        return None
                    raise
                with contextlib.suppress(libvirt.libvirtError):
                    hp.storageVolLookupByName(probe_name).delete(0)
                probe = hp.createXML(f"<volume><name>{probe_name}</name><capacity>0</capacity>"
                                     "<target><format type='raw'/></target></volume>", 0)
                # Read after the probe was made: the heartbeat can only look younger, never older.
                return max(0.0, _mtime(probe) - _mtime(hp.storageVolLookupByName(heartbeat_file(host_key))))
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                if probe is not None:
                    probe.delete(0)
            with contextlib.suppress(libvirt.libvirtError):
                hp.destroy()  # a transient pool: gone, its directory left as it was

    def delete_volume(self, pool: StoragePoolSpec, name: str) -> None:
        v = self._volume(pool, name)
        if v is not None:
            with _libvirt(f"Cannot delete volume {name}"):
                v.delete(0)

    def resize_volume(self, pool: StoragePoolSpec, name: str, size_bytes: int) -> VolumeInfo:
        v = self._volume(pool, name)
        if v is None:
            raise OperationFailed(f"No volume {name} in pool {pool.name}")
        with _libvirt(f"Cannot resize volume {name}"):
            if int(size_bytes) < int(v.info()[1]):
                raise OperationFailed("A volume cannot shrink")
            v.resize(int(size_bytes), 0)
        return _volume_info(v)

    # --- volume snapshots (as CloudStack's KVM agent: snapshot, then qemu-img convert) ---

    def backup_volume(self, pool: StoragePoolSpec, volume_path: str, dest_path: str,
                      vm_name: str | None = None) -> VolumeInfo:
        """A running VM's disk is frozen first by an external disk-only snapshot (its writes go
        to an overlay meanwhile), copied with qemu-img convert (libvirt's createXMLFrom: the
        backing chain flattened into one QCOW2) inside the pool, streamed to dest_path, then
        the overlay is committed back (active block commit + pivot) and removed."""
        self._require_storage()
        p = self._active_pool(pool)
        with contextlib.suppress(libvirt.libvirtError):
            p.refresh(0)
        vol = self._volume_by_path(volume_path)
        dom = self._find(vm_name) if vm_name else None
        frozen = None
        if dom is not None and dom.isActive():
            frozen = self._freeze_disk(dom, volume_path)
        token = hashlib.sha1(f"{dest_path}{time.time()}".encode()).hexdigest()[:12]
        copy = None
        part = dest_path + ".part"
        try:
            el = ET.Element("volume")
            ET.SubElement(el, "name").text = f"nubo-snapshot-{token}.qcow2"
            with _libvirt("Cannot read the volume"):
                capacity = int(vol.info()[1])
            ET.SubElement(el, "capacity", {"unit": "bytes"}).text = str(capacity)
            ET.SubElement(ET.SubElement(el, "target"), "format", {"type": "qcow2"})
            with _libvirt("Cannot copy the volume"):
                copy = p.createXMLFrom(ET.tostring(el, encoding="unicode"), vol, 0)
            info = _volume_info(copy)
            os.makedirs(os.path.dirname(dest_path), exist_ok=True)
            with open(part, "wb") as f, _libvirt("Cannot copy the snapshot to secondary storage"):
                stream = self.lv.newStream(0)
                copy.download(stream, 0, 0, 0)
                try:
                    stream.recvAll(lambda _st, data, fh: fh.write(data), f)
                    stream.finish()
                except BaseException:
                    with contextlib.suppress(Exception):
                        stream.abort()
                    raise
            os.replace(part, dest_path)
            return VolumeInfo(path=dest_path, size_bytes=info.size_bytes, format="QCOW2",
                              physical_bytes=os.path.getsize(dest_path))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise
        finally:
            if copy is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    copy.delete(0)
            if frozen is not None:
                self._thaw_disk(dom, p, *frozen)

    def _freeze_disk(self, dom: libvirt.virDomain, volume_path: str) -> tuple[str, str, str]:
        """External disk-only snapshot of the disk whose source is volume_path: (target, base,
        overlay). The other disks are left alone; libvirt keeps no snapshot metadata."""
        root = ET.fromstring(dom.XMLDesc(0))
        target = None
        snap = ET.Element("domainsnapshot")
        ET.SubElement(snap, "name").text = "nubo-backup"
        disks = ET.SubElement(snap, "disks")
        overlay = f"{volume_path}.nubo-overlay"
        for disk in root.findall("devices/disk"):
            src, tgt = disk.find("source"), disk.find("target")
            if tgt is None:
                continue
            dev = tgt.get("dev")
            if src is not None and src.get("file") == volume_path and disk.get("device", "disk") == "disk":
                target = dev
                d = ET.SubElement(disks, "disk", {"name": dev, "snapshot": "external"})
                ET.SubElement(d, "driver", {"type": "qcow2"})
                ET.SubElement(d, "source", {"file": overlay})
            else:
                ET.SubElement(disks, "disk", {"name": dev, "snapshot": "no"})
        if target is None:
            raise OperationFailed(f"The VM does not use {volume_path}")
        flags = (libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
                 | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
        with _libvirt("Cannot snapshot the running VM's disk"):
            dom.snapshotCreateXML(ET.tostring(snap, encoding="unicode"), flags)
        return target, volume_path, overlay

    def _thaw_disk(self, dom: libvirt.virDomain, p: libvirt.virStoragePool, target: str, base: str,
                   overlay: str, timeout: float = 300.0) -> None:
        """Commit the overlay's writes back into the volume and make it the VM's disk again."""
        with _libvirt("Cannot commit the snapshot overlay back into the volume"):
            dom.blockCommit(target, base, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
            deadline = time.monotonic() + timeout
            while True:  # the job is ready to pivot when it has copied everything
                info = dom.blockJobInfo(target, 0)
                if info and info.get("end", 0) and info.get("cur") == info.get("end"):
                    break
                if time.monotonic() > deadline:
                    raise OperationTimedOut(f"Committing {overlay} back took over {timeout:.0f} s")
                time.sleep(0.05)
            dom.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
            while dom.blockJobInfo(target, 0):
                if time.monotonic() > deadline:
                    raise OperationTimedOut(f"The pivot back to {base} did not finish")
                time.sleep(0.05)
        with contextlib.suppress(libvirt.libvirtError):
            p.refresh(0)
            self._volume_by_path(overlay).delete(0)

    def restore_volume(self, pool: StoragePoolSpec, name: str, source: TemplateSource) -> VolumeInfo:
        """The copy is uploaded (and checked) under a temporary name first; only then is the
        volume replaced by a copy of it under its own name (its path stays the same)."""
        self._require_storage()
        staged = f"{name}.nubo-restore"
        self.delete_volume(pool, staged)
        staging = self.import_template(pool, staged, source)
        try:
            p = self._active_pool(pool)
            old = self._volume(pool, name)
            capacity = staging.size_bytes
            if old is not None:
                with _libvirt(f"Cannot replace volume {name}"):
                    old.delete(0)
            el = ET.Element("volume")
            ET.SubElement(el, "name").text = name
            ET.SubElement(el, "capacity", {"unit": "bytes"}).text = str(capacity)
            ET.SubElement(ET.SubElement(el, "target"), "format", {"type": "qcow2"})
            with _libvirt(f"Cannot write volume {name}"):
                v = p.createXMLFrom(ET.tostring(el, encoding="unicode"), self._volume(pool, staged), 0)
            return _volume_info(v)
        finally:
            self.delete_volume(pool, staged)

    # --- VMs ----------------------------------------------------------------

    def _domain(self, name: str) -> libvirt.virDomain:
        with _libvirt(f"No VM {name} on {self.conn.address}"):
            return self.lv.lookupByName(name)

    def _find(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.lv.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise translate(e, f"Cannot look up VM {name}") from None

    def start_vm(self, spec: VMSpec) -> VMInfo:
        old = self._find(spec.name)
        if old is not None and old.isActive():
            return self.vm_info(spec.name)  # already running: starting is idempotent
        made: list[SegmentSpec] = []
        try:
            spec = self._plug_segments(spec, made)
            return self._define_and_start(spec, old)
        except DriverError:
            for seg in reversed(made):  # undo, newest first: only what is now unused goes
                with contextlib.suppress(DriverError):
                    self.release_segment(seg)
            raise

    def _plug_segments(self, spec: VMSpec, made: list[SegmentSpec]) -> VMSpec:
        """Ensure the bridge of every NIC that names its segment, and plug the NIC into it."""
        if not any(n.segment for n in spec.nics):
            return spec
        nics = []
        for nic in spec.nics:
            if nic.segment is not None:
                bridge = self.ensure_segment(nic.segment)
                made.append(nic.segment)
                nic = dataclasses.replace(nic, bridge=bridge, vlan=None)  # the segment is the isolation: no <vlan> tag
            nics.append(nic)
        return dataclasses.replace(spec, nics=nics)

    def _define_and_start(self, spec: VMSpec, old: libvirt.virDomain | None) -> VMInfo:
        xml = dx.build_domain(spec, self.flavour)
        previous = None
        if old is not None:
            with _libvirt(f"Cannot read VM {spec.name}"):
                previous = old.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        try:
            with _libvirt(f"Cannot start VM {spec.name}"):
                dom = self.lv.defineXML(xml)
                dom.create()
        except DriverError:
            # Nothing half-created: put back what was there before.
            with contextlib.suppress(libvirt.libvirtError):
                if previous is not None:
                    self.lv.defineXML(previous)
                else:
                    self.lv.lookupByName(spec.name).undefine()
            raise
        return self.vm_info(spec.name)

    def _state(self, dom: libvirt.virDomain) -> PowerState:
        with _libvirt("Cannot read VM state"):
            state, _reason = dom.state()
        return _STATES.get(state, PowerState.UNKNOWN)

    def stop_vm(self, name: str, timeout: float) -> bool:
        dom = self._domain(name)
        if not dom.isActive():
            return True
        bridges = self._bridges_of(dom)
        deadline = time.monotonic() + max(0.0, timeout)
        self._ask_shutdown(dom, name, deadline)
        # A container's init may not heed libvirt's default (its initctl request, which libvirt 9.0
        # reports as sent to a container without an initctl pipe too): halfway, SIGTERM to its init.
        signal_at = time.monotonic() + max(0.0, timeout) / 2 if self.flavour.container else None
        while True:
            try:
                if not dom.isActive():
                    self._release_bridges(bridges)
                    return True
            except libvirt.libvirtError as e:
                if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    self._release_bridges(bridges)
                    return True  # a transient domain is gone once it stops
                raise translate(e, f"Cannot read VM {name}") from None
            if time.monotonic() >= deadline:
                return False
            if signal_at is not None and time.monotonic() >= signal_at:
                signal_at = None
                with contextlib.suppress(libvirt.libvirtError):  # it may have just stopped
                    dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_SIGNAL)
            time.sleep(0.25)

    def _ask_shutdown(self, dom: libvirt.virDomain, name: str, deadline: float) -> None:
        """dom.shutdown(). libvirt's LXC driver learns a container's init PID from its controller a
        moment after the start (later on a busy host), and until then refuses a shutdown as "Init
        process ID is not yet known": asked again until it knows, or until the stop's time is up."""
        while True:
            try:
                dom.shutdown()
                return
            except libvirt.libvirtError as e:
                if not (self.flavour.container and e.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID
                        and "not yet known" in (e.get_error_message() or "")) or time.monotonic() >= deadline:
                    raise translate(e, f"Cannot shut down VM {name}") from None
            time.sleep(0.1)

    def force_stop_vm(self, name: str) -> None:
        dom = self._domain(name)
        bridges = self._bridges_of(dom)
        try:
            dom.destroy()
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:  # "not running"
                raise translate(e, f"Cannot power off VM {name}") from None
        self._release_bridges(bridges)

    def _bridges_of(self, dom: libvirt.virDomain) -> list[str]:
        """The segment bridges (brvx-<VNI>, br<pif>-<vlan>) the VM's NICs use, read before it goes."""
        try:
            return [b for b in dx.nic_bridges(dom.XMLDesc(0)) if _SEGMENT_BRIDGE.match(b)]
        except (libvirt.libvirtError, ET.ParseError):
            return []

    def _release_bridges(self, bridges: list[str]) -> None:
        """After a VM stopped or went: remove the segments it was the last user of on this host.
        Best effort (the service calls release_segment too, which is idempotent); a failure here
        never fails the stop."""
        if not bridges or not self._network_capable():
            return
        for bridge in bridges:
            try:
                seg = _segment_of_bridge(self.channel, bridge)
                if seg is not None:
                    segments.release(self.channel, seg)
            except (ChannelError, DriverError) as e:
                log.warning("could not release bridge %s on %s: %s", bridge, self.conn.address, e)

    def reboot_vm(self, name: str) -> None:
        dom = self._domain(name)
        if not dom.isActive():
            raise OperationFailed(f"VM {name} is not running")
        with _libvirt(f"Cannot reboot VM {name}"):
            dom.reboot(0)

    def destroy_vm(self, name: str) -> None:
        dom = self._find(name)
        if dom is None:
            return
        bridges = self._bridges_of(dom)
        try:
            self._destroy(name, dom)
        finally:
            self._release_bridges(bridges)

    def _destroy(self, name: str, dom: libvirt.virDomain) -> None:
        with _libvirt(f"Cannot destroy VM {name}"):
            if dom.isActive():
                with contextlib.suppress(libvirt.libvirtError):
                    dom.destroy()
            if dom.isPersistent():
                flags = (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                         | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
                try:
                    dom.undefineFlags(flags)
                except libvirt.libvirtError as e:
                    if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                        return
                    dom.undefine()  # drivers that know none of these flags (test, OpenVZ)

    def _vm_info(self, dom: libvirt.virDomain) -> VMInfo:
        with _libvirt("Cannot read VM"):
            state = self._state(dom)
            _, max_kib, _, vcpus, _ = dom.info()
            name, uuid = dom.name(), dom.UUIDString()
            console = None
            if state in (PowerState.RUNNING, PowerState.PAUSED):
                console = dx.console_from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE), self.flavour,
                                              self.conn.address)
            else:
                vcpus = dx.vcpus_of(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) or vcpus
        return VMInfo(name=name, state=state, uuid=uuid, cpus=int(vcpus), memory_mib=int(max_kib) // 1024,
                      console=console)

    def vm_info(self, name: str) -> VMInfo:
        return self._vm_info(self._domain(name))

    def list_vms(self) -> list[VMInfo]:
        with _libvirt("Cannot list VMs"):
            doms = self.lv.listAllDomains(0)
        out = []
        for dom in doms:
            try:
                out.append(self._vm_info(dom))
            except VMNotFound:
                continue  # went away while listing
        return out

    def vm_stats(self) -> dict[str, VMStats]:
        now = time.time()
        out: dict[str, VMStats] = {}
        try:
            records = self.lv.getAllDomainStats(
                libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
                | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_INTERFACE
                | libvirt.VIR_DOMAIN_STATS_BLOCK, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
        except libvirt.libvirtError as e:
            if e.get_error_code() not in _UNSUPPORTED_ERRORS:
                raise translate(e, "Cannot read VM statistics") from None
            records = None
        if records is None:  # drivers without bulk stats (OpenVZ): one info() per VM
            with _libvirt("Cannot read VM statistics"):
                for dom in self.lv.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                    _, _, mem_kib, _, cpu_ns = dom.info()
                    out[dom.name()] = VMStats(timestamp=now, cpu_time_ns=int(cpu_ns), memory_kib=int(mem_kib))
            return out
        for dom, s in records:
            with contextlib.suppress(libvirt.libvirtError):
                out[dom.name()] = VMStats(
                    timestamp=now,
                    cpu_time_ns=int(s.get("cpu.time", 0)),
                    memory_kib=int(s.get("balloon.current", 0)),
                    disk_read_bytes=_sum(s, "block", "rd.bytes"),
                    disk_write_bytes=_sum(s, "block", "wr.bytes"),
                    net_rx_bytes=_sum(s, "net", "rx.bytes"),
                    net_tx_bytes=_sum(s, "net", "tx.bytes"),
                )
        return out

    def console_target(self, name: str) -> ConsoleTarget:
        if self.flavour.console is ConsoleKind.NONE:
            raise OperationNotSupported(f"{self.flavour.type_name} VMs have no console in libvirt")
        dom = self._domain(name)
        if not dom.isActive():
            raise OperationFailed(f"VM {name} is not running")
        with _libvirt(f"Cannot read the console of VM {name}"):
            # SECURE: without it libvirt leaves out the VNC password (CVE-2015-3252).
            target = dx.console_from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE), self.flavour,
                                         self.conn.address)
        if target is None:
            raise OperationFailed(f"VM {name} has no console")
        return target

    def migrate_vm(self, name: str, dest: HostConnection, live: bool = True, *,
                   spec: MigrationSpec | None = None,
                   progress: Callable[[MigrationProgress], None] | None = None) -> None:
        if self.flavour.type_name not in ("KVM", "Xen"):
            raise OperationNotSupported(f"{self.flavour.type_name} VMs cannot be migrated")
        spec = spec or MigrationSpec(live=live)
        dom = self._domain(name)
        flags = (libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        if spec.live:
            flags |= libvirt.VIR_MIGRATE_LIVE
        params: dict[str, object] = {}
        if dest.address and not flavours.is_local_uri(dest.url):
            # Guest memory goes straight to the destination's management address.
            params[libvirt.VIR_MIGRATE_PARAM_URI] = f"tcp://{dest.address}"
        if spec.console_listen or spec.disks:
            with _libvirt(f"Cannot read VM {name}"):
                xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE)
            dest_xml, copy = dx.for_migration(xml, spec.console_listen, spec.disks)
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = dest_xml
            if copy:
                # The disks are mirrored to the destination's (pre-made) volumes over NBD while
                # the guest runs, then its memory follows.
                flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
                params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = copy
        if spec.declared_shared:
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        what = f"Cannot migrate VM {name} to {dest.address}"
        if progress is None:
            with _libvirt(what):
                # Peer-to-peer: the source libvirtd connects to dest.url itself.
                dom.migrateToURI3(dest.url, params, flags)
            return
        self._migrate_watched(dom, dest.url, params, flags, progress, what)

    def _migrate_watched(self, dom: libvirt.virDomain, uri: str, params: dict, flags: int,
                         progress: Callable[[MigrationProgress], None], what: str) -> None:
        """migrateToURI3 on a thread (libvirt-python lets go of the GIL while it waits) while
        this thread samples the job's statistics for `progress`; if progress raises, the
        migration is aborted (the guest keeps running here) and the exception goes on."""
        failure: list[BaseException] = []

        def run() -> None:
            try:
                dom.migrateToURI3(uri, params, flags)
            except BaseException as e:  # handed to the caller's thread
                failure.append(e)

        worker = threading.Thread(target=run, name=f"migrate-{dom.name()}", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(timeout=MIGRATION_POLL_SECONDS)
                if not worker.is_alive():
                    break
                try:
                    stats = dom.jobStats(0)
                except libvirt.libvirtError:
                    continue  # between phases, or just ended
                if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                    continue
                progress(MigrationProgress(
                    processed=int(stats.get("data_processed", 0)), remaining=int(stats.get("data_remaining", 0)),
                    total=int(stats.get("data_total", 0)), memory_remaining=int(stats.get("memory_remaining", 0)),
                    disk_remaining=int(stats.get("disk_remaining", 0))))
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                dom.abortJob()
            worker.join(timeout=MIGRATION_ABORT_SECONDS)
            raise
        if failure:
            e = failure[0]
            if isinstance(e, libvirt.libvirtError):
                raise translate(e, what) from None
            raise e

    def scale_vm(self, name: str, cpus: int, memory_mib: int) -> None:
        if cpus < 1 or memory_mib < 1:
            raise OperationFailed("A VM needs at least one CPU and some memory")
        dom = self._domain(name)
        if dom.isActive():
            raise OperationFailed(f"VM {name} is running: stop it before changing its CPU or memory")
        with _libvirt(f"Cannot change VM {name}"):
            # SECURE keeps the VNC password in the rewritten definition.
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
            self.lv.defineXML(dx.set_cpu_memory(xml, cpus, memory_mib))

    def _change_device(self, name: str, device: ET.Element | None, target: str, detach_xml: str | None = None) -> None:
        """Change one disk/cdrom: on a stopped VM by rewriting its persistent
        definition; on a running one live and in the definition."""
        dom = self._domain(name)
        with _libvirt(f"Cannot change the devices of VM {name}"):
            if not dom.isActive():
                xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
                self.lv.defineXML(dx.replace_device(xml, device, target))
                return
            both = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
            if detach_xml is not None:
                dom.detachDeviceFlags(detach_xml, both)
            elif device is not None and device.get("device") == "cdrom":
                dom.updateDeviceFlags(ET.tostring(device, encoding="unicode"), both)
            elif device is not None:
                dom.attachDeviceFlags(ET.tostring(device, encoding="unicode"), both)

    def _require_iso(self) -> None:
        if self.flavour.container:
            raise OperationNotSupported(f"{self.flavour.type_name} containers have no CD-ROM drive")

    def attach_iso(self, name: str, iso_path: str) -> None:
        self._require_iso()
        self._change_device(name, dx.cdrom_element(self.flavour, iso_path, 0), self.flavour.cdrom_targets[0])

    # --- VM snapshots: libvirt's internal qcow2 snapshots (CloudStack's KVM VM snapshots) ---

    def _snapshot(self, dom: libvirt.virDomain, snap: VMSnapshotSpec,
                  learn: bool = True) -> libvirt.virDomainSnapshot | None:
        """The domain's snapshot of that name; one this host does not know is taught to it from the
        metadata taken where it was made (REDEFINE: the internal snapshot itself is in the disks)."""
        try:
            return dom.snapshotLookupByName(snap.name, 0)
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                raise translate(e, f"Cannot look up snapshot {snap.name}") from None
        if not (learn and snap.metadata):
            return None
        with _libvirt(f"Cannot restore the metadata of snapshot {snap.name}"):
            return dom.snapshotCreateXML(snap.metadata, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)

    def _snapshot_xml(self, dom: libvirt.virDomain, snap: VMSnapshotSpec, active: bool) -> str:
        """Internal snapshots of every writable disk (each must be qcow2); CD-ROMs and read-only
        disks (ISOs, the config drive) are left out; the memory too when the VM runs."""
        el = ET.Element("domainsnapshot")
        ET.SubElement(el, "name").text = snap.name
        if snap.description:
            ET.SubElement(el, "description").text = snap.description
        if active:
            ET.SubElement(el, "memory", {"snapshot": "internal"})
        disks = ET.SubElement(el, "disks")
        with _libvirt("Cannot read the VM's disks"):
            root = ET.fromstring(dom.XMLDesc(0 if active else libvirt.VIR_DOMAIN_XML_INACTIVE))
        for d in root.findall("devices/disk"):
            target = d.find("target")
            if target is None:
                continue
            fmt = (d.find("driver").get("type") if d.find("driver") is not None else "") or ""
            if d.get("device") == "cdrom" or d.find("readonly") is not None or d.find("source") is None:
                ET.SubElement(disks, "disk", {"name": target.get("dev"), "snapshot": "no"})
            elif fmt != "qcow2":
                raise OperationNotSupported(f"Disk {target.get('dev')} is {fmt or 'not qcow2'}: "
                                            "VM snapshots need qcow2 disks")
            else:
                ET.SubElement(disks, "disk", {"name": target.get("dev"), "snapshot": "internal"})
        return ET.tostring(el, encoding="unicode")

    def create_vm_snapshot(self, name: str, snap: VMSnapshotSpec) -> VMSnapshotInfo:
        dom = self._domain(name)
        have = self._snapshot(dom, snap, learn=False)
        if have is None:
            with _libvirt(f"Cannot read VM {name}"):
                active = bool(dom.isActive())
            if snap.memory and not active:
                raise OperationFailed(f"VM {name} is not running: it has no memory to snapshot")
            if not snap.memory and active:
                raise OperationNotSupported(f"VM {name} runs: its internal snapshot must include its memory")
            xml = self._snapshot_xml(dom, snap, active)
            with _libvirt(f"Cannot take snapshot {snap.name} of VM {name}"):
                have = dom.snapshotCreateXML(xml, 0)
        with _libvirt(f"Cannot read snapshot {snap.name}"):
            desc = have.getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE)
        state = ET.fromstring(desc).findtext("state") or ""
        return VMSnapshotInfo(name=snap.name, memory=state in ("running", "paused"), metadata=desc)

    def revert_vm_snapshot(self, name: str, snap: VMSnapshotSpec) -> VMInfo:
        dom = self._domain(name)
        s = self._snapshot(dom, snap)
        if s is None:
            raise OperationFailed(f"VM {name} has no snapshot {snap.name} on {self.conn.address}")
        with _libvirt(f"Cannot revert VM {name} to {snap.name}"):
            if dom.isActive() and not snap.memory:
                dom.destroy()  # a disk-only snapshot leaves the VM stopped: power it off first
            try:
                dom.revertToSnapshot(s, 0)
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_SNAPSHOT_REVERT_RISKY:
                    raise
                dom.revertToSnapshot(s, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE)
        return self._vm_info(dom)

    def delete_vm_snapshot(self, name: str, snap: VMSnapshotSpec) -> None:
        dom = self._find(name)
        if dom is None:
            return
        s = self._snapshot(dom, snap)
        if s is None:
            return
        with _libvirt(f"Cannot delete snapshot {snap.name} of VM {name}"):
            s.delete(0)

    def list_vm_snapshots(self, name: str) -> list[str]:
        dom = self._find(name)
        if dom is None:
            return []
        with _libvirt(f"Cannot list the snapshots of VM {name}"):
            return list(dom.snapshotListNames(0))

    def detach_iso(self, name: str) -> None:
        self._require_iso()
        # The drive stays, empty, so the next ISO needs no hot-plug.
        self._change_device(name, dx.cdrom_element(self.flavour, None, 0), self.flavour.cdrom_targets[0])

    def iso_path(self, name: str) -> str | None:
        """The ISO in the VM's drive (its persistent definition)."""
        dom = self._domain(name)
        with _libvirt(f"Cannot read VM {name}"):
            return dx.iso_of(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), self.flavour)

    def attach_volume(self, name: str, disk: DiskSpec) -> None:
        if self.flavour.container:
            raise OperationNotSupported(f"{self.flavour.type_name} containers take no volumes")
        dom = self._domain(name)
        with _libvirt(f"Cannot read VM {name}"):
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        if dx.disk_target_for_path(xml, disk.path):
            return  # already attached
        used = dx.used_targets(xml)
        index = next(i for i in range(max(disk.device_id, 0), 702)
                     if dx.device_name(self.flavour.disk_prefix, i) not in used)
        el = dx.disk_element(self.flavour, disk, index)
        self._change_device(name, el, dx.device_name(self.flavour.disk_prefix, index))

    def detach_volume(self, name: str, disk: DiskSpec) -> None:
        dom = self._domain(name)
        with _libvirt(f"Cannot read VM {name}"):
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        target = dx.disk_target_for_path(xml, disk.path)
        if target is None:
            return  # not attached
        el = dx.disk_element(self.flavour, disk, 0)
        el.find("target").set("dev", target)
        self._change_device(name, None, target, detach_xml=ET.tostring(el, encoding="unicode"))

    # --- guest networking on the host (docs/networking.md) ---------------------

    def _network_capable(self) -> bool:
        return bool(self.base_flavour.type_name in _NETWORK_TYPES)

    @property
    def channel(self) -> Channel:
        """How host-side network steps reach this host: this machine for a URI without a remote
        host (qemu:///system), SSH for qemu+ssh://user@host/... with the host's credentials and
        its pinned host key."""
        if self._channel is None:
            parts = urlsplit(self.uri)
            fields = self.conn.fields
            transport = parts.scheme.split("+", 1)[1] if "+" in parts.scheme else ""
            if transport in ("ssh", "libssh", "libssh2"):
                from app.network.host.ssh import SSHChannel
                try:
                    self._channel = SSHChannel(
                        parts.hostname or self.conn.address, parts.port or 22,
                        parts.username or fields.get("username") or "root",
                        private_key_pem=(fields.get("ssh_private_key") or "").strip() or None,
                        password=fields.get("password") or None,
                        known_host_key=(fields.get("ssh_host_key") or "").strip())
                except ChannelError as e:
                    raise OperationFailed(str(e)) from None
            elif flavours.is_local_uri(self.uri):
                self._channel = LocalChannel()
            else:
                raise OperationNotSupported(
                    f"Guest network steps reach a host over SSH: add {self.conn.address} with a "
                    f"{flavours.uri_scheme(self.uri)}+ssh:// URI (and its SSH host key)")
        return self._channel

    def _require_network(self, what: str) -> None:
        if not self._network_capable():
            raise OperationNotSupported(f"{self.base_flavour.type_name} hosts do not run {what}")

    def _net(self, what: str, fn, *args):
        """Run a host-side step, translating channel errors to the driver's."""
        from app.network.host.ssh import SSHRefused, SSHUnreachable
        try:
            return fn(self.channel, *args)
        except SSHUnreachable as e:
            raise HostUnreachable(f"{what}: {e}") from None
        except SSHRefused as e:
            raise AuthenticationFailed(f"{what}: {e}") from None
        except ChannelError as e:
            raise OperationFailed(f"{what}: {e}") from None
        except ValueError as e:  # the host side refused a value (defence in depth: services validate)
            raise OperationFailed(f"{what}: invalid value: {e}") from None

    def check_labels(self, labels: list[str]) -> list[str]:
        return self._net("Cannot check the traffic labels", segments.missing_labels, list(labels))

    def ensure_segment(self, segment: SegmentSpec) -> str:
        if segment.isolation != "untagged" and segment.isolation not in _ISOLATION.get(
                self.base_flavour.type_name, ()):
            raise OperationNotSupported(f"{self.base_flavour.type_name} hosts cannot make {segment.isolation} segments")
        return self._net(f"Cannot make the {segment.isolation} {segment.vnet or ''} segment on {segment.label}",
                         segments.ensure, segment)

    def set_segment_peers(self, segment: SegmentSpec) -> bool:
        if segment.isolation != "untagged" and segment.isolation not in _ISOLATION.get(
                self.base_flavour.type_name, ()):
            raise OperationNotSupported(f"{self.base_flavour.type_name} hosts cannot make {segment.isolation} segments")
        return self._net(f"Cannot set the peers of the {segment.isolation} {segment.vnet or ''} segment",
                         segments.set_peers, segment)

    def underlay_address(self, label: str) -> str | None:
        return self._net(f"Cannot read the address of {label}", segments.underlay_address, label)

    def release_segment(self, segment: SegmentSpec) -> None:
        self._net(f"Cannot remove the {segment.isolation} {segment.vnet or ''} segment", segments.release, segment)

    def _router(self):
        self._require_network("virtual routers")
        from app.network.host import router  # helper module: namespaces, dnsmasq, nft, metadata
        return router

    def router_apply(self, spec: RouterSpec) -> RouterFacts:
        router = self._router()
        return self._net(f"Cannot apply router {spec.name}",
                         lambda ch, s: router.apply(ch, s, lambda seg: segments.ensure(ch, seg)), spec)

    def router_destroy(self, key: str) -> None:
        router = self._router()
        self._net(f"Cannot destroy router {key}", router.destroy, key)

    def router_status(self, key: str) -> RouterFacts:
        router = self._router()
        return self._net(f"Cannot read router {key}", router.status, key)

    def router_restart(self, key: str) -> RouterFacts:
        router = self._router()
        return self._net(f"Cannot restart router {key}", router.restart, key)

    def sg_apply(self, rulesets: list[VmRuleset]) -> None:
        self._require_network("security groups")
        self._net("Cannot apply security groups", secgroups.apply, list(rulesets))

    def sg_remove(self, taps: list[str]) -> None:
        self._require_network("security groups")
        self._net("Cannot remove security groups", secgroups.remove, list(taps))

    # --- events -------------------------------------------------------------

    def register_events(self, callback: Callable[[str, PowerState], None]) -> None:
        if not self.flavour.events:
            raise OperationNotSupported(f"{self.flavour.type_name} hosts push no events: poll list_vms")
        ensure_event_loop()  # before opening the connection that receives events
        self._callback = callback
        self._register_events()

    def _register_events(self) -> None:
        conn = self._open()

        def on_lifecycle(_conn, dom, event, _detail, _opaque):
            state = _EVENT_STATES.get(event)
            if state is not None:
                try:
                    self._callback(dom.name(), state)  # the callback only hands off
                except Exception:
                    log.exception("event callback failed")

        def on_close(_conn, reason, _opaque):
            # Runs on the loop thread: reconnect from another thread, with backoff.
            if not self._closed:
                log.warning("libvirt connection to %s closed (reason %s); reconnecting", self.conn.address, reason)
                threading.Thread(target=self._reconnect_events, daemon=True).start()

        with _libvirt("Cannot subscribe to VM events"):
            self._event_ids = [conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None)]
            conn.registerCloseCallback(on_close, None)
        self._events_conn = conn

    def _reconnect_events(self) -> None:
        delay = 1.0
        while not self._closed:
            time.sleep(delay)
            try:
                self._register_events()
                return
            except DriverError:
                delay = min(delay * 2, 60.0)


# --- helpers ----------------------------------------------------------------

# Types whose hosts run Nubo's router namespaces and security-group tables (Linux hosts
# verified here); which segments each type's hosts can make.
_NETWORK_TYPES = {"KVM", "LXC", "Custom"}
_ISOLATION = {"KVM": ("VLAN", "VXLAN"), "LXC": ("VLAN", "VXLAN"), "Custom": ("VLAN", "VXLAN"),
              "Xen": ("VLAN", "VXLAN"), "OpenVZ": ("VLAN", "VXLAN")}
_SEGMENT_BRIDGE = re.compile(r"^(brvx-(\d+)|br(.+)-(\d+))$")


def _segment_of_bridge(ch: Channel, bridge: str) -> SegmentSpec | None:
    """The segment a bridge named as CloudStack names them belongs to, from what the host holds
    (brvx-<VNI> with vxlan<VNI>; br<pif>-<vlan> with the VLAN device <pif>.<vlan>); None for
    any other bridge, which Nubo never removes."""
    m = _SEGMENT_BRIDGE.match(bridge)
    if not m:
        return None
    if m.group(2):
        vni = int(m.group(2))
        dev = segments.link(ch, f"vxlan{vni}")
        if dev is None or segments.kind(dev) != "vxlan":
            return None
        label = ((dev.get("linkinfo") or {}).get("info_data") or {}).get("link")
        if not isinstance(label, str) or not label or not 1 <= vni <= 16_777_215:
            return None
        return SegmentSpec("VXLAN", label, vni)
    pif, vlan = m.group(3), int(m.group(4))
    dev = segments.link(ch, f"{pif}.{vlan}")
    if dev is None or segments.kind(dev) != "vlan" or not 1 <= vlan <= 4094:
        return None
    return SegmentSpec("VLAN", pif, vlan)

def _version_string(v: int) -> str:
    return f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"


def _sum(stats: dict, prefix: str, suffix: str) -> int:
    return int(sum(v for k, v in stats.items() if k.startswith(prefix + ".") and k.endswith("." + suffix)))


def _mtime(v: libvirt.virStorageVol) -> float:
    """A file volume's modification time (epoch seconds, as the storage keeps it)."""
    text = ET.fromstring(v.XMLDesc(0)).findtext("target/timestamps/mtime")
    if not text:
        raise OperationFailed(f"Storage volume {v.name()} shows no modification time")
    return float(text)


def _volume_format(v: libvirt.virStorageVol) -> str:
    fmt = ET.fromstring(v.XMLDesc(0)).find("target/format")
    return fmt.get("type") if fmt is not None and fmt.get("type") else "raw"


def _volume_info(v: libvirt.virStorageVol) -> VolumeInfo:
    with _libvirt("Cannot read volume"):
        _, capacity, allocation = v.info()
        return VolumeInfo(path=v.path(), size_bytes=int(capacity), format=_volume_format(v).upper(),
                          physical_bytes=int(allocation))

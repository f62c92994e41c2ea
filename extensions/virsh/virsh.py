#!/usr/bin/env python3
"""Nubo's example orchestrator extension: guests on a libvirtd, driven through `virsh`.

Written only from the extension contract (README, "Writing an extension"), in the
style of CloudStack 4.21's own extensions (extensions/Proxmox, HyperV, MaaS):

    virsh.py <action> <payload.json> [<timeout-seconds>]

prints one JSON object and exits 0 on success; on failure prints
{"status": "error", "error": "..."} and exits 1. Python's standard library and the
`virsh` and `qemu-img` commands only.

Settings are read from the payload's external details, the most specific first:
the VM's (template, offering, VM), the host's, the cluster mapping's, the extension's.

    uri                 libvirt URI                         qemu:///system
    image_dir           where the VMs' disks are made       /var/lib/libvirt/images
    network_bridge      a Linux bridge for the NICs         (none: an unattached tap)
    vnc_listen          VNC listen address                  127.0.0.1
    domain_type         kvm or qemu                         kvm when libvirt offers it
    domain_prefix       put before the VM's instance name   (none)
    template_path       the disk image a VM's disk is a qcow2 overlay of (a template's detail)
    disk_size_gb        size of a blank disk or of the overlay   1
    stop_grace_seconds  ACPI shutdown time before the power is cut; 0 cuts at once
                        (and makes `reboot` a reset)          60

Actions: prepare, create, start, stop, reboot, delete, status, getconsole, and the
custom actions createsnapshot (name, description), listsnapshots, restoresnapshot
(name), deletesnapshot (name) and setdescription (description).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import string
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import quoteattr, escape

DEFAULT_TIMEOUT = 600
META_NS = "urn:nubo:extension:virsh"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
SNAPSHOT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAC_RE = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")
RUNNING = {"running", "paused", "blocked", "idle", "in shutdown", "pmsuspended"}


class ExtensionError(RuntimeError):
    pass


def fail(message: str) -> None:
    print(json.dumps({"status": "error", "error": message}))
    raise SystemExit(1)


def succeed(data: dict) -> None:
    print(json.dumps(data))
    raise SystemExit(0)


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class Payload:
    """What the extension reads from the payload file."""

    def __init__(self, path: str):
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            fail(f"JSON file not found: {path}")
        except (OSError, UnicodeDecodeError) as e:
            fail(f"Unable to read JSON file: {e}")
        except json.JSONDecodeError:
            fail("Invalid JSON in file")
        if not isinstance(data, dict):
            fail("Invalid JSON input")
        ext = _mapping(data.get("externaldetails"))
        # The most specific first: the VM's own details win over the host's, and so on.
        self.layers = [_mapping(ext.get(k)) for k in ("virtualmachine", "host", "resourcemap", "extension")]
        self.vm = _mapping(data.get("cloudstack.vm.details"))
        self.vm_details = _mapping(self.vm.get("details"))
        self.parameters = _mapping(data.get("parameters"))
        self.vm_uuid = str(data.get("virtualmachineid") or self.vm.get("uuid") or "")
        self.instance_name = str(self.vm.get("name") or data.get("virtualmachinename") or "")

    def setting(self, name: str, default: str = "") -> str:
        for layer in self.layers:
            value = layer.get(name)
            if value not in (None, ""):
                return str(value)
        return default


class VirshManager:
    def __init__(self, payload: Payload, timeout: int):
        self.p = payload
        self.deadline = time.monotonic() + max(timeout - 2, 1)
        self.uri = payload.setting("uri", "qemu:///system")
        self.image_dir = Path(payload.setting("image_dir", "/var/lib/libvirt/images"))

    # ---- helpers -------------------------------------------------------------------

    def left(self) -> float:
        return max(self.deadline - time.monotonic(), 1)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args) if args[0] == "qemu-img" else ["virsh", "-q", "-c", self.uri, *args]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.left(), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ExtensionError(f"'{' '.join(cmd[:5])}' did not finish in time") from None
        except FileNotFoundError:
            raise ExtensionError(f"{cmd[0]} is not installed") from None
        if check and r.returncode != 0:
            raise ExtensionError((r.stderr or r.stdout).strip() or f"{cmd[0]} exited with {r.returncode}")
        return r

    def default_domain(self) -> str:
        name = self.p.setting("domain_prefix") + self.p.instance_name
        if not NAME_RE.fullmatch(name):
            raise ExtensionError(f"Invalid domain name '{name}'")
        return name

    @property
    def domain(self) -> str:
        """The domain prepare chose (kept by Nubo in the VM's details), else the default."""
        name = str(self.p.vm_details.get("virsh_domain") or "") or self.default_domain()
        if not NAME_RE.fullmatch(name):
            raise ExtensionError(f"Invalid domain name '{name}'")
        return name

    def state(self, name: str) -> str | None:
        """virsh's state of a domain ('running', 'shut off', ...), None when it is not defined."""
        r = self.run("domstate", name, check=False)
        if r.returncode != 0:
            if "ailed to get domain" in r.stderr or "not found" in r.stderr:
                return None
            raise ExtensionError(r.stderr.strip())
        return r.stdout.strip()

    def domain_uuid(self, name: str) -> str | None:
        r = self.run("domuuid", name, check=False)
        return r.stdout.strip() if r.returncode == 0 else None

    def wait_state(self, name: str, wanted: set[str], seconds: float) -> bool:
        end = time.monotonic() + min(seconds, self.left())
        while True:
            if self.state(name) in wanted:
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.5)

    def domain_type(self) -> str:
        wanted = self.p.setting("domain_type")
        if wanted:
            if wanted not in ("kvm", "qemu"):
                raise ExtensionError(f"domain_type must be kvm or qemu, not '{wanted}'")
            return wanted
        caps = self.run("capabilities").stdout
        return "kvm" if "<domain type='kvm'" in caps else "qemu"

    def grace(self) -> int:
        value = self.p.setting("stop_grace_seconds", "60")
        if not value.isdigit():
            raise ExtensionError(f"stop_grace_seconds must be a whole number, not '{value}'")
        return int(value)

    def parameter(self, name: str, required: bool = True) -> str:
        value = self.p.parameters.get(name)
        value = "" if value is None else str(value).strip()
        if required and not value:
            raise ExtensionError(f"Missing required parameter: {name}")
        return value

    # ---- the contract's actions ----------------------------------------------------

    def prepare(self) -> None:
        """The domain name Nubo keeps and sends back on every later call."""
        name = self.default_domain()
        owner = self.domain_uuid(name)
        if owner and self.p.vm_uuid and owner != self.p.vm_uuid:
            name = f"{name}-{self.p.vm_uuid[:8]}"  # taken by another guest
        succeed({"details": {"virsh_domain": name}})

    def create(self) -> None:
        name = self.domain
        owner = self.domain_uuid(name)
        if owner:  # a create that ran before (Nubo retried): ours only if the UUID matches
            if self.p.vm_uuid and owner != self.p.vm_uuid:
                raise ExtensionError(f"Domain {name} already exists for another VM ({owner})")
            if self.state(name) not in RUNNING:
                self.run("start", name)
            succeed({"status": "success", "message": "Instance created"})
        cpus = _int(self.p.vm.get("cpus"), 0)
        max_ram = _int(self.p.vm.get("maxRam"), 0) or _int(self.p.vm.get("minRam"), 0)
        min_ram = _int(self.p.vm.get("minRam"), 0) or max_ram
        missing = [k for k, v in (("cpus", cpus), ("maxRam", max_ram)) if v <= 0]
        if missing:
            raise ExtensionError(f"Missing required fields: {' '.join(missing)}")
        nics = [_mapping(n) for n in self.p.vm.get("nics") or []]
        for nic in nics:
            if not MAC_RE.fullmatch(str(nic.get("mac") or "")):
                raise ExtensionError(f"Invalid MAC address '{nic.get('mac')}'")
        password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(8))
        disk = self.image_dir / f"{name}.qcow2"
        made_disk = defined = False
        try:
            self.make_disk(disk)
            made_disk = True
            xml = self.domain_xml(name, cpus, max_ram, min_ram, nics, disk, password)
            self.define(xml)
            defined = True
            self.run("start", name)
        except BaseException:
            # Leave nothing behind: the next create starts from scratch.
            if defined:
                self.run("destroy", name, check=False)
                self.run("undefine", name, "--snapshots-metadata", check=False)
            if made_disk:
                disk.unlink(missing_ok=True)
            raise
        succeed({"status": "success", "message": "Instance created"})

    def make_disk(self, disk: Path) -> None:
        size_gb = self.p.setting("disk_size_gb", "1")
        if not size_gb.isdigit() or int(size_gb) < 1:
            raise ExtensionError(f"disk_size_gb must be a whole number of GiB, not '{size_gb}'")
        self.image_dir.mkdir(parents=True, exist_ok=True)
        # No domain of this name is defined (create checked): a disk of its name is what a
        # create killed midway left behind.
        disk.unlink(missing_ok=True)
        template = self.p.setting("template_path")
        if template:
            base = Path(template)
            if not base.is_absolute() or not base.is_file():
                raise ExtensionError(f"template_path {template} is not a file")
            info = json.loads(self.run("qemu-img", "info", "--output=json", str(base)).stdout)
            virtual = int(info.get("virtual-size") or 0)
            size = max(virtual, int(size_gb) << 30) if self.p.setting("disk_size_gb") else virtual
            self.run("qemu-img", "create", "-q", "-f", "qcow2", "-F", info["format"], "-b", str(base),
                     str(disk), str(size))
        else:
            self.run("qemu-img", "create", "-q", "-f", "qcow2", str(disk), f"{size_gb}G")

    def domain_xml(self, name, cpus, max_ram, min_ram, nics, disk, password) -> str:
        listen = self.p.setting("vnc_listen", "127.0.0.1")
        bridge = self.p.setting("network_bridge")
        interfaces, meta_nics = [], []
        for nic in nics:
            source = (f"<interface type='bridge'><source bridge={quoteattr(bridge)}/>" if bridge
                      else "<interface type='ethernet'>")
            # No option ROM: an empty disk must not make SeaBIOS try a network boot.
            interfaces.append(f"{source}<mac address={quoteattr(str(nic['mac']))}/>"
                              "<model type='virtio'/><rom enabled='no'/></interface>")
            meta_nics.append(f"<nubo:nic uuid={quoteattr(str(nic.get('uuid') or ''))} "
                             f"broadcasturi={quoteattr(str(nic.get('broadcastUri') or ''))}/>")
        return f"""<domain type='{self.domain_type()}'>
  <name>{escape(name)}</name>
  {f"<uuid>{escape(self.p.vm_uuid)}</uuid>" if self.p.vm_uuid else ""}
  <metadata>
    <nubo:instance xmlns:nubo='{META_NS}' name={quoteattr(self.p.instance_name)} disk={quoteattr(str(disk))}>
      {''.join(meta_nics)}
    </nubo:instance>
  </metadata>
  <memory unit='KiB'>{max_ram // 1024}</memory>
  <currentMemory unit='KiB'>{min_ram // 1024}</currentMemory>
  <vcpu>{cpus}</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file={quoteattr(str(disk))}/><target dev='vda' bus='virtio'/>
    </disk>
    {''.join(interfaces)}
    <graphics type='vnc' port='-1' autoport='yes' passwd={quoteattr(password)}>
      <listen type='address' address={quoteattr(listen)}/>
    </graphics>
    <video><model type='vga'/></video>
  </devices>
</domain>
"""

    def define(self, xml: str) -> None:
        # The XML holds the VNC password: a 0600 file, removed at once.
        fd, path = _private_file(xml)
        try:
            self.run("define", path)
        finally:
            os.close(fd)
            os.unlink(path)

    def start(self) -> None:
        name = self.domain
        state = self.state(name)
        if state is None:
            raise ExtensionError(f"Domain {name} is not defined")
        if state not in RUNNING:
            self.run("start", name)
        succeed({"status": "success", "message": "Instance started"})

    def stop(self) -> None:
        name = self.domain
        if self.state(name) in (None, "shut off", "crashed"):
            succeed({"status": "success", "message": "Instance stopped"})
        grace = 0 if _forced(self.p.parameters.get("forced")) else self.grace()
        if grace:
            self.run("shutdown", name, check=False)
            if self.wait_state(name, {"shut off"}, grace):
                succeed({"status": "success", "message": "Instance stopped"})
        self.run("destroy", name, check=False)  # it may have shut down meanwhile
        if self.state(name) not in (None, "shut off", "crashed"):
            raise ExtensionError(f"Domain {name} did not stop")
        succeed({"status": "success", "message": "Instance stopped"})

    def reboot(self) -> None:
        name = self.domain
        if self.state(name) not in RUNNING:
            raise ExtensionError(f"Domain {name} is not running")
        # A guest without ACPI support ignores `virsh reboot`: with no grace, reset it.
        self.run("reboot" if self.grace() else "reset", name)
        succeed({"status": "success", "message": "Instance rebooted"})

    def delete(self) -> None:
        name = self.domain
        state = self.state(name)
        if state is None:
            succeed({"status": "success", "message": "Instance deleted"})
        disk = self.our_disk(name)
        if state not in ("shut off", "crashed"):
            self.run("destroy", name, check=False)
        self.run("undefine", name, "--snapshots-metadata", "--managed-save")
        if disk:
            disk.unlink(missing_ok=True)
        succeed({"status": "success", "message": "Instance deleted"})

    def our_disk(self, name: str) -> Path | None:
        """The disk create made (recorded in the domain's metadata), only inside image_dir."""
        r = self.run("metadata", name, META_NS, check=False)
        if r.returncode != 0 or not r.stdout.strip():
            return None
        path = ET.fromstring(r.stdout).get("disk")
        if not path:
            return None
        disk = Path(path)
        return disk if disk.parent.resolve() == self.image_dir.resolve() else None

    def status(self) -> None:
        state = self.state(self.domain)
        if state is None:
            succeed({"status": "success", "power_state": "poweroff", "message": "Domain is not defined"})
        power = "poweron" if state in RUNNING else "poweroff" if state in ("shut off", "crashed") else "unknown"
        succeed({"status": "success", "power_state": power})

    def getconsole(self) -> None:
        name = self.domain
        if self.state(name) not in RUNNING:
            raise ExtensionError(f"Domain {name} is not running")
        root = ET.fromstring(self.run("dumpxml", "--security-info", name).stdout)
        g = root.find("devices/graphics[@type='vnc']")
        if g is None or _int(g.get("port"), -1) <= 0:
            raise ExtensionError(f"Domain {name} has no VNC console")
        listen = g.find("listen[@type='address']")
        host = (listen.get("address") if listen is not None else None) or g.get("listen") or "127.0.0.1"
        succeed({"status": "success", "message": "Console retrieved",
                 "console": {"host": host, "port": int(g.get("port")), "password": g.get("passwd") or "",
                             "passwordonetimeuseonly": False, "protocol": "vnc"}})

    # ---- custom actions --------------------------------------------------------------

    def snapshot_name(self) -> str:
        snap = self.parameter("name")
        if not SNAPSHOT_RE.fullmatch(snap):
            raise ExtensionError(f"Invalid snapshot name '{snap}': letters, digits, '.', '_' and '-' only")
        return snap

    def createsnapshot(self) -> None:
        name, snap = self.domain, self.snapshot_name()
        args = ["snapshot-create-as", name, snap, "--atomic"]
        description = self.parameter("description", required=False)
        if description:
            args += ["--description", description]
        self.run(*args)
        succeed({"status": "success", "message": f"Snapshot '{snap}' created"})

    def listsnapshots(self) -> None:
        name = self.domain
        out = []
        for snap in self.run("snapshot-list", name, "--name").stdout.split():
            root = ET.fromstring(self.run("snapshot-dumpxml", name, snap).stdout)
            out.append({"name": snap, "description": root.findtext("description") or "",
                        "state": root.findtext("state") or "",
                        "created": time.strftime("%Y-%m-%d %H:%M:%S",
                                                 time.gmtime(_int(root.findtext("creationTime"), 0)))})
        succeed({"status": "success", "printmessage": "true", "message": out})

    def restoresnapshot(self) -> None:
        name, snap = self.domain, self.snapshot_name()
        self.run("snapshot-revert", name, snap)
        succeed({"status": "success", "message": f"Snapshot '{snap}' restored"})

    def deletesnapshot(self) -> None:
        name, snap = self.domain, self.snapshot_name()
        self.run("snapshot-delete", name, snap)
        succeed({"status": "success", "message": f"Snapshot '{snap}' deleted"})

    def setdescription(self) -> None:
        name = self.domain
        description = self.parameter("description", required=False)
        live = ["--live"] if self.state(name) in RUNNING else []
        self.run("desc", name, "--config", *live, "--new-desc", description)
        succeed({"status": "success", "message": "Description set"})


def _forced(value) -> bool:
    return value is True or str(value).lower() == "true"


def _private_file(text: str):
    import tempfile
    fd, path = tempfile.mkstemp(prefix="virsh-ext-", suffix=".xml")  # mode 0600
    os.write(fd, text.encode())
    return fd, path


ACTIONS = ("prepare", "create", "start", "stop", "reboot", "delete", "status", "getconsole",
           "createsnapshot", "listsnapshots", "restoresnapshot", "deletesnapshot", "setdescription")


def main() -> None:
    if len(sys.argv) < 3:
        fail("Usage: virsh.py <action> <payload.json> [<timeout-seconds>]")
    action = sys.argv[1].lower()
    timeout = _int(sys.argv[3], DEFAULT_TIMEOUT) if len(sys.argv) > 3 else DEFAULT_TIMEOUT
    if action not in ACTIONS:
        fail(f"Invalid action: {action}")
    manager = VirshManager(Payload(sys.argv[2]), timeout if timeout > 0 else DEFAULT_TIMEOUT)
    try:
        getattr(manager, action)()
    except ExtensionError as e:
        fail(str(e))
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - every failure is reported in the contract's shape
        fail(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main()

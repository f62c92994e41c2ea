"""Domain XML for the libvirt family, built with xml.etree (user values are
only ever attribute values or element text, never concatenated into XML), and
the few read/modify helpers the driver needs on libvirt's own XML."""
from __future__ import annotations

import ipaddress
import shlex
import xml.etree.ElementTree as ET

from app.hypervisors.base import ConsoleKind, ConsoleTarget, DiskSpec, NicSpec, OperationFailed, VMSpec
from app.hypervisors.libvirt.flavours import Flavour

_BOOT_DEVICES = {"hd", "cdrom", "network", "fd"}
_FORMATS = {"QCOW2": "qcow2", "RAW": "raw", "VHD": "vpc", "VHDX": "vhdx"}


def driver_format(fmt: str) -> str:
    """Nubo's template format name -> libvirt's <driver type=...>."""
    try:
        return _FORMATS[fmt.upper()]
    except KeyError:
        raise OperationFailed(f"Disk format {fmt} is not supported by libvirt") from None


def device_name(prefix: str, index: int) -> str:
    """vda, vdb, ..., vdz, vdaa (libvirt's own naming)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def check_listen(address: str | None) -> str:
    """The console's listen address: a specific one, never every interface."""
    address = (address or "127.0.0.1").strip()
    try:
        if ipaddress.ip_address(address).is_unspecified:
            raise OperationFailed("Refusing to open a VM console on every address (0.0.0.0 / ::): "
                                  "give the host's management address")
    except ValueError:
        pass  # a host name
    return address


def openvz_template_name(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    for ext in (".tar.gz", ".tar.xz", ".tar.bz2", ".tgz", ".tar"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.rstrip("_"): str(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = str(text)
    return el


def disk_element(flavour: Flavour, disk: DiskSpec, index: int | None = None) -> ET.Element:
    el = ET.Element("disk", {"type": "file", "device": "disk"})
    _sub(el, "driver", name="qemu", type=driver_format(disk.format))
    _sub(el, "source", file=disk.path)
    i = disk.device_id if index is None else index
    _sub(el, "target", dev=device_name(flavour.disk_prefix, i), bus=flavour.disk_bus)
    return el


def cdrom_element(flavour: Flavour, path: str | None, slot: int = 0) -> ET.Element:
    """slot 0: the ISO drive; slot 1: the config drive. An empty drive keeps its
    slot so media can be changed later without hot-plugging a controller."""
    el = ET.Element("disk", {"type": "file", "device": "cdrom"})
    _sub(el, "driver", name="qemu", type="raw")
    if path:
        _sub(el, "source", file=path)
    _sub(el, "target", dev=flavour.cdrom_targets[slot], bus=flavour.cdrom_bus)
    _sub(el, "readonly")
    return el


def nic_element(flavour: Flavour, nic: NicSpec) -> ET.Element:
    el = ET.Element("interface", {"type": "bridge"})
    _sub(el, "mac", address=nic.mac)
    _sub(el, "source", bridge=nic.bridge)
    if nic.target_dev:
        # A stable host device name (security groups match on it); libvirt refuses names
        # starting with "vnet" or "vif", which nic_device() never makes ("vn" + hex).
        _sub(el, "target", dev=nic.target_dev)
    if nic.vlan is not None:
        # libvirt tags VLANs only on Open vSwitch bridges (a Linux bridge refuses <vlan>),
        # so a VLAN-tagged NIC names its bridge as an OVS port.
        vlan = _sub(el, "vlan")
        _sub(vlan, "tag", id=int(nic.vlan))
        _sub(el, "virtualport", type="openvswitch")
    if flavour.nic_model:
        _sub(el, "model", type=flavour.nic_model)
    return el


def graphics_element(spec: VMSpec) -> ET.Element:
    listen = check_listen(spec.console.listen)
    attrs = {"type": "vnc", "listen": listen}
    if spec.console.port:
        attrs.update(port=str(int(spec.console.port)), autoport="no")
    else:
        attrs.update(port="-1", autoport="yes")
    if spec.console.password:
        attrs["passwd"] = spec.console.password[:8]  # VNC passwords are 8 characters at most
    el = ET.Element("graphics", attrs)
    _sub(el, "listen", type="address", address=listen)
    return el


def build_domain(spec: VMSpec, flavour: Flavour) -> str:
    """The persistent definition of one VM for one flavour."""
    if flavour.numeric_names and not spec.name.isdigit():
        raise OperationFailed(f"{flavour.type_name} needs a numeric container id as the VM's name, got {spec.name!r}")
    if spec.cpus < 1 or spec.memory_mib < 1:
        raise OperationFailed("A VM needs at least one CPU and some memory")
    dom = ET.Element("domain", {"type": flavour.domain_type})
    _sub(dom, "name", spec.name)
    if spec.uuid:
        _sub(dom, "uuid", spec.uuid)
    if spec.display_name:
        _sub(dom, "title", spec.display_name.replace("\n", " "))
    _sub(dom, "memory", int(spec.memory_mib), unit="MiB")
    _sub(dom, "currentMemory", int(spec.memory_mib), unit="MiB")
    _sub(dom, "vcpu", int(spec.cpus))
    if flavour.domain_type in ("kvm", "qemu", "lxc") and spec.cpu_mhz:
        # CloudStack's rule: the VM's share of the host CPU is cpus x MHz.
        _sub(_sub(dom, "cputune"), "shares", max(2, int(spec.cpus * spec.cpu_mhz)))
    if flavour.paravirt and not spec.kernel:
        _sub(dom, "bootloader", "pygrub")  # boots the kernel found in the guest's own disk

    os_el = _sub(dom, "os")
    _sub(os_el, "type", flavour.os_type, machine=flavour.machine)
    if flavour.container:
        argv = shlex.split(spec.cmdline) if spec.cmdline else ["/sbin/init"]
        _sub(os_el, "init", argv[0])
        for arg in argv[1:]:
            _sub(os_el, "initarg", arg)
    else:
        if spec.kernel:
            _sub(os_el, "kernel", spec.kernel)
            if spec.initrd:
                _sub(os_el, "initrd", spec.initrd)
            if spec.cmdline:
                _sub(os_el, "cmdline", spec.cmdline)
        if not flavour.paravirt:
            for dev in spec.boot_order:
                if dev not in _BOOT_DEVICES:
                    raise OperationFailed(f"Unknown boot device {dev!r}")
                _sub(os_el, "boot", dev=dev)
    if flavour.os_type == "hvm":
        feats = _sub(dom, "features")
        _sub(feats, "acpi")
        _sub(feats, "apic")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")

    devs = _sub(dom, "devices")
    if flavour.container:
        if not spec.root_fs_path:
            raise OperationFailed(f"A {flavour.type_name} container needs its root filesystem")
        if flavour.type_name == "OpenVZ" or flavour.domain_type == "openvz":
            # OpenVZ builds the container from an OS template by name
            # (debian-12-x86_64 for /vz/template/cache/debian-12-x86_64.tar.gz).
            fs = _sub(devs, "filesystem", type="template")
            _sub(fs, "source", name=openvz_template_name(spec.root_fs_path))
        else:
            fs = _sub(devs, "filesystem", type="mount", accessmode="passthrough")
            _sub(fs, "source", dir=spec.root_fs_path)
        _sub(fs, "target", dir="/")
    else:
        disks = sorted((d for d in spec.disks if d.device == "disk"), key=lambda d: d.device_id)
        for i, d in enumerate(disks):
            devs.append(disk_element(flavour, d, i))
        iso = spec.iso_path or next((d.path for d in spec.disks if d.device == "cdrom"), None)
        devs.append(cdrom_element(flavour, iso, 0))
        if spec.config_drive_path:
            devs.append(cdrom_element(flavour, spec.config_drive_path, 1))
    for nic in spec.nics:
        devs.append(nic_element(flavour, nic))

    if flavour.console is ConsoleKind.VNC:
        if flavour.domain_type in ("kvm", "qemu") or flavour.os_type == "hvm":
            serial = _sub(devs, "serial", type="pty")
            _sub(serial, "target", port=0)
            console = _sub(devs, "console", type="pty")
            _sub(console, "target", type="serial", port=0)
        else:  # Xen PV: the PV console and PV input devices
            console = _sub(devs, "console", type="pty")
            _sub(console, "target", type="xen", port=0)
            _sub(devs, "input", type="mouse", bus="xen")
            _sub(devs, "input", type="keyboard", bus="xen")
        if flavour.domain_type in ("kvm", "qemu"):
            _sub(devs, "input", type="tablet", bus="usb")
        devs.append(graphics_element(spec))
        if flavour.domain_type in ("kvm", "qemu"):
            _sub(_sub(devs, "video"), "model", type="vga")
            _sub(devs, "memballoon", model="virtio")
    elif flavour.console is ConsoleKind.TEXT:
        _sub(devs, "console", type="pty")
    return ET.tostring(dom, encoding="unicode")


# --- Reading and changing libvirt's XML ----------------------------------------

def console_from_xml(xml: str, flavour: Flavour, host: str) -> ConsoleTarget | None:
    """The console of a running domain from its live XML (read with
    VIR_DOMAIN_XML_SECURE so a VNC password survives)."""
    root = ET.fromstring(xml)
    if flavour.console is ConsoleKind.TEXT:
        return ConsoleTarget(kind=ConsoleKind.TEXT, host=host, port=0) if root.find("devices/console") is not None else None
    g = root.find("devices/graphics[@type='vnc']")
    if g is None:
        return None
    port = int(g.get("port") or -1)
    listen = g.get("listen") or (g.find("listen").get("address") if g.find("listen") is not None else None)
    if port <= 0:
        return None
    if not listen or listen in ("0.0.0.0", "::"):
        listen = host
    return ConsoleTarget(kind=ConsoleKind.VNC, host=listen, port=port, password=g.get("passwd"))


def set_cpu_memory(xml: str, cpus: int, memory_mib: int) -> str:
    root = ET.fromstring(xml)
    for tag in ("memory", "currentMemory"):
        el = root.find(tag)
        if el is None:
            el = _sub(root, tag)
        el.text, el.attrib = str(int(memory_mib)), {"unit": "MiB"}
    vcpu = root.find("vcpu")
    if vcpu is None:
        vcpu = _sub(root, "vcpu")
    vcpu.text = str(int(cpus))
    vcpu.attrib.pop("current", None)
    return ET.tostring(root, encoding="unicode")


def vcpus_of(xml: str) -> int | None:
    el = ET.fromstring(xml).find("vcpu")
    return int(el.get("current") or el.text) if el is not None and el.text else None


def cdrom_xml(flavour: Flavour, path: str | None, slot: int = 0) -> str:
    return ET.tostring(cdrom_element(flavour, path, slot), encoding="unicode")


def find_cdrom(xml: str, target: str) -> ET.Element | None:
    for disk in ET.fromstring(xml).findall("devices/disk[@device='cdrom']"):
        t = disk.find("target")
        if t is not None and t.get("dev") == target:
            return disk
    return None


def iso_of(xml: str, flavour: Flavour) -> str | None:
    el = find_cdrom(xml, flavour.cdrom_targets[0])
    src = el.find("source") if el is not None else None
    return src.get("file") if src is not None else None


def replace_device(xml: str, new_device: ET.Element | None, match_target: str, add: bool = True) -> str:
    """Swap (or remove, new_device=None) the disk whose target dev is match_target
    in a persistent definition; add new_device when none matched."""
    root = ET.fromstring(xml)
    devs = root.find("devices")
    if devs is None:
        devs = _sub(root, "devices")
    found = False
    for i, disk in enumerate(list(devs)):
        t = disk.find("target") if disk.tag == "disk" else None
        if t is not None and t.get("dev") == match_target:
            devs.remove(disk)
            if new_device is not None:
                devs.insert(i, new_device)
            found = True
            break
    if not found:
        if new_device is None:
            raise OperationFailed(f"The VM has no device {match_target}")
        if add:
            devs.append(new_device)
    return ET.tostring(root, encoding="unicode")


def disk_target_for_path(xml: str, path: str) -> str | None:
    for disk in ET.fromstring(xml).findall("devices/disk[@device='disk']"):
        src, t = disk.find("source"), disk.find("target")
        if src is not None and t is not None and src.get("file") == path:
            return t.get("dev")
    return None


def used_targets(xml: str) -> set[str]:
    return {t.get("dev") for t in ET.fromstring(xml).findall("devices/disk/target") if t.get("dev")}


def nic_bridges(xml: str) -> list[str]:
    """The bridges a domain's NICs are plugged into (<interface type='bridge'><source bridge>)."""
    out = []
    for iface in ET.fromstring(xml).findall("devices/interface"):
        src = iface.find("source")
        if src is not None and src.get("bridge") and src.get("bridge") not in out:
            out.append(src.get("bridge"))
    return out


def for_migration(xml: str, listen: str | None, disks: dict[str, str]) -> tuple[str, list[str]]:
    """The domain XML the destination starts from (a migratable XMLDesc with the
    console's listen address and the moved disks' paths replaced) and the target devices
    of the writable disks to copy. A path in `disks` that the domain does not use is an error."""
    root = ET.fromstring(xml)
    if listen:
        listen = check_listen(listen)
        for g in root.findall("devices/graphics[@type='vnc']"):
            g.set("listen", listen)
            for el in g.findall("listen"):
                if el.get("type") == "address":
                    el.set("address", listen)
    copy: list[str] = []
    seen: set[str] = set()
    for disk in root.findall("devices/disk"):
        src, tgt = disk.find("source"), disk.find("target")
        path = src.get("file") if src is not None else None
        if path is None or path not in disks or tgt is None:
            continue
        seen.add(path)
        src.set("file", disks[path])
        for store in disk.findall("backingStore"):  # the copy stands alone: no backing chain to keep
            disk.remove(store)
        if disk.get("device", "disk") == "disk" and disk.find("readonly") is None:
            copy.append(tgt.get("dev"))
    missing = set(disks) - seen
    if missing:
        raise OperationFailed(f"The VM does not use {', '.join(sorted(missing))}")
    return ET.tostring(root, encoding="unicode"), copy

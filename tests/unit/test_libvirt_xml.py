"""The libvirt flavours: domain XML per type validated with libvirt's own schema
(`virt-xml-validate FILE domain`) and checked for each flavour rule; the KVM ->
qemu fallback; the host-type check; error translation; migration's
migrateToURI3 call (one machine cannot hold two libvirt hosts, so it is checked
here against a recording stand-in for the libvirt domain object)."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET

import libvirt
import pytest

from app.hypervisors.base import (
    AuthenticationFailed, ConsoleKind, ConsoleSpec, DiskSpec, DriverContext, HostConnection, HostUnreachable,
    NicSpec, OperationFailed, OperationNotSupported, OperationTimedOut, VMNotFound, VMSpec, WrongHypervisor,
)
from app.hypervisors.libvirt import domain_xml as dx
from app.hypervisors.libvirt import flavours as F
from app.hypervisors.libvirt.driver import LibvirtDriver, translate
from app.hypervisors.libvirt.types import CUSTOM, KVM, LXC, OPENVZ, XEN

UUID = "6897e1af-c7ef-4fbf-a244-260f34cdc7b5"


def spec(**kw) -> VMSpec:
    base = dict(name="i-2-10-VM", uuid=UUID, cpus=2, cpu_mhz=1000, memory_mib=512,
                display_name="web <1> & 'quotes'",
                disks=[DiskSpec("/pool/root.qcow2", "QCOW2", device_id=0),
                       DiskSpec("/pool/data.raw", "RAW", device_id=1)],
                nics=[NicSpec("02:00:0a:00:00:01", "cloudbr0", vlan=42), NicSpec("02:00:0a:00:00:02", "cloudbr1")],
                iso_path="/isos/debian.iso", config_drive_path="/pool/cidata.iso",
                console=ConsoleSpec(listen="10.1.1.5", password="pw123456"))
    base.update(kw)
    return VMSpec(**base)


def validate(tmp_path, xml: str) -> ET.Element:
    """libvirt's RELAX NG schema for domains, through libvirt's own tool."""
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    r = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return ET.fromstring(xml)


def pv() -> F.Flavour:
    return F.resolve(F.XEN, {"xen.guest.boot.mode": "pv"})


def hvm() -> F.Flavour:
    return F.resolve(F.XEN, {"xen.guest.boot.mode": "hvm"})


# --- Flavours: schema + rules ---------------------------------------------------

def test_kvm_domain(tmp_path):
    root = validate(tmp_path, dx.build_domain(spec(), F.KVM))
    assert root.get("type") == "kvm" and root.findtext("os/type") == "hvm"
    assert [d.get("dev") for d in root.findall("devices/disk[@device='disk']/target")] == ["vda", "vdb"]
    assert {d.get("bus") for d in root.findall("devices/disk[@device='disk']/target")} == {"virtio"}
    assert [d.get("type") for d in root.findall("devices/disk[@device='disk']/driver")] == ["qcow2", "raw"]
    cdroms = root.findall("devices/disk[@device='cdrom']")
    assert [c.find("source").get("file") for c in cdroms] == ["/isos/debian.iso", "/pool/cidata.iso"]
    assert [b.get("dev") for b in root.findall("os/boot")] == ["hd", "cdrom"]
    assert {m.get("type") for m in root.findall("devices/interface/model")} == {"virtio"}
    g = root.find("devices/graphics")
    assert g.get("type") == "vnc" and g.get("listen") == "10.1.1.5" and g.get("passwd") == "pw123456"
    assert root.findtext("title") == "web <1> & 'quotes'"  # escaped by the XML writer, not by hand
    assert root.findtext("cputune/shares") == "2000"


def test_vlan_tag_only_when_given(tmp_path):
    root = validate(tmp_path, dx.build_domain(spec(), F.KVM))
    nics = root.findall("devices/interface")
    assert nics[0].find("vlan/tag").get("id") == "42" and nics[0].find("source").get("bridge") == "cloudbr0"
    assert nics[0].find("mac").get("address") == "02:00:0a:00:00:01"
    assert nics[1].find("vlan") is None
    # VLAN tags need an Open vSwitch bridge on libvirt hosts.
    assert nics[0].find("virtualport").get("type") == "openvswitch" and nics[1].find("virtualport") is None


@pytest.mark.parametrize("listen", ["0.0.0.0", "::", "0:0::0"])
def test_console_never_listens_everywhere(listen):
    with pytest.raises(OperationFailed, match="every address"):
        dx.build_domain(spec(console=ConsoleSpec(listen=listen)), F.KVM)


def test_default_listen_is_loopback_and_autoport(tmp_path):
    root = validate(tmp_path, dx.build_domain(spec(console=ConsoleSpec(listen="")), F.KVM))
    g = root.find("devices/graphics")
    assert g.get("listen") == "127.0.0.1" and g.get("autoport") == "yes" and "passwd" not in g.attrib
    assert "0.0.0.0" not in ET.tostring(root, encoding="unicode")


def test_direct_kernel_boot(tmp_path):
    root = validate(tmp_path, dx.build_domain(
        spec(kernel="/boot/vmlinuz", initrd="/boot/initrd.img", cmdline="console=ttyS0 quiet"), F.KVM))
    assert (root.findtext("os/kernel"), root.findtext("os/initrd"), root.findtext("os/cmdline")) == (
        "/boot/vmlinuz", "/boot/initrd.img", "console=ttyS0 quiet")


def test_kvm_falls_back_to_qemu_where_the_host_has_no_kvm():
    no_kvm = ("<capabilities><host><cpu><arch>x86_64</arch></cpu></host><guest><os_type>hvm</os_type>"
              "<arch name='x86_64'><domain type='qemu'/></arch></guest></capabilities>")
    with_kvm = no_kvm.replace("<domain type='qemu'/>", "<domain type='qemu'/><domain type='kvm'/>")
    assert F.resolve(F.KVM, {}, "QEMU", no_kvm).domain_type == "qemu"
    assert F.resolve(F.KVM, {}, "QEMU", with_kvm).domain_type == "kvm"
    assert "<domain type=\"qemu\"" in dx.build_domain(spec(), F.resolve(F.KVM, {}, "QEMU", no_kvm))


def test_xen_pv_domain(tmp_path):
    root = validate(tmp_path, dx.build_domain(spec(), pv()))
    assert root.get("type") == "xen"
    t = root.find("os/type")
    assert t.text == "xen" and t.get("machine") == "xenpv"
    assert root.findtext("bootloader") == "pygrub" and root.find("os/boot") is None
    disks = root.findall("devices/disk[@device='disk']/target")
    assert [d.get("dev") for d in disks] == ["xvda", "xvdb"] and {d.get("bus") for d in disks} == {"xen"}
    assert {m.get("type") for m in root.findall("devices/interface/model")} == {"netfront"}
    assert root.find("devices/console/target").get("type") == "xen"
    assert {i.get("bus") for i in root.findall("devices/input")} == {"xen"}
    assert root.find("devices/graphics").get("listen") == "10.1.1.5"
    assert root.find("features") is None


def test_xen_pv_with_kernel_has_no_bootloader(tmp_path):
    root = validate(tmp_path, dx.build_domain(spec(kernel="/boot/vmlinuz-xen", cmdline="root=/dev/xvda1"), pv()))
    assert root.find("bootloader") is None and root.findtext("os/kernel") == "/boot/vmlinuz-xen"


def test_xen_hvm_domain(tmp_path):
    root = validate(tmp_path, dx.build_domain(spec(), hvm()))
    t = root.find("os/type")
    assert root.get("type") == "xen" and t.text == "hvm" and t.get("machine") == "xenfv"
    assert [b.get("dev") for b in root.findall("os/boot")] == ["hd", "cdrom"]
    assert root.find("features/acpi") is not None
    assert [d.get("dev") for d in root.findall("devices/disk[@device='disk']/target")] == ["xvda", "xvdb"]
    assert root.find("devices/interface/model") is None  # libxl's default emulated + PV NIC
    assert root.find("devices/graphics").get("type") == "vnc"


def test_xen_boot_mode_setting_defaults_to_pv():
    assert F.resolve(F.XEN, {}).os_type == "xen"
    assert F.resolve(F.XEN, {"xen.guest.boot.mode": "hvm"}).os_type == "hvm"


def test_xen_pv_reported_as_linux_is_parsed():
    caps = ("<capabilities><guest><os_type>linux</os_type><arch name='x86_64'><domain type='xen'/></arch>"
            "</guest></capabilities>")
    assert F.offered_domain_types(caps, "xen") == ["xen"]


def test_lxc_domain(tmp_path):
    root = validate(tmp_path, dx.build_domain(
        spec(root_fs_path="/var/lib/nubo/rootfs/abc", cmdline="/sbin/init --log-level=err"), F.LXC))
    assert root.get("type") == "lxc" and root.findtext("os/type") == "exe"
    assert root.findtext("os/init") == "/sbin/init"
    assert [a.text for a in root.findall("os/initarg")] == ["--log-level=err"]
    fs = root.find("devices/filesystem")
    assert fs.get("type") == "mount" and fs.find("source").get("dir") == "/var/lib/nubo/rootfs/abc"
    assert fs.find("target").get("dir") == "/"
    assert root.find("devices/disk") is None and root.find("devices/graphics") is None
    assert root.find("devices/console").get("type") == "pty"
    assert root.find("devices/interface/model") is None


def test_lxc_needs_a_root_filesystem():
    with pytest.raises(OperationFailed, match="root filesystem"):
        dx.build_domain(spec(root_fs_path=None), F.LXC)


def test_openvz_domain(tmp_path):
    root = validate(tmp_path, dx.build_domain(
        spec(name="101", root_fs_path="/vz/template/cache/debian-12-x86_64.tar.gz"), F.OPENVZ))
    assert root.get("type") == "openvz" and root.findtext("name") == "101"
    fs = root.find("devices/filesystem")
    assert fs.get("type") == "template" and fs.find("source").get("name") == "debian-12-x86_64"
    assert root.find("devices/graphics") is None and root.find("devices/console") is None
    assert root.find("devices/interface/vlan/tag").get("id") == "42"


def test_openvz_needs_numeric_names():
    with pytest.raises(OperationFailed, match="numeric"):
        dx.build_domain(spec(name="i-2-10-VM", root_fs_path="debian"), F.OPENVZ)


def test_flavour_declarations():
    assert (F.OPENVZ.events, F.OPENVZ.console, F.OPENVZ.storage) == (False, ConsoleKind.NONE, False)
    assert F.LXC.console is ConsoleKind.TEXT and KVM.capabilities.console is ConsoleKind.VNC
    assert KVM.capabilities.template_formats == ("QCOW2", "RAW") == XEN.capabilities.template_formats
    assert LXC.capabilities.template_formats == ("TAR",) == OPENVZ.capabilities.template_formats
    assert CUSTOM.capabilities.template_formats == ("RAW",)
    assert CUSTOM.capabilities.direct_download and CUSTOM.capabilities.local_storage
    assert KVM.capabilities.live_migration and XEN.capabilities.live_migration
    assert not LXC.capabilities.live_migration and not OPENVZ.capabilities.lifecycle_events
    assert {t.default_traffic_label for t in (KVM, XEN, LXC, OPENVZ, CUSTOM)} == {"cloudbr0"}
    assert [t.name for t in (KVM, XEN, LXC, OPENVZ, CUSTOM)] == ["KVM", "Xen", "LXC", "OpenVZ", "Custom"]
    for t in (KVM, XEN, LXC, OPENVZ, CUSTOM):
        assert t.default_display_name == t.name
        secrets = {f.name for f in t.host_fields if f.secret}
        assert "password" in secrets


def test_custom_follows_the_driver_it_reaches():
    assert F.resolve(F.CUSTOM, {}, "LXC").container
    assert F.resolve(F.CUSTOM, {}, "Xen", None).disk_bus == "xen"
    assert F.resolve(F.CUSTOM, {}, "bhyve").domain_type == "kvm"  # unknown: KVM's shape, RAW images


# --- Host fields and URIs ---------------------------------------------------------

def test_bare_host_becomes_an_ssh_uri():
    c = KVM.connection("kvm1.example.org", {"username": "nubo"})
    assert c.url == "qemu+ssh://nubo@kvm1.example.org/system?no_tty=1" and c.address == "kvm1.example.org"
    c = XEN.connection("root@10.0.0.7", {"ssh_host_key_check": "off"})
    assert c.url == "xen+ssh://root@10.0.0.7/system?no_tty=1&no_verify=1" and c.address == "10.0.0.7"
    assert KVM.connection("qemu+tls://kvm2/system", {}).url == "qemu+tls://kvm2/system"
    assert LXC.connection("lxc:///system", {}).address == "localhost"


def test_host_field_validation():
    url = {f.name: f for f in KVM.host_fields}["url"]
    assert url.validate("qemu+ssh://root@h/system?keyfile=/k&no_tty=1") is None
    assert url.validate("kvm1") is None and url.validate("10.0.0.1") is None
    assert "qemu://" in url.validate("xen:///system")
    assert url.validate("bad host!") and url.validate("qemu:///system' onerror")
    custom_url = {f.name: f for f in CUSTOM.host_fields}["url"]
    assert custom_url.validate("bhyve:///system") is None
    key = {f.name: f for f in KVM.host_fields}["ssh_private_key"]
    assert key.secret and key.validate("not a key") and key.validate(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----") is None


def test_ssh_key_goes_to_a_private_keyfile(tmp_path):
    d = KVM.make_driver(HostConnection("qemu+ssh://root@kvm1/system?no_tty=1", "kvm1",
                                       {"ssh_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
                                                           "-----END OPENSSH PRIVATE KEY-----"}),
                        DriverContext(instance_path=str(tmp_path)))
    uri = d._uri_with_key()
    keyfile = uri.split("keyfile=")[1]
    from urllib.parse import unquote
    path = unquote(keyfile)
    assert path.startswith(str(tmp_path)) and "no_tty=1" in uri
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_pinned_host_key_is_checked_by_libvirts_libssh2_transport(tmp_path):
    """OpenSSH (the ssh transport) would read only ~/.ssh/known_hosts: with a pinned key the
    URI goes over libssh2 with a known_hosts file of that key alone."""
    from urllib.parse import parse_qs
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----"
    pinned = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJM1KgD59T7CveZL050HEW7Z4dn3fpd8uyWYzk5SWxWg lab1"
    ctx = DriverContext(instance_path=str(tmp_path))

    def opened(url, **fields):
        uri = KVM.make_driver(HostConnection(url, "h", fields), ctx)._uri_with_key()
        return uri, {k: v[0] for k, v in parse_qs(uri.split("?", 1)[1]).items()} if "?" in uri else {}

    uri, q = opened("qemu+ssh://root@10.0.0.7/system?no_tty=1", ssh_private_key=key, ssh_host_key=pinned)
    assert uri.startswith("qemu+libssh2://root@10.0.0.7/system?") and "no_tty" not in q
    assert q["known_hosts_verify"] == "normal" and q["sshauth"] == "privkey"
    assert open(q["known_hosts"]).read() == "10.0.0.7 " + " ".join(pinned.split()[:2]) + "\n"
    assert q["keyfile"].startswith(str(tmp_path)) and stat.S_IMODE(os.stat(q["known_hosts"]).st_mode) == 0o600
    _, q = opened("qemu+ssh://root@10.0.0.7:2222/system", ssh_host_key="10.0.0.7 " + pinned)
    assert open(q["known_hosts"]).read().startswith("[10.0.0.7]:2222 ssh-ed25519 AAAA") and "sshauth" not in q
    # The check off, or no pinned key: OpenSSH as given.
    uri, _ = opened("qemu+ssh://root@10.0.0.7/system?no_verify=1", ssh_host_key=pinned)
    assert uri == "qemu+ssh://root@10.0.0.7/system?no_verify=1"
    uri, _ = opened("qemu+ssh://root@10.0.0.7/system", ssh_host_key=pinned, ssh_host_key_check="off")
    assert uri == "qemu+ssh://root@10.0.0.7/system"
    assert opened("qemu+tls://10.0.0.7/system", ssh_host_key=pinned)[0] == "qemu+tls://10.0.0.7/system"


def test_a_remote_host_that_does_not_answer_is_unreachable_at_once():
    """libvirt's own connect has no timeout: the driver checks the port first (_check_reachable)."""
    import socket
    from app.hypervisors.base import HostUnreachable
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        d = KVM.make_driver(HostConnection(f"qemu+tcp://127.0.0.2:{port}/system", "127.0.0.2"))
        with pytest.raises(HostUnreachable, match=f"port {port} does not answer"):
            d.check_host()


# --- Host-type check ----------------------------------------------------------------

KVM_CAPS = ("<capabilities><host><cpu><arch>x86_64</arch></cpu></host><guest><os_type>hvm</os_type>"
            "<arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest></capabilities>")
XEN_CAPS = ("<capabilities><host><cpu><arch>x86_64</arch></cpu></host>"
            "<guest><os_type>xen</os_type><arch name='x86_64'><domain type='xen'/></arch></guest>"
            "<guest><os_type>hvm</os_type><arch name='x86_64'><domain type='xen'/></arch></guest></capabilities>")
QEMU_ONLY_CAPS = KVM_CAPS.replace("<domain type='kvm'/>", "")


def test_xen_host_refused_as_kvm():
    with pytest.raises(WrongHypervisor):
        F.check_host_type(F.KVM, "Xen", XEN_CAPS)
    # A dom0 running libvirt's QEMU driver too: the facts files tell.
    with pytest.raises(WrongHypervisor, match="Xen dom0"):
        F.check_host_type(F.KVM, "QEMU", QEMU_ONLY_CAPS, local_kind="xen")
    with pytest.raises(WrongHypervisor, match="not a KVM URI"):
        F.check_uri(F.KVM, "xen:///system")


def test_kvm_host_refused_as_xen():
    with pytest.raises(WrongHypervisor):
        F.check_host_type(F.XEN, "QEMU", KVM_CAPS)
    with pytest.raises(WrongHypervisor, match="runs KVM"):
        F.check_host_type(F.XEN, "Xen", XEN_CAPS, local_kind="kvm")
    with pytest.raises(WrongHypervisor, match="not a Xen URI"):
        F.check_uri(F.XEN, "qemu+ssh://root@h/system")


def test_matching_hosts_pass():
    F.check_host_type(F.KVM, "QEMU", KVM_CAPS, local_kind="kvm")
    F.check_host_type(F.KVM, "QEMU", QEMU_ONLY_CAPS, local_kind=None)  # emulation fallback
    F.check_host_type(F.XEN, "Xen", XEN_CAPS, local_kind="xen")
    F.check_host_type(F.CUSTOM, "bhyve", "<capabilities/>")
    F.check_uri(F.KVM, "test:///default", testing=True)
    with pytest.raises(WrongHypervisor):
        F.check_uri(F.KVM, "test:///default", testing=False)


def test_local_host_kind_reads_the_facts_files(tmp_path):
    assert F.local_host_kind(str(tmp_path)) is None
    (tmp_path / "sys/hypervisor").mkdir(parents=True)
    (tmp_path / "sys/hypervisor/type").write_text("xen\n")
    (tmp_path / "proc/xen").mkdir(parents=True)
    (tmp_path / "proc/xen/capabilities").write_text("")
    assert F.local_host_kind(str(tmp_path)) is None  # a domU, not dom0
    (tmp_path / "proc/xen/capabilities").write_text("control_d\n")
    assert F.local_host_kind(str(tmp_path)) == "xen"
    kvm_root = tmp_path / "k"
    (kvm_root / "dev").mkdir(parents=True)
    (kvm_root / "dev/kvm").write_text("")
    assert F.local_host_kind(str(kvm_root)) == "kvm"


# --- Connections and errors -------------------------------------------------------

def test_open_auth_with_credentials(tmp_path):
    node = tmp_path / "node.xml"
    node.write_text("<node><auth><user password='s3cret'>alice</user></auth>"
                    "<cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads>"
                    "<active>4</active></cpu><memory>4194304</memory></node>")
    uri = f"test://{node}"
    good = KVM.make_driver(HostConnection(uri, "localhost", {"username": "alice", "password": "s3cret"}),
                           DriverContext(testing=True))
    facts = good.check_host()
    assert (facts.cpu_cores, facts.cpu_mhz, facts.memory_bytes) == (4, 2000, 4 << 30)
    good.close()
    bad = KVM.make_driver(HostConnection(uri, "localhost", {"username": "alice", "password": "wrong"}),
                          DriverContext(testing=True))
    with pytest.raises(AuthenticationFailed, match="refused the credentials"):
        bad.check_host()


def test_unreachable_host():
    d = KVM.make_driver(HostConnection("qemu+tcp://127.0.0.1:9/system", "127.0.0.1"))
    with pytest.raises(HostUnreachable, match="Cannot reach 127.0.0.1"):
        d.check_host()


class _Err(libvirt.libvirtError):
    def __init__(self, code):
        Exception.__init__(self, "boom")
        self.err = (code, 0, "boom", 0, "", "", "", 0, 0)


@pytest.mark.parametrize("code, exc", [
    (libvirt.VIR_ERR_NO_DOMAIN, VMNotFound), (libvirt.VIR_ERR_AUTH_FAILED, AuthenticationFailed),
    (libvirt.VIR_ERR_NO_SUPPORT, OperationNotSupported), (libvirt.VIR_ERR_OPERATION_TIMEOUT, OperationTimedOut),
    (libvirt.VIR_ERR_RPC, HostUnreachable), (libvirt.VIR_ERR_OPERATION_FAILED, OperationFailed),
])
def test_libvirt_errors_are_translated(code, exc):
    err = translate(_Err(code), "Doing it")
    assert type(err) is exc and str(err).startswith("Doing it: ")


# --- Migration: a recording stand-in for libvirt's domain object -----------------

class RecordingDomain:
    def __init__(self):
        self.calls = []

    def migrateToURI3(self, uri, params, flags):
        self.calls.append((uri, params, flags))
        return 0


class StandInConnection:
    def __init__(self, dom, conn_type="QEMU", caps=KVM_CAPS):
        self.dom, self.conn_type, self.caps = dom, conn_type, caps

    def lookupByName(self, name):
        if name != "i-2-10-VM":
            raise _Err(libvirt.VIR_ERR_NO_DOMAIN)
        return self.dom

    def getType(self):
        return self.conn_type

    def getCapabilities(self):
        return self.caps


def _driver_on(standin, hv_type=KVM, uri="qemu+ssh://root@kvm1/system"):
    d = hv_type.make_driver(HostConnection(uri, "kvm1"))
    d._conn = standin  # what _open() would have returned
    return d


def test_migrate_issues_migrate_to_uri3_with_the_right_flags_and_params():
    dom = RecordingDomain()
    d = _driver_on(StandInConnection(dom))
    dest = KVM.connection("qemu+ssh://root@kvm2/system?no_tty=1", {})
    d.migrate_vm("i-2-10-VM", dest)
    [(uri, params, flags)] = dom.calls
    assert uri == "qemu+ssh://root@kvm2/system?no_tty=1"
    assert flags == (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
                     | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    assert params == {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://kvm2"}
    d.migrate_vm("i-2-10-VM", dest, live=False)
    assert not dom.calls[1][2] & libvirt.VIR_MIGRATE_LIVE


def test_migrate_errors():
    d = _driver_on(StandInConnection(RecordingDomain()))
    with pytest.raises(VMNotFound):
        d.migrate_vm("nope", KVM.connection("kvm2", {}))

    class Failing(RecordingDomain):
        def migrateToURI3(self, uri, params, flags):
            raise _Err(libvirt.VIR_ERR_OPERATION_FAILED)
    d = _driver_on(StandInConnection(Failing()))
    with pytest.raises(OperationFailed, match="Cannot migrate VM i-2-10-VM to kvm2"):
        d.migrate_vm("i-2-10-VM", KVM.connection("kvm2", {}))
    lxc = _driver_on(StandInConnection(RecordingDomain(), "LXC", "<capabilities/>"), LXC, "lxc:///system")
    with pytest.raises(OperationNotSupported):
        lxc.migrate_vm("i-2-10-VM", LXC.connection("lxc2", {}))


MIGRATABLE = """<domain type='qemu'><name>i-2-10-VM</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/a/root.qcow2'/>
<backingStore type='file'><format type='raw'/><source file='/a/template-1'/></backingStore><target dev='vda'/></disk>
<disk type='file' device='disk'><source file='/shared/data.qcow2'/><target dev='vdb'/></disk>
<disk type='file' device='cdrom'><source file='/a/cidata.iso'/><target dev='hdc'/><readonly/></disk>
<graphics type='vnc' port='5900' autoport='yes' listen='198.18.200.11'><listen type='address' address='198.18.200.11'/></graphics>
</devices></domain>"""


def test_the_destination_xml_of_a_migration():
    xml, copy = dx.for_migration(MIGRATABLE, "198.18.200.12", {"/a/root.qcow2": "/b/root.qcow2",
                                                                "/a/cidata.iso": "/b/cidata.iso"})
    root = ET.fromstring(xml)
    g = root.find("devices/graphics")
    assert g.get("listen") == "198.18.200.12" and g.find("listen").get("address") == "198.18.200.12"
    disks = root.findall("devices/disk")
    assert [d.find("source").get("file") for d in disks] == ["/b/root.qcow2", "/shared/data.qcow2", "/b/cidata.iso"]
    assert disks[0].find("backingStore") is None  # the copy stands alone
    assert copy == ["vda"]  # the read-only config drive is put there by Nubo, not copied by QEMU
    with pytest.raises(OperationFailed, match="does not use /nope"):
        dx.for_migration(MIGRATABLE, None, {"/nope": "/b/x"})
    with pytest.raises(OperationFailed, match="every address"):
        dx.for_migration(MIGRATABLE, "0.0.0.0", {})


class WatchedDomain(RecordingDomain):
    """migrateToURI3 blocks until the test has seen two samples of job stats."""
    def __init__(self, fail=None):
        super().__init__()
        import threading
        self.samples, self.aborted, self.fail = 0, threading.Event(), fail
        self.go = threading.Event()

    def XMLDesc(self, flags):
        assert flags & libvirt.VIR_DOMAIN_XML_MIGRATABLE
        return MIGRATABLE

    def name(self):
        return "i-2-10-VM"

    def migrateToURI3(self, uri, params, flags):
        super().migrateToURI3(uri, params, flags)
        if not self.go.wait(10):
            raise AssertionError("never released")
        if self.aborted.is_set():
            raise _Err(libvirt.VIR_ERR_OPERATION_ABORTED)
        if self.fail:
            raise _Err(self.fail)
        return 0

    def jobStats(self, flags=0):
        self.samples += 1
        if self.samples >= 2:
            self.go.set()
        return {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "data_processed": 100 << 20, "data_remaining": 50 << 20,
                "data_total": 150 << 20, "memory_remaining": 10 << 20, "disk_remaining": 40 << 20}

    def abortJob(self):
        self.aborted.set()
        self.go.set()


def test_migration_with_storage_and_progress(monkeypatch):
    import app.hypervisors.libvirt.driver as drv
    from app.hypervisors.base import MigrationSpec
    monkeypatch.setattr(drv, "MIGRATION_POLL_SECONDS", 0.01)
    dom = WatchedDomain()
    d = _driver_on(StandInConnection(dom))
    seen = []
    spec = MigrationSpec(console_listen="198.18.200.12", disks={"/a/root.qcow2": "/b/root.qcow2"},
                         declared_shared=True)
    d.migrate_vm("i-2-10-VM", KVM.connection("qemu+ssh://root@198.18.200.12/system", {}), spec=spec,
                 progress=seen.append)
    [(uri, params, flags)] = dom.calls
    assert flags & libvirt.VIR_MIGRATE_NON_SHARED_DISK and flags & libvirt.VIR_MIGRATE_UNSAFE
    assert flags & libvirt.VIR_MIGRATE_LIVE
    assert params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] == ["vda"]
    assert "/b/root.qcow2" in params[libvirt.VIR_MIGRATE_PARAM_DEST_XML]
    assert seen and (seen[0].processed, seen[0].remaining, seen[0].disk_remaining) == (100 << 20, 50 << 20, 40 << 20)

    # A progress callback that raises (the job was reaped) aborts the migration.
    dom = WatchedDomain()
    d = _driver_on(StandInConnection(dom))

    def lost(_p):
        raise RuntimeError("job lost")
    with pytest.raises(RuntimeError, match="job lost"):
        d.migrate_vm("i-2-10-VM", KVM.connection("kvm2", {}), progress=lost)
    assert dom.aborted.is_set()

    # libvirt's failure comes back translated, from the migration's thread.
    d = _driver_on(StandInConnection(WatchedDomain(fail=libvirt.VIR_ERR_OPERATION_FAILED)))
    with pytest.raises(OperationFailed, match="Cannot migrate VM i-2-10-VM to kvm2"):
        d.migrate_vm("i-2-10-VM", KVM.connection("kvm2", {}), progress=seen.append)


def test_openvz_pushes_no_events():
    d = _driver_on(StandInConnection(RecordingDomain(), "OpenVZ", "<capabilities/>"), OPENVZ, "openvz:///system")
    with pytest.raises(OperationNotSupported, match="poll"):
        d.register_events(lambda name, state: None)
    with pytest.raises(OperationNotSupported):
        d.console_target("101")


def test_virt_xml_validate_is_installed():
    assert shutil.which("virt-xml-validate") and shutil.which("xmllint"), \
        "scripts/sysdeps.sh test installs libvirt-clients and libxml2-utils"

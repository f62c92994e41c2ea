"""The Hyper-V driver against the WS-Management double: the PowerShell it sends,
injection safety, error translation, transports and the VMConnect .rdp file."""
import base64
import json

import pytest

from app.hypervisors.base import (AuthenticationFailed, ConsoleKind, ConsoleTarget, DiskSpec, DriverContext,
                                  HostUnreachable, NicSpec, OperationFailed, StoragePoolSpec, VMNotFound,
                                  VMSpec, VolumeSpec, WrongHypervisor)
from app.hypervisors.hyperv.driver import rdp_file
from app.hypervisors.hyperv.powershell import build, parse_op
from app.hypervisors.hyperv.types import HYPERV
from tests.hyperv.wsman_double import WsmanDouble, clixml_error
from tests.integration.test_api import keys, signed  # noqa: F401  (fixture)

CTX = DriverContext(testing=True)
POOL = StoragePoolSpec(uuid="p", name="local", kind="Filesystem", path="D:\\VMs")


@pytest.fixture
def double():
    with WsmanDouble("127.0.0.1") as d:
        yield d


def driver(d, **fields):
    return HYPERV.make_driver(HYPERV.connection("127.0.0.1", d.fields(**fields)), CTX)


def spec(name="web-1"):
    return VMSpec(name=name, uuid="u", cpus=2, cpu_mhz=1000, memory_mib=2048,
                  disks=[DiskSpec(path="D:\\VMs\\root.vhdx", format="VHDX")],
                  nics=[NicSpec(mac="02:00:0a:01:01:05", bridge="nubo-switch", vlan=42)])


def test_start_sends_new_vm_vlan_and_start(double):
    drv = driver(double)
    info = drv.start_vm(spec())
    script = next(s for s in double.scripts if parse_op(s)[0] == "start_vm")
    for cmd in ("New-VM -Name $a.name -MemoryStartupBytes $a.memory -Generation $a.generation -VHDPath $a.vhds[0] -SwitchName $a.switch",
                "Set-VMProcessor -VMName $a.name -Count $a.cpus",
                "Set-VMNetworkAdapterVlan -VMName $a.name -Access -VlanId $a.vlan", "Start-VM -Name $a.name",
                "$ProgressPreference = 'SilentlyContinue'", "[Console]::OutputEncoding = [Text.Encoding]::UTF8",
                "ConvertTo-Json -Compress"):
        assert cmd in script
    _, args = parse_op(script)
    assert args == {"name": "web-1", "memory": 2048 << 20, "cpus": 2, "generation": 2,
                    "vhds": ["D:\\VMs\\root.vhdx"], "switch": "nubo-switch", "mac": "02000A010105",
                    "vlan": 42, "iso": None}
    assert info.console.kind is ConsoleKind.RDP and info.console.port == 2179
    assert info.console.vm_guid == double.hyperv.vms["web-1"]["id"]


def test_differencing_disk_from_template(double):
    drv = driver(double)
    drv.create_volume(VolumeSpec(name="base", pool=POOL, size_bytes=1 << 30, format="VHDX"))
    vol = drv.create_volume(VolumeSpec(name="5f0c9a2e-uuid", pool=POOL, size_bytes=1 << 30, format="VHDX",
                                       base_path="D:\\VMs\\base.vhdx", thin=True))
    script = double.scripts[-1]
    assert "New-VHD -Path $a.path -ParentPath $a.parent -Differencing" in script
    assert parse_op(script)[1]["path"] == "D:\\VMs\\5f0c9a2e-uuid.vhdx"  # files are named by UUID
    assert vol.physical_bytes < vol.size_bytes


def test_move_vm_and_turn_off(double):
    drv = driver(double)
    drv.start_vm(spec())
    with WsmanDouble("localhost") as other:
        dest = HYPERV.connection("localhost", other.fields())
        drv.migrate_vm("web-1", dest)
        assert "Move-VM -Name $a.name -DestinationHost $a.dest" in double.scripts[-1]
        assert parse_op(double.scripts[-1])[1]["dest"] == "localhost"
        assert "web-1" in other.hyperv.vms
    drv2 = driver(double)
    drv2.start_vm(spec("db-1"))
    drv2.force_stop_vm("db-1")
    assert "Stop-VM -Name $a.name -TurnOff -Force" in double.scripts[-1]


@pytest.mark.parametrize("hostile", ["x'; Remove-VM * -Force; '", 'x"; $(Stop-Computer)', "x`nGet-Process",
                                     "x\u2019; Format-Volume \u2018"])
def test_hostile_names_are_inert(double, hostile):
    drv = driver(double)
    with pytest.raises(VMNotFound):
        drv.vm_info(hostile)
    script = double.scripts[-1]
    assert hostile not in script  # the name only travels inside the base64 JSON blob
    assert parse_op(script)[1]["name"] == hostile


def test_clixml_error_becomes_clear_driver_error(double):
    double.canned["reboot_vm"] = (b"", clixml_error("The operation cannot be performed while the VM is in its current state."), 1)
    drv = driver(double)
    with pytest.raises(OperationFailed, match="cannot be performed while the VM is in its current state"):
        drv.reboot_vm("web-1")


def test_wrong_password_and_http_500_and_unreachable(double):
    with pytest.raises(AuthenticationFailed):
        driver(double, password="wrong").check_host()
    double.http_status = 500
    with pytest.raises((OperationFailed, HostUnreachable)):
        driver(double).check_host()
    with pytest.raises(HostUnreachable):
        driver(double, port="1").check_host()


def test_host_without_hyperv_role_is_refused():
    with WsmanDouble("127.0.0.1", hyperv_role=False) as d:
        with pytest.raises(WrongHypervisor, match="no Hyper-V role"):
            driver(d).check_host()


def test_plaintext_refused_outside_tests(double):
    with pytest.raises(AuthenticationFailed, match="plaintext"):
        HYPERV.make_driver(HYPERV.connection("127.0.0.1", double.fields()), DriverContext(testing=False))


def test_rdp_file_has_exactly_the_fields_and_no_password():
    target = ConsoleTarget(kind=ConsoleKind.RDP, host="hv1.example", port=2179,
                           vm_guid="0C5F3A2B-1111-2222-3333-444455556666")
    text = rdp_file(target, "alice")
    assert text.splitlines() == ["full address:s:hv1.example", "server port:i:2179",
                                 "pcb:s:0C5F3A2B-1111-2222-3333-444455556666;EnhancedMode=0",
                                 "negotiate security layer:i:0", "username:s:alice"]
    assert "password" not in text.lower()


def test_script_builder_roundtrip():
    script = build("vm_info", "Get-VM -Name $a.name", {"name": "a'b"})
    assert parse_op(script) == ("vm_info", {"name": "a'b"})
    blob = script.split("FromBase64String('")[1].split("')")[0]
    assert json.loads(base64.b64decode(blob)) == {"name": "a'b"}


# --- The ssl transport: per-host certificate trust ----------------------------------------------

@pytest.fixture(scope="module")
def tls_doubles():
    """Two HTTPS doubles: one self-signed, one whose certificate a test CA issued."""
    from tests.hyperv.certs import issued_by_ca, self_signed
    with WsmanDouble("127.0.0.1", tls=self_signed()) as pinned, WsmanDouble("localhost", tls=issued_by_ca("localhost")) as by_ca:
        yield pinned, by_ca


def test_ssl_pinned_fingerprint_and_ca_certificates(tls_doubles):
    from app.hypervisors.base import UntrustedCertificate
    from tests.hyperv.certs import issued_by_ca
    pinned, by_ca = tls_doubles
    # Pinned: exactly this certificate (any spelling of its SHA-256), over HTTPS.
    for spelling in (pinned.tls.fingerprint, pinned.tls.fingerprint.replace(":", "").lower()):
        drv = driver(pinned, fingerprint=spelling)
        assert drv.check_host().hypervisor == "Hyperv"
        # pywinrm builds a new HTTP session after each shell: the pin holds for every later call.
        assert drv.host_stats().memory_total_bytes > 0 and drv.list_vms() == []
    wrong = "AB:" * 31 + "AB"
    with pytest.raises(UntrustedCertificate) as e:
        driver(pinned, fingerprint=wrong).check_host()
    assert e.value.field == "fingerprint"
    assert f"does not match the pinned SHA-256 fingerprint {wrong}: it presents {pinned.tls.fingerprint}" in str(e.value)
    # Nothing given: the management server's CAs, which never issued a self-signed certificate.
    with pytest.raises(UntrustedCertificate, match="not trusted by the management server's CAs") as e:
        driver(pinned, fingerprint="").check_host()
    assert e.value.field == "url"

    # CA certificates: this host's CA (and only it) and its name ("localhost" in its certificate).
    def by(ca_pem, address="localhost"):
        fields = by_ca.fields(fingerprint="", cacertificates=ca_pem)
        return HYPERV.make_driver(HYPERV.connection(address, fields), CTX)
    drv = by(by_ca.tls.ca_pem)
    assert drv.check_host().hypervisor == "Hyperv" and drv.list_vms() == []
    with pytest.raises(UntrustedCertificate, match="not trusted by its CA certificates") as e:
        by(issued_by_ca().ca_pem).check_host()  # another CA
    assert e.value.field == "cacertificates"
    with pytest.raises(UntrustedCertificate, match="mismatch"):
        by(by_ca.tls.ca_pem, address="127.0.0.1").check_host()  # right CA, wrong name
    # The ssl transport answers only the credentials the double knows.
    with pytest.raises(AuthenticationFailed):
        driver(pinned, password="wrong").check_host()


def test_trust_fields_are_checked_before_any_connection():
    good_fp = "ab" * 32
    cases = [({"transport": "ntlm", "fingerprint": good_fp}, "fingerprint", "ssl transport only"),
             ({"transport": "ssl", "cert_validation": "ignore", "cacertificates": "x"}, "cacertificates", "ignore"),
             ({"transport": "ssl", "fingerprint": good_fp, "cacertificates": "x"}, "fingerprint", "not both")]
    for values, field, message in cases:
        got = HYPERV.check_fields({"cert_validation": "validate", **values})
        assert got[0] == field and message in got[1]
    assert HYPERV.check_fields({"transport": "ssl", "cert_validation": "validate", "fingerprint": good_fp}) is None
    fp_field = next(f for f in HYPERV.host_fields if f.name == "fingerprint")
    ca_field = next(f for f in HYPERV.host_fields if f.name == "cacertificates")
    assert fp_field.validate("12:34") and fp_field.validate("SHA256 Fingerprint=" + "AB:" * 31 + "AB") is None
    assert "PEM" in ca_field.validate("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----")


def test_add_host_over_ssl_trusts_only_the_given_certificate(app, client, auth, keys, tls_doubles):  # noqa: F811
    """addHost with details[0].fingerprint: a wrong one is a 431 naming both fingerprints and no
    host; the right one adds the host with its fingerprint stored, used again by reconnectHost."""
    from app.extensions import db
    from app.models import Host
    from app.services import zones
    pinned, _ = tls_doubles
    with app.app_context():
        z = zones.create_zone(None, name="hv", dns1="8.8.8.8", internal_dns1="10.0.0.2")
        p = zones.create_pod(None, zone_uuid=z.uuid, name="p", gateway="192.168.20.1", netmask="255.255.255.0",
                             start_ip="192.168.20.10", end_ip="192.168.20.99")
        c = zones.add_cluster(None, pod_uuid=p.uuid, name="c", hypervisor="Hyperv")
        where = {"zoneid": z.uuid, "podid": p.uuid, "clusterid": c.uuid}

    def add(fingerprint):
        params = {"command": "addHost", **where, "url": "127.0.0.1", "hypervisor": "Hyperv",
                  "username": pinned.username, "password": pinned.password, "details[0].transport": "ssl",
                  "details[0].port": str(pinned.port), "details[0].fingerprint": fingerprint}
        return client.post("/client/api", data=signed(keys, "admin", **params))

    wrong = "00" * 32
    resp = add(wrong)
    err = resp.get_json()["addhostresponse"]
    assert resp.status_code == 431 and err["errorcode"] == 431
    assert "does not match the pinned SHA-256 fingerprint" in err["errortext"]
    assert pinned.tls.fingerprint in err["errortext"]
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Host)) == 0

    resp = add(pinned.tls.fingerprint)
    assert resp.status_code == 200, resp.get_json()
    host_id = resp.get_json()["addhostresponse"]["host"][0]["id"]
    with app.app_context():
        host = db.session.scalar(db.select(Host))
        assert json.loads(host.details)["fingerprint"] == pinned.tls.fingerprint
    resp = client.post("/client/api", data=signed(keys, "admin", command="reconnectHost", id=host_id))
    assert resp.status_code == 200, resp.get_json()
    auth.login("admin")  # the host page says what the host is trusted by, and no password
    page = client.get(f"/admin/hosts/{host_id}").get_data(as_text=True)
    assert "Certificate fingerprint (SHA-256)" in page and pinned.tls.fingerprint in page
    assert pinned.password not in page

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

"""The External driver run for real against the recording extension (tests/extensions/
recording_ext.py, written only from the contract): argv, no stdin, the payload file 0600 and
removed after a successful status only (CloudStack's trivial action), every other one kept until swept; a hanging call killed with its process group at
the timeout ("Timeout"); garbage on stdout; a non-zero exit; status words and JSON."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from app.hypervisors.base import ConsoleKind, HostConnection, OperationFailed, OperationTimedOut, PowerState, VMSpec
from app.hypervisors.base import DriverContext
from app.hypervisors.external import runner
from app.hypervisors.external.driver import ExternalDriver, ExternalSpec, parse_power_state

RECORDING = Path(__file__).resolve().parents[1] / "extensions" / "recording_ext.py"


@pytest.fixture
def ext(tmp_path):
    state, payloads = tmp_path / "state", tmp_path / "payloads" / "rec"
    state.mkdir()
    exe = tmp_path / "ext" / "rec.py"
    exe.parent.mkdir()
    shutil.copy(RECORDING, exe)

    def payload(deploy=False):
        return {"externaldetails": {"extension": {"statedir": str(state)}, "resourcemap": {}, "host": {},
                                    "virtualmachine": {}},
                "virtualmachineid": "u-1", "virtualmachinename": "i-2-3-VM",
                "cloudstack.vm.details": {"name": "i-2-3-VM", "cpus": 2, "minRam": 512 << 20, "maxRam": 512 << 20,
                                          "nics": [], "details": {"deployvm": "true"} if deploy else {}}}

    def driver(deploy=False, timeout=20):
        spec = ExternalSpec(name="rec", path=str(exe), payload_dir=str(payloads), timeout=timeout, status_timeout=timeout,
                            payloads={"i-2-3-VM": payload(deploy)})
        return ExternalDriver(HostConnection(url="h1", address="h1"), DriverContext(external=spec))

    def calls():
        return [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]

    def control(**how):
        (state / "control.json").write_text(json.dumps(how))

    class Ext:
        pass
    e = Ext()
    e.driver, e.calls, e.control, e.state, e.payloads = driver, calls, control, state, payloads
    return e


def test_lifecycle_calls_and_payload_files(ext):
    d = ext.driver(deploy=True)
    assert d.start_vm(VMSpec(name="i-2-3-VM", uuid="u-1", cpus=2, cpu_mhz=1000, memory_mib=512)).state == \
        PowerState.RUNNING
    assert d.vm_info("i-2-3-VM").state == PowerState.RUNNING
    d = ext.driver()
    assert d.stop_vm("i-2-3-VM", 5) is True
    assert d.vm_info("i-2-3-VM").state == PowerState.STOPPED
    d.start_vm(VMSpec(name="i-2-3-VM", uuid="u-1", cpus=2, cpu_mhz=1000, memory_mib=512))
    d.reboot_vm("i-2-3-VM")
    assert [v.state for v in d.list_vms()] == [PowerState.RUNNING]
    d.destroy_vm("i-2-3-VM")
    calls = ext.calls()
    assert [c["action"] for c in calls] == ["create", "status", "stop", "status", "start", "reboot", "status", "delete"]
    for c in calls:
        assert c["argv"][0] == c["action"] and c["argv"][2] == "20" and c["timeout"] == "20"
        assert c["mode"] == "0o600" and c["stdin_empty"] is True
        assert os.path.dirname(c["argv"][1]) == str(ext.payloads)
        assert c["payload"]["virtualmachinename"] == "i-2-3-VM"
    assert calls[0]["payload"]["cloudstack.vm.details"]["details"] == {"deployvm": "true"}
    assert oct(os.stat(ext.payloads).st_mode & 0o777) == "0o700"
    # As CloudStack: a successful status call's payload goes at once, every other one's stays
    # (0600) until swept after extensions.payload.keep.
    kept = sorted(os.listdir(ext.payloads))
    assert [k.split("-")[0] for k in kept] == ["create", "delete", "reboot", "start", "stop"]
    assert all(oct(os.stat(ext.payloads / k).st_mode & 0o777) == "0o600" for k in kept)
    assert runner.sweep(str(ext.payloads), 3600) == 0 and runner.sweep(str(ext.payloads), -1) == 5
    assert json.loads((ext.state / "vms.json").read_text()) == {}


def test_failures_timeout_garbage_and_exit_codes(ext):
    d = ext.driver(deploy=True, timeout=2)
    ext.control(create="fail")
    with pytest.raises(OperationFailed, match=r"Exit code: 3, Output: create refused by the recording extension"):
        d.start_vm(VMSpec(name="i-2-3-VM", uuid="u-1", cpus=2, cpu_mhz=1000, memory_mib=512))
    kept = os.listdir(ext.payloads)
    assert len(kept) == 1 and kept[0].startswith("create-")  # kept for diagnosis
    assert runner.sweep(str(ext.payloads), 3600) == 0 and runner.sweep(str(ext.payloads), -1) == 1
    ext.control(stop="hang")
    with pytest.raises(OperationTimedOut, match="Timeout"):
        d.stop_vm("i-2-3-VM", 5)
    pid = [c for c in ext.calls() if c["action"] == "stop"][0]["pid"]
    with pytest.raises(ProcessLookupError):  # killed (and reaped) at the timeout
        os.kill(pid, 0)
    ext.control(status="garbage")
    assert d.vm_info("i-2-3-VM").state == PowerState.UNKNOWN
    ext.control(status="fail")
    assert [v.state for v in d.list_vms()] == [PowerState.UNKNOWN]  # never reported missing
    ext.control(status="json")
    assert d.vm_info("i-2-3-VM").state == PowerState.STOPPED  # {"power_state": "poweroff"}: no such VM now
    ext.control(getconsole="garbage")
    with pytest.raises(OperationFailed, match="Missing console object"):
        d.console_target("i-2-3-VM")
    ext.control()
    t = d.console_target("i-2-3-VM")
    assert (t.kind, t.host, t.port, t.password, t.external.one_time_password) == \
        (ConsoleKind.VNC, "127.0.0.1", 5999, "onetime", True)


def test_missing_or_unusable_path(tmp_path):
    spec = ExternalSpec(name="rec", path=None, payload_dir=str(tmp_path), timeout=5,
                        unusable="Extension: rec not configured: /x/rec.sh does not exist",
                        payloads={"vm": {}})
    d = ExternalDriver(HostConnection(url="h", address="h"), DriverContext(external=spec))
    with pytest.raises(OperationFailed, match="does not exist"):
        d.stop_vm("vm", 1)
    gone = runner.run(runner.Call(str(tmp_path / "nope"), "status", {}, 5, str(tmp_path / "p")))
    assert not gone.ok and "could not be run" in gone.output


def test_power_state_words():
    assert parse_power_state("poweron\n") == PowerState.RUNNING
    assert parse_power_state('{"power_state": "PowerOff"}') == PowerState.STOPPED
    assert parse_power_state("running") == PowerState.UNKNOWN and parse_power_state("{bad") == PowerState.UNKNOWN

"""The External driver in the driver contract suite, its backend the recording extension
(tests/extensions/recording_ext.py, written only from CloudStack 4.21's extension contract) run
for real as `<path> <action> <payload.json> <timeout>`.

The services prepare a payload for every VM they hand the driver (app/services/extensions/
calls.py); here make_vm_spec does, with what the services would put in it. A name no payload
was prepared for is a VM the host does not have (VMNotFound)."""
from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from app.hypervisors.base import DriverContext, HostConnection, StoragePoolSpec, VMSpec
from app.hypervisors.external.driver import ExternalSpec
from app.hypervisors.external.types import EXTERNAL
from tests.contract.env import ContractEnv

NAME = "external"
RECORDING = Path(__file__).resolve().parents[2] / "extensions" / "recording_ext.py"


def available() -> str | None:
    return None  # the recording extension needs only Python


@contextlib.contextmanager
def environment(tmp_path) -> Iterator[ContractEnv]:
    state = tmp_path / "ext-state"
    state.mkdir()
    exe = tmp_path / "extensions" / "rec" / "rec.py"
    exe.parent.mkdir(parents=True)
    shutil.copy(RECORDING, exe)
    spec = ExternalSpec(name="rec", path=str(exe), payload_dir=str(tmp_path / "extension-payloads" / "rec"),
                        timeout=30, status_timeout=30)
    driver = EXTERNAL.make_driver(HostConnection(url="pve1", address="pve1"), DriverContext(external=spec))

    def make_vm_spec(name: str) -> VMSpec:
        vm = VMSpec(name=name, uuid=str(uuid.uuid4()), cpus=1, cpu_mhz=1000, memory_mib=256, display_name=name)
        # What calls.spec_for puts in a VM's payload (its first start: deployvm=true).
        spec.payloads[name] = {
            "externaldetails": {"extension": {"statedir": str(state)}, "resourcemap": {}, "host": {},
                                "virtualmachine": {}},
            "virtualmachineid": vm.uuid, "virtualmachinename": name,
            "cloudstack.vm.details": {"name": name, "uuid": vm.uuid, "cpus": vm.cpus, "minRam": vm.memory_mib << 20,
                                      "maxRam": vm.memory_mib << 20, "nics": [], "details": {"deployvm": "true"}}}
        return vm

    pool = StoragePoolSpec(uuid=str(uuid.uuid4()), name="none", kind="NFS", path="/none", server="none")
    try:
        yield ContractEnv(driver=driver, hv_type=EXTERNAL, pool=pool, make_vm_spec=make_vm_spec, extras={
            # Nubo keeps no volumes or ISOs on an external host: what it holds is none.
            "volume_exists": lambda p, n: False, "iso_of": lambda n: None,
            "no_template_import": "External templates are never imported: the orchestrator has them"})
    finally:
        driver.close()

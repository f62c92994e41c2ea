"""Hyper-V in the driver contract suite, against the WS-Management test double
(the real pywinrm over HTTP; the Hyper-V host itself is simulated)."""
from __future__ import annotations

import contextlib
import uuid
from typing import Iterator

from app.hypervisors.base import DiskSpec, DriverContext, NicSpec, StoragePoolSpec, TemplateSource, VMSpec, VolumeSpec
from app.hypervisors.hyperv.types import HYPERV
from tests.contract.env import ContractEnv
from tests.hyperv.wsman_double import WsmanDouble

NAME = "hyperv"


def available() -> str | None:
    return None


@contextlib.contextmanager
def environment(tmp_path) -> Iterator[ContractEnv]:
    ctx = DriverContext(instance_path=str(tmp_path), testing=True)
    with WsmanDouble("127.0.0.1") as a, WsmanDouble("localhost") as b:
        main = HYPERV.make_driver(HYPERV.connection("127.0.0.1", a.fields()), ctx)
        other = HYPERV.make_driver(HYPERV.connection("localhost", b.fields()), ctx)
        pool = StoragePoolSpec(uuid=str(uuid.uuid4()), name="contract-smb", kind="SMB", path="vms",
                               server="filer")

        def make_vm_spec(name: str) -> VMSpec:
            main.delete_volume(pool, f"{name}-root")
            vol = main.create_volume(VolumeSpec(name=f"{name}-root", pool=pool, size_bytes=1 << 30, format="VHDX"))
            return VMSpec(name=name, uuid=str(uuid.uuid4()), cpus=1, cpu_mhz=1000, memory_mib=512,
                          disks=[DiskSpec(path=vol.path, format="VHDX")],
                          nics=[NicSpec(mac="02:00:00:00:00:01", bridge="nubo-switch", vlan=42)])

        def template_source(tmp, checksum_ok: bool) -> TemplateSource:
            """A VHDX "on a web server" the double's host can fetch (Invoke-WebRequest)."""
            import hashlib
            data = b"vhdxfile" + bytes(4096)
            a.hyperv.images["http://images.example/win.vhdx"] = data
            digest = hashlib.sha256(data).hexdigest() if checksum_ok else "0" * 64
            return TemplateSource(format="VHDX", url="http://images.example/win.vhdx", size_bytes=len(data),
                                  checksum="{SHA-256}" + digest)

        def unreachable():
            fields = a.fields(port="1")  # nothing listens on port 1
            return HYPERV.make_driver(HYPERV.connection("127.0.0.1", fields), ctx)

        try:
            yield ContractEnv(driver=main, hv_type=HYPERV, pool=pool, make_vm_spec=make_vm_spec,
                              migration_target=other,
                              extras={"vlan_label": "nubo-switch", "unreachable": unreachable, "double": a, "template_source": template_source,
                                      "iso_of": lambda n: a.hyperv.vms[n]["iso"],
                                      "volume_exists": lambda p, n: any(k.endswith((n + ".vhdx", n + ".vhd")) for k in a.hyperv.vhds)})
        finally:
            main.close()
            other.close()

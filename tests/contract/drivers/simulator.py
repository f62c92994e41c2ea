"""The Simulator in the driver contract suite: two sim hosts in a private
SQLite database (the tables are the real model tables), so migration works."""
from __future__ import annotations

import contextlib
import uuid
from typing import Iterator

import sqlalchemy as sa

from app.hypervisors.base import DiskSpec, DriverContext, StoragePoolSpec, VMSpec, VolumeSpec
from app.hypervisors.simulator import SIMULATOR, dispose_engines
from app.models import SimFault, SimHost, SimPool, SimRouter, SimSegment, SimVM, SimVMSnapshot, SimVolume
from tests.contract.env import ContractEnv

NAME = "simulator"
TABLES = [m.__table__ for m in (SimHost, SimVM, SimPool, SimVolume, SimFault, SimRouter, SimSegment, SimVMSnapshot)]


def available() -> str | None:
    return None  # needs nothing but SQLite


def raw_image_source(tmp, checksum_ok):
    from tests.contract.drivers.kvm import raw_image_source as real
    return real(tmp, checksum_ok)


@contextlib.contextmanager
def environment(tmp_path) -> Iterator[ContractEnv]:
    import app  # noqa: F401  (registers the SQLite WAL / foreign-key pragmas)
    url = f"sqlite:///{tmp_path / 'simulator.db'}"
    engine = sa.create_engine(url)
    SimHost.metadata.create_all(engine, tables=TABLES)
    engine.dispose()
    ctx = DriverContext(instance_path=str(tmp_path), database_url=url, testing=True)

    def driver(name: str):
        d = SIMULATOR.make_driver(SIMULATOR.connection(f"simulator://{name}?cpus=8&memory=16384&labels=cloudbr0", {}), ctx)
        d.check_host()
        return d

    main, other = driver("contract-1"), driver("contract-2")
    pool = StoragePoolSpec(uuid="5e1d0000-0000-4000-8000-000000000001", name="contract-nfs", kind="NFS",
                           path="/export/contract", server="filer.simulator")
    main.prepare_storage_pool(pool)
    other.prepare_storage_pool(pool)

    def make_vm_spec(name: str) -> VMSpec:
        # Asked twice for one name, the suite gets a fresh root volume each time.
        main.delete_volume(pool, f"{name}-root")
        vol = main.create_volume(VolumeSpec(name=f"{name}-root", pool=pool, size_bytes=1 << 30, format="RAW"))
        return VMSpec(name=name, uuid=str(uuid.uuid4()), cpus=1, cpu_mhz=1000, memory_mib=256,
                      display_name=name, disks=[DiskSpec(path=vol.path, format="RAW")])

    # What the fake hypervisor holds, read from its own tables (not through the driver).
    def volume_exists(p: StoragePoolSpec, name: str) -> bool:
        with engine.connect() as c:
            return c.scalar(sa.select(sa.func.count()).select_from(SimVolume.__table__)
                            .join(SimPool.__table__, SimPool.id == SimVolume.pool_id)
                            .where(SimPool.uuid == p.uuid, SimVolume.name == name)) == 1

    def iso_of(vm_name: str) -> str | None:
        with engine.connect() as c:
            return c.scalar(sa.select(SimVM.iso_path).where(SimVM.name == vm_name))

    def set_up(name: str, up: bool) -> None:
        with engine.begin() as c:
            c.execute(sa.update(SimHost.__table__).where(SimHost.name == name).values(up=up))

    try:
        yield ContractEnv(driver=main, hv_type=SIMULATOR, pool=pool, make_vm_spec=make_vm_spec,
                          migration_target=other, extras={"set_host_up": set_up, "template_source": raw_image_source,
                                  "volume_exists": volume_exists, "iso_of": iso_of})
    finally:
        main.close()
        other.close()
        dispose_engines()
        engine.dispose()

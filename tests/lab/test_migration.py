"""Live migration of real guests between two lab hosts (scripts/lab.sh: each a libvirtd in
its own namespaces, reached over qemu+ssh, the lab's shared primary storage, each host's own
local storage), through Nubo's services and jobs:

- a running guest that counts on its serial console (tests/guests/counter_guest.py)
  migrates live on shared storage: it goes on counting with the same boot id on the new
  host, Nubo records it there, the job carried the migration's progress, and a new console
  token leads to the guest's VNC on the new host;
- migrateVirtualMachine refuses a guest on local storage (CloudStack's words); with its disk
  (migrateVirtualMachineWithVolume) to a host where a domain of its name already exists, the
  migration fails with libvirt's reason and nothing changed: the guest runs and counts on the
  source, its volume row is the same, the destination keeps no copy, no capacity;
- host maintenance empties a host of its running guests (the local one with its disk, to the
  other host's local storage), each still counting where it landed;
- the VM page's Migrate of a guest on local storage takes it back with its disk.
"""
from __future__ import annotations

import socket
import uuid

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Host, ResourceState, StoragePool, VirtualMachine
from app.services import consoles, hosts, vms
from app.jobs import service as jobs
from tests.guests import counter_guest
from tests.lab.migration_zone import MigrationZone

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("lab")]


@pytest.fixture
def mz(app, lab, tmp_path):
    with app.app_context():
        zone = MigrationZone(lab, tmp_path, "M" + uuid.uuid4().hex[:7])
        yield zone
        zone.clean_up()


def _ok(job) -> None:
    db.session.refresh(job)
    assert job.status == 1, job.result


def _vnc_banner(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=20) as s:
        s.settimeout(20)
        return s.recv(12)


def test_live_migration_keeps_the_guest_counting(app, mz, monkeypatch):
    with app.app_context():
        a, b = mz.hosts
        shared = mz.deploy("count-shared", mz.shared_offering, a)
        local = mz.deploy("count-local", mz.local_offering, a)
        shared_boot, shared_n = counter_guest.last_count(mz.conn(a), shared.instance_name)
        local_boot, local_n = counter_guest.last_count(mz.conn(a), local.instance_name)

        # Shared storage: live to b, progress on the job.
        seen = []
        real_progress = jobs.progress
        monkeypatch.setattr(jobs, "progress", lambda job, pct, msg=None, **kw: (seen.append((pct, msg)),
                                                                                 real_progress(job, pct, msg, **kw)))
        # At full speed an idle machine copies this guest between two polls of the job's
        # statistics (CI saw no figures at all): cap the source's migration bandwidth so the
        # copy lasts a few polls whatever the load (libvirt keeps the cap for the next migration).
        mz.conn(a).lookupByName(shared.instance_name).migrateSetMaxSpeed(24)  # MiB/s
        _ok(vms.migrate(mz.admin(), shared.uuid, b.uuid))
        monkeypatch.undo()
        assert any(msg and " MiB of " in msg and "remaining" in msg for _, msg in seen), seen
        shared = vms.get_vm(mz.admin(), shared.uuid)
        assert (shared.state, shared.host_id) == ("Running", b.id)
        assert not mz.runs_on(a, shared) and mz.runs_on(b, shared)
        boot, n = counter_guest.last_count(mz.conn(b), shared.instance_name)
        assert boot == shared_boot and n > shared_n  # the same boot, still counting: not restarted
        assert [v.pool_id for v in shared.volumes if v.removed is None] == [mz.shared_pool.id]

        # The console follows: a new token leads to the guest's VNC on b, which answers.
        assert shared.console_host == b.address
        token, _ = consoles.create_console(mz.admin(), shared.uuid)
        grant = consoles.consume(token, client_address="127.0.0.1")
        assert (grant.host, grant.port) == (b.address, shared.console_port)
        assert _vnc_banner(grant.host, grant.port).startswith(b"RFB ")

        # Local storage: the plain migrateVirtualMachine refuses it, as CloudStack does.
        with pytest.raises(Exception, match="VM uses Local storage, cannot migrate"):
            vms.migrate(mz.admin(), local.uuid, b.uuid)

        # With its disk, to b where a domain of its name already exists: a clear error, nothing changed.
        root = mz.root_of(local)
        before = (root.pool_id, root.path, root.size)
        b_alloc = (db.session.get(Host, b.id).cpu_allocated, db.session.get(Host, b.id).memory_allocated)
        b_pool_alloc = mz.local_pool(b).allocated_bytes
        with mz.squatter(b, local.instance_name):
            job = vms.migrate_with_volume(mz.admin(), local.uuid, b.uuid)
            db.session.refresh(job)
            assert job.status == 2 and f"could not be migrated to {b.name}" in job.result, job.result
        local = vms.get_vm(mz.admin(), local.uuid)
        assert (local.state, local.host_id) == ("Running", a.id)
        root = mz.root_of(local)
        assert (root.pool_id, root.path, root.size) == before
        assert mz.volume_names(b, mz.local_pool(b)) == set()  # the copy made for it is gone
        db.session.expire_all()
        assert (db.session.get(Host, b.id).cpu_allocated, db.session.get(Host, b.id).memory_allocated) == b_alloc
        assert mz.local_pool(b).allocated_bytes == b_pool_alloc
        boot, n = counter_guest.last_count(mz.conn(a), local.instance_name)
        assert boot == local_boot and n > local_n
        local_n = n

        # Maintenance of a: the running guest on local storage goes to b with its disk.
        b_shared = vms.get_vm(mz.admin(), shared.uuid)
        _ok(vms.migrate(mz.admin(), b_shared.uuid, a.uuid))  # back: a holds both guests again
        shared_n = counter_guest.last_count(mz.conn(a), shared.instance_name)[1]
        _ok(hosts.prepare_maintenance(mz.admin(), a.uuid))
        db.session.expire_all()
        assert db.session.get(Host, a.id).resource_state == ResourceState.MAINTENANCE
        assert db.session.scalars(select(VirtualMachine).where(VirtualMachine.host_id == a.id,
                                                               VirtualMachine.removed.is_(None))).all() == []
        assert mz.domains(a) == []  # nothing left running (or defined) there
        for vm, boot0, n0 in ((shared, shared_boot, shared_n), (local, local_boot, local_n)):
            vm = vms.get_vm(mz.admin(), vm.uuid)
            assert (vm.state, vm.host_id) == ("Running", b.id)
            boot, n = counter_guest.last_count(mz.conn(b), vm.instance_name)
            assert boot == boot0 and n > n0, vm.name
        root = mz.root_of(vms.get_vm(mz.admin(), local.uuid))
        assert root.pool_id == mz.local_pool(b).id
        assert root.uuid in mz.volume_names(b, mz.local_pool(b))
        assert root.uuid not in mz.volume_names(a, db.session.get(StoragePool, before[0]))
        hosts.cancel_maintenance(mz.admin(), a.uuid)

        # The VM page's Migrate of a VM on local storage: with its disk, to the host the planner picks.
        _ok(vms.migrate_from_page(mz.admin(), local.uuid))
        local = vms.get_vm(mz.admin(), local.uuid)
        assert local.host_id == a.id and mz.root_of(local).pool_id == mz.local_pool(a).id
        boot, n = counter_guest.last_count(mz.conn(a), local.instance_name)
        assert boot == local_boot

"""Data volumes on the Simulator: created Allocated, made on the VM's pool at first
attach, plugged into the running VM, detached, resized offline, deleted with
their file; the pool's allocation threshold; another account's volume is "not found"."""
import pytest
from sqlalchemy import select

from app.extensions import db
from app.hypervisors.base import DiskSpec, VMSpec
from app.models import ServiceOffering, StoragePool, VirtualMachine, Volume, VolumeType, new_uuid
from app.services import accounts, hosts, settings, storage, volumes, zones
from app.services import hypervisors as hv
from app.services.errors import InsufficientCapacity, InvalidParameter, NotFound
from tests.helpers.users import existing_user

pytestmark = pytest.mark.db
GIB = 1 << 30


@pytest.fixture
def world(app):
    """A Running Simulator VM of alice's with a root volume on an NFS pool."""
    with app.app_context():
        admin = existing_user("root", "rootpass1", role="admin", account="admin")
        alice = existing_user("alice", "alicepass1")
        z = zones.create_zone(admin, name="vz", dns1="8.8.8.8", internal_dns1="10.0.0.2")
        p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                             start_ip="10.0.0.10")
        c = zones.add_cluster(admin, pod_uuid=p.uuid, name="c", hypervisor="Simulator")
        h = hosts.add_host(admin, cluster_uuid=c.uuid, url="simulator://vol-1", fields={})
        pool = storage.create_storage_pool(admin, zone_uuid=z.uuid, cluster_uuid=c.uuid, name="nfs",
                                           url="nfs://filer/export")
        so = ServiceOffering(name="small", cpu_number=1, cpu_speed=1000, memory=512)
        db.session.add(so)
        db.session.flush()
        vm = VirtualMachine(uuid=new_uuid(), name="vm1", instance_name="i-2-1-VM", state="Running",
                            account_id=alice.account_id, user_id=alice.id, zone_id=z.id, host_id=h.id,
                            service_offering_id=so.id, hypervisor_type="Simulator", cpu_number=1, cpu_speed=1000,
                            memory=512)
        db.session.add(vm)
        db.session.commit()  # the Simulator writes through its own connection
        driver = hv.driver_for("Simulator", hosts.connection_for(h))
        from app.hypervisors.base import VolumeSpec
        root = driver.create_volume(VolumeSpec(name="root-1", pool=storage.spec_of(pool), size_bytes=2 * GIB,
                                               format="RAW"))
        driver.start_vm(VMSpec(name="i-2-1-VM", uuid=vm.uuid, cpus=1, cpu_mhz=1000, memory_mib=512,
                               disks=[DiskSpec(path=root.path, format="RAW")]))
        db.session.add(Volume(uuid=new_uuid(), name="ROOT-1", account_id=alice.account_id, zone_id=z.id,
                              vm_id=vm.id, pool_id=pool.id, volume_type=VolumeType.ROOT, device_id=0,
                              size=2 * GIB, path=root.path, state="Ready"))
        db.session.commit()
        fixed = volumes.create_disk_offering(admin, name="5G", disk_size=5)
        custom = volumes.create_disk_offering(admin, name="custom", customized=True)
        return dict(admin=admin.uuid, alice=alice.uuid, zone=z.uuid, vm=vm.uuid, pool=pool.id, fixed=fixed.uuid,
                    custom=custom.uuid, driver_host=h.uuid)


def _u(uuid):
    return accounts.user_by_uuid(uuid)


def test_attach_detach_resize_delete(app, world):
    with app.app_context():
        alice = _u(world["alice"])
        v = volumes.create_volume(alice, name="data", zone_uuid=world["zone"], disk_offering_uuid=world["fixed"])
        assert v.state == "Allocated" and v.size == 5 * GIB and v.pool_id is None
        with pytest.raises(InvalidParameter, match="fixed size"):
            volumes.create_volume(alice, name="x", zone_uuid=world["zone"], disk_offering_uuid=world["fixed"],
                                  size_gib=3)
        v = volumes.attach_volume(alice, v.uuid, world["vm"])
        assert v.state == "Ready" and v.pool_id == world["pool"] and v.device_id == 1
        host = hosts.get_host(world["driver_host"])
        driver = hv.driver_for("Simulator", hosts.connection_for(host))
        assert v.path in driver.vm_disks("i-2-1-VM")  # the hypervisor has it
        assert db.session.get(StoragePool, world["pool"]).allocated_bytes == 5 * GIB
        with pytest.raises(InvalidParameter, match="resized offline"):
            volumes.resize_volume(alice, v.uuid, size_gib=8)
        with pytest.raises(InvalidParameter, match="Detach"):
            volumes.delete_volume(alice, v.uuid)
        v = volumes.detach_volume(alice, v.uuid)
        assert v.vm_id is None and v.path not in driver.vm_disks("i-2-1-VM")
        v = volumes.resize_volume(alice, v.uuid, size_gib=8)
        assert v.size == 8 * GIB and db.session.get(StoragePool, world["pool"]).allocated_bytes == 8 * GIB
        with pytest.raises(InvalidParameter, match="never shrink"):
            volumes.resize_volume(alice, v.uuid, size_gib=2)
        volumes.delete_volume(alice, v.uuid)
        assert db.session.get(StoragePool, world["pool"]).allocated_bytes == 0
        assert not any(p.endswith(v.uuid) for p in driver.vm_disks("i-2-1-VM"))


def test_allocation_threshold_refuses_and_changes_nothing(app, world):
    with app.app_context():
        alice = _u(world["alice"])
        settings.update("storage.allocated.capacity.disablethreshold", "0.1")
        settings.update("custom.diskoffering.size.max", "65536")
        settings.update("max.account.primary.storage", "-1")  # this test is about the pool, not the quota
        pool = db.session.get(StoragePool, world["pool"])
        big = volumes.create_volume(alice, name="big", zone_uuid=world["zone"], disk_offering_uuid=world["custom"],
                                    size_gib=int(pool.capacity_bytes * 0.2 // GIB) + 1)
        with pytest.raises(InsufficientCapacity, match="allocation limit"):
            volumes.attach_volume(alice, big.uuid, world["vm"])
        big = volumes.get_volume(alice, big.uuid)
        assert big.pool_id is None and big.vm_id is None and big.state == "Allocated"
        assert db.session.get(StoragePool, world["pool"]).allocated_bytes == 0


def test_other_accounts_volume_is_not_found(app, world):
    with app.app_context():
        alice = _u(world["alice"])
        bob = existing_user("bob", "bobpass12")
        v = volumes.create_volume(alice, name="mine", zone_uuid=world["zone"], disk_offering_uuid=world["fixed"])
        for action in (lambda: volumes.get_volume(bob, v.uuid), lambda: volumes.delete_volume(bob, v.uuid),
                       lambda: volumes.resize_volume(bob, v.uuid, size_gib=9),
                       lambda: volumes.attach_volume(bob, v.uuid, world["vm"])):
            with pytest.raises(NotFound):
                action()
        assert volumes.list_volumes(bob)[1] == 0
        assert db.session.scalar(select(Volume.size).where(Volume.uuid == v.uuid)) == 5 * GIB

"""A Basic zone over the lab's hosts for migration tests and the migration benchmark
(bench/migration_bench.py): made through Nubo's services, with the lab's shared directory
as a cluster's primary storage, each host's own local storage, the counting guest
(tests/guests/counter_guest.py) as a template, and one offering of each storage type.

Guests run under QEMU emulation (the lab's add-host fields say acceleration=emulated:
nested KVM cannot run a kernel here)."""
from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import libvirt
from sqlalchemy import select

from app.extensions import db
from app.models import Host, ServiceOffering, StoragePool, StorageScope, VirtualMachine, Volume, VolumeType, new_uuid
from app.services import accounts, hosts, settings, storage, templates, vms, zones
from app.services import hypervisors as hv
from app.services.network import networks
from tests.guests import counter_guest
from tests.helpers.users import existing_user
from tests.helpers.www import serve



class MigrationZone:
    """Call inside an app context; clean_up() in one too (or after it: it needs none)."""

    def __init__(self, lab, tmp: Path, suffix: str, memory_mib: int = 256):
        """lab: tests/lab/conftest.py's Lab (its hosts, their add-host fields, its shared storage)."""
        self.lab, self.suffix, self.tmp = lab, suffix, tmp
        self._conns: dict[int, object] = {}
        self._serving = contextlib.ExitStack()
        root = tmp / "www"
        root.mkdir(exist_ok=True)
        image = counter_guest.build(tmp / "guest")
        (root / "counter.raw").symlink_to(image)
        www = self._serving.enter_context(serve(root))

        admin = existing_user("root", "rootpass1", role="admin", account="admin")
        self.admin_uuid = admin.uuid
        z = zones.create_zone(admin, name="lab", network_type="Basic", dns1="127.0.0.1", internal_dns1="127.0.0.1",
                              guest_cidr="10.78.0.0/24", local_storage=True)
        zones.create_physical_network(admin, z, vlan_range=None, traffic_labels={"KVM": lab.traffic_label})
        networks.ensure_default_network(admin, z)
        p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                             start_ip="10.0.0.10")
        c = zones.add_cluster(admin, pod_uuid=p.uuid, name="c", hypervisor="KVM")
        self.host_ids = []
        for h in lab.hosts:
            self.host_ids.append(hosts.add_host(admin, cluster_uuid=c.uuid, url=h.uri, fields=lab.host_fields(h)).id)
        pool = storage.create_storage_pool(admin, zone_uuid=z.uuid, cluster_uuid=c.uuid, name="lab-shared",
                                           url=lab.storage_url)
        self.shared_pool_id = pool.id
        storage.add_image_store(admin, provider="Local", url=f"file://{tmp}/secondary", zone_uuid=z.uuid)
        self.template = templates.register(admin, url=f"{www}/counter.raw", name="counter", hypervisor="KVM",
                                           format="RAW", zone_uuid=z.uuid, is_public=True).uuid
        self.shared_offering = self._offering("shared", memory_mib)
        self.local_offering = self._offering("local", memory_mib)
        self.zone = z.uuid
        settings.update("instance.name", suffix)  # our domains' names, unique to this run
        db.session.commit()

    # --- set-up ---------------------------------------------------------------------------

    def _offering(self, storage_type: str, memory_mib: int) -> str:
        so = ServiceOffering(uuid=new_uuid(), name=f"{storage_type}-{memory_mib}", cpu_number=1, cpu_speed=500,
                             memory=memory_mib, storage_type=storage_type)
        db.session.add(so)
        db.session.commit()
        return so.uuid

    # --- what the tests use ---------------------------------------------------------------

    @property
    def hosts(self) -> list[Host]:
        return [db.session.get(Host, i) for i in self.host_ids]

    @property
    def shared_pool(self) -> StoragePool:
        return db.session.get(StoragePool, self.shared_pool_id)

    def admin(self):
        return accounts.user_by_uuid(self.admin_uuid)

    def deploy(self, name: str, offering: str, host: Host) -> VirtualMachine:
        vm, job = vms.deploy(self.admin(), zone_uuid=self.zone, service_offering_uuid=offering,
                             template_uuid=self.template, name=name, host_uuid=host.uuid)
        db.session.refresh(job)
        assert job.status == 1, job.result
        return vms.get_vm(self.admin(), vm.uuid)

    def conn(self, host: Host) -> libvirt.virConnect:
        """A libvirt connection to the host, as Nubo opens it (qemu+ssh with its key)."""
        if host.id not in self._conns:
            self._conns[host.id] = hv.driver_for(host.hypervisor_type, hosts.connection_for(host))
        return self._conns[host.id].lv

    def runs_on(self, host: Host, vm: VirtualMachine) -> bool:
        try:
            return bool(self.conn(host).lookupByName(vm.instance_name).isActive())
        except libvirt.libvirtError:
            return False

    def domains(self, host: Host) -> list[str]:
        return sorted(d.name() for d in self.conn(host).listAllDomains(0) if d.name().endswith("-" + self.suffix))

    @staticmethod
    def root_of(vm: VirtualMachine) -> Volume:
        db.session.expire_all()
        return db.session.scalar(select(Volume).where(Volume.vm_id == vm.id, Volume.removed.is_(None),
                                                      Volume.volume_type == VolumeType.ROOT))

    def local_pool(self, host: Host) -> StoragePool:
        db.session.expire_all()
        return db.session.scalar(select(StoragePool).where(StoragePool.host_id == host.id,
                                                           StoragePool.scope == StorageScope.HOST,
                                                           StoragePool.removed.is_(None)))

    def volume_names(self, host: Host, pool: StoragePool) -> set[str]:
        """The pool's volumes on the host that are not templates."""
        try:
            p = self.conn(host).storagePoolLookupByName(pool.uuid)
            p.refresh(0)
            return {n for n in p.listVolumes() if not n.startswith("template-")}
        except libvirt.libvirtError:
            return set()

    @contextlib.contextmanager
    def squatter(self, host: Host, name: str):
        """A stopped domain of that name (another UUID) defined on the host meanwhile: libvirt
        refuses to bring a second domain of one name there."""
        xml = (f"<domain type='qemu'><name>{name}</name><uuid>{uuid.uuid4()}</uuid><memory unit='MiB'>16</memory>"
               "<os><type arch='x86_64'>hvm</type></os></domain>")
        dom = self.conn(host).defineXML(xml)
        try:
            yield
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()

    def clean_up(self) -> None:
        """Nothing of ours stays on the lab hosts: our domains, our pools and their volumes (the
        lab fixture wipes the hosts after each test too; the benchmark has only this)."""
        pools = {self.shared_pool_id} | {p.id for p in db.session.scalars(select(StoragePool).where(
            StoragePool.host_id.in_(self.host_ids)))}
        pool_uuids = [db.session.get(StoragePool, i).uuid for i in pools]
        for host in self.hosts:
            try:
                conn = self.conn(host)
                for dom in conn.listAllDomains(0):
                    if dom.name().endswith("-" + self.suffix):
                        with contextlib.suppress(libvirt.libvirtError):
                            dom.destroy()
                        with contextlib.suppress(libvirt.libvirtError):
                            dom.undefine()
                for pu in pool_uuids:
                    with contextlib.suppress(libvirt.libvirtError):
                        p = conn.storagePoolLookupByName(pu)
                        with contextlib.suppress(libvirt.libvirtError):
                            p.refresh(0)
                            for name in sorted(p.listVolumes(), key=lambda n: n.startswith("template-")):
                                with contextlib.suppress(libvirt.libvirtError):
                                    p.storageVolLookupByName(name).delete(0)
                        with contextlib.suppress(libvirt.libvirtError):
                            p.destroy()
                        p.undefine()
            except Exception:  # noqa: BLE001 - a host that went away has nothing left to clean
                pass
        for d in self._conns.values():
            d.close()
        self._conns.clear()
        self._serving.close()

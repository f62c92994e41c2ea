"""The demo infrastructure seeded on first start (NUBO_SEED_DEMO=1): a zone with
a Simulator cluster of three hosts, primary and secondary storage, a guest
network, a RAW template and two service offerings, so a fresh install can
deploy VMs at once with no hypervisor on the machine.

The Simulator driver is asked first (host facts, pool capacity), outside the
database transaction; then every Nubo row is created in one transaction, so a
failure leaves nothing half-made. Rows are created through the models directly
for now; the infrastructure services will take this over.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from flask import current_app

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.hypervisors import registry
from app.hypervisors.base import HostFacts, PoolInfo, StoragePoolSpec
from app.models import (
    AllocationState, Cluster, DownloadState, Host, HostState, ImageStore, Network, NetworkType, OsType,
    Pod, PoolType, ResourceState, ServiceOffering, StoragePool, StorageScope, Template,
    TemplateFormat, TemplateStoreRef, Zone, new_uuid, utcnow,
)
from app.services import accounts

log = logging.getLogger("nubo.demo")

SIMULATOR = "Simulator"
ZONE_NAME = "Demo"
HOST_NAMES = ("demo-host-1", "demo-host-2", "demo-host-3")
HOST_URL = "simulator://{name}?cpus=16&cpuspeed=2400&memory=65536&localstorage=2048"
TRAFFIC_LABEL = "simbr0"
NFS_SERVER = "demo-nfs.simulator"
SECONDARY_DIR = "demo-secondary"  # under the instance directory
TEMPLATE_NAME = "Demo Linux (RAW)"
TEMPLATE_SIZE = 2 << 30
OFFERINGS = (("Small Instance", 1, 500, 512), ("Medium Instance", 2, 1000, 2048))
# The demo zone's public range: the benchmark block (RFC 2544), never routed anywhere.
PUBLIC = {"gateway": "198.18.0.1", "netmask": "255.255.255.0", "start": "198.18.0.10", "end": "198.18.0.250",
          "guest_vlans": "100-199"}


def needed() -> bool:
    """Seed only on a fresh install: no zone has ever been created (a removed
    demo zone is not brought back)."""
    return not db.session.scalar(select(func.count()).select_from(Zone))


def seed_demo() -> Zone | None:
    """Create the demo zone; returns it, or None when there was nothing to do."""
    hv_type = registry.get(SIMULATOR)
    if hv_type is None or not needed():
        return None
    from app.services.hypervisors import driver_for
    # End the read transaction: the driver writes its sim_* rows through its own
    # connection, and an open SQLite snapshot here would then refuse to write.
    db.session.commit()

    # 1. Ask the (simulated) hypervisor, before any Nubo row is written.
    shared = StoragePoolSpec(uuid=new_uuid(), name="Demo Primary (NFS)", kind="NFS",
                             path="/export/primary", server=NFS_SERVER)
    hosts: list[tuple[str, str, HostFacts, StoragePoolSpec, PoolInfo]] = []
    shared_info: PoolInfo | None = None
    for name in HOST_NAMES:
        url = HOST_URL.format(name=name)
        driver = driver_for(SIMULATOR, hv_type.connection(url, {}))
        try:
            facts = driver.check_host()
            local = StoragePoolSpec(uuid=new_uuid(), name=f"{name} Local Storage", kind="Filesystem",
                                    path=facts.local_storage_path or "")
            local_info = driver.prepare_storage_pool(local)
            shared_info = driver.prepare_storage_pool(shared)
        finally:
            driver.close()
        hosts.append((name, url, facts, local, local_info))

    # 2. Nubo's records, all in one transaction.
    try:
        zone = _create_rows(hosts, shared, shared_info)
        db.session.commit()
    except IntegrityError:
        # Another process (a second web worker) seeded at the same moment.
        db.session.rollback()
        log.info("demo zone already seeded by another process")
        return None
    except Exception:
        db.session.rollback()
        _forget_pools(hv_type, hosts, shared)
        # No zone existed before (needed()), so the demo's store directory holds only this attempt.
        shutil.rmtree(Path(current_app.instance_path) / SECONDARY_DIR, ignore_errors=True)
        raise
    log.info("seeded the demo zone %s with %d Simulator hosts", zone.name, len(hosts))
    return zone


def _forget_pools(hv_type, hosts, shared: StoragePoolSpec) -> None:
    """Best effort after a failed seed: the simulated hosts drop the pools they
    prepared for it (the hosts themselves stay, like real machines would)."""
    from app.services.hypervisors import driver_for
    for i, (_name, url, _facts, local, _info) in enumerate(hosts):
        driver = driver_for(SIMULATOR, hv_type.connection(url, {}))
        try:
            driver.delete_storage_pool(local)
            if i == 0:
                driver.delete_storage_pool(shared)
        except Exception:  # noqa: BLE001 - cleanup must not hide the original error
            log.warning("could not remove demo pool from %s", url, exc_info=True)
        finally:
            driver.close()


def _create_networking(zone: Zone) -> None:
    """As the zone wizard makes it: a VLAN physical network carrying Guest, Public and
    Management traffic on the Simulator's bridge, its providers enabled, and a public range
    in the benchmark block (198.18.0.0/24) so isolated networks get source NAT addresses."""
    from app.services.network import offerings, physical, ranges
    offerings.ensure_defaults(commit=False)
    phys = physical.create_physical_network(None, zone=zone, name="Demo Physical Network", vlan=PUBLIC["guest_vlans"],
                                            commit=False)
    for traffic in ("Guest", "Public", "Management"):
        physical.add_traffic_type(None, phys.uuid, traffic, {SIMULATOR: TRAFFIC_LABEL}, commit=False)
    physical.enable_providers(None, phys, commit=False)
    ranges.create_range(None, zone_uuid=zone.uuid, physical_network_uuid=phys.uuid, vlan="untagged",
                        gateway=PUBLIC["gateway"], netmask=PUBLIC["netmask"], start_ip=PUBLIC["start"],
                        end_ip=PUBLIC["end"], for_virtual_network=True, commit=False)


def _local_store(zone: Zone) -> ImageStore:
    """The demo zone's secondary storage: a directory in the instance directory, which the
    management server (the only reader and writer of a Simulator zone's store) always
    reaches, so templates registered by URL download there right after `make run`.
    (An NFS store would need an NFS server and a mount first.)"""
    from app.services import storage
    path = Path(current_app.instance_path) / SECONDARY_DIR / zone.uuid
    provider, path, capacity, used = storage.validate_image_store("Local", f"file://{path}")
    return ImageStore(uuid=new_uuid(), name="Demo Secondary (Local)", zone_id=zone.id, provider=provider,
                      url=f"file://{path}", path=path, capacity_bytes=capacity, used_bytes=used)


def _sparse_image(path: Path, size: int) -> None:
    """The demo template's file on the store: sparse, so it takes no space."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def _create_rows(hosts, shared: StoragePoolSpec, shared_info: PoolInfo) -> Zone:
    admin = accounts.get_account("admin")
    if admin is None:
        raise RuntimeError("the admin account must exist before the demo is seeded")
    now = utcnow()
    zone = Zone(uuid=new_uuid(), name=ZONE_NAME, description="Demo zone on the Simulator hypervisor",
                network_type=NetworkType.ADVANCED, dns1="8.8.8.8", dns2="1.1.1.1",
                internal_dns1="10.1.1.1", guest_cidr="10.1.1.0/24", local_storage_enabled=True,
                hypervisor_type=SIMULATOR, allocation_state=AllocationState.ENABLED)
    db.session.add(zone)
    db.session.flush()
    _create_networking(zone)
    pod = Pod(zone_id=zone.id, name="Demo Pod", gateway="192.168.56.1", netmask="255.255.255.0",
              start_ip="192.168.56.10", end_ip="192.168.56.99", allocation_state=AllocationState.ENABLED)
    db.session.add(pod)
    db.session.flush()
    cluster = Cluster(zone_id=zone.id, pod_id=pod.id, name="Demo Cluster", hypervisor_type=SIMULATOR,
                      allocation_state=AllocationState.ENABLED)
    db.session.add(cluster)
    db.session.flush()

    for name, url, facts, local, local_info in hosts:
        host = Host(name=name, zone_id=zone.id, pod_id=pod.id, cluster_id=cluster.id,
                    hypervisor_type=SIMULATOR, url=url, address=name, details="{}",
                    state=HostState.UP, resource_state=ResourceState.ENABLED, last_pinged=now,
                    hypervisor_version=facts.version, arch=facts.arch, cpu_sockets=facts.cpu_sockets,
                    cpu_number=facts.cpu_cores, cpu_speed=facts.cpu_mhz, memory_total=facts.memory_bytes,
                    local_storage_path=facts.local_storage_path,
                    local_storage_total=facts.local_storage_bytes)
        db.session.add(host)
        db.session.flush()
        db.session.add(StoragePool(
            uuid=local.uuid, name=local.name, zone_id=zone.id, pod_id=pod.id, cluster_id=cluster.id,
            host_id=host.id, scope=StorageScope.HOST, pool_type=PoolType.FILESYSTEM,
            url=f"file://{local.path}", path=local.path, state="Up",
            capacity_bytes=local_info.capacity_bytes, used_bytes=local_info.allocated_bytes,
            allocated_bytes=local_info.allocated_bytes))

    db.session.add(StoragePool(
        uuid=shared.uuid, name=shared.name, zone_id=zone.id, scope=StorageScope.ZONE, pool_type=PoolType.NFS,
        url=f"nfs://{shared.server}{shared.path}", server=shared.server, path=shared.path, state="Up",
        capacity_bytes=shared_info.capacity_bytes, used_bytes=shared_info.allocated_bytes,
        allocated_bytes=shared_info.allocated_bytes))
    store = _local_store(zone)
    db.session.add(store)
    db.session.add(Network(name="Demo Guest Network", display_text="Default guest network of the demo zone",
                           zone_id=zone.id, account_id=None, cidr="10.1.1.0/24", gateway="10.1.1.1",
                           netmask="255.255.255.0", start_ip="10.1.1.10", end_ip="10.1.1.250",
                           is_default=True, state="Implemented"))
    os_type = db.session.scalar(select(OsType).where(OsType.description == "Other Linux (64-bit)"))
    template = Template(name=TEMPLATE_NAME, display_text="A small Linux image for the Simulator demo",
                        format=TemplateFormat.RAW, hypervisor_type=SIMULATOR,
                        os_type_id=os_type.id if os_type else None, account_id=admin.id,
                        url="http://demo.nubo.invalid/templates/demo-linux.raw", is_public=True,
                        featured=True, bootable=True, size=TEMPLATE_SIZE, physical_size=TEMPLATE_SIZE)
    db.session.add(template)
    db.session.flush()
    install_path = f"template/tmpl/{admin.id}/{template.id}/demo-linux.raw"
    _sparse_image(Path(store.path) / install_path, TEMPLATE_SIZE)
    db.session.add(TemplateStoreRef(template_id=template.id, zone_id=zone.id, image_store_id=store.id,
                                    state=DownloadState.DOWNLOADED, download_pct=100,
                                    downloaded_bytes=TEMPLATE_SIZE, size=TEMPLATE_SIZE,
                                    install_path=install_path))
    for name, cpus, mhz, mib in OFFERINGS:
        db.session.add(ServiceOffering(name=name, display_text=f"{name}: {cpus} vCPU, {mhz} MHz, {mib} MiB",
                                       cpu_number=cpus, cpu_speed=mhz, memory=mib))
    db.session.flush()
    return zone

"""A Simulator zone ready for deploys, made through the services as an admin would:
zone, pod, cluster, Simulator hosts, an NFS primary pool, a Local image store and a
public RAW template already downloaded to it, and a service offering."""
from __future__ import annotations

from dataclasses import dataclass

from app.extensions import db
from app.models import DownloadState, ServiceOffering, Template, TemplateStoreRef, new_uuid
from app.services import hosts, storage, zones

GIB = 1 << 30


@dataclass
class SimZone:
    zone: object
    hosts: list
    template: object
    offering: object


def simulator_zone(admin, tmp_path, *, name: str, guest_cidr: str, host_urls: list[str]) -> SimZone:
    z = zones.create_zone(admin, name=name, dns1="8.8.8.8", internal_dns1="10.0.0.2", guest_cidr=guest_cidr)
    p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                         start_ip="10.0.0.10")
    c = zones.add_cluster(admin, pod_uuid=p.uuid, name="c", hypervisor="Simulator")
    hs = [hosts.add_host(admin, cluster_uuid=c.uuid, url=url, fields={}) for url in host_urls]
    storage.create_storage_pool(admin, zone_uuid=z.uuid, cluster_uuid=c.uuid, name="nfs", url=f"nfs://{name}/e")
    store = storage.add_image_store(admin, provider="Local", url=f"file://{tmp_path}/sec", zone_uuid=z.uuid)
    (tmp_path / "sec" / "t.raw").write_bytes(b"\0" * 4096)
    t = Template(uuid=new_uuid(), name="t", format="RAW", hypervisor_type="Simulator", account_id=admin.account_id,
                 is_public=True, size=GIB, physical_size=GIB)
    db.session.add(t)
    db.session.flush()
    db.session.add(TemplateStoreRef(template_id=t.id, zone_id=z.id, image_store_id=store.id,
                                    state=DownloadState.DOWNLOADED, install_path="t.raw", size=GIB,
                                    downloaded_bytes=GIB))
    so = ServiceOffering(uuid=new_uuid(), name="s", cpu_number=1, cpu_speed=1000, memory=1024)
    db.session.add(so)
    db.session.commit()
    return SimZone(zone=z, hosts=hs, template=t, offering=so)


def power_cut(name: str, ago: float = 3600.0) -> None:
    """A Simulator host's power was cut `ago` seconds back: it answers nothing and its storage
    heartbeat is that old, so the HA investigation (its neighbours) finds it dead when the
    monitor's sweeps run at an injected time as far ahead."""
    from sqlalchemy import update

    from app.models import SimHost
    from app.services import simulator as sim
    sim.set_host_up(name, False)
    db.session.execute(update(SimHost).where(SimHost.name == name)
                       .values(heartbeat_stopped_at=SimHost.heartbeat_stopped_at - ago))
    db.session.commit()

"""Templates into primary storage on the real local libvirtd: a RAW template from
secondary storage becomes a thin (qcow2 overlay) root volume in a real libvirt
pool, and a direct-download template is fetched from its URL at first use and
reused the second time. The Simulator does the same bookkeeping."""
from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET

import libvirt
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import DownloadState, StoragePool, TemplatePoolRef, TemplateStoreRef
from app.services import accounts, hosts, settings, storage, template_cache, templates, zones
from tests.helpers.www import QuietHandler, raw_image, serve
from tests.helpers.users import existing_user

HITS: list[str] = []


class Handler(QuietHandler):
    def do_GET(self):
        HITS.append(self.path)
        super().do_GET()


@pytest.fixture
def www(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    image = raw_image(root / "base.raw")
    HITS.clear()
    with serve(root, Handler) as url:
        yield url, "{SHA-256}" + hashlib.sha256(image.read_bytes()).hexdigest()


def _infra(tmp_path, hypervisor, url):
    admin = existing_user("root", "rootpass1", role="admin", account="admin")
    z = zones.create_zone(admin, name=f"z-{hypervisor}", dns1="8.8.8.8", internal_dns1="10.0.0.2")
    p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                         start_ip="10.0.0.10")
    c = zones.add_cluster(admin, pod_uuid=p.uuid, name="c", hypervisor=hypervisor)
    h = hosts.add_host(admin, cluster_uuid=c.uuid, url=url, fields={})
    pool = storage.create_storage_pool(admin, zone_uuid=z.uuid, cluster_uuid=c.uuid, name="primary",
                                       url=f"file://{tmp_path}/primary-{hypervisor}")
    storage.add_image_store(admin, provider="Local", url=f"file://{tmp_path}/secondary", zone_uuid=z.uuid)
    return admin, z, h, pool


@pytest.mark.libvirt
def test_raw_template_becomes_thin_root_volume_and_direct_download_is_reused(app, tmp_path, www):
    url, checksum = www
    conn = libvirt.open("qemu:///system")
    pool_uuid = None
    try:
        with app.app_context():
            admin, z, h, pool = _infra(tmp_path, "KVM", "qemu:///system")
            pool_uuid = pool.uuid
            t = templates.register(admin, url=f"{url}/base.raw", name="debian", hypervisor="KVM", format="RAW",
                                   zone_uuid=z.uuid, checksum=checksum)
            assert templates.refs_of(t)[0].state == DownloadState.DOWNLOADED
            root = template_cache.create_root_volume(t, pool, h, "root-vm1")
            lv_pool = conn.storagePoolLookupByName(pool.uuid)
            vol = lv_pool.storageVolLookupByName("root-vm1")
            xml = ET.fromstring(vol.XMLDesc(0))
            assert xml.find("target/format").get("type") == "qcow2"
            assert xml.find("backingStore/path").text.endswith(template_cache.base_volume_name(t))  # thin
            assert root.size_bytes == 16 << 20
            base = lv_pool.storageVolLookupByName(template_cache.base_volume_name(t))
            assert base.info()[1] == 16 << 20
            assert db.session.get(StoragePool, pool.id).allocated_bytes >= 16 << 20

            # Direct download: nothing on secondary storage; fetched into the pool at first use only.
            dd = templates.register(admin, url=f"{url}/base.raw", name="dd", hypervisor="KVM", format="RAW",
                                    zone_uuid=z.uuid, checksum=checksum, direct_download=True)
            assert templates.refs_of(dd)[0].state == DownloadState.BYPASSED
            HITS.clear()
            template_cache.create_root_volume(dd, pool, h, "root-vm2")
            template_cache.create_root_volume(dd, pool, h, "root-vm3")
            assert HITS == ["/base.raw"]  # once
            assert db.session.scalar(select(func.count()).select_from(TemplatePoolRef)) == 2

            # A direct download whose checksum is wrong leaves nothing in the pool and no cache row.
            bad = templates.register(admin, url=f"{url}/base.raw", name="bad", hypervisor="KVM", format="RAW",
                                     zone_uuid=z.uuid, checksum="{SHA-256}" + "0" * 64, direct_download=True)
            with pytest.raises(Exception, match="Checksum mismatch"):
                template_cache.create_root_volume(bad, pool, h, "root-vm4")
            lv_pool.refresh(0)
            assert template_cache.base_volume_name(bad) not in lv_pool.listVolumes()
            assert db.session.scalar(select(func.count()).select_from(TemplatePoolRef)) == 2
    finally:
        if pool_uuid:
            p = conn.storagePoolLookupByName(pool_uuid)
            for name in sorted(p.listVolumes(), key=lambda n: n.startswith("template-")):
                p.storageVolLookupByName(name).delete(0)  # overlays before their bases
            p.destroy()
            p.undefine()
        conn.close()


@pytest.mark.db
def test_simulator_template_cache(app, tmp_path, www):
    url, checksum = www
    with app.app_context():
        admin, z, h, pool = _infra(tmp_path, "Simulator", "simulator://tc-1?localstorage=100")
        t = templates.register(admin, url=f"{url}/base.raw", name="sim", hypervisor="Simulator", format="RAW",
                               zone_uuid=z.uuid, checksum=checksum)
        template_cache.create_root_volume(t, pool, h, "r1")
        template_cache.create_root_volume(t, pool, h, "r2")
        refs = list(db.session.scalars(select(TemplatePoolRef)))
        assert len(refs) == 1 and refs[0].state == DownloadState.DOWNLOADED and refs[0].size == 16 << 20
        assert db.session.scalar(select(TemplateStoreRef.state)) == DownloadState.DOWNLOADED


@pytest.mark.libvirt
def test_direct_download_into_a_real_pool_checks_the_image_and_the_address(app, tmp_path, www):
    """A QCOW2 with a backing file never becomes a base volume (refused before any byte reaches the
    pool); a user's direct-download URL is checked again at first use with the owner's rules."""
    import subprocess
    url, _ = www
    root = tmp_path / "www"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw",
                    str(root / "backed.qcow2")], check=True)
    conn = libvirt.open("qemu:///system")
    pool_uuid = None
    try:
        with app.app_context():
            admin, z, h, pool = _infra(tmp_path, "KVM", "qemu:///system")
            pool_uuid = pool.uuid
            lv_pool = conn.storagePoolLookupByName(pool.uuid)
            before = (sorted(lv_pool.listVolumes()), db.session.get(StoragePool, pool.id).allocated_bytes)
            backed = root / "backed.qcow2"
            t = templates.register(admin, url=f"{url}/backed.qcow2", name="backed", hypervisor="KVM",
                                   format="QCOW2", zone_uuid=z.uuid, direct_download=True,
                                   checksum="{SHA-256}" + hashlib.sha256(backed.read_bytes()).hexdigest())
            with pytest.raises(Exception, match="backing or data file"):
                template_cache.create_root_volume(t, pool, h, "root-backed")
            lv_pool.refresh(0)
            assert (sorted(lv_pool.listVolumes()), db.session.get(StoragePool, pool.id).allocated_bytes) == before
            assert db.session.scalar(select(func.count()).select_from(TemplatePoolRef)) == 0

            # alice's image server was allowed when she registered, no longer at first use.
            settings.update("secstorage.allowed.internal.sites", "127.0.0.1/32")
            alice = existing_user("alice", "alicepass1")
            u = templates.register(alice, url=f"{url}/base.raw", name="mine", hypervisor="KVM", format="RAW",
                                   zone_uuid=z.uuid, direct_download=True, checksum=www[1])
            settings.update("secstorage.allowed.internal.sites", "")
            HITS.clear()
            with pytest.raises(Exception, match="internal address"):
                template_cache.create_root_volume(u, pool, h, "root-mine")
            assert HITS == []
            lv_pool.refresh(0)
            assert sorted(lv_pool.listVolumes()) == before[0]
    finally:
        if pool_uuid:
            p = conn.storagePoolLookupByName(pool_uuid)
            for name in p.listVolumes():
                p.storageVolLookupByName(name).delete(0)
            p.destroy()
            p.undefine()
        conn.close()

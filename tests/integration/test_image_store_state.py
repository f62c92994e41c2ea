"""Image store state: the monitor's sweep reads and writes each store's directory and sets
Ready, ReadOnly or Unreachable (with the reason and an event on each change); the secondary
storage list and a store's page show it, and the page lists the templates on the store."""
from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import DownloadState, Event, ImageStore, Template, TemplateStoreRef, new_uuid
from app.services import storage, zones
from tests.integration.test_infra_pages import _engines, build  # noqa: F401 - zone builder, autouse fixture


def store_state(uuid: str) -> tuple[str, str | None]:
    s = db.session.scalar(select(ImageStore).where(ImageStore.uuid == uuid))
    db.session.refresh(s)
    return s.state, s.state_reason


def test_a_local_store_is_ready_then_unreachable_when_its_directory_goes(app, tmp_path):
    from app.monitor import sweep
    with app.app_context():
        z = zones.create_zone(None, name="SZ", dns1="8.8.8.8", internal_dns1="10.0.0.2")
        root = tmp_path / "sec"
        store = storage.add_image_store(None, provider="Local", url=f"file://{root}", zone_uuid=z.uuid)
        assert store_state(store.uuid) == ("Ready", None) and store.capacity_bytes > 0
        root.rename(tmp_path / "gone")  # the directory is gone (as root, a chmod would not stop the reads)
        sweep()
        state, reason = store_state(store.uuid)
        assert state == "Unreachable" and str(root) in reason and "not a directory" in reason
        (tmp_path / "gone").rename(root)
        sweep()
        assert store_state(store.uuid) == ("Ready", None)
        changes = [e.description for e in db.session.scalars(select(Event).where(
            Event.type == "IMAGE.STORE.STATE").order_by(Event.id))]
        assert len(changes) == 2 and "is Unreachable (was Ready)" in changes[0] and "is Ready" in changes[1]
        assert not list(root.iterdir())  # the write probe leaves nothing behind


def test_a_read_only_store_is_read_only(app, tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    with app.app_context():
        store = storage.add_image_store(None, provider="Local", url=f"file://{root}")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(root)]).returncode:
            pytest.skip("cannot mount a read-only tmpfs here")
        try:
            storage.check_image_stores()
            state, reason = store_state(store.uuid)
            assert state == "ReadOnly" and "cannot be written" in reason and "Read-only file system" in reason
        finally:
            subprocess.run(["umount", str(root)], check=True)
        storage.check_image_stores()
        assert store_state(store.uuid)[0] == "Ready"


def test_an_nfs_store_nobody_mounted_is_unreachable_and_not_chosen(app, tmp_path):
    from app.services.templates import _store_of
    with app.app_context():
        z = zones.create_zone(None, name="NZ", dns1="8.8.8.8", internal_dns1="10.0.0.2")
        nfs = storage.add_image_store(None, provider="NFS", url="nfs://nfs1/export/secondary", zone_uuid=z.uuid)
        state, reason = store_state(nfs.uuid)
        assert state == "Unreachable" and "is not mounted" in reason
        local = storage.add_image_store(None, provider="Local", url=f"file://{tmp_path}/sec", zone_uuid=z.uuid)
        assert _store_of(z.id).id == local.id  # a Ready store first, though added later


def test_the_list_and_the_store_page(app, client, auth, tmp_path):
    ids = build(app, 0)
    with app.app_context():
        store = storage.add_image_store(None, provider="Local", url=f"file://{tmp_path}/sec", zone_uuid=ids.zone,
                                        name="local-sec")
        nfs = storage.add_image_store(None, provider="NFS", url="nfs://nfs1/export/s", name="nfs-sec")
        z = zones.get_zone(ids.zone)
        from app.services import accounts
        admin = accounts.get_user("admin")
        for i, state in enumerate((DownloadState.DOWNLOADED, DownloadState.ERROR)):
            t = Template(uuid=new_uuid(), name=f"tmpl-{i}", display_text="t", format="QCOW2", account_id=admin.account_id,
                         hypervisor_type="Simulator", url="http://127.0.0.1/x.qcow2")
            db.session.add(t)
            db.session.flush()
            db.session.add(TemplateStoreRef(template_id=t.id, zone_id=z.id, image_store_id=store.id, state=state,
                                            error="HTTP 404" if state == DownloadState.ERROR else None, size=1 << 20))
        db.session.commit()
        store_uuid, nfs_uuid = store.uuid, nfs.uuid
    auth.login("admin")
    html = client.get("/admin/storage/secondary").get_data(as_text=True)
    assert f'href="/admin/storage/secondary/{store_uuid}"' in html and "state-unreachable" in html
    assert "is not mounted" in html and "state-ready" in html
    html = client.get(f"/admin/storage/secondary/{store_uuid}").get_data(as_text=True)
    assert "tmpl-0" in html and "tmpl-1" in html and "HTTP 404" in html and "DOWNLOADED" in html
    html = client.get(f"/admin/storage/secondary/{nfs_uuid}").get_data(as_text=True)
    assert "Unreachable" in html and "No template or ISO on this store." in html
    assert client.get("/admin/storage/secondary/nope").status_code == 404
    auth.logout()
    auth.login("alice")
    assert client.get(f"/admin/storage/secondary/{store_uuid}").status_code == 403

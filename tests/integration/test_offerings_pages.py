"""Offerings pages: compute offerings listed, added (fixed CPU and memory, HA, host and storage
tags, root disk), edited and deleted (refused while VMs use them); contradictory input refused
with a message and nothing made (a duplicate name, a disk offering with a size and a custom size);
the same refusals from the API; admins only."""
from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import DiskOffering, ServiceOffering
from tests.integration.test_quotas import api


def count(app, model, **where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(
            model.removed.is_(None), *[getattr(model, k) == v for k, v in where.items()]))


FORM = {"name": "medium", "displaytext": "2 vCPU 4 GiB", "cpunumber": "2", "cpuspeed": "2000", "memory": "4096",
        "storagetype": "shared", "rootdisksize": "", "offerha": "y", "hosttags": "ssd, gpu", "storagetags": "fast"}


def test_compute_offering_create_edit_delete(app, client, auth, hx):
    auth.login("admin")
    token = auth.csrf("/admin/offerings/")
    r = client.post("/admin/offerings/", data={**FORM, "csrf_token": token})
    assert r.status_code == 302
    html = client.get("/admin/offerings/").get_data(as_text=True)
    assert "Compute offering medium added." in html and "2 × 2000 MHz" in html and "host: ssd,gpu" in html
    with app.app_context():
        o = db.session.scalar(select(ServiceOffering).where(ServiceOffering.name == "medium"))
        assert (o.cpu_number, o.memory, o.offer_ha, o.storage_tags) == (2, 4096, True, "fast")
        uuid = o.uuid
    # a duplicate name: refused beside the field, nothing made
    r = hx.post("/admin/offerings/", data={**FORM})
    assert r.status_code == 422 and "already exists" in r.get_data(as_text=True)
    assert count(app, ServiceOffering, name="medium") == 1
    r = hx.post("/admin/offerings/", data={**FORM, "name": "x", "cpunumber": "0"})
    assert r.status_code == 422 and count(app, ServiceOffering, name="x") == 0
    # edit
    r = hx.post(f"/admin/offerings/{uuid}/edit", data={"name": "medium-2", "displaytext": "", "hosttags": "",
                                                       "storagetags": "fast", "sortkey": "3"})
    assert r.status_code == 204 and r.headers["HX-Redirect"] == "/admin/offerings/"
    with app.app_context():
        o = db.session.scalar(select(ServiceOffering).where(ServiceOffering.uuid == uuid))
        assert (o.name, o.host_tags, o.sort_key) == ("medium-2", None, 3)
    assert client.get(f"/admin/offerings/{uuid}/edit?name=medium-2").status_code == 200
    r = client.post(f"/admin/offerings/{uuid}/delete", data={"csrf_token": token})
    assert r.status_code == 302 and count(app, ServiceOffering, name="medium-2") == 0
    assert client.post("/admin/offerings/no-such/delete", data={"csrf_token": token}).status_code == 404


def test_disk_offering_contradictions(app, client, auth, hx):
    auth.login("admin")
    r = hx.post("/volumes/offerings", data={"name": "both", "disksize": "5", "customized": "y",
                                            "storagetype": "shared"})
    assert r.status_code == 422 and "takes no disksize" in r.get_data(as_text=True)
    assert count(app, DiskOffering, name="both") == 0
    assert hx.post("/volumes/offerings", data={"name": "d5", "disksize": "5", "storagetype": "shared"}
                   ).status_code == 204
    r = hx.post("/volumes/offerings", data={"name": "d5", "disksize": "6", "storagetype": "shared"})
    assert r.status_code == 422 and "already exists" in r.get_data(as_text=True)
    assert count(app, DiskOffering, name="d5") == 1


def test_api_refuses_the_same(app, client, users):
    ok = api(app, client, "admin", command="createServiceOffering", name="s", cpunumber=1, cpuspeed=500, memory=512)
    assert ok[0] == 200
    status, body = api(app, client, "admin", command="createServiceOffering", name="s", cpunumber=1, cpuspeed=500,
                       memory=512)
    assert status == 431 and body["errortext"] == "A service offering named s already exists"
    status, body = api(app, client, "admin", command="createDiskOffering", name="c", customized="true", disksize=5)
    assert status == 431 and "takes no disksize" in body["errortext"]
    api(app, client, "admin", command="createServiceOffering", name="t", cpunumber=1, cpuspeed=500, memory=512)
    t = api(app, client, "admin", command="listServiceOfferings", name="t")[1]["serviceoffering"][0]
    status, _ = api(app, client, "admin", command="updateServiceOffering", id=t["id"], name="s")  # rename onto s
    assert status == 431 and count(app, ServiceOffering, name="s") == 1


def test_users_get_403(client, auth):
    auth.login("alice")
    assert client.get("/admin/offerings/").status_code == 403

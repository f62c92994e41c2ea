"""Template edit, sharing and copies (app/web/template_edit.py, app/services/template_copy.py):
the edit page saves name, description, OS type, public and featured (the last two for admins);
sharing with accounts by name; copyTemplate copies a ready template's file into another zone's
store (checked again on arrival) through the page and the API, refuses what CloudStack refuses,
and leaves nothing made; registering for every zone makes one copy per zone. Jobs run inline."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import DownloadState, OsType, Template, TemplatePermission
from app.services import accounts, storage, template_copy, templates, zones
from app.services.errors import InvalidParameter, PermissionDenied
from tests.integration.test_template_pages import _no_dns, files, register  # noqa: F401 - fixtures


@pytest.fixture
def two_zones(app, users, tmp_path):
    """Z1 and Z2, each with its own Local image store: their uuids."""
    with app.app_context():
        out = []
        for name in ("Z1", "Z2"):
            z = zones.create_zone(None, name=name, dns1="8.8.8.8", internal_dns1="10.0.0.2")
            storage.add_image_store(None, provider="Local", url=f"file://{tmp_path}/sec-{name}", zone_uuid=z.uuid)
            out.append(z.uuid)
        return out


def copies(app, uuid: str) -> dict[str, tuple[str, str | None]]:
    with app.app_context():
        t = db.session.scalar(select(Template).where(Template.uuid == uuid))
        return {r.zone.name: (r.state, r.error) for r in templates.refs_of(t, fresh=True)}


def test_register_for_all_zones_makes_a_copy_in_each(app, two_zones, files):
    url, _ = files
    uuid = register(app, url=f"{url}/disk.raw", name="everywhere", zone_uuid="-1")
    assert copies(app, uuid) == {"Z1": ("DOWNLOADED", None), "Z2": ("DOWNLOADED", None)}


def test_copy_to_another_zone_copies_the_file(app, two_zones, files, tmp_path):
    url, _ = files
    uuid = register(app, url=f"{url}/disk.raw", name="one-zone", zone_uuid=two_zones[0])
    assert copies(app, uuid) == {"Z1": ("DOWNLOADED", None)}
    with app.app_context():
        admin = accounts.get_user("admin")
        job = template_copy.copy_template(admin, uuid, dest_zone_uuids=[two_zones[1]])
        db.session.refresh(job)
        assert job.status == 1, job.result  # succeeded
    assert copies(app, uuid) == {"Z1": ("DOWNLOADED", None), "Z2": ("DOWNLOADED", None)}
    copied = list((tmp_path / "sec-Z2").rglob("*.raw"))
    assert len(copied) == 1 and copied[0].stat().st_size == 1 << 20 and not list((tmp_path / "sec-Z2").rglob("*.part"))
    with app.app_context():  # copied again: nothing to do, as CloudStack answers
        template_copy.copy_template(accounts.get_user("admin"), uuid, dest_zone_uuids=[two_zones[1]])
    assert copies(app, uuid)["Z2"] == ("DOWNLOADED", None)


def test_copy_refusals_change_nothing(app, two_zones, files):
    url, _ = files
    ready = register(app, url=f"{url}/disk.raw", name="ready", zone_uuid=two_zones[0])
    broken = register(app, url="http://127.0.0.1:9/x.raw", name="broken", zone_uuid=two_zones[0])
    with app.app_context():
        admin, alice = accounts.get_user("admin"), accounts.get_user("alice")
        cases = [(admin, ready, [two_zones[0]], "different source and destination zones"),
                 (admin, ready, [], "valid destination zone"),
                 (admin, ready, ["no-such-zone"], "valid destination zone"),
                 (admin, broken, [two_zones[1]], "is not ready")]
        for caller, uuid, dests, message in cases:
            with pytest.raises(InvalidParameter, match=message):
                template_copy.copy_template(caller, uuid, dest_zone_uuids=dests)
        db.session.scalar(select(Template).where(Template.uuid == ready)).is_public = True
        db.session.commit()
        with pytest.raises(PermissionDenied):  # a public template is not alice's to copy
            template_copy.copy_template(alice, ready, dest_zone_uuids=[two_zones[1]])
    assert copies(app, ready) == {"Z1": ("DOWNLOADED", None)} and set(copies(app, broken)) == {"Z1"}


def test_copy_through_the_api(app, client, two_zones, files):
    """copyTemplate as a signed API call: a job whose result names the template; a refusal
    is CloudStack's error 431 and makes nothing."""
    import json
    from urllib.parse import urlencode

    from tests.integration.test_api import signed
    url, _ = files
    uuid = register(app, url=f"{url}/disk.raw", name="api-copy", zone_uuid=two_zones[0])
    with app.app_context():
        keys = {"admin": accounts.ensure_keys(accounts.get_user("admin"))}
    resp = client.get("/client/api?" + urlencode(signed(keys, "admin", command="copyTemplate", id=uuid,
                                                        destzoneid=two_zones[0])))
    assert resp.status_code == 431 and "different source and destination" in resp.get_data(as_text=True)
    resp = client.get("/client/api?" + urlencode(signed(keys, "admin", command="copyTemplate", id=uuid,
                                                        destzoneids=two_zones[1])))
    assert resp.status_code == 200, resp.data
    job_id = json.loads(resp.data)["copytemplateresponse"]["jobid"]
    resp = client.get("/client/api?" + urlencode(signed(keys, "admin", command="queryAsyncJobResult", jobid=job_id)))
    result = json.loads(resp.data)["queryasyncjobresultresponse"]
    assert result["jobstatus"] == 1 and result["jobresult"]["template"]["id"] == uuid
    assert copies(app, uuid) == {"Z1": ("DOWNLOADED", None), "Z2": ("DOWNLOADED", None)}


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def test_the_edit_page(app, client, auth, two_zones, files):
    url, _ = files
    uuid = register(app, "alice", url=f"{url}/disk.raw", name="alice-tmpl", zone_uuid=two_zones[0])
    with app.app_context():
        os_type = db.session.scalar(select(OsType).order_by(OsType.id).limit(1))
        os_uuid, os_name = os_type.uuid, os_type.description
    auth.login("alice")
    page = client.get(f"/templates/{uuid}")
    assert f'href="/templates/{uuid}/edit"' in page.get_data(as_text=True)
    html = client.get(f"/templates/{uuid}/edit").get_data(as_text=True)
    assert 'name="ispublic"' not in html  # public and featured are the admins'
    token = csrf(html)
    resp = client.post(f"/templates/{uuid}/edit", data={"csrf_token": token, "form": "settings", "name": "",
                                                        "displaytext": "x", "ostypeid": ""})
    assert resp.status_code == 422
    resp = client.post(f"/templates/{uuid}/edit", data={"csrf_token": token, "form": "settings", "name": "renamed",
                                                        "displaytext": "Debian 12", "ostypeid": os_uuid})
    assert resp.status_code == 302
    html = client.get(f"/templates/{uuid}").get_data(as_text=True)
    assert "renamed" in html and "Debian 12" in html and os_name in html
    # Sharing: an unknown account is refused beside the field; bob is added, then removed.
    resp = client.post(f"/templates/{uuid}/edit", data={"csrf_token": token, "form": "permissions", "op": "add",
                                                        "accounts": "nobody"})
    assert resp.status_code == 422 and "account not found" in resp.get_data(as_text=True)
    resp = client.post(f"/templates/{uuid}/edit", data={"csrf_token": token, "form": "permissions", "op": "add",
                                                        "accounts": "bob"})
    assert resp.status_code == 302
    html = client.get(f"/templates/{uuid}/edit").get_data(as_text=True)
    assert "<li>bob</li>" in html
    client.post(f"/templates/{uuid}/edit", data={"csrf_token": token, "form": "permissions", "op": "remove",
                                                 "accounts": "bob"})
    with app.app_context():
        assert db.session.scalar(select(TemplatePermission.id)) is None
    # Copy to Z2 from the page.
    assert re.findall(r'<option value="([^"]*)"', client.get(f"/templates/{uuid}/edit").get_data(as_text=True)
                      .split('name="destzoneid"')[1].split("</select>")[0]) == ["", two_zones[1]]
    resp = client.post(f"/templates/{uuid}/edit", data={"csrf_token": token, "form": "copy",
                                                        "destzoneid": two_zones[1]})
    assert resp.status_code == 302 and resp.headers["Location"] == f"/templates/{uuid}"
    assert copies(app, uuid)["Z2"][0] == DownloadState.DOWNLOADED
    assert "It is in every zone." in client.get(f"/templates/{uuid}/edit").get_data(as_text=True)
    # Without CSRF nothing changes; another user may not open the page.
    assert client.post(f"/templates/{uuid}/edit", data={"form": "settings", "name": "x"}).status_code == 400
    auth.logout()
    auth.login("bob")
    assert client.get(f"/templates/{uuid}/edit").status_code in (403, 404)
    auth.logout()
    auth.login("admin")
    html = client.get(f"/templates/{uuid}/edit").get_data(as_text=True)
    assert 'name="ispublic"' in html and 'name="isfeatured"' in html
    resp = client.post(f"/templates/{uuid}/edit", data={"csrf_token": csrf(html), "form": "settings",
                                                        "name": "renamed", "displaytext": "Debian 12",
                                                        "ostypeid": os_uuid, "ispublic": "y", "isfeatured": "y"})
    assert resp.status_code == 302
    with app.app_context():
        t = db.session.scalar(select(Template).where(Template.uuid == uuid))
        assert t.is_public and t.featured

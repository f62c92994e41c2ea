"""Extracts and volume uploads on a Simulator zone, through the API and Nubo's own URLs:
extractVolume / extractTemplate / extractIso answer a download URL (CloudStack's fields) that
serves the bytes with no login until it expires (then 404, a volume's copy deleted); a tampered
token is refused; CloudStack's rules (extractable, owner, VM stopped, disable.extraction, mode)
with its codes, nothing made on a refusal. uploadVolume fetches through the SSRF-safe fetch
(loopback refused for users until allowed), counts a volume and its secondary storage, checks
the checksum and the real format, and the first attach moves it into primary storage;
getUploadParamsForVolume's signed POST (tampered, expired, a template's signature: refused)."""
from __future__ import annotations

import hashlib
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Extract, Template, Volume, VolumeStoreRef, utcnow
from app.services import accounts, settings, volumes
from tests.helpers.www import raw_image, serve
from tests.integration.test_quotas import api, counts
from tests.integration.test_vm_pages import _engines, deploy, set_vm, world  # noqa: F401  (fixtures)

GIB = 1 << 30


def result(app, client, user, jobid) -> dict:
    status, body = api(app, client, user, command="queryAsyncJobResult", jobid=jobid)
    assert status == 200 and body["jobstatus"] != 0, body  # immediate mode: done already
    return body


def extracts(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Extract))


def path_of(url: str) -> str:
    return urlsplit(url).path


def data_volume(app, world, user="alice", vm=None) -> str:
    """A 1 GiB data volume made on the pool (attached once), detached again."""
    with app.app_context():
        who = accounts.get_user(user)
        o = volumes.create_disk_offering(accounts.get_user("admin"), name=f"d1-{user}", disk_size=1)
        v = volumes.create_volume(who, name=f"data-{user}", zone_uuid=world.zone, disk_offering_uuid=o.uuid)
        volumes.attach_volume(who, v.uuid, vm)
        volumes.detach_volume(who, v.uuid)
        return v.uuid


def test_extract_volume_url_serves_the_copy_until_it_expires(app, client, world, tmp_path):
    vm = deploy(app, world)
    vol = data_volume(app, world, vm=vm)
    # Bad input: CloudStack's codes, nothing made
    for params, code, text in (
            ({"mode": "BOGUS"}, 431, "valid extract Mode"), ({"mode": "FTP_UPLOAD"}, 431, "not supported"),
            ({"mode": "HTTP_DOWNLOAD", "zoneid": "5e1f0000-0000-4000-8000-00000000abcd"}, 431, "zone")):
        status, body = api(app, client, "alice", command="extractVolume", id=vol,
                           **{"zoneid": world.zone, **params})
        assert status == code and text in body["errortext"], body
    assert api(app, client, "alice", command="extractVolume", id=vol, mode="HTTP_DOWNLOAD")[0] == 431  # no zoneid
    # Another account's volume is not found; a volume with no storage yet cannot be extracted
    assert api(app, client, "bob", command="extractVolume", id=vol, mode="HTTP_DOWNLOAD", zoneid=world.zone)[0] == 431
    with app.app_context():
        o = volumes.create_disk_offering(accounts.get_user("admin"), name="d-alloc", disk_size=1)
        allocated = volumes.create_volume(accounts.get_user("alice"), name="alloc", zone_uuid=world.zone,
                                          disk_offering_uuid=o.uuid).uuid
    status, body = api(app, client, "alice", command="extractVolume", id=allocated, mode="HTTP_DOWNLOAD",
                       zoneid=world.zone)
    assert status == 431 and "doesnt belong to a storage pool" in body["errortext"]
    # A volume attached to a running VM: 531, as CloudStack's PermissionDenied
    with app.app_context():
        volumes.attach_volume(accounts.get_user("alice"), vol, vm)
    status, body = api(app, client, "alice", command="extractVolume", id=vol, mode="HTTP_DOWNLOAD", zoneid=world.zone)
    assert status == 531 and "stopped state" in body["errortext"]
    assert extracts(app) == 0
    set_vm(app, vm, state="Stopped")  # its VM stopped: allowed

    status, body = api(app, client, "alice", command="extractVolume", id=vol, mode="http_download",
                       zoneid=world.zone)
    assert status == 200, body
    res = result(app, client, "alice", body["jobid"])
    assert res["jobstatus"] == 1, res
    x = res["jobresult"]["volume"]
    assert x["id"] == vol and x["name"] == "data-alice" and x["state"] == "DOWNLOAD_URL_CREATED"
    assert x["extractMode"] == "HTTP_DOWNLOAD" and x["zoneid"] == world.zone and x["uploadpercentage"] == 100
    assert x["extractId"] and x["accountid"] and x["created"] and x["url"].endswith("/data-alice.qcow2")
    # The URL needs no login: the whole size announced, ranges served
    head = client.head(path_of(x["url"]))
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == GIB
    part = client.get(path_of(x["url"]), headers={"Range": "bytes=0-4095"})
    assert part.status_code == 206 and part.data == b"\0" * 4096  # the Simulator's copy is sparse
    # A tampered or unknown token: 404, the same answer
    token = path_of(x["url"]).split("/")[2]
    bad = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert client.get(f"/download/{bad}/data-alice.qcow2").status_code == 404
    assert client.get("/download/x/data-alice.qcow2").status_code == 404
    with app.app_context():  # only the token's hash is kept
        row = db.session.scalar(select(Extract).where(Extract.uuid == x["extractId"]))
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() and token not in str(row.__dict__)
        copy = tmp_path / "sec" / row.install_path
        assert copy.exists()
        # Expiry: the worker's clean-up ends it, the copy goes
        from app.services.transfers import extracts as svc
        assert svc.cleanup(now=utcnow() + timedelta(seconds=settings.get("extract.url.expiration.interval") - 60)) == 0
        assert svc.cleanup(now=utcnow() + timedelta(seconds=settings.get("extract.url.expiration.interval") + 1)) == 1
        assert not copy.exists()
    assert client.head(path_of(x["url"])).status_code == 404


def test_extract_template_rules(app, client, world, tmp_path):
    # The public template "tiny" is admin's and not extractable: a user may not; a root admin may
    status, body = api(app, client, "alice", command="extractTemplate", id=world.template, mode="HTTP_DOWNLOAD")
    assert status == 431 and "not extractable" in body["errortext"]
    status, body = api(app, client, "admin", command="extractTemplate", id=world.template, mode="HTTP_DOWNLOAD",
                       zoneid=world.zone)
    assert status == 200, body
    x = result(app, client, "admin", body["jobid"])["jobresult"]["template"]
    assert x["id"] == world.template and x["state"] == "DOWNLOAD_URL_CREATED" and x["zonename"] == "Z1"
    got = client.get(path_of(x["url"]))
    assert got.status_code == 200 and got.data == b"NUBO" * 1024  # the template's own file
    # Extractable but another account's: refused (CloudStack's OperateEntry check)
    api(app, client, "admin", command="updateTemplatePermissions", id=world.template, isextractable="true")
    status, body = api(app, client, "alice", command="extractTemplate", id=world.template, mode="HTTP_DOWNLOAD")
    assert status == 531, body
    # An ISO is extractIso's; a template id given to extractIso is refused
    status, body = api(app, client, "admin", command="extractIso", id=world.template, mode="HTTP_DOWNLOAD")
    assert status == 431 and "Unsupported format" in body["errortext"]
    status, body = api(app, client, "admin", command="extractIso", id=world.iso, mode="HTTP_DOWNLOAD")
    assert status == 200 and result(app, client, "admin", body["jobid"])["jobresult"]["iso"]["url"]
    # disable.extraction: only root admins
    with app.app_context():
        t = db.session.scalar(select(Template).where(Template.uuid == world.template))
        t.account_id = accounts.get_user("alice").account_id
        db.session.commit()
        settings.update("disable.extraction", "true")
    before = extracts(app)
    status, body = api(app, client, "alice", command="extractTemplate", id=world.template, mode="HTTP_DOWNLOAD")
    assert status == 531 and body["errortext"] == "Extraction has been disabled by admin"
    assert extracts(app) == before
    with app.app_context():
        settings.update("disable.extraction", "false")
    status, body = api(app, client, "alice", command="extractTemplate", id=world.template, mode="HTTP_DOWNLOAD")
    assert status == 200 and result(app, client, "alice", body["jobid"])["jobstatus"] == 1
    # A ROOT volume of a template that is not extractable: users refused, root admins may
    with app.app_context():
        t = db.session.scalar(select(Template).where(Template.uuid == world.template))
        t.extractable = False
        db.session.commit()
    vm = deploy(app, world, user="bob")
    set_vm(app, vm, state="Stopped")
    with app.app_context():
        root = db.session.scalar(select(Volume.uuid).where(Volume.volume_type == "ROOT", Volume.account_id ==
                                                           accounts.get_user("bob").account_id))
    status, body = api(app, client, "bob", command="extractVolume", id=root, mode="HTTP_DOWNLOAD", zoneid=world.zone)
    assert status == 531 and "not allowed to be extracted" in body["errortext"], body
    status, body = api(app, client, "admin", command="extractVolume", id=root, mode="HTTP_DOWNLOAD",
                       zoneid=world.zone)
    assert status == 200 and result(app, client, "admin", body["jobid"])["jobstatus"] == 1


def _raw(tmp_path, name="disk.raw"):
    d = tmp_path / "www"
    d.mkdir(exist_ok=True)
    return raw_image(d / name, "4M"), d


def test_upload_volume_from_a_url_then_attach(app, client, world, tmp_path):
    img, www = _raw(tmp_path)
    digest = hashlib.sha256(img.read_bytes()).hexdigest()
    o_custom = o_fixed = None
    with app.app_context():
        admin = accounts.get_user("admin")
        o_custom = volumes.create_disk_offering(admin, name="custom", customized=True).uuid
        o_fixed = volumes.create_disk_offering(admin, name="fixed", disk_size=1).uuid
        settings.update("max.account.volumes", "20")
    vm = deploy(app, world)
    before = counts(app)
    n_vols = lambda: len(api(app, client, "alice", command="listVolumes")[1].get("volume", []))  # noqa: E731
    vols = n_vols()
    with serve(www) as base:
        url = f"{base}/disk.raw"
        # A user may not make Nubo fetch from loopback (SSRF): 431, nothing made
        status, body = api(app, client, "alice", command="uploadVolume", url=url, format="RAW", name="up",
                           zoneid=world.zone)
        assert status == 431 and n_vols() == vols, body
        with app.app_context():
            settings.update("secstorage.allowed.internal.sites", "127.0.0.0/8")
        for params, text in (({"format": "ISO"}, "Image format"), ({"diskofferingid": o_fixed}, "custom sized"),
                             ({"checksum": "{SHA-256}12"}, "64 hex digits")):
            status, body = api(app, client, "alice", command="uploadVolume", url=url, name="up", zoneid=world.zone,
                               **{"format": "RAW", **params})
            assert status == 431 and text in body["errortext"], body
        assert n_vols() == vols and counts(app) == before
        # A wrong checksum: the job fails, the volume is UploadError, no file, nothing counted but the volume
        status, body = api(app, client, "alice", command="uploadVolume", url=url, format="RAW", name="bad",
                           zoneid=world.zone, checksum="{SHA-256}" + "0" * 64)
        assert status == 200 and body["id"], body
        res = result(app, client, "alice", body["jobid"])
        assert res["jobstatus"] == 2 and "Checksum mismatch" in res["jobresult"]["errortext"]
        bad = body["id"]
        _, listed = api(app, client, "alice", command="listVolumes", id=bad)
        assert listed["volume"][0]["state"] == "UploadError"
        assert not list((tmp_path / "sec").glob("volumes/**/*.raw*"))
        # The real thing
        status, body = api(app, client, "alice", command="uploadVolume", url=url, format="raw", name="up",
                           zoneid=world.zone, checksum="{SHA-256}" + digest, diskofferingid=o_custom)
        assert status == 200, body
        res = result(app, client, "alice", body["jobid"])
        assert res["jobstatus"] == 1, res
    v = res["jobresult"]["volume"]
    assert v["id"] == body["id"] and v["state"] == "Uploaded" and v["size"] == 4 << 20 and v["type"] == "DATADISK"
    assert v["diskofferingname"] == "custom"
    files = list((tmp_path / "sec").glob("volumes/**/*.raw"))
    assert len(files) == 1 and files[0].read_bytes() == img.read_bytes()
    c = counts(app)
    assert c["volume"] == before["volume"] + 2 and c["secondary_storage"] == before.get("secondary_storage", 0) + 1
    # Attach: moved into primary storage, the store's copy and its count go, primary storage counts it
    status, body = api(app, client, "alice", command="attachVolume", id=v["id"], virtualmachineid=vm)
    assert status == 200
    att = result(app, client, "alice", body["jobid"])
    assert att["jobstatus"] == 1, att
    assert att["jobresult"]["volume"]["state"] == "Ready" and att["jobresult"]["volume"]["virtualmachineid"] == vm
    assert not files[0].exists()
    c2 = counts(app)
    assert c2["secondary_storage"] == before.get("secondary_storage", 0)
    assert c2["primary_storage"] == c["primary_storage"] + 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(VolumeStoreRef)) == 1  # the failed one's
    # An UploadError volume cannot be attached; deleting it gives its count back
    status, body = api(app, client, "alice", command="attachVolume", id=bad, virtualmachineid=vm)
    res = result(app, client, "alice", body["jobid"])
    assert res["jobresultcode"] == 431 and "Uploaded" in res["jobresult"]["errortext"], res
    assert api(app, client, "alice", command="deleteVolume", id=bad)[0] == 200
    assert counts(app)["volume"] == before["volume"] + 1


def upload_params(app, client, user, **params) -> tuple[int, dict]:
    status, body = api(app, client, user, command="getUploadParamsForVolume", **params)
    return status, body.get("getuploadparams", body)


def _post(client, params, body: bytes, path=None):
    return client.post(path or path_of(params["postURL"]), data=body,
                       headers={"X-signature": params["signature"], "X-metadata": params["metadata"],
                                "X-expires": params["expires"], "Content-Type": "application/octet-stream"})


def test_browser_upload_of_a_volume(app, client, world, tmp_path):
    img, _ = _raw(tmp_path)
    data = img.read_bytes()
    status, p = upload_params(app, client, "alice", name="posted", format="RAW",
                    zoneid=world.zone)
    assert status == 200 and set(p) >= {"id", "postURL", "metadata", "expires", "signature"}, p
    assert p["postURL"].endswith("/upload/volume")
    _, listed = api(app, client, "alice", command="listVolumes", id=p["id"])
    assert listed["volume"][0]["state"] == "NotUploaded"
    # Tampered signature, metadata pointing elsewhere, a template's upload signature: refused, nothing arrives
    assert _post(client, {**p, "signature": "0" * 64}, data).status_code == 531
    assert _post(client, {**p, "metadata": p["metadata"] + "1"}, data).status_code == 531
    status, tp = api(app, client, "alice", command="getUploadParamsForTemplate", name="t", format="RAW",
                     hypervisor="Simulator", zoneid=world.zone)
    assert status == 200, tp
    tp = tp["getuploadparams"]
    assert _post(client, tp, data, path=path_of(p["postURL"])).status_code == 531
    _, listed = api(app, client, "alice", command="listVolumes", id=p["id"])
    assert listed["volume"][0]["state"] == "NotUploaded"
    # The real POST
    resp = _post(client, p, data)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["id"] == p["id"] and resp.get_json()["size"] == 4 << 20
    _, listed = api(app, client, "alice", command="listVolumes", id=p["id"])
    assert listed["volume"][0]["state"] == "Uploaded"
    assert _post(client, p, data).status_code == 431  # once only
    # An upload URL nobody used expires: the volume fails, nothing stays on the store
    status, p2 = upload_params(app, client, "alice", name="unused", format="QCOW2",
                     zoneid=world.zone)
    assert status == 200
    with app.app_context():
        from app.services.transfers import volume_uploads
        assert volume_uploads.expire_unused() == 0
        later = utcnow() + timedelta(seconds=settings.get("upload.url.expiry") + 1)
        assert volume_uploads.expire_unused(now=later) == 1
    _, listed = api(app, client, "alice", command="listVolumes", id=p2["id"])
    assert listed["volume"][0]["state"] == "UploadError"


def test_upload_volume_counts_against_the_volume_limit(app, client, world, tmp_path):
    with app.app_context():
        settings.update("max.account.volumes", "0")
    status, body = upload_params(app, client, "alice", name="x", format="RAW",
                       zoneid=world.zone)
    assert status == 532, body
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Volume).where(Volume.name == "x")) == 0


@pytest.mark.parametrize("user", ["bob"])
def test_a_user_cannot_extract_or_attach_anothers_upload(app, client, world, user):
    vm = deploy(app, world, user=user)
    status, p = upload_params(app, client, "alice", name="mine", format="RAW",
                    zoneid=world.zone)
    assert status == 200
    assert api(app, client, user, command="extractVolume", id=p["id"], mode="HTTP_DOWNLOAD",
               zoneid=world.zone)[0] == 431
    assert api(app, client, user, command="attachVolume", id=p["id"], virtualmachineid=vm)[0] == 431  # checked now
    assert api(app, client, user, command="deleteVolume", id=p["id"])[0] == 431


def test_portal_download_buttons_and_volume_upload_pages(app, client, world, auth, tmp_path):
    from tests.integration.test_vm_pages import post
    vm = deploy(app, world)
    vol = data_volume(app, world, vm=vm)
    auth.login("alice")
    # The volume page offers Download (detached); it leads to a page with the URL, which serves the copy
    page = client.get(f"/volumes/{vol}").get_data(as_text=True)
    assert f'action="/downloads/volume/{vol}"' in page
    resp = post(client, auth, f"/downloads/volume/{vol}")
    assert resp.status_code == 302 and "/downloads/" in resp.location
    shown = client.get(resp.location).get_data(as_text=True)
    url = shown.split('<code id="download-url">')[1].split("</code>")[0]
    assert "/download/" in url and "until" in shown
    assert client.head(path_of(url)).status_code == 200
    # Another user does not see that page (the URL is only the asker's)
    job = resp.location.rsplit("/", 1)[1]
    auth.logout()
    auth.login("bob")
    assert client.get(f"/downloads/{job}").status_code == 404
    assert post(client, auth, f"/downloads/volume/{vol}").status_code == 404
    auth.logout()
    # Attached to a running VM: no Download button; a forced POST is refused with the reason
    auth.login("alice")
    with app.app_context():
        volumes.attach_volume(accounts.get_user("alice"), vol, vm)
    assert "/downloads/volume/" not in client.get(f"/volumes/{vol}").get_data(as_text=True)
    resp = post(client, auth, f"/downloads/volume/{vol}", follow_redirects=True)
    assert "stopped state" in resp.get_data(as_text=True)
    # The template page: a user sees Download only where the template is theirs and extractable
    assert "/downloads/template/" not in client.get(f"/templates/{world.template}").get_data(as_text=True)
    auth.logout()
    auth.login("admin")
    assert f'action="/downloads/template/{world.template}"' in client.get(f"/templates/{world.template}").get_data(
        as_text=True)
    resp = post(client, auth, f"/downloads/template/{world.template}", follow_redirects=True)
    assert 'id="download-url"' in resp.get_data(as_text=True)
    auth.logout()
    # Upload pages: from a URL (a job), and from this computer (the signed URL for upload.js)
    auth.login("alice")
    assert 'href="/volumes/upload"' in client.get("/volumes/").get_data(as_text=True)
    page = client.get("/volumes/upload").get_data(as_text=True)
    assert "data-upload-form" in page and "js/upload.js" in page
    resp = post(client, auth, "/volumes/upload", {"name": "from-browser", "zone": world.zone, "format": "RAW"},
                headers={"HX-Request": "true"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    html = resp.get_data(as_text=True)
    assert 'id="upload-status"' in html and 'data-post-url="http://localhost/upload/volume"' in html
    resp = post(client, auth, "/volumes/upload", {"name": "bad", "zone": world.zone, "format": "RAW",
                                                  "checksum": "{SHA-256}1"}, headers={"HX-Request": "true"})
    assert resp.status_code == 422 and "64 hex digits" in resp.get_data(as_text=True)
    img, www = _raw(tmp_path)
    with app.app_context():
        settings.update("secstorage.allowed.internal.sites", "127.0.0.0/8")
    with serve(www) as base:
        resp = post(client, auth, "/volumes/upload-url", {"url": f"{base}/disk.raw", "name": "from-url",
                                                          "zone": world.zone, "format": "RAW"})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    page = client.get(resp.location).get_data(as_text=True)
    assert "Uploaded" in page and "on secondary storage until its first attach" in page


def test_an_upload_whose_job_never_ran_is_failed_by_the_sweep(app, world):
    """A process killed between uploadVolume's row and its job: the sweep fails the volume."""
    from app.services.transfers import volume_uploads
    from app.models import VolumeState
    with app.app_context():
        alice = accounts.get_user("alice")
        owner, name, fmt, zone, offering, store = volume_uploads._check(
            alice, name="orphan", format="RAW", zone_uuid=world.zone, checksum=None, disk_offering_uuid=None,
            account=None, domainid=None)
        v, _ = volume_uploads._rows(alice, owner, name=name, fmt=fmt, zone=zone, offering=offering, store=store,
                                    url="http://example.com/disk.raw", checksum=None, state=VolumeState.UPLOAD_OP)
        assert volume_uploads.expire_unused() == 0  # young: its job may be on its way
        assert volume_uploads.expire_unused(now=utcnow() + timedelta(seconds=61)) == 1
        db.session.refresh(v)
        assert v.state == "UploadError" and "job ended" in volume_uploads.ref_of(v).error

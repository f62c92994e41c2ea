"""The Templates and ISOs pages (app/web/images.py) through the Flask test client:
the list and its HTMX fragment, tabs, search and filters, the per-zone status and
the poller that exists only while a copy is in flight, the register form (formats
of the chosen type, errors beside their field, nothing created on a refusal), the
upload page's first step and the upload it signs, retry and delete, and who may
see and manage what. Data is built through the services; jobs run inline, and a
local HTTP server serves a real RAW image when a Ready template is needed."""
from __future__ import annotations

import hashlib
import http.server
import re
import subprocess
import threading

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AsyncJob, DownloadState, JobStatus, Template
from app.services import accounts, settings, storage, templates, zones
from app.services import hypervisors as hv
from tests.helpers.dns import fake_dns

# On SQLite only, but for the tests marked `db` below (their queries list, filter, sort or count):
# the rest is forms, pages and access rules, the same on every database.


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch):
    """images.example and any other name fail at once: no DNS query leaves the machine."""
    fake_dns(monkeypatch, {})


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def files(tmp_path):
    """http://127.0.0.1:PORT/disk.raw: a real 1 MiB RAW image."""
    root = tmp_path / "www"
    root.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(root / "disk.raw"), "1M"], check=True)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **kw: Quiet(*a, directory=str(root), **kw))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


@pytest.fixture
def zone(app, users, tmp_path):
    """One zone with a Local image store; its uuid."""
    with app.app_context():
        z = zones.create_zone(None, name="Z1", dns1="8.8.8.8", internal_dns1="10.0.0.2")
        storage.add_image_store(None, provider="Local", url=f"file://{tmp_path}/sec", zone_uuid=z.uuid)
        return z.uuid


DEAD_URL = "http://127.0.0.1:9/nothing.raw"  # refused at once: the download ends in Error


def register(app, username="admin", url=DEAD_URL, name="t1", **kw) -> str:
    """Register as `username` (jobs run inline); the template's uuid. Users may use the
    tests' 127.0.0.1 URLs too."""
    with app.app_context():
        if username != "admin":
            settings.update("template.url.allow.internal", "true")
        kw.setdefault("hypervisor", None if kw.get("is_iso") else "KVM")
        kw.setdefault("format", None if kw.get("is_iso") else "RAW")
        return templates.register(accounts.get_user(username), url=url, name=name, **kw).uuid


def n_templates(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Template).where(Template.removed.is_(None)))


def set_ref(app, uuid: str, **values) -> None:
    with app.app_context():
        t = db.session.scalar(select(Template).where(Template.uuid == uuid))
        for ref in templates.refs_of(t):
            for k, v in values.items():
                setattr(ref, k, v)
        db.session.commit()


def field_html(html: str, name: str) -> str:
    """The <div class="field"> holding the input/select named `name`."""
    for block in re.findall(r'<div class="field[^"]*">.*?</div>', html, re.S):
        if f'name="{name}"' in block:
            return block
    raise AssertionError(f"no field {name}")


def options(html: str, name: str) -> list[str]:
    select_html = re.search(rf'<select[^>]*name="{name}"[^>]*>(.*?)</select>', html, re.S).group(1)
    return re.findall(r'<option[^>]*value="([^"]*)"', select_html)


# --- The list ------------------------------------------------------------------

@pytest.mark.db
def test_list_shows_each_copy_and_htmx_gets_the_section(app, client, auth, zone, files):
    url, _ = files
    ready = register(app, url=f"{url}/disk.raw", name="debian-raw")
    broken = register(app, name="broken", hypervisor="Hyperv", format="VHD")
    auth.login()
    r = client.get("/templates/")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "<html" in html and 'id="templates-list-filters"' in html
    row = re.search(rf'<tr id="template-{ready}">.*?</tr>', html, re.S).group(0)
    assert "debian-raw" in row and "KVM" in row and '<span class="badge badge-format">RAW</span>' in row
    assert "Z1" in row and "Ready" in row and "1.0 MiB" in row and "Retry" not in row
    row = re.search(rf'<tr id="template-{broken}">.*?</tr>', html, re.S).group(0)
    assert "Hyper-V" in row and "VHD" in row and "Error" in row and "Connection refused" in row
    assert "Retry" in row and 'hx-confirm="Delete template broken?' in row

    r = client.get("/templates/", headers={"HX-Request": "true"})
    fragment = r.get_data(as_text=True)
    assert r.status_code == 200 and "<html" not in fragment
    assert fragment.lstrip().startswith('<section class="card list-section" id="templates-list"')
    assert "HX-Request" in r.headers["Vary"]


@pytest.mark.db
def test_iso_tab_search_and_filters(app, client, auth, zone):
    register(app, name="alpine-virt", is_iso=True)
    register(app, name="debian-12")
    register(app, name="debian-11", is_public=True, featured=True)
    auth.login()
    isos = client.get("/templates/?kind=iso").get_data(as_text=True)
    assert "alpine-virt" in isos and "debian-12" not in isos
    assert '<input type="hidden" name="kind" value="iso" form="templates-list-filters">' in isos
    assert "<th>Hypervisor</th>" not in isos  # an ISO has no hypervisor or format choice
    found = client.get("/templates/?q=debian", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "debian-12" in found and "debian-11" in found and "alpine" not in found
    featured = client.get("/templates/?filter=featured").get_data(as_text=True)
    assert "debian-11" in featured and "debian-12" not in featured
    assert "No ISOs match these filters" in client.get("/templates/?kind=iso&q=zzz").get_data(as_text=True)
    assert "Unable to find zone" in client.get("/templates/?zone=nope").get_data(as_text=True)


@pytest.mark.db
def test_pages_keep_the_tab_and_filters(app, client, auth, zone):
    for i in range(3):
        register(app, name=f"iso-{i}", is_iso=True)
    auth.login()
    html = client.get("/templates/?kind=iso&q=iso&pagesize=2").get_data(as_text=True)
    assert "iso-0" in html and "iso-1" in html and "iso-2" not in html and "1–2 of 3" in html
    next_url = re.search(r'<a class="btn btn-sm" rel="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert "kind=iso" in next_url and "q=iso" in next_url and "page=2" in next_url
    html = client.get(next_url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "iso-2" in html and "iso-0" not in html
    assert re.search(r'id="templates-refresh" hx-get="[^"]*kind=iso[^"]*page=2', html)  # reloads this page


def test_empty_iso_tab_says_none_yet(app, client, auth, zone):
    auth.login()
    assert "No ISOs yet." in client.get("/templates/?kind=iso").get_data(as_text=True)


def test_poller_only_while_a_copy_is_in_flight(app, client, auth, zone):
    uuid = register(app, name="big")
    auth.login()
    poll = 'hx-trigger="every 2s, templatesChanged from:body"'
    html = client.get("/templates/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "every 2s" not in html and 'hx-trigger="templatesChanged from:body"' in html

    set_ref(app, uuid, state=DownloadState.DOWNLOADING, download_pct=37, downloaded_bytes=12 << 20, error=None,
            job_id=None)
    html = client.get("/templates/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert poll in html and "37%" in html and "12.0 MiB" in html
    assert poll in client.get("/templates/").get_data(as_text=True)  # the page starts polling too

    set_ref(app, uuid, state=DownloadState.DOWNLOADED, download_pct=100)
    html = client.get("/templates/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "every 2s" not in html and "Ready" in html


def test_progress_shows_the_download_jobs_bytes_of_total(app, client, auth, zone):
    uuid = register(app, name="big")
    with app.app_context():  # a download job still running, as the worker leaves it between two updates
        job = AsyncJob(cmd="downloadTemplate", status=JobStatus.PENDING, progress=37,
                       progress_message="12.1 MiB of 32.0 MiB, 1.5 MiB/s")
        db.session.add(job)
        db.session.commit()
        job_id = job.id
    set_ref(app, uuid, state=DownloadState.DOWNLOADING, download_pct=37, job_id=job_id)
    auth.login()
    html = client.get("/templates/").get_data(as_text=True)
    assert "37%" in html and "(12.1 MiB of 32.0 MiB, 1.5 MiB/s)" in html and "every 2s" in html


# --- Register ------------------------------------------------------------------

@pytest.mark.parametrize("hypervisor, formats", [("Custom", ["RAW"]), ("Hyperv", ["VHD", "VHDX"]),
                                                 ("KVM", ["QCOW2", "RAW"]), ("LXC", ["TAR"])])
def test_format_select_offers_only_the_types_formats(app, client, auth, zone, hypervisor, formats):
    with app.app_context():
        hv.set_enabled("Custom", True)
    auth.login()
    page = client.get(f"/templates/register?hypervisor={hypervisor}").get_data(as_text=True)
    assert options(page, "format") == formats
    # The hypervisor select asks for the form again (htmx sends every field).
    r = client.get(f"/templates/register?kind=template&name=x&url=&hypervisor={hypervisor}&format=QCOW2",
                   headers={"HX-Request": "true"})
    fragment = r.get_data(as_text=True)
    assert r.status_code == 200 and fragment.lstrip().startswith('<div id="template-form">')
    assert options(fragment, "format") == formats
    assert 'hx-get="/templates/register"' in field_html(fragment, "hypervisor")


def test_direct_download_shown_only_for_types_that_can(app, client, auth, zone):
    auth.login()
    assert 'name="directdownload"' in client.get("/templates/register?hypervisor=KVM").get_data(as_text=True)
    assert 'name="directdownload"' not in client.get("/templates/register?hypervisor=Hyperv").get_data(as_text=True)


def test_iso_form_has_bootable_and_no_hypervisor(app, client, auth, zone):
    auth.login()
    html = client.get("/templates/register?kind=iso").get_data(as_text=True)
    assert 'name="bootable"' in html and "checked" in field_html(html, "bootable")
    assert 'name="hypervisor"' not in html and 'name="format"' not in html
    assert options(html, "zoneid")[0] == ""  # "All zones"


def test_public_and_featured_are_for_admins(app, client, auth, zone):
    auth.login()
    assert 'name="ispublic"' in client.get("/templates/register").get_data(as_text=True)
    auth.logout()
    auth.login("alice")
    html = client.get("/templates/register").get_data(as_text=True)
    assert 'name="ispublic"' not in html and 'name="isfeatured"' not in html


def post_register(client, auth, htmx=False, **fields):
    data = {"kind": "template", "name": "t1", "url": "https://images.example/disk.raw", "zoneid": "",
            "hypervisor": "KVM", "format": "RAW", "ostypeid": "", "checksum": "", **fields}
    if htmx:
        return client.post("/templates/register", data=data,
                           headers={"HX-Request": "true", "X-CSRFToken": auth.csrf("/templates/")})
    return client.post("/templates/register", data={**data, "csrf_token": auth.csrf("/templates/")})


@pytest.mark.parametrize("fields, field, message", [
    ({"hypervisor": "Custom", "format": "QCOW2"}, "format", "Custom templates are RAW, not QCOW2"),
    ({"checksum": "{SHA-256}abc"}, "checksum", "A SHA256 checksum is 64 hex digits"),
    ({"checksum": "{CRC32}abcd"}, "checksum", "Unknown checksum algorithm CRC32"),
    ({"url": "ftp://images.example/disk.raw"}, "url", "The URL must be http:// or https://"),
    ({"directdownload": "y"}, "checksum", "A direct-download template needs a checksum"),
    ({"name": ""}, "name", "This field is required."),
])
@pytest.mark.parametrize("htmx", [False, True], ids=["post", "htmx"])
def test_refusals_show_beside_their_field_and_create_nothing(app, client, auth, zone, fields, field, message,
                                                             htmx):
    with app.app_context():
        hv.set_enabled("Custom", True)
    auth.login()
    r = post_register(client, auth, htmx=htmx, **fields)
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    assert ("<html" in html) != htmx  # HTMX gets the form alone
    block = field_html(html, field)
    assert "has-error" in block and message in block
    assert n_templates(app) == 0


def test_users_may_not_register_internal_urls_or_public_ones(app, client, auth, zone):
    auth.login("alice")
    r = post_register(client, auth, url="http://127.0.0.1/disk.raw")
    assert r.status_code == 422 and "internal address" in field_html(r.get_data(as_text=True), "url")
    # An unresolvable host is refused too (it used to pass and fail at download).
    r = post_register(client, auth)
    assert r.status_code == 422 and "Cannot resolve images.example" in field_html(r.get_data(as_text=True), "url")
    with app.app_context():  # an internal image server the admin allowed
        settings.update("secstorage.allowed.internal.sites", "127.0.0.1/32")
    r = post_register(client, auth, url=DEAD_URL, ispublic="y")  # not offered to users: ignored
    assert r.status_code == 302
    with app.app_context():
        assert not db.session.scalar(select(Template.is_public))


def test_register_redirects_to_the_list_with_a_flash(app, client, auth, zone, files):
    url, _ = files
    auth.login()
    r = post_register(client, auth, name="debian-raw", url=f"{url}/disk.raw")
    assert r.status_code == 302 and r.headers["Location"] == "/templates/"
    html = client.get("/templates/").get_data(as_text=True)
    assert "Template debian-raw registered and ready." in html and "Ready" in html  # jobs run inline here
    r = post_register(client, auth, htmx=True, name="again", url=f"{url}/disk.raw")
    assert r.status_code == 204 and r.headers["HX-Redirect"] == "/templates/"
    r = client.post("/templates/register", data={"kind": "iso", "name": "tools", "url": f"{url}/disk.raw",
                                                 "zoneid": zone, "bootable": "y",
                                                 "csrf_token": auth.csrf("/templates/")})
    assert r.status_code == 302 and r.headers["Location"] == "/templates/?kind=iso"
    with app.app_context():
        iso = templates.list_templates(accounts.get_user("admin"), is_iso=True, template_filter="all")[0][0]
        assert iso.name == "tools" and iso.bootable and iso.format == "ISO"
        assert templates.refs_of(iso)[0].state == DownloadState.ERROR  # a RAW file is no ISO


def test_a_failed_download_says_so_in_the_banner_and_on_the_list(app, client, auth, zone, files):
    """The banner after registering reads the copies as they are: a download that failed
    says it failed and why (not "downloading"); the list names every failed download above
    the table and marks the copy Error; one still running points to the list."""
    url, _ = files
    auth.login()
    post_register(client, auth, name="gone", url=f"{url}/missing.raw")  # 404: fails at once (jobs inline)
    html = client.get("/templates/").get_data(as_text=True)
    assert "Template gone registered, but its download failed (Z1: " in html and "downloading" not in html
    banner = html.split('class="flash flash-error download-failed"', 1)[1].split("</div>", 1)[0]
    assert "Download failed:" in banner and ">gone</a> in Z1" in banner and "404" in banner
    assert "state-error" in html
    # Later visits: the flash is gone, the list's banner stays while the copy is failed.
    html = client.get("/templates/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Download failed:" in html and "registered" not in html
    # A download still under way is said to be one, with no failure banner.
    with app.app_context():
        t = templates.get_visible(accounts.get_user("admin"), register(app, url=f"{url}/disk.raw", name="ok"))
        ref = templates.refs_of(t)[0]
        ref.state = DownloadState.DOWNLOADING
        db.session.commit()
        from app.web.images import _outcome_message
        assert _outcome_message(t, "Template ok registered") == (
            "success", "Template ok registered; its download is under way: the list below shows its progress.")


def test_posts_need_the_csrf_token(app, client, auth, zone):
    uuid = register(app)
    auth.login()
    assert client.post("/templates/register", data={"name": "x", "url": "https://a.example/x"}).status_code == 400
    assert client.post(f"/templates/{uuid}/delete").status_code == 400
    assert n_templates(app) == 1


def test_pages_need_a_login(client, users):
    for url in ("/templates/", "/templates/register", "/templates/upload"):
        r = client.get(url)
        assert r.status_code == 302 and "/login" in r.headers["Location"]


# --- Upload --------------------------------------------------------------------

def test_upload_first_step_signs_an_upload_that_the_endpoint_accepts(app, client, auth, zone, files):
    _, root = files
    auth.login()
    page = client.get("/templates/upload").get_data(as_text=True)
    assert 'name="url"' not in page and 'id="upload-file"' in page and "needs JavaScript" in page
    assert "js/upload.js" in page and options(page, "zoneid")[0] == ""  # one zone, never "all"
    r = client.post("/templates/upload", data={"kind": "template", "name": "up", "zoneid": zone,
                                               "hypervisor": "KVM", "format": "RAW", "ostypeid": ""},
                    headers={"HX-Request": "true", "X-CSRFToken": auth.csrf("/templates/")})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "<fieldset class=\"bare\" disabled>" in html
    attrs = dict(re.findall(r'data-(post-url|metadata|expires|signature)="([^"]+)"', html))
    assert attrs["post-url"] == "http://localhost/upload/template"
    waiting = client.get("/templates/").get_data(as_text=True)
    assert "Waiting for the upload" in waiting and "every 2s" not in waiting

    body = (root / "disk.raw").read_bytes()
    r = client.post("/upload/template", data=body, content_type="application/octet-stream",
                    headers={"X-signature": attrs["signature"], "X-metadata": attrs["metadata"],
                             "X-expires": attrs["expires"]})
    assert r.status_code == 200 and r.json["status"] == "Download Complete"
    html = client.get("/templates/").get_data(as_text=True)
    assert "up" in html and "Ready" in html and "every 2s" not in html


def test_upload_refusals_show_beside_their_field(app, client, auth, zone):
    auth.login()
    r = client.post("/templates/upload", data={"kind": "iso", "name": "cd", "zoneid": "", "ostypeid": "",
                                               "checksum": "nothex", "csrf_token": auth.csrf("/templates/")})
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "An upload goes to one zone" in field_html(html, "zoneid")
    assert 'id="upload-status"' not in html and n_templates(app) == 0


# --- Actions and who sees what -------------------------------------------------

def test_retry_downloads_a_failed_copy_again(app, client, auth, zone, files):
    url, root = files
    uuid = register(app, url=f"{url}/later.raw", name="late")  # 404 at first
    (root / "later.raw").write_bytes((root / "disk.raw").read_bytes())
    auth.login()
    r = client.post(f"/templates/{uuid}/retry", headers={"HX-Request": "true", "X-CSRFToken": auth.csrf()})
    assert r.status_code == 200 and r.headers["HX-Trigger"] == "templatesChanged"
    assert "Template late retried and ready." in r.get_data(as_text=True)
    assert "Ready" in client.get("/templates/").get_data(as_text=True)
    r = client.post(f"/templates/{uuid}/retry", data={"csrf_token": auth.csrf()},
                    headers={"Referer": "http://localhost/templates/?q=late"})
    assert r.status_code == 302 and r.headers["Location"] == "/templates/?q=late"
    assert "has no failed download to retry" in client.get("/templates/").get_data(as_text=True)


def test_owner_deletes_with_htmx_or_a_plain_post(app, client, auth, zone, files, tmp_path):
    url, _ = files
    first = register(app, "alice", url=DEAD_URL, name="mine")
    second = register(app, "alice", url=f"{url}/disk.raw", name="mine-ready")
    auth.login("alice")
    r = client.post(f"/templates/{first}/delete", headers={"HX-Request": "true", "X-CSRFToken": auth.csrf()})
    assert r.status_code == 200 and r.headers["HX-Trigger"] == "templatesChanged"
    assert "Template mine deleted." in r.get_data(as_text=True)
    r = client.post(f"/templates/{second}/delete", data={"csrf_token": auth.csrf()},
                    headers={"Referer": f"http://localhost/templates/{second}"})
    assert r.status_code == 302 and r.headers["Location"] == "/templates/"  # its own page is gone
    assert "Template mine-ready deleted." in client.get("/templates/").get_data(as_text=True)
    assert n_templates(app) == 0
    assert not list((tmp_path / "sec").rglob("*.raw"))  # the file went with it


def test_a_copy_still_downloading_cannot_be_deleted(app, client, auth, zone):
    uuid = register(app, name="busy")
    set_ref(app, uuid, state=DownloadState.DOWNLOADING, job_id=None)
    auth.login()
    r = client.post(f"/templates/{uuid}/delete", headers={"HX-Request": "true", "X-CSRFToken": auth.csrf()})
    assert r.status_code == 422 and "still downloading" in r.get_data(as_text=True)
    assert "HX-Trigger" not in r.headers and n_templates(app) == 1


@pytest.mark.db
def test_users_see_their_own_and_public_templates_only(app, client, auth, zone):
    private = register(app, "alice", name="alice-private")
    public = register(app, "admin", name="admin-public", is_public=True)
    admin_private = register(app, "admin", name="admin-private")
    auth.login("bob")
    html = client.get("/templates/").get_data(as_text=True)
    assert "admin-public" in html and "alice-private" not in html and "admin-private" not in html
    row = re.search(rf'<tr id="template-{public}">.*?</tr>', html, re.S).group(0)
    assert "Delete" not in row and "Retry" not in row  # not bob's to manage
    for uuid in (private, admin_private):
        assert client.get(f"/templates/{uuid}").status_code == 404
        assert client.post(f"/templates/{uuid}/delete", data={"csrf_token": auth.csrf()}).status_code == 404
        assert client.post(f"/templates/{uuid}/retry", data={"csrf_token": auth.csrf()}).status_code == 404
    assert client.get(f"/templates/{public}").status_code == 200
    r = client.post(f"/templates/{public}/delete", data={"csrf_token": auth.csrf()})
    assert r.status_code == 302
    assert "belongs to another account" in client.get("/templates/").get_data(as_text=True)
    r = client.post(f"/templates/{public}/delete", headers={"HX-Request": "true", "X-CSRFToken": auth.csrf()})
    assert r.status_code == 422 and "belongs to another account" in r.get_data(as_text=True)
    assert n_templates(app) == 3
    assert "alice-private" not in client.get("/templates/?filter=self").get_data(as_text=True)

    auth.logout()
    auth.login("admin")  # admins see and manage everything
    html = client.get("/templates/").get_data(as_text=True)
    assert "alice-private" in html
    row = re.search(rf'<tr id="template-{private}">.*?</tr>', html, re.S).group(0)
    assert "Delete" in row and "alice" in row


def test_the_detail_page_shows_the_whole_error(app, client, auth, zone):
    uuid = register(app, name="broken", checksum="{SHA-256}" + hashlib.sha256(b"x").hexdigest())
    auth.login()
    html = client.get(f"/templates/{uuid}").get_data(as_text=True)
    assert "Connection refused" in html and DEAD_URL in html and "{SHA-256}" in html
    assert 'data-confirm="Delete template broken?' in html  # asked by static/js/nubo.js (no inline script under the CSP)

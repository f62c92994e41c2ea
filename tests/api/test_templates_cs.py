"""Templates and ISOs with the real `cs` client against a live server and a real
huey consumer; images are real files made with qemu-img, tar and xorriso and
served by a local HTTP server that the test starts."""
from __future__ import annotations

import hashlib
import http.server
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
import requests
from cs import CloudStackApiException


pytestmark = pytest.mark.xdist_group("live-api")


class Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/huge.raw":  # announces more than any size limit, sends nothing
            self.send_response(200)
            self.send_header("Content-Length", str(600 << 30))
            self.end_headers()
            return
        if self.path == "/moved.raw":
            self.send_response(302)
            self.send_header("Location", "/disk.raw")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(root / "disk.raw"), "16M"], check=True)
    with open(root / "disk.raw", "r+b") as f:  # some non-zero content
        f.write(b"NUBO" * 1024)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(root / "disk.qcow2"), "64M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(root / "disk.raw"), "-F", "raw",
                    str(root / "backed.qcow2")], check=True)
    rootfs = tmp_path / "rootfs"
    (rootfs / "sbin").mkdir(parents=True)
    (rootfs / "sbin" / "init").write_text("#!/bin/sh\n")
    with tarfile.open(root / "rootfs.tar", "w") as tf:
        tf.add(rootfs, arcname=".")
    (tmp_path / "isodir").mkdir()
    (tmp_path / "isodir" / "README").write_text("nubo")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(root / "tools.iso"), str(tmp_path / "isodir")],
                   check=True, capture_output=True)
    handler = lambda *a, **kw: Files(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: no race
    threading.Thread(target=server.serve_forever, daemon=True).start()

    class F:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        dir = root

        def sha256(self, name):
            return hashlib.sha256((root / name).read_bytes()).hexdigest()
    yield F()
    server.shutdown()


def zone_with_store(api, tmp_path, name="TZ"):
    z = api.createZone(name=name, networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2")["zone"]
    store = api.addImageStore(provider="Local", url=f"file://{tmp_path}/secondary-{name}", zoneid=z["id"],
                              name=f"sec-{name}")["imagestore"]
    return z, store


def wait_status(api, template_id, iso=False, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = (api.listIsos(isofilter="self", id=template_id) if iso else
                api.listTemplates(templatefilter="self", id=template_id)).get("iso" if iso else "template", [])
        if rows and (rows[0].get("isready") or rows[0]["status"].startswith("Failed")):
            return rows[0]
        time.sleep(0.2)
    raise TimeoutError(f"template {template_id} still {rows}")


def err(call):
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def register(api, z, files, name, fmt="RAW", hv="KVM", path="disk.raw", **kw):
    return api.registerTemplate(name=name, displaytext=name, url=f"{files.url}/{path}", zoneid=z["id"],
                                hypervisor=hv, format=fmt, ostypeid=kw.pop("ostypeid", None), **kw)["template"][0]


def test_raw_qcow2_tar_and_iso_become_ready_with_size_and_checksum(live, files, tmp_path):
    api = live.client()
    z, _ = zone_with_store(api, tmp_path)
    os_type = api.listOsTypes(keyword="Debian")["ostype"][0]
    t = register(api, z, files, "debian-raw", checksum="{SHA-256}" + files.sha256("disk.raw"),
                 ostypeid=os_type["id"])
    assert t["status"] in ("Not downloaded yet", "Download Complete") or "Downloaded" in t["status"]
    row = wait_status(api, t["id"])
    assert row["isready"] is True and row["status"] == "Download Complete"
    assert row["size"] == 16 << 20 and row["ostypename"] == os_type["description"]
    stored = list((tmp_path / "secondary-TZ").rglob("*.raw"))
    assert len(stored) == 1 and hashlib.sha256(stored[0].read_bytes()).hexdigest() == files.sha256("disk.raw")
    assert not list((tmp_path / "secondary-TZ").rglob("*.part"))

    q = wait_status(api, register(api, z, files, "q", fmt="QCOW2", path="disk.qcow2",
                                  checksum=hashlib.md5((files.dir / "disk.qcow2").read_bytes()).hexdigest())["id"])
    assert q["isready"] and q["size"] == 64 << 20  # virtual size from qemu-img
    tar = wait_status(api, register(api, z, files, "ct", fmt="TAR", hv="LXC", path="rootfs.tar")["id"])
    assert tar["isready"] and tar["format"] == "TAR"
    iso = api.registerIso(name="tools", url=f"{files.url}/tools.iso", zoneid=z["id"])["iso"][0]
    assert wait_status(api, iso["id"], iso=True)["isready"]
    # Followed redirect, same file.
    assert wait_status(api, register(api, z, files, "moved", path="moved.raw")["id"])["isready"]
    names = {r["name"] for r in api.listTemplates(templatefilter="executable")["template"]}
    assert {"debian-raw", "q", "ct", "moved"} <= names


def test_bad_files_end_in_error_with_the_reason_and_no_file(live, files, tmp_path):
    api = live.client()
    z, _ = zone_with_store(api, tmp_path)
    cases = [
        (dict(name="bad-sum", checksum="{SHA-256}" + "0" * 64), "Checksum mismatch"),
        (dict(name="qcow-as-raw", path="disk.qcow2"), "The file is QCOW2, not RAW"),
        (dict(name="backed", fmt="QCOW2", path="backed.qcow2"), "backing or data file"),
        (dict(name="huge"), "over max.template.iso.size"),
        (dict(name="missing", path="nope.raw"), "HTTP 404"),
    ]
    for kw, reason in cases:
        kw.setdefault("path", "huge.raw" if kw["name"] == "huge" else "disk.raw")
        row = wait_status(api, register(api, z, files, **kw)["id"])
        assert row["status"].startswith("Failed") and reason in row["status"], (kw, row["status"])
    assert not [p for p in (tmp_path / "secondary-TZ").rglob("*") if p.is_file()]  # nothing left behind
    iso = api.registerIso(name="not-iso", url=f"{files.url}/disk.raw", zoneid=z["id"])["iso"][0]
    assert "not an ISO 9660 image" in wait_status(api, iso["id"], iso=True)["status"]


def test_registration_rules_refused_and_nothing_created(live, files, tmp_path):
    api, alice = live.client(), live.client("alice")
    z, _ = zone_with_store(api, tmp_path)
    e = err(lambda: register(api, z, files, "c", fmt="QCOW2", hv="Custom", path="disk.qcow2"))
    assert e["errorcode"] == 431 and "RAW" in e["errortext"]  # Custom takes RAW only
    assert err(lambda: register(api, z, files, "v", fmt="VHD"))["errorcode"] == 431  # not a KVM format
    assert "checksum" in err(lambda: register(api, z, files, "s", checksum="{SHA-256}abc"))["errortext"]
    assert err(lambda: api.registerTemplate(name="f", url="ftp://x/y.raw", zoneid=z["id"], hypervisor="KVM",
                                            format="RAW"))["errorcode"] == 431
    # Users: no internal addresses, no file://, no public templates.
    e = err(lambda: register(alice, z, files, "a"))
    assert e["errorcode"] == 431 and "internal address" in e["errortext"]
    e = err(lambda: alice.registerTemplate(name="a", url="file:///etc/passwd", zoneid=z["id"], hypervisor="KVM",
                                           format="RAW"))
    assert e["errorcode"] == 531
    e = err(lambda: api.registerTemplate(name="a", url="file:///etc/passwd", zoneid=z["id"], hypervisor="KVM",
                                         format="RAW"))
    assert e["errorcode"] == 431 and "allowed.dirs" in e["errortext"]
    assert api.listTemplates(templatefilter="all") == {}
    # A zone without secondary storage.
    z2 = api.createZone(name="nostore", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2")["zone"]
    e = err(lambda: register(api, z2, files, "n"))
    assert e["errorcode"] == 534 and "no secondary storage" in e["errortext"]


def test_admin_file_url_under_allowed_dir_and_user_isolation(live, files, tmp_path):
    api, alice = live.client(), live.client("alice")
    z, _ = zone_with_store(api, tmp_path)
    api.updateConfiguration(name="template.url.file.allowed.dirs", value=str(files.dir))
    t = api.registerTemplate(name="local", url=f"file://{files.dir}/disk.raw", zoneid=z["id"], hypervisor="KVM",
                             format="RAW", ispublic="true", isfeatured="true")["template"][0]
    assert wait_status(api, t["id"])["isready"]
    # A symlink out of the allowed directory is refused.
    (files.dir / "escape.raw").symlink_to("/etc/hostname")
    e = err(lambda: api.registerTemplate(name="x", url=f"file://{files.dir}/escape.raw", zoneid=z["id"],
                                         hypervisor="KVM", format="RAW"))
    assert e["errorcode"] == 431
    # Alice sees the public one, cannot change or delete it.
    assert [r["name"] for r in alice.listTemplates(templatefilter="featured")["template"]] == ["local"]
    assert err(lambda: alice.deleteTemplate(id=t["id"]))["errorcode"] == 531
    assert err(lambda: alice.updateTemplate(id=t["id"], name="mine"))["errorcode"] == 531
    assert err(lambda: alice.listTemplates(templatefilter="all"))["errorcode"] == 531
    # Deleting removes the file.
    api.deleteTemplate(id=t["id"], fetch_result=True)
    assert api.listTemplates(templatefilter="all") == {}
    assert not [p for p in (tmp_path / "secondary-TZ").rglob("*") if p.is_file()]


def test_upload_with_signed_url(live, files, tmp_path):
    api = live.client()
    z, _ = zone_with_store(api, tmp_path)
    params = api.getUploadParamsForTemplate(name="up", displaytext="up", zoneid=z["id"], hypervisor="KVM",
                                            format="RAW", checksum="{SHA-256}" + files.sha256("disk.raw"))
    params = params["getuploadparams"]
    headers = {"X-signature": params["signature"], "X-metadata": params["metadata"], "X-expires": params["expires"]}
    bad = requests.post(params["postURL"], headers={**headers, "X-signature": "0" * 64},
                        files={"file": open(files.dir / "disk.raw", "rb")})
    assert bad.status_code == 531
    with open(files.dir / "disk.raw", "rb") as f:
        ok = requests.post(params["postURL"], headers=headers, files={"file": ("disk.raw", f)})
    assert ok.status_code == 200, ok.text
    row = wait_status(api, params["id"])
    assert row["isready"] and row["size"] == 16 << 20
    again = requests.post(params["postURL"], headers=headers, data=b"x")
    assert again.status_code == 431  # one upload per URL
    shutil.rmtree(tmp_path / "secondary-TZ")

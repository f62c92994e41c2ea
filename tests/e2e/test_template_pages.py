"""The Templates pages in Chromium against the real processes (gunicorn, huey):
upload a real 16 MiB RAW image through the upload page (XMLHttpRequest progress
to 100%, then Ready), register one by URL from a local HTTP server and watch its
row go Ready while the list polls, then stop polling. Screenshots go to
test-artifacts/ (templates-upload, templates-list)."""
from __future__ import annotations

import http.server
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot
from tests.e2e.test_admin_pages import login

pytestmark = pytest.mark.browser


class Files(http.server.SimpleHTTPRequestHandler):
    """Static files; /slow.raw is disk.raw sent slowly (about 6 s) to watch the progress."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/slow.raw":
            return super().do_GET()
        data = (Path(self.directory) / "disk.raw").read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for i in range(0, len(data), 256 << 10):
            self.wfile.write(data[i:i + (256 << 10)])
            time.sleep(0.1)


@pytest.fixture
def images(tmp_path):
    """A real 16 MiB RAW image (some non-zero bytes), also served at URL/disk.raw."""
    root = tmp_path / "www"
    root.mkdir()
    disk = root / "disk.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "16M"], check=True)
    with open(disk, "r+b") as f:
        f.write(b"NUBO" * 4096)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **kw: Files(*a, directory=str(root), **kw))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield disk, server.url
    server.shutdown()


def test_upload_and_register_templates(stack, page, images, tmp_path):
    disk, files_url = images
    stack.start()
    api = stack.api()
    zone = api.createZone(name="Zone1", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2")["zone"]
    api.addImageStore(provider="Local", url=f"file://{tmp_path}/sec", zoneid=zone["id"], name="sec1")
    login(page, stack.url)
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm

    # Upload: the fields first, then the file straight to the signed URL.
    page.goto(stack.url + "/templates/upload")
    page.fill("input[name=name]", "debian-12-upload")
    page.select_option("select[name=hypervisor]", "Hyperv")  # re-renders the format select
    formats_are(page, "VHD,VHDX")
    page.select_option("select[name=hypervisor]", "KVM")
    formats_are(page, "QCOW2,RAW")
    page.select_option("select[name=format]", "RAW")
    page.select_option("select[name=ostypeid]", label="Debian GNU/Linux 12 (64-bit)")
    page.check("input[name=ispublic]")
    page.set_input_files("#upload-file", str(disk))
    page.click("button:has-text('Upload')")
    page.wait_for_selector("#upload-status .upload-result:has-text('Ready')", timeout=60_000)
    assert page.eval_on_selector("#upload-status progress", "p => p.value") == 100
    assert page.inner_text("#upload-status h2") == "Uploaded debian-12-upload"
    numbers = page.inner_text("#upload-status .upload-numbers")
    assert "16.0 MiB of 16.0 MiB" in numbers and "100%" in numbers
    assert page.is_disabled("input[name=name]")  # the fields are locked once the URL was issued
    screenshot(page, "templates-upload")

    # A file that is not what the form says: the upload endpoint's errortext.
    page.click("#upload-status a:has-text('Upload another')")
    page.fill("input[name=name]", "not-qcow2")
    page.select_option("select[name=format]", "QCOW2")
    page.set_input_files("#upload-file", str(disk))
    page.click("button:has-text('Upload')")
    page.wait_for_selector("#upload-status .upload-result.flash-error", timeout=60_000)
    assert "Error: The file is RAW, not QCOW2" in page.inner_text("#upload-status .upload-result")
    page.click("#upload-status a:has-text('See the list')")
    assert "The file is RAW, not QCOW2" in page.locator("tr", has_text="not-qcow2").inner_text()
    page.locator("tr", has_text="not-qcow2").locator("button:has-text('Delete')").click()  # hx-confirm: accepted
    page.wait_for_selector("#template-messages .flash-success:has-text('Template not-qcow2 deleted.')")
    page.wait_for_selector("tr:has-text('not-qcow2')", state="detached")

    row = page.locator("tr", has_text="debian-12-upload")
    assert all(text in row.inner_text() for text in ("Ready", "RAW", "16.0 MiB", "Public", "Debian GNU/Linux 12"))

    # Register by URL (a slow server): the list polls while the worker downloads, then stops.
    register(page, stack.url, files_url + "/slow.raw", "debian-12-url")
    assert "Template debian-12-url registered" in page.inner_text(".flash")
    row = page.locator("tr", has_text="debian-12-url")
    page.wait_for_selector("tr:has-text('debian-12-url'):has-text('of 16.0 MiB') progress", timeout=30_000)
    # Early in the download the part done is still in B or KiB ("0% (125.0 KiB of 16.0 MiB, ...)").
    assert re.search(r"\d+%\s+\([\d.]+ (?:B|KiB|MiB) of 16.0 MiB, [\d.]+ (?:B|KiB|MiB|GiB)/s\)", row.inner_text())
    assert page.locator("#templates-refresh[hx-trigger*=every]").count() == 1
    screenshot(page, "templates-list-downloading")
    page.wait_for_selector("tr:has-text('debian-12-url') .state-ready", timeout=60_000)
    expect(page.locator("#templates-refresh[hx-trigger*=every]")).to_have_count(0, timeout=10_000)
    # A URL that answers 404: Error and why, with Retry.
    register(page, stack.url, files_url + "/missing.raw", "broken-url")
    page.wait_for_selector("tr:has-text('broken-url') .state-error", timeout=30_000)
    assert "HTTP 404" in page.locator("tr", has_text="broken-url").inner_text()
    screenshot(page, "templates-list")

    # A refused registration: the message beside its field, nothing created.
    page.goto(stack.url + "/templates/register")
    page.fill("input[name=url]", "ftp://example.org/disk.raw")
    page.fill("input[name=name]", "bad")
    page.click("button:has-text('Register')")
    page.wait_for_selector(".field.has-error:has(input[name=url]) .error")
    assert "http:// or https://" in page.inner_text(".field.has-error:has(input[name=url]) .error")

    page.goto(stack.url + "/templates/")
    page.fill("input[name=q]", "debian")
    page.wait_for_url("**/templates/?q=debian*")
    assert page.locator("#templates-list tbody tr").count() == 2
    listed = api.listTemplates(templatefilter="all")["template"]
    assert {t["name"]: t["isready"] for t in listed} == {"debian-12-upload": True, "debian-12-url": True,
                                                         "broken-url": False}


def formats_are(page, formats):
    """The format select offers `formats`, and htmx has settled the re-rendered form
    (its new elements only react to changes from then on)."""
    options = page.locator("select[name=format] option")
    wanted = formats.split(",")
    expect(options).to_have_count(len(wanted))
    for i, value in enumerate(wanted):
        expect(options.nth(i)).to_have_attribute("value", value)
    expect(page.locator(".htmx-settling, .htmx-request")).to_have_count(0)


def register(page, url, image_url, name):
    page.goto(url + "/templates/register")
    page.fill("input[name=url]", image_url)
    page.fill("input[name=name]", name)
    page.select_option("select[name=format]", "RAW")
    page.click("button:has-text('Register')")
    page.wait_for_url("**/templates/")

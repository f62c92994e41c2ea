"""Extract and upload on the real local libvirtd: a real KVM root volume (a qcow2 overlay on its
template) is extracted (copied, flattened, through virStorageVolDownload onto the image store),
its URL fetched over loopback from Nubo itself (a real HTTP server), uploadVolume'd from that URL
through the SSRF-safe fetch into a new volume, which its first attach puts into the libvirt pool
(virStorageVolUpload): the pool's volume has the same guest-visible bytes as the original.
One guest with an empty 64 MiB disk (it boots no kernel), stopped before the copy."""
from __future__ import annotations

import json
import subprocess
import threading

import libvirt
import pytest
from werkzeug.serving import make_server

from app.extensions import db
from app.models import VirtualMachine, Volume
from app.services import accounts, settings, vms, volumes
from app.services.transfers import extracts, volume_uploads
from tests.helpers import kvm_zone
from tests.helpers.www import raw_image, serve
from tests.integration.test_vm_kvm import SUFFIX, _job_ok, bridge  # noqa: F401  (fixture)

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("libvirt-guests")]


@pytest.fixture
def kvm_small(app, tmp_path):
    """The KVM zone of tests/helpers/kvm_zone.py with one small empty template only."""
    root = tmp_path / "www"
    root.mkdir()
    raw_image(root / "empty.raw", "64M")
    made = {}
    with serve(root) as url, app.app_context():
        made = kvm_zone.make_zone(tmp_path, url, {"empty": "empty.raw"}, SUFFIX)
    yield made
    kvm_zone.clean_up(made, SUFFIX)


@pytest.fixture
def nubo_url(app):
    """Nubo itself on a loopback port (its download URLs point there)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    app.config["UPLOAD_PUBLIC_URL"] = base
    yield base
    server.shutdown()
    app.config["UPLOAD_PUBLIC_URL"] = ""


def _qemu(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=120)


def test_extract_a_real_volume_and_upload_it_back(app, kvm_small, nubo_url, tmp_path):
    conn = libvirt.open(kvm_zone.URI)
    with app.app_context():
        admin, alice = accounts.get_user("root"), accounts.user_by_uuid(kvm_small["alice"])
        vm, job = vms.deploy(alice, zone_uuid=kvm_small["zone"], service_offering_uuid=kvm_small["so"],
                             template_uuid=kvm_small["empty"], name="xt1")
        assert _job_ok(job), job.result
        assert _job_ok(vms.stop(alice, vm.uuid, forced=True))
        vm = db.session.get(VirtualMachine, vm.id)
        root = next(v for v in vm.volumes if v.volume_type == "ROOT")
        assert _qemu(["info", "-U", root.path]).returncode == 0

        # The root admin extracts it (its template is not extractable: users may not)
        job = extracts.submit_volume(admin, root.uuid, zone_uuid=kvm_small["zone"], mode="HTTP_DOWNLOAD")
        assert _job_ok(job), job.result
        url = json.loads(job.result)["volume"]["url"]
        assert url.startswith(nubo_url + "/download/")
        x = extracts.for_download(url.split("/")[4])[1]
        info = json.loads(_qemu(["info", "--output=json", str(x)]).stdout)
        assert info["format"] == "qcow2" and "backing-filename" not in info  # flattened, self-contained
        assert info["virtual-size"] == root.size

        # uploadVolume from that URL (loopback: allowed for users only by the admin's setting)
        settings.update("secstorage.allowed.internal.sites", "127.0.0.0/8")
        job = volume_uploads.submit_upload(alice, url=url, name="back", format="QCOW2", zone_uuid=kvm_small["zone"])
        assert _job_ok(job), job.result
        up = db.session.get(Volume, db.session.scalar(db.select(Volume.id).where(Volume.uuid == job.instance_id)))
        assert up.state == "Uploaded" and up.size == root.size

        # The first attach (VM stopped) writes it into the libvirt pool
        volumes.attach_volume(alice, up.uuid, vm.uuid)
        db.session.refresh(up)
        assert up.state == "Ready" and up.vm_id == vm.id and up.format == "QCOW2"
        pool = conn.storagePoolLookupByName(kvm_small["pool"])
        pool.refresh(0)
        lv = pool.storageVolLookupByName(up.uuid)
        assert lv.path() == up.path and lv.info()[1] == root.size
        same = _qemu(["compare", "-U", root.path, up.path])
        assert same.returncode == 0, same.stdout + same.stderr  # the guest-visible bytes are the same
        assert not volume_uploads.ref_of(up)  # the image store's copy is gone
        volumes.detach_volume(alice, up.uuid)
        volumes.delete_volume(alice, up.uuid)
        assert _job_ok(vms.destroy(alice, vm.uuid, expunge=True))
    conn.close()

"""The demo zone as `make run` seeds it works at once: a template registered by URL
downloads to its secondary storage (a directory in the instance directory, not an NFS
export nobody mounted), becomes Ready, and a VM deploys from it (issue 18's audit)."""
from __future__ import annotations

import subprocess
import time

from app.extensions import db
from app.models import ImageStore
from app.services import bootstrap
from tests.helpers.www import serve


def wait_ready(api, template_id, timeout=60):
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        rows = api.listTemplates(templatefilter="self", id=template_id).get("template", [])
        if rows and (rows[0].get("isready") or rows[0]["status"].startswith("Failed")):
            return rows[0]
        time.sleep(0.2)
    raise TimeoutError(f"template {template_id} still {rows}")


def test_template_by_url_in_the_demo_zone_becomes_ready_and_deploys(live, tmp_path):
    app = live.flask_app
    with app.app_context():
        bootstrap.run({**app.config, "SEED_DEMO": True})  # what `make run` runs (flask bootstrap)
        store = db.session.query(ImageStore).one()
        assert store.provider == "Local" and store.path.startswith(app.instance_path)
    api = live.client()
    zone = api.listZones(name="Demo")["zone"][0]
    stores = api.listImageStores(zoneid=zone["id"])["imagestore"]
    assert [s["providername"] for s in stores] == ["Local"]

    www = tmp_path / "www"
    www.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(www / "tiny.qcow2"), "32M"], check=True)
    with serve(www) as url:
        t = api.registerTemplate(name="tiny", displaytext="tiny", url=f"{url}/tiny.qcow2", zoneid=zone["id"],
                                 hypervisor="Simulator", format="QCOW2")["template"][0]
        row = wait_ready(api, t["id"])
    assert row["isready"] is True and row["status"] == "Download Complete", row
    assert row["size"] == 32 << 20

    offering = api.listServiceOfferings(name="Small Instance")["serviceoffering"][0]
    vm = api.deployVirtualMachine(zoneid=zone["id"], templateid=t["id"], serviceofferingid=offering["id"],
                                  fetch_result=True)["virtualmachine"]
    assert vm["state"] == "Running" and vm["templateid"] == t["id"]
    # The seeded template works too: its file is on the same store.
    demo_t = api.listTemplates(templatefilter="featured", name="Demo Linux (RAW)")["template"][0]
    vm2 = api.deployVirtualMachine(zoneid=zone["id"], templateid=demo_t["id"], serviceofferingid=offering["id"],
                                   fetch_result=True)["virtualmachine"]
    assert vm2["state"] == "Running"

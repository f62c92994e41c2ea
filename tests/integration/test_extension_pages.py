"""Extensions pages (admins): the list with state ("Not Ready" and why), path and checksum;
add, edit (a secret detail keeps its value and is never shown), delete; register with an
External cluster and unregister; custom actions added with declared parameters, edited,
deleted; bad input refused with a message and nothing changed; users get 403. The VM page
of a VM an extension runs: its enabled custom actions as forms built from their parameters,
run as a job whose panel shows the extension's answer."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.hypervisors import registry as hv_registry
from app.hypervisors.external.types import EXTERNAL
from app.models import Extension, ExtensionCustomAction, ExternalDetail, ServiceOffering, VirtualMachine, new_uuid
from app.services import accounts, hosts, zones
from app.services.extensions import actions, registry

RECORDING = Path(__file__).resolve().parents[1] / "extensions" / "recording_ext.py"
hv_registry.register(EXTERNAL)  # an installed checkout has it from its entry point already


def install(app, name: str, filename: str) -> Path:
    d = Path(app.instance_path) / "extensions" / name
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(RECORDING, d / filename)
    return d / filename


def extension(app, name: str) -> Extension:
    return db.session.scalar(select(Extension).where(Extension.name == name, Extension.removed.is_(None)))


def external_cluster(app, name: str = "ext1") -> str:
    with app.app_context():
        admin = accounts.get_user("admin")
        z = zones.create_zone(admin, name=f"z-{name}", dns1="8.8.8.8", internal_dns1="10.0.0.2",
                              guest_cidr="10.98.0.0/24")
        p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                             start_ip="10.0.0.10")
        return zones.add_cluster(admin, pod_uuid=p.uuid, name=name, hypervisor="External").uuid


def test_extension_pages(app, client, auth, hx, tmp_path):
    auth.login("admin")
    token = auth.csrf("/admin/extensions/")
    page = client.get("/admin/extensions/").get_data(as_text=True)
    assert "No extensions yet." in page and 'href="/admin/extensions/"' in page  # in the navigation
    # Added before its file is there: Not Ready, and the page says why.
    r = client.post("/admin/extensions/", data={
        "name": "rec", "description": "records", "path": "rec.py", "orchestratorrequirespreparevm": "y",
        "state": "Enabled", "details": f"statedir={tmp_path}\napi_password=s3cret-pw\n", "csrf_token": token})
    assert r.status_code == 302
    with app.app_context():
        e = extension(app, "rec")
        uuid = e.uuid
        assert (e.path_ready, e.orchestrator_requires_prepare_vm) == (False, True)
    html = client.get("/admin/extensions/").get_data(as_text=True)
    assert "Not Ready" in html and "rec.py does not exist" in html
    exe = install(app, "rec", "rec.py")
    html = client.get(f"/admin/extensions/{uuid}").get_data(as_text=True)
    assert "Not Ready" not in html
    with app.app_context():
        checksum = extension(app, "rec").checksum
    assert checksum and checksum in html and str(exe) in html
    assert "statedir" in html and "api_password" in html and "s3cret-pw" not in html and "******" in html

    # Edit: the secret comes back masked and keeps its value; other details change.
    form = client.get(f"/admin/extensions/{uuid}/edit").get_data(as_text=True)
    assert "api_password=******" in form and "s3cret-pw" not in form
    r = hx.post(f"/admin/extensions/{uuid}/edit", data={
        "description": "records calls", "state": "Enabled", "orchestratorrequirespreparevm": "y",
        "details": f"statedir={tmp_path}\napi_password=******\nuri=test:///default"})
    assert r.status_code == 204
    with app.app_context():
        from app.services.extensions import details
        assert details.values_of("Extension", extension(app, "rec").id) == {
            "statedir": str(tmp_path), "api_password": "s3cret-pw", "uri": "test:///default"}
    # A details line without '=': refused beside the field, nothing changed.
    r = hx.post(f"/admin/extensions/{uuid}/edit", data={"state": "Enabled", "details": "no equals sign"})
    assert r.status_code == 422 and "Line 1: write name=value" in r.get_data(as_text=True)
    # A duplicate name and a path outside its directory: refused, nothing made.
    r = hx.post("/admin/extensions/", data={"name": "rec", "state": "Enabled"})
    assert r.status_code == 422 and "already exists" in r.get_data(as_text=True)
    r = hx.post("/admin/extensions/", data={"name": "evil", "path": "../../etc/passwd", "state": "Enabled"})
    assert r.status_code == 422 and "relative to the extension" in r.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Extension).where(Extension.removed.is_(None))) == 1

    # The executable changed behind Nubo's back: Not Ready, with the reason, until accepted.
    exe.write_bytes(exe.read_bytes() + b"\n# changed\n")
    html = client.get("/admin/extensions/").get_data(as_text=True)
    assert "Not Ready" in html and "checksum" in html

    # Register with an External cluster, then unregister.
    cluster = external_cluster(app)
    page = client.get(f"/admin/extensions/{uuid}").get_data(as_text=True)
    assert "ext1" in page
    r = client.post(f"/admin/extensions/{uuid}/register", data={"cluster": cluster, "details": "image_dir=/tmp/x",
                                                                  "csrf_token": token})
    assert r.status_code == 302
    page = client.get(f"/admin/extensions/{uuid}").get_data(as_text=True)
    assert "image_dir" in page and f"/admin/extensions/{uuid}/unregister/{cluster}" in page
    assert "ext1" in client.get("/admin/extensions/").get_data(as_text=True)
    r = hx.post(f"/admin/extensions/{uuid}/register", data={"cluster": cluster})
    assert r.status_code == 422  # no longer offered: it is served already
    r = client.post(f"/admin/extensions/{uuid}/unregister/{cluster}", data={"csrf_token": token})
    assert r.status_code == 302
    with app.app_context():
        assert registry.map_of_cluster(db.session.scalar(select(registry.Cluster.id).where(
            registry.Cluster.uuid == cluster))) is None

    # Custom actions: declared parameters one a line; a bad line refused; edit; delete.
    r = hx.post(f"/admin/extensions/{uuid}/actions", data={"name": "snap", "parameters": "name STRING bogus"})
    assert r.status_code == 422 and "Line 1" in r.get_data(as_text=True)
    r = client.post(f"/admin/extensions/{uuid}/actions", data={
        "name": "snap", "description": "take a snapshot", "roles": ["Admin", "User"], "timeout": "20",
        "parameters": "name STRING required\nkeep NUMBER\nquiesce BOOLEAN\nkind STRING options=disk,memory",
        "enabled": "y", "csrf_token": token})
    assert r.status_code == 302
    with app.app_context():
        a = db.session.scalar(select(ExtensionCustomAction).where(ExtensionCustomAction.name == "snap"))
        action_uuid = a.uuid
        assert (a.enabled, a.timeout, a.allowed_role_types) == (True, 20, "Admin,User")
        assert [(p["name"], p["type"], p["required"]) for p in json.loads(a.parameters)] == [
            ("name", "STRING", True), ("keep", "NUMBER", False), ("quiesce", "BOOLEAN", False),
            ("kind", "STRING", False)]
    page = client.get(f"/admin/extensions/{uuid}").get_data(as_text=True)
    assert "take a snapshot" in page and "disk, memory" in page
    form = client.get(f"/admin/extensions/{uuid}/actions/{action_uuid}/edit").get_data(as_text=True)
    assert "name STRING required" in form and "kind STRING options=disk,memory" in form
    r = hx.post(f"/admin/extensions/{uuid}/actions/{action_uuid}/edit", data={
        "description": "snapshot", "parameters": "name STRING required", "roles": ["Admin"], "timeout": "30"})
    assert r.status_code == 204
    with app.app_context():
        a = actions.get(action_uuid)
        assert (a.description, a.timeout, a.enabled, len(json.loads(a.parameters))) == ("snapshot", 30, False, 1)
    r = client.post(f"/admin/extensions/{uuid}/actions/{action_uuid}/delete", data={"csrf_token": token})
    assert r.status_code == 302
    with app.app_context():
        assert actions.list_actions(accounts.get_user("admin"), extension_uuid=uuid)[1] == 0

    # Delete: gone with its details.
    r = client.post(f"/admin/extensions/{uuid}/delete", data={"csrf_token": token})
    assert r.status_code == 302
    with app.app_context():
        assert extension(app, "rec") is None
        assert not db.session.scalar(select(func.count()).select_from(ExternalDetail).where(
            ExternalDetail.owner_type == "Extension"))


def test_users_get_no_extension_pages(app, client, auth):
    auth.login("alice")
    assert client.get("/admin/extensions/").status_code == 403
    assert 'href="/admin/extensions/"' not in client.get("/portal/").get_data(as_text=True)


@pytest.fixture
def external_vm(app, tmp_path):
    """A running VM on the host of an External cluster served by the recording extension,
    with an enabled custom action taking parameters."""
    state = tmp_path / "state"
    state.mkdir()
    with app.app_context():
        admin = accounts.get_user("admin")
        install(app, "rec", "rec.py")
        ext_uuid = registry.create(admin, name="rec", type="Orchestrator", path="rec.py",
                                   details_map=[{"statedir": str(state)}]).uuid
    cluster = external_cluster(app)
    with app.app_context():
        admin = accounts.get_user("admin")
        c = zones.get_cluster(cluster)
        registry.register(admin, extension_uuid=ext_uuid, resource_id=cluster, resource_type="Cluster")
        h = hosts.add_host(admin, cluster_uuid=c.uuid, url="recorder", fields={})
        a = actions.add(admin, extension_uuid=ext_uuid, name="snap", description="take a snapshot", enabled=True,
                        allowed_role_types=["User"], timeout=20,
                        parameters_map=[{"name": "name", "type": "STRING", "required": "true"},
                                        {"name": "memory", "type": "BOOLEAN"},
                                        {"name": "kind", "type": "STRING", "valueoptions": "disk,full"}])
        actions.add(admin, extension_uuid=ext_uuid, name="hidden", description="not enabled")
        alice = accounts.get_user("alice")
        so = ServiceOffering(uuid=new_uuid(), name="ext", cpu_number=1, cpu_speed=500, memory=128)
        vm = VirtualMachine(name="web1", instance_name="i-9-1-VM", state="Running", account_id=alice.account_id,
                            user_id=alice.id, zone=c.zone, service_offering=so, hypervisor_type="External",
                            cpu_number=1, cpu_speed=500, memory=128, host_id=h.id)
        db.session.add(vm)
        db.session.commit()
        return {"vm": vm.uuid, "action": a.uuid, "state": state}


def test_custom_actions_on_the_vm_page(app, client, auth, external_vm):
    auth.login("alice")
    vm, action = external_vm["vm"], external_vm["action"]
    page = client.get(f"/vms/{vm}").get_data(as_text=True)
    assert 'id="vm-custom-actions"' in page and "take a snapshot" in page and "not enabled" not in page
    assert 'name="p_name"' in page and 'type="checkbox"' in page and '<option value="full">' in page
    assert ">Restore</button>" not in page  # its disks are the orchestrator's: no Restore offered
    # Its console is asked of the extension when opened: the button is there before any getconsole.
    assert f'action="/vms/{vm}/console"' in page and 'id="vm-console-note"' not in page
    token = auth.csrf(f"/vms/{vm}")
    # A required parameter left empty: not run, and the page says so.
    r = client.post(f"/vms/{vm}/custom-actions/{action}", data={"p_name": "", "csrf_token": token})
    assert r.status_code == 302
    assert "snap was not run" in client.get(r.headers["Location"]).get_data(as_text=True)
    assert not (external_vm["state"] / "calls.jsonl").exists()
    # Run: the job's panel shows the extension's answer; the payload carried the typed parameters.
    r = client.post(f"/vms/{vm}/custom-actions/{action}", data={"p_name": "before", "p_memory": "y",
                                                                 "p_kind": "full", "csrf_token": token})
    assert r.status_code == 302 and "job=" in r.headers["Location"]
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Custom action" in html and "snap" in html and "Successfully completed snap" in html
    call = [json.loads(line) for line in (external_vm["state"] / "calls.jsonl").read_text().splitlines()][-1]
    assert call["action"] == "snap"
    assert call["payload"]["parameters"] == {"name": "before", "memory": True, "kind": "full"}
    # Another user's VM: no such page, no such action.
    auth.logout()
    auth.login("bob")
    assert client.post(f"/vms/{vm}/custom-actions/{action}", data={"p_name": "x", "csrf_token": auth.csrf()}
                       ).status_code == 404

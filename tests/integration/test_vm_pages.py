"""VM pages: the list (filters, pages, HTMX fragment, a poller only while a row is
in transition, a query count that does not grow with the VMs listed), the VM page
(facts, actions offered by state and capabilities, the job panel that polls only
while its job runs) and every action through the pages, as a plain POST and from
HTMX; a user sees and acts on their own VMs only. VMs are deployed through the
services on a Simulator zone (the test app runs jobs inline)."""
from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from app.extensions import db
from app.hypervisors.simulator import dispose_engines
from app.models import (AsyncJob, DownloadState, JobStatus, ServiceOffering, Template, TemplateStoreRef,
                        VirtualMachine, new_uuid, utcnow)
from app.services import accounts, hosts, settings, storage, vms, zones
from app.services import simulator as sim

# On every database (@pytest.mark.db): the list's queries (filters, pages, counts, ownership), the
# life cycle's writes and what a refusal leaves; the pages' rules and pollers on SQLite.
GIB = 1 << 30


@pytest.fixture(autouse=True)
def _engines():
    yield
    dispose_engines()  # the Simulator driver's own engines, per database


@pytest.fixture
def world(app, users, tmp_path):
    """A Simulator zone (one host, an NFS pool, a ready 1 GiB template, two offerings)."""
    with app.app_context():
        z = zones.create_zone(None, name="Z1", dns1="8.8.8.8", internal_dns1="10.0.0.2", guest_cidr="10.9.0.0/24")
        p = zones.create_pod(None, zone_uuid=z.uuid, name="P1", gateway="192.168.10.1", netmask="255.255.255.0",
                             start_ip="192.168.10.10", end_ip="192.168.10.99")
        c = zones.add_cluster(None, pod_uuid=p.uuid, name="C1", hypervisor="Simulator")
        h1 = hosts.add_host(None, cluster_uuid=c.uuid, url="simulator://h1?cpus=8&memory=16384", fields={})
        h2 = hosts.add_host(None, cluster_uuid=c.uuid, url="simulator://h2?cpus=8&memory=16384", fields={})
        storage.create_storage_pool(None, zone_uuid=z.uuid, cluster_uuid=c.uuid, name="nfs", url="nfs://filer/export")
        store = storage.add_image_store(None, provider="Local", url=f"file://{tmp_path}/sec", zone_uuid=z.uuid)
        admin = accounts.get_user("admin")
        t = Template(uuid=new_uuid(), name="tiny", format="RAW", hypervisor_type="Simulator", is_public=True,
                     account_id=admin.account_id, size=GIB, physical_size=GIB)
        iso = Template(uuid=new_uuid(), name="rescue-iso", format="ISO", is_iso=True, is_public=True,
                       account_id=admin.account_id, size=GIB, physical_size=GIB)
        db.session.add_all([t, iso])
        db.session.flush()
        for tpl in (t, iso):  # as if downloaded: a small file on the store, a DOWNLOADED ref
            path = f"template/tmpl/{tpl.id}/{tpl.uuid}.{tpl.format.lower()}"
            (tmp_path / "sec" / path).parent.mkdir(parents=True)
            (tmp_path / "sec" / path).write_bytes(b"NUBO" * 1024)
            db.session.add(TemplateStoreRef(template_id=tpl.id, zone_id=z.id, image_store_id=store.id,
                                            state=DownloadState.DOWNLOADED, download_pct=100, size=GIB,
                                            install_path=path))
        small = ServiceOffering(uuid=new_uuid(), name="small", cpu_number=1, cpu_speed=1000, memory=512)
        big = ServiceOffering(uuid=new_uuid(), name="big", cpu_number=2, cpu_speed=2000, memory=2048)
        db.session.add_all([small, big])
        db.session.commit()
        for limit in ("max.account.user.vms", "max.account.volumes", "max.account.cpus", "max.account.memory",
                      "max.account.primary.storage"):
            settings.update(limit, "-1")  # many VMs per account here
        return SimpleNamespace(zone=z.uuid, hosts=[h1.uuid, h2.uuid], template=t.uuid, iso=iso.uuid,
                               small=small.uuid, big=big.uuid)


def deploy(app, world, user="alice", name=None, start=True) -> str:
    with app.app_context():
        vm, _ = vms.deploy(accounts.get_user(user), zone_uuid=world.zone, service_offering_uuid=world.small,
                           template_uuid=world.template, name=name, start=start)
        return vm.uuid


def set_vm(app, uuid, **values) -> None:
    """Put a VM in a state directly (as the monitor or a running job would)."""
    with app.app_context():
        db.session.execute(db.update(VirtualMachine).where(VirtualMachine.uuid == uuid).values(**values))
        db.session.commit()


def state_of(app, uuid) -> str:
    with app.app_context():
        return db.session.scalar(db.select(VirtualMachine.state).where(VirtualMachine.uuid == uuid))


def host_of(app, uuid, attr="uuid"):
    """The host the VM runs on (its uuid, or another attribute), or None."""
    with app.app_context():
        vm = db.session.scalar(db.select(VirtualMachine).where(VirtualMachine.uuid == uuid))
        return getattr(vm.host, attr) if vm.host else None


def host_name(app, uuid):
    return host_of(app, uuid, "name")


def pending_job(app, uuid, account_id=None) -> str:
    """A stop job of the VM (its owner's unless told) that a worker is still running."""
    with app.app_context():
        account_id = account_id or db.session.scalar(
            db.select(VirtualMachine.account_id).where(VirtualMachine.uuid == uuid))
        job = AsyncJob(cmd="stopVirtualMachine", instance_type="VirtualMachine", instance_id=uuid,
                       status=JobStatus.PENDING, account_id=account_id, progress=20,
                       progress_message="Asking the guest to shut down")
        db.session.add(job)
        db.session.commit()
        return job.uuid


def finish_job(app, job_uuid, errortext=None) -> None:
    with app.app_context():
        job = db.session.scalar(db.select(AsyncJob).where(AsyncJob.uuid == job_uuid))
        job.status = JobStatus.FAILED if errortext else JobStatus.SUCCEEDED
        job.result = json.dumps({"errorcode": 530, "errortext": errortext} if errortext else {})
        db.session.commit()


def post(client, auth, url, data=None, **kw):
    """A plain form POST, with the page's CSRF token."""
    return client.post(url, data={"csrf_token": auth.csrf(), **(data or {})}, **kw)


def poller(html: str) -> tuple[str, str] | None:
    """(hx-get, its polling trigger) of the VM page's body, or None when it does not poll (it
    always listens to the change stream for its VM: sse:vm-<uuid>)."""
    m = re.search(r'<div id="vm"([^>]*)>', html)
    assert m, "no VM page body"
    get, trigger = re.search(r'hx-get="([^"]+)"', m.group(1)), re.search(r'hx-trigger="([^"]+)"', m.group(1))
    assert "sse:vm-" in trigger.group(1)
    every = re.search(r"every \d+s", trigger.group(1))
    return (get.group(1).replace("&amp;", "&"), every.group(0)) if every else None


def buttons(html: str) -> set[str]:
    """The labels of the page's action buttons (the Snapshots card's are tests/integration/test_snapshots.py's)."""
    html = re.sub(r'<section class="card" id="snapshots">.*?</section>', "", html, flags=re.S)
    return set(re.findall(r'<button type="submit" class="btn[^"]*">([^<]+)</button>', html)) - {"Log out"}


def row_of(html: str, uuid: str) -> str:
    m = re.search(rf'<tr id="vm-{uuid}">(.*?)</tr>', html, re.S)
    assert m, f"no row for {uuid}"
    return m.group(1)


# --- The list ---------------------------------------------------------------------

@pytest.mark.db
def test_list_page_and_htmx_fragment(app, world, auth, client, hx):
    web = deploy(app, world, name="web1")
    db1 = deploy(app, world, name="db1", start=False)
    auth.login("admin")
    resp = client.get("/vms/")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "<html" in html and 'id="vms-list-filters"' in html
    row = row_of(html, web)
    assert f'href="/vms/{web}"' in row and 'class="state state-running">Running' in row
    assert "10.9.0." in row and f"<td>{host_name(app, web)}</td>" in row
    assert "Z1" in row and "tiny" in row and "1 vCPU · 1000 MHz · 512 MiB" in row and "alice" in row
    assert 'class="state state-stopped">Stopped' in row_of(html, db1)
    assert html.index(f"vm-{db1}") < html.index(f"vm-{web}")  # newest first
    # The search box asks for the fragment: the section alone, and caches told it varies.
    resp = hx.get("/vms/?q=web&zone=&state=")
    frag = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "<html" not in frag and frag.lstrip().startswith("<section")
    assert "HX-Request" in resp.headers["Vary"] and resp.headers["HX-Push-Url"] == "/vms/?q=web"
    assert web in frag and db1 not in frag
    # The list's own reload does not push the address.
    resp = hx.get("/vms/?q=web", headers={"HX-Trigger": "vms-refresh"})
    assert resp.status_code == 200 and "HX-Push-Url" not in resp.headers


@pytest.mark.db
def test_filters_and_pages(app, world, auth, client):
    web = deploy(app, world, name="web1")
    db1 = deploy(app, world, name="db1", start=False)
    bobs = deploy(app, world, user="bob", name="bob1")
    with app.app_context():
        host = db.session.scalar(db.select(VirtualMachine).where(VirtualMachine.uuid == web)).host.uuid
    auth.login("admin")

    def listed(query: str) -> set[str]:
        html = client.get(f"/vms/{query}").get_data(as_text=True)
        return set(re.findall(r'<tr id="vm-([0-9a-f-]+)"', html))

    assert listed("") == {web, db1, bobs}
    assert listed("?state=Stopped") == {db1}
    assert listed("?state=Running&account=alice") == {web}
    assert listed("?account=bob") == {bobs}
    assert listed(f"?host={host}") == {u for u in (web, bobs) if host_of(app, u) == host}
    assert listed(f"?zone={world.zone}&q=db") == {db1}
    html = client.get("/vms/?zone=00000000-0000-0000-0000-000000000000").get_data(as_text=True)
    assert 'class="flash flash-error" role="alert">Unable to find zone' in html and '<tr id="vm-' not in html
    # Pages: newest first; the pager keeps the filters.
    page1 = client.get("/vms/?pagesize=2").get_data(as_text=True)
    assert "1–2 of 3" in page1 and 'href="/vms/?pagesize=2&amp;page=2"' in page1
    assert set(re.findall(r'<tr id="vm-([0-9a-f-]+)"', page1)) == {bobs, db1}
    assert listed("?pagesize=2&page=2") == {web}
    # The filter bar offers zones and states to everyone, hosts and accounts to admins.
    assert all(f'name="{n}"' in page1 for n in ("q", "zone", "state", "host", "account"))


@pytest.mark.db
def test_fifty_rows_a_page_by_default(app, world, auth, client):
    for i in range(51):
        deploy(app, world, name=f"s{i}", start=False)
    auth.login("admin")
    html = client.get("/vms/").get_data(as_text=True)
    assert len(re.findall(r'<tr id="vm-', html)) == 50 and "1–50 of 51" in html
    assert 'href="/vms/?page=2"' in html  # the default page size stays out of the URL
    assert len(re.findall(r'<tr id="vm-', client.get("/vms/?page=2").get_data(as_text=True))) == 1


@pytest.mark.db
def test_a_user_sees_and_acts_on_own_vms_only(app, world, auth, client, hx):
    mine = deploy(app, world, name="web1")
    bobs = deploy(app, world, user="bob", name="bob1")
    auth.login("alice")
    html = client.get("/vms/").get_data(as_text=True)
    assert mine in html and bobs not in html
    assert "<th>Host</th>" not in html and "<th>Account</th>" not in html and 'name="account"' not in html
    assert client.get("/vms/?account=bob").get_data(as_text=True).count('<tr id="vm-') == 1  # ignored
    assert client.get(f"/vms/{bobs}").status_code == 404
    assert hx.get(f"/vms/{bobs}").status_code == 404
    for action in ("stop", "destroy", "reboot"):
        assert post(client, auth, f"/vms/{bobs}/{action}").status_code == 404
    assert hx.post(f"/vms/{bobs}/stop").status_code == 404
    assert state_of(app, bobs) == "Running"
    page = client.get(f"/vms/{mine}").get_data(as_text=True)
    assert "Migrate" not in buttons(page) and "expunge now" not in page  # admin-only
    assert "<dt>Host</dt>" not in page and "VNC console available" not in page and "no screen to show" in page


def test_unknown_vm_and_action(app, world, auth, client):
    uuid = deploy(app, world, name="web1")
    auth.login("admin")
    assert client.get("/vms/00000000-0000-0000-0000-000000000000").status_code == 404
    assert post(client, auth, f"/vms/{uuid}/explode").status_code == 404
    assert client.post(f"/vms/{uuid}/stop").status_code == 400  # no CSRF token
    assert state_of(app, uuid) == "Running"


# --- Actions offered --------------------------------------------------------------

def test_actions_follow_state_and_capabilities(app, world, auth, client):
    run = deploy(app, world, name="web1")
    stop = deploy(app, world, name="db1", start=False)
    gone = deploy(app, world, name="old1", start=False)
    with app.app_context():
        vms.destroy(accounts.get_user("alice"), gone)
    auth.login("admin")
    html = client.get("/vms/").get_data(as_text=True)
    assert buttons(row_of(html, run)) == {"Stop", "Reboot", "Destroy"}
    assert buttons(row_of(html, stop)) == {"Start", "Destroy"}
    assert f"vm-{gone}" not in html  # destroyed VMs are apart: the Destroyed tab, with Recover and Expunge
    assert buttons(row_of(client.get("/vms/?view=destroyed").get_data(as_text=True), gone)) == {"Recover", "Expunge"}
    assert 'hx-confirm="Destroy web1? It can be recovered until it is expunged."' in row_of(html, run)

    page = client.get(f"/vms/{run}").get_data(as_text=True)
    # (Save: the Settings card's; Restore: reinstall from its template)
    assert buttons(page) == {"Stop", "Force stop", "Reboot", "Destroy", "Migrate", "Attach ISO", "Save", "Restore",
                             "Add tag", "Take snapshot"}  # a VM snapshot: the Simulator's
    other = next(h for h in ("h1", "h2") if h != host_name(app, run))
    assert "expunge now" in page and "Let Nubo choose" in page and f"{other} (Up)" in page
    assert f"{host_name(app, run)} (Up)" not in page  # not where it runs already
    assert buttons(client.get(f"/vms/{stop}").get_data(as_text=True)) == {
        "Start", "Destroy", "Change offering", "Attach ISO", "Save", "Restore", "Assign to account",
        "Add tag", "Take snapshot"}
    assert buttons(client.get(f"/vms/{gone}").get_data(as_text=True)) == {"Recover", "Expunge", "Add tag"}
    # A busy VM (an action queued or running) offers no action: it would be refused (tags stay editable).
    set_vm(app, stop, active_job_id=12345)
    assert buttons(client.get(f"/vms/{stop}").get_data(as_text=True)) == {"Add tag"}


def test_expunge_is_offered_to_users_only_when_allowed(app, world, auth, client):
    uuid = deploy(app, world, name="web1", start=False)
    with app.app_context():
        vms.destroy(accounts.get_user("alice"), uuid)
        settings.update("allow.user.expunge.recover.vm", "false")
    auth.login("alice")
    assert buttons(client.get(f"/vms/{uuid}").get_data(as_text=True)) == {"Recover", "Add tag"}
    resp = post(client, auth, f"/vms/{uuid}/expunge", follow_redirects=True)
    assert "Only administrators may expunge VMs" in resp.get_data(as_text=True)
    assert state_of(app, uuid) == "Destroyed"


def test_iso_attach_and_detach_through_the_page(app, world, auth, client, hx):
    uuid = deploy(app, world, name="web1", start=False)
    auth.login("alice")
    resp = hx.post(f"/vms/{uuid}/attach-iso", data={"iso": world.iso})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "rescue-iso" in html and "Detach ISO" in buttons(html)
    assert "Attach ISO" not in buttons(html)
    resp = hx.post(f"/vms/{uuid}/detach-iso")
    assert "Attach ISO" in buttons(resp.get_data(as_text=True))
    resp = hx.post(f"/vms/{uuid}/attach-iso", data={"iso": ""})
    assert resp.status_code == 422 and "Choose an ISO" in resp.get_data(as_text=True)


# --- Actions through the pages ----------------------------------------------------

@pytest.mark.db
def test_stop_start_destroy_recover_expunge(app, world, auth, client, hx):
    uuid = deploy(app, world, name="web1")
    auth.login("admin")
    # A plain POST: redirect to the VM page, which shows the job's panel.
    resp = post(client, auth, f"/vms/{uuid}/stop")
    assert resp.status_code == 302 and resp.location.startswith(f"/vms/{uuid}?job=")
    assert state_of(app, uuid) == "Stopped"
    page = client.get(resp.location).get_data(as_text=True)
    assert 'id="vm-job"' in page and "Stop</h2>" in page and "Done at" in page and "the VM is Stopped" in page
    assert poller(page) is None
    # HTMX: the page's body comes back, with the new state and its actions.
    resp = hx.post(f"/vms/{uuid}/start")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "<html" not in html and poller(html) is None
    assert 'class="state state-running">Running' in html and "Start</h2>" in html
    assert resp.headers["HX-Replace-Url"].startswith(f"/vms/{uuid}?job=")
    assert state_of(app, uuid) == "Running"
    resp = hx.post(f"/vms/{uuid}/destroy")
    assert state_of(app, uuid) == "Destroyed" and buttons(resp.get_data(as_text=True)) == {"Recover", "Expunge", "Add tag"}
    resp = hx.post(f"/vms/{uuid}/recover")
    html = resp.get_data(as_text=True)
    assert state_of(app, uuid) == "Stopped" and "VM web1 is recovered: it is Stopped." in html
    # Destroy with "expunge now" (admins): the VM is gone, back to the list.
    resp = hx.post(f"/vms/{uuid}/destroy", data={"expunge": "y"})
    assert resp.status_code == 204 and resp.headers["HX-Redirect"] == "/vms/"
    assert uuid not in client.get("/vms/").get_data(as_text=True)
    assert client.get(f"/vms/{uuid}").status_code == 404


def test_quick_actions_of_the_list(app, world, auth, client, hx):
    uuid = deploy(app, world, name="web1")
    auth.login("alice")
    resp = hx.post(f"/vms/{uuid}/stop", data={"fragment": "list"})
    assert resp.status_code == 200 and resp.headers["HX-Trigger"] == "vmsChanged"
    assert "Stop of VM web1 is done." in resp.get_data(as_text=True) and state_of(app, uuid) == "Stopped"
    # Without JavaScript: back to the list as it was, with a flash.
    resp = post(client, auth, f"/vms/{uuid}/start", {"fragment": "list"},
                headers={"Referer": "http://localhost/vms/?q=web"})
    assert resp.status_code == 302 and resp.location == "/vms/?q=web"
    assert "Start of VM web1 is done." in client.get(resp.location).get_data(as_text=True)
    # A refusal: the message, no reload of the list.
    resp = hx.post(f"/vms/{uuid}/start", data={"fragment": "list"})
    assert resp.status_code == 422 and "HX-Trigger" not in resp.headers
    assert "it can be started only when it is Stopped" in resp.get_data(as_text=True)


@pytest.mark.db
def test_a_refused_action_says_why_and_changes_nothing(app, world, auth, client, hx):
    uuid = deploy(app, world, name="web1")
    auth.login("alice")
    with app.app_context():
        before = db.session.scalar(db.select(db.func.count()).select_from(AsyncJob))
    # Wrong state, from HTMX: the reason in the page's body, 422 (htmx swaps it in).
    resp = hx.post(f"/vms/{uuid}/start")
    assert resp.status_code == 422 and "is Running; it can be started only when it is Stopped" in resp.get_data(
        as_text=True)
    # Wrong state, plain POST: the reason as a flash on the VM page.
    resp = post(client, auth, f"/vms/{uuid}/recover", follow_redirects=True)
    assert "it can be recovered only when it is Destroyed" in resp.get_data(as_text=True)
    # Busy (536): another action holds the VM.
    set_vm(app, uuid, active_job_id=999999)
    resp = hx.post(f"/vms/{uuid}/stop")
    assert resp.status_code == 422 and "is busy with another action" in resp.get_data(as_text=True)
    set_vm(app, uuid, active_job_id=None)
    # Not allowed to a user (not offered either): the User role's rules refuse the action itself.
    resp = hx.post(f"/vms/{uuid}/migrate", data={"host": ""})
    assert resp.status_code == 403
    assert state_of(app, uuid) == "Running"
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(AsyncJob)) == before


def test_a_failed_job_shows_its_error(app, world, auth, client, hx):
    """The hypervisor refuses the start: the job's panel says why, the VM stays Stopped."""
    uuid = deploy(app, world, name="web1", start=False)
    with app.app_context():
        instance = db.session.scalar(db.select(VirtualMachine.instance_name).where(VirtualMachine.uuid == uuid))
        sim.arm_fault(vm=instance, operations=["start_vm"], message="no VNC port left")
    auth.login("alice")
    resp = hx.post(f"/vms/{uuid}/start")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "vm-job-failed" in html and 'role="alert"' in html
    assert "could not start on" in html and "no VNC port left" in html
    assert state_of(app, uuid) == "Stopped" and "every 1s" not in html and "every 2s" not in html
    assert {"Start", "Destroy"} <= buttons(html)


@pytest.mark.db
def test_no_capacity_leaves_the_vm_stopped(app, world, auth, hx):
    uuid = deploy(app, world, name="web1", start=False)
    with app.app_context():
        huge = ServiceOffering(uuid=new_uuid(), name="huge", cpu_number=8, cpu_speed=2000, memory=65536)
        db.session.add(huge)
        db.session.commit()
        huge = huge.uuid
    auth.login("admin")
    resp = hx.post(f"/vms/{uuid}/change-offering", data={"offering": huge})
    assert resp.status_code == 200 and "VM web1 has a new service offering." in resp.get_data(as_text=True)
    html = hx.post(f"/vms/{uuid}/start").get_data(as_text=True)
    with app.app_context():
        job = db.session.scalar(db.select(AsyncJob).where(AsyncJob.instance_id == uuid).order_by(AsyncJob.id.desc()))
    assert job.result_code == 533 and json.loads(job.result)["errortext"] in html.replace("&#39;", "'")
    assert state_of(app, uuid) == "Stopped"


def test_migrate_through_the_page(app, world, auth, hx):
    uuid = deploy(app, world, name="web1")
    before = host_of(app, uuid)
    other = next(h for h in world.hosts if h != before)
    auth.login("admin")
    resp = hx.post(f"/vms/{uuid}/migrate", data={"host": other})
    assert resp.status_code == 200 and "Migrate</h2>" in resp.get_data(as_text=True)
    assert host_of(app, uuid) == other
    resp = hx.post(f"/vms/{uuid}/migrate", data={"host": other})
    assert resp.status_code == 422 and "already runs on" in resp.get_data(as_text=True)


# --- Polling ------------------------------------------------------------------------

def test_the_list_polls_only_while_a_vm_is_in_transition(app, world, auth, hx):
    uuid = deploy(app, world, name="web1")
    auth.login("admin")
    assert "every 2s" not in hx.get("/vms/").get_data(as_text=True)
    for state in ("Starting", "Stopping", "Migrating", "Expunging"):
        set_vm(app, uuid, state=state)
        frag = hx.get("/vms/?view=destroyed" if state == "Expunging" else "/vms/").get_data(as_text=True)
        assert 'hx-trigger="every 2s, vmsChanged from:body, sse:vm"' in frag, state
    set_vm(app, uuid, state="Running", active_job_id=4242)  # a queued action: it will move soon
    assert "every 2s" in hx.get("/vms/").get_data(as_text=True)
    set_vm(app, uuid, active_job_id=None)
    frag = hx.get("/vms/").get_data(as_text=True)
    assert "every 2s" not in frag and 'hx-trigger="vmsChanged from:body, sse:vm"' in frag


def test_the_job_panel_polls_only_while_its_job_runs(app, world, auth, client, hx):
    uuid = deploy(app, world, name="web1")
    job = pending_job(app, uuid)
    auth.login("alice")
    assert poller(client.get(f"/vms/{uuid}").get_data(as_text=True)) is None
    page = client.get(f"/vms/{uuid}?job={job}").get_data(as_text=True)
    assert poller(page) == (f"/vms/{uuid}?job={job}", "every 1s")
    assert "Asking the guest to shut down" in page and 'value="20"' in page
    frag = hx.get(f"/vms/{uuid}?job={job}").get_data(as_text=True)
    assert "<html" not in frag and poller(frag) == (f"/vms/{uuid}?job={job}", "every 1s")
    # The VM's running job is followed without naming it.
    with app.app_context():
        job_id = db.session.scalar(db.select(AsyncJob.id).where(AsyncJob.uuid == job))
    set_vm(app, uuid, state="Stopping", active_job_id=job_id)
    assert poller(hx.get(f"/vms/{uuid}").get_data(as_text=True)) == (f"/vms/{uuid}?job={job}", "every 1s")
    # Done: the outcome, the state area refreshed, no poller.
    set_vm(app, uuid, state="Running", active_job_id=None)
    finish_job(app, job, errortext="VM web1 did not shut down within 60 s; stop it with forced=true")
    frag = hx.get(f"/vms/{uuid}?job={job}").get_data(as_text=True)
    assert poller(frag) is None and "every 1s" not in frag
    assert "did not shut down within 60 s" in frag and 'class="state state-running">Running' in frag
    # A VM in transition with no job to follow polls every 2 s.
    set_vm(app, uuid, state="Starting")
    assert poller(hx.get(f"/vms/{uuid}").get_data(as_text=True)) == (f"/vms/{uuid}", "every 2s")
    # A job of another account on this VM (an admin's) is not shown, as in queryAsyncJobResult.
    with app.app_context():
        admins = accounts.get_user("admin").account_id
    other = pending_job(app, uuid, account_id=admins)
    assert "Asking the guest" not in client.get(f"/vms/{uuid}?job={other}").get_data(as_text=True)


def test_an_expunged_vm_sends_its_poller_back_to_the_list(app, world, auth, hx):
    uuid = deploy(app, world, name="web1")
    set_vm(app, uuid, removed=utcnow())
    auth.login("alice")
    resp = hx.get(f"/vms/{uuid}")
    assert resp.status_code == 404 and resp.headers["HX-Redirect"] == "/vms/"


# --- Scale ----------------------------------------------------------------------------

@pytest.mark.db
def test_list_queries_do_not_grow_with_the_vms(app, world, auth, client, hx, count_queries):
    for i in range(5):
        deploy(app, world, name=f"a{i}")
    auth.login("admin")

    def queries(url: str, c) -> int:
        return count_queries(c, url)

    client.get("/vms/")  # warm up (settings cache)
    few = (queries("/vms/", client), queries("/vms/?q=a", hx))
    for i in range(20):
        deploy(app, world, name=f"b{i}")
    for i in range(15):
        deploy(app, world, name=f"c{i}", start=False)
    many = (queries("/vms/", client), queries("/vms/?q=a", hx))
    assert many == few, (few, many)
    assert few[1] <= 5, few  # the user, the count, the page, its NICs

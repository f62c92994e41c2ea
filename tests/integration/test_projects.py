"""Projects through the API (signed calls, jobs run inline): a project owns its VMs, volumes
and key pairs through its own account; members see and use them when they name the project
(projectid, -1 for all), lists skip them otherwise; members added and removed (invitations
off); suspend stops the VMs and makes nothing new; the project's own limits; delete."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Project, VirtualMachine
from tests.integration.test_domains import job, ok
from tests.integration.test_quotas import api
from tests.integration.test_vm_pages import _engines, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.db


def make_project(app, client, user="alice", name="web", **kw):
    status, result = job(app, client, user, command="createProject", name=name, **kw)
    assert status == 1, result
    return result["project"]


def deploy(app, client, world, user="alice", **kw):
    status, result = job(app, client, user, command="deployVirtualMachine", zoneid=world.zone,
                         serviceofferingid=world.small, templateid=world.template, **kw)
    assert status == 1, result
    return result["virtualmachine"]


def ids(body, kind="virtualmachine"):
    return sorted(x["id"] for x in body.get(kind, []))


def test_a_project_shares_its_resources_with_its_members(app, client, world):
    p = make_project(app, client, displaytext="Web team")
    assert p["state"] == "Active" and p["displaytext"] == "Web team" and p["account"] == "alice"
    assert p["owner"][0]["account"] == "alice" and p["domain"] == "ROOT"
    vm = deploy(app, client, world, projectid=p["id"], name="pvm")
    mine = deploy(app, client, world, name="own")
    # The project's objects name the project, not an account.
    assert vm["projectid"] == p["id"] and vm["project"] == "web" and "account" not in vm
    key = ok(api(app, client, "alice", command="createSSHKeyPair", name="deploy", projectid=p["id"]))["keypair"]
    assert key["projectid"] == p["id"]
    # Lists: the caller's own objects; the project's with projectid; all projects' with -1.
    assert ids(ok(api(app, client, "alice", command="listVirtualMachines"))) == [mine["id"]]
    assert ids(ok(api(app, client, "alice", command="listVirtualMachines", projectid=p["id"]))) == [vm["id"]]
    assert ids(ok(api(app, client, "alice", command="listVirtualMachines", projectid="-1"))) == [vm["id"]]
    assert [k["name"] for k in ok(api(app, client, "alice", command="listSSHKeyPairs",
                                      projectid=p["id"]))["sshkeypair"]] == ["deploy"]
    vols = ok(api(app, client, "alice", command="listVolumes", projectid=p["id"]))["volume"]
    assert [v["virtualmachineid"] for v in vols] == [vm["id"]] and vols[0]["projectid"] == p["id"]
    # bob is no member: the project is "not found" for him, and so are its objects.
    for args in ({"command": "listVirtualMachines", "projectid": p["id"]},
                 {"command": "stopVirtualMachine", "id": vm["id"]},
                 {"command": "listProjectAccounts", "projectid": p["id"]}):
        status, body = api(app, client, "bob", **args)
        assert status == 431, (args, body)
    assert ok(api(app, client, "bob", command="listProjects")) == {}
    # Added (invitations are off: at once), bob sees and acts on the project's VM.
    assert job(app, client, "alice", command="addAccountToProject", projectid=p["id"], account="bob")[0] == 1
    members = ok(api(app, client, "alice", command="listProjectAccounts", projectid=p["id"]))["projectaccount"]
    assert {m["account"]: m["role"] for m in members} == {"alice": "Admin", "bob": "Regular"}
    assert [x["id"] for x in ok(api(app, client, "bob", command="listProjects"))["project"]] == [p["id"]]
    assert ids(ok(api(app, client, "bob", command="listVirtualMachines", projectid=p["id"]))) == [vm["id"]]
    assert job(app, client, "bob", command="stopVirtualMachine", id=vm["id"])[0] == 1
    # A Regular member does not manage the project.
    assert api(app, client, "bob", command="addAccountToProject", projectid=p["id"], account="admin")[0] == 531
    assert api(app, client, "bob", command="deleteProject", id=p["id"])[0] == 531
    # Bad input: 431, nothing changes.
    for args in ({"account": "bob"}, {"account": "nobody"}):
        assert api(app, client, "alice", command="addAccountToProject", projectid=p["id"], **args)[0] in (200, 431)
    status, result = job(app, client, "alice", command="addAccountToProject", projectid=p["id"], account="bob")
    assert status == 2 and result["errorcode"] == 431
    status, result = job(app, client, "alice", command="deleteAccountFromProject", projectid=p["id"],
                         account="alice")
    assert status == 2 and "only admin" in result["errortext"]
    # Removed, bob loses it again.
    assert job(app, client, "alice", command="deleteAccountFromProject", projectid=p["id"], account="bob")[0] == 1
    assert api(app, client, "bob", command="listVirtualMachines", projectid=p["id"])[0] == 431
    # The root admin sees the project's VM only when naming projects, as CloudStack lists.
    assert vm["id"] not in ids(ok(api(app, client, "admin", command="listVirtualMachines", listall="true")))
    assert vm["id"] in ids(ok(api(app, client, "admin", command="listVirtualMachines", projectid="-1")))


def test_names_update_and_bad_input(app, client, world):
    p = make_project(app, client)
    status, body = api(app, client, "bob", command="createProject", name="WEB")
    assert status == 431 and "already exists" in body["errortext"]  # names are unique per domain
    assert api(app, client, "alice", command="createProject", name="")[0] == 431
    assert api(app, client, "alice", command="createProject", name="x", account="bob")[0] == 531
    status, result = job(app, client, "alice", command="updateProject", id=p["id"], displaytext="New text")
    assert status == 1 and result["project"]["displaytext"] == "New text"
    assert job(app, client, "alice", command="updateProject", id=p["id"], account="bob")[0] == 1
    owners = ok(api(app, client, "alice", command="listProjectAccounts", projectid=p["id"], role="Admin"))
    assert [m["account"] for m in owners["projectaccount"]] == ["bob"]
    # Deploying with both account and projectid is refused.
    status, body = api(app, client, "admin", command="deployVirtualMachine", zoneid=world.zone,
                       serviceofferingid=world.small, templateid=world.template, projectid=p["id"], account="bob")
    assert status == 431
    with app.app_context():
        assert db.session.query(Project).count() == 1


def test_suspend_stops_and_blocks_then_activate(app, client, world):
    p = make_project(app, client)
    vm = deploy(app, client, world, projectid=p["id"])
    status, result = job(app, client, "alice", command="suspendProject", id=p["id"])
    assert status == 1 and result["project"]["state"] == "Suspended"
    with app.app_context():
        assert db.session.scalar(select(VirtualMachine.state).where(VirtualMachine.uuid == vm["id"])) == "Stopped"
    status, body = api(app, client, "alice", command="deployVirtualMachine", zoneid=world.zone,
                       serviceofferingid=world.small, templateid=world.template, projectid=p["id"])
    assert status == 531 and "not in Active state" in body["errortext"]
    listed = ok(api(app, client, "alice", command="listProjects", state="Suspended"))["project"]
    assert [x["id"] for x in listed] == [p["id"]]
    status, result = job(app, client, "alice", command="activateProject", id=p["id"])
    assert status == 1 and result["project"]["state"] == "Active"
    deploy(app, client, world, projectid=p["id"])


def test_project_limits_are_its_own(app, client, world):
    p = make_project(app, client)
    ok(api(app, client, "admin", command="updateResourceLimit", projectid=p["id"], resourcetype=0, max=1))
    deploy(app, client, world, projectid=p["id"])
    status, body = api(app, client, "alice", command="deployVirtualMachine", zoneid=world.zone,
                       serviceofferingid=world.small, templateid=world.template, projectid=p["id"])
    assert status == 532, body
    deploy(app, client, world)  # alice's own count is untouched
    limits = ok(api(app, client, "alice", command="listResourceLimits", projectid=p["id"],
                    resourcetype=0))["resourcelimit"]
    assert limits[0]["max"] == 1 and limits[0]["projectid"] == p["id"]
    listed = ok(api(app, client, "alice", command="listProjects", id=p["id"]))["project"][0]
    assert listed["vmtotal"] == 1 and listed["vmlimit"] == "1"


def test_delete(app, client, world):
    p = make_project(app, client)
    vm = deploy(app, client, world, projectid=p["id"])
    status, result = job(app, client, "alice", command="deleteProject", id=p["id"])
    assert status == 2 and "still owns" in result["errortext"]
    assert job(app, client, "alice", command="destroyVirtualMachine", id=vm["id"], expunge="true")[0] == 1
    assert job(app, client, "alice", command="deleteProject", id=p["id"])[0] == 1
    assert ok(api(app, client, "alice", command="listProjects")) == {}
    assert api(app, client, "alice", command="listVirtualMachines", projectid=p["id"])[0] == 431
    make_project(app, client)  # the name is free again


def test_the_project_limit_holds_under_parallel_creates(app, client, world):
    """8 parallel createProject by alice at max.project.projects=2: exactly 2 projects."""
    import threading

    from app.services import accounts, projects, settings
    with app.app_context():
        settings.update("max.project.projects", "2")
    results, lock = [], threading.Lock()

    def one(i):
        with app.app_context():
            try:
                projects.create_project(accounts.get_user("alice"), f"race{i}")
                out = "ok"
            except Exception as e:  # noqa: BLE001
                db.session.rollback()
                out = getattr(e, "code", repr(e))
            finally:
                db.session.remove()
            with lock:
                results.append(out)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 2 and results.count(532) == 6, results
    with app.app_context():
        assert len(db.session.scalars(select(Project).where(Project.name.like("race%"))).all()) == 2

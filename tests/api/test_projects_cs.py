"""Projects with the real `cs` client (async jobs on a real huey consumer) and Libcloud's
ex_list_projects: create, list, update, members, a VM and a volume in the project, suspend
(its VM stops), activate, delete."""
from __future__ import annotations

import pytest

from tests.api.test_domains_cs import err
from tests.api.test_templates_cs import files  # noqa: F401  (fixture)
from tests.api.test_vms_cs import simulator_zone

import libcloud  # noqa: E402  (requirements-test.txt pins apache-libcloud: a missing one is a failure, not a skip)
from libcloud.compute.providers import Provider, get_driver  # noqa: E402

pytestmark = pytest.mark.xdist_group("live-api")


def test_projects_with_cs_and_libcloud(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(fetch_result=True), live.client("alice", fetch_result=True)
    zone, _hosts, template, offering = simulator_zone(api, files, tmp_path)
    p = alice.createProject(name="web", displaytext="Web team")["project"]
    assert p["state"] == "Active" and p["account"] == "alice"
    p = alice.updateProject(id=p["id"], displaytext="The web team")["project"]
    assert p["displaytext"] == "The web team"
    vm = alice.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"], serviceofferingid=offering["id"],
                                    projectid=p["id"], name="pvm")["virtualmachine"]
    assert vm["projectid"] == p["id"] and vm["project"] == "web"
    disk = api.createDiskOffering(name="d1", displaytext="1 GiB", disksize=1)["diskoffering"]
    vol = alice.createVolume(zoneid=zone["id"], diskofferingid=disk["id"], name="pdata",
                             projectid=p["id"])["volume"]
    assert vol["projectid"] == p["id"]
    assert alice.listVirtualMachines() == {}  # lists skip projects unless named
    assert [v["id"] for v in alice.listVirtualMachines(projectid=p["id"])["virtualmachine"]] == [vm["id"]]
    assert alice.addAccountToProject(projectid=p["id"], account="admin")["success"] is True
    roles = {m["account"]: m["role"] for m in alice.listProjectAccounts(projectid=p["id"])["projectaccount"]}
    assert roles == {"alice": "Admin", "admin": "Regular"}
    # Libcloud: the driver's own call.
    key, secret = live.keys("alice")
    driver = get_driver(Provider.CLOUDSTACK)(key, secret, secure=False, url=live.url)
    projects = driver.ex_list_projects()
    assert [(x.id, x.name, x.display_text) for x in projects] == [(p["id"], "web", "The web team")]
    assert projects[0].extra["account"] == "alice"
    # Suspend stops the VM; activate; delete needs the project's resources gone first.
    assert alice.suspendProject(id=p["id"])["project"]["state"] == "Suspended"
    assert alice.listVirtualMachines(projectid=p["id"], id=vm["id"])["virtualmachine"][0]["state"] == "Stopped"
    assert alice.activateProject(id=p["id"])["project"]["state"] == "Active"
    assert alice.deleteAccountFromProject(projectid=p["id"], account="admin")["success"] is True
    assert err(lambda: alice.deleteProject(id=p["id"]))["errorcode"] == 536
    alice.destroyVirtualMachine(id=vm["id"], expunge=True)
    alice.deleteVolume(id=vol["id"])
    assert alice.deleteProject(id=p["id"])["success"] is True
    assert alice.listProjects() == {}


def test_project_invitations_with_cs(live):
    """project.invite.required on: addAccountToProject invites; the invitee lists, accepts;
    a second invitation is declined; the project's admin deletes a pending one."""
    api, alice = live.client(fetch_result=True), live.client("alice", fetch_result=True)
    api.updateConfiguration(name="project.invite.required", value="true")
    p = alice.createProject(name="invited", displaytext="Invitations")["project"]
    assert alice.addAccountToProject(projectid=p["id"], account="admin", roletype="Regular")["success"] is True
    assert [m["account"] for m in alice.listProjectAccounts(projectid=p["id"])["projectaccount"]] == ["alice"]
    inv = api.listProjectInvitations(activeonly=True)["projectinvitation"]
    assert [(i["projectid"], i["account"], i["state"]) for i in inv] == [(p["id"], "admin", "Pending")]
    assert err(lambda: alice.addAccountToProject(projectid=p["id"], account="admin"))["errorcode"] == 431
    assert api.updateProjectInvitation(projectid=p["id"], accept=True)["success"] is True
    roles = {m["account"]: m["role"] for m in alice.listProjectAccounts(projectid=p["id"])["projectaccount"]}
    assert roles == {"alice": "Admin", "admin": "Regular"}
    assert alice.listProjectInvitations(projectid=p["id"])["projectinvitation"][0]["state"] == "Completed"
    # Declined, then a pending one deleted by the project's admin.
    assert alice.deleteAccountFromProject(projectid=p["id"], account="admin")["success"] is True
    alice.addAccountToProject(projectid=p["id"], account="admin")
    assert api.updateProjectInvitation(projectid=p["id"], accept=False)["success"] is True
    alice.addAccountToProject(projectid=p["id"], account="admin")
    pending = alice.listProjectInvitations(projectid=p["id"], state="Pending")["projectinvitation"]
    assert alice.deleteProjectInvitation(id=pending[0]["id"])["success"] is True
    states = sorted(i["state"] for i in alice.listProjectInvitations(projectid=p["id"])["projectinvitation"])
    assert states == ["Completed", "Declined"]
    assert [m["account"] for m in alice.listProjectAccounts(projectid=p["id"])["projectaccount"]] == ["alice"]

"""Roles and the account commands with the real `cs` client: a custom role's rules (deny,
wildcard, order) applied to its account's calls and to listApis; createAccount with roleid,
updateAccount, disableAccount (lock and disable: its VMs stop), enableAccount, lockAccount,
moveUser, deleteAccount (async, everything of the account gone)."""
from __future__ import annotations

import pytest
from cs import CloudStack, CloudStackApiException

from tests.api.test_templates_cs import files, wait_status  # noqa: F401  (fixture)
from tests.api.test_vms_cs import deploy, simulator_zone

pytestmark = pytest.mark.xdist_group("live-api")


def err(call):
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def test_roles_and_rules(live):
    api, alice = live.client(), live.client("alice")
    assert api.listCapabilities()["capability"]["dynamicrolesenabled"] is True
    defaults = {r["name"]: r for r in api.listRoles()["role"]}
    assert set(defaults) == {"Root Admin", "Resource Admin", "Domain Admin", "User"}
    assert api.listRoles(type="User")["role"][0]["name"] == "User"
    role = api.createRole(name="Readers", type="User", description="only reads")["role"]
    assert role["description"] == "only reads" and role["isdefault"] is False
    allow = api.createRolePermission(roleid=role["id"], rule="list*", permission="allow")["rolepermission"]
    deny = api.createRolePermission(roleid=role["id"], rule="*", permission="deny")["rolepermission"]
    acct = api.listAccounts(name="alice")["account"][0]
    api.updateAccount(id=acct["id"], roleid=role["id"])

    assert alice.listZones() == {} and alice.listVirtualMachines() == {}
    e = err(lambda: alice.createSSHKeyPair(name="k"))
    assert e["errorcode"] == 432 and "createSSHKeyPair" in e["errortext"]
    names = {a["name"] for a in alice.listApis()["api"]}
    assert "listZones" in names and "createSSHKeyPair" not in names and "listRoles" not in names

    # The deny first: nothing at all, not even lists.
    api.updateRolePermission(roleid=role["id"], ruleorder=f"{deny['id']},{allow['id']}")
    assert err(lambda: alice.listZones())["errorcode"] == 432
    api.updateRolePermission(roleid=role["id"], ruleid=deny["id"], permission="allow")
    assert alice.createSSHKeyPair(name="k")["keypair"]["name"] == "k"
    # A rule never opens a command beyond the role's type: "*" allowed, still no admin commands.
    assert err(lambda: alice.createZone(name="Z", networktype="Basic", dns1="1.1.1.1",
                                        internaldns1="1.1.1.1"))["errorcode"] == 432
    perms = api.listRolePermissions(roleid=role["id"])["rolepermission"]
    assert [(p["rule"], p["permission"]) for p in perms] == [("*", "allow"), ("list*", "allow")]
    api.deleteRolePermission(id=deny["id"])
    api.updateAccount(id=acct["id"], roleid=defaults["User"]["id"])
    assert api.deleteRole(id=role["id"]) == {"success": True}
    assert api.listRoles(name="Readers") == {}


def test_account_commands(live, files, tmp_path):
    api = live.client()
    z, hs, t, so = simulator_zone(api, files, tmp_path, hosts=1)
    ops = api.createRole(name="Ops", type="User")["role"]
    acct = api.createAccount(username="carol", password="Carol-long-pass-1", email="c@x", firstname="C",
                             lastname="D", roleid=ops["id"])["account"]
    assert (acct["rolename"], acct["roletype"], acct["accounttype"]) == ("Ops", "User", 0)
    user = acct["user"][0]
    keys = api.registerUserKeys(id=user["id"])["userkeys"]
    carol = CloudStack(endpoint=live.url, key=keys["apikey"], secret=keys["secretkey"], poll_interval=0.2)
    vm = deploy(carol, z, t, so)
    assert vm["state"] == "Running"

    acct = api.updateAccount(id=acct["id"], newname="carol2", networkdomain="carol.example")["account"]
    assert (acct["name"], acct["networkdomain"]) == ("carol2", "carol.example")
    assert err(lambda: api.updateAccount(id=acct["id"], networkdomain="-bad-"))["errorcode"] == 431
    assert err(lambda: api.updateAccount(account="nobody", domainid=acct["domainid"], newname="x"))["errorcode"] == 431

    # Lock: no more calls, the VM runs on.
    locked = api.disableAccount(id=acct["id"], lock=True, fetch_result=True)["account"]
    assert locked["state"] == "locked"
    assert err(lambda: carol.listVirtualMachines())["errorcode"] == 401
    assert api.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["state"] == "Running"
    assert api.enableAccount(id=acct["id"])["account"]["state"] == "enabled"
    assert carol.listVirtualMachines()["count"] == 1
    # Disable: its VMs stop.
    disabled = api.disableAccount(id=acct["id"], lock=False, fetch_result=True)["account"]
    assert disabled["state"] == "disabled"
    assert api.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["state"] == "Stopped"
    api.enableAccount(account="carol2", domainid=acct["domainid"])
    assert api.lockAccount(account="carol2", domainid=acct["domainid"])["account"]["state"] == "locked"
    api.enableAccount(id=acct["id"])
    assert err(lambda: api.disableAccount(id=api.listAccounts(name="admin")["account"][0]["id"],
                                          lock=True))["errorcode"] == 431

    # moveUser: dave goes from carol2 to alice's account.
    dave = api.createUser(username="dave", password="Dave-long-pass-12", account="carol2", email="d@x",
                          firstname="D", lastname="E")["user"]
    assert api.moveUser(id=dave["id"], account="alice") == {"success": True}
    assert api.listUsers(id=dave["id"])["user"][0]["account"] == "alice"
    assert err(lambda: api.moveUser(id=dave["id"], account="alice"))["errorcode"] == 431
    assert err(lambda: api.moveUser(id=dave["id"]))["errorcode"] == 431

    # deleteAccount: async, everything of it gone, the name free again.
    job = api.deleteAccount(id=acct["id"], fetch_result=True)
    assert job.get("success") in (True, "true")
    assert api.listAccounts(name="carol2") == {}
    assert api.listVirtualMachines(listall=True, id=vm["id"]) == {}
    assert err(lambda: carol.listZones())["errorcode"] == 401
    again = api.createAccount(username="carol", password="Carol-long-pass-2", email="c@x", firstname="C",
                              lastname="D", account="carol2")["account"]
    assert again["name"] == "carol2" and again["rolename"] == "User"

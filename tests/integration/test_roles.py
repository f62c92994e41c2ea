"""Dynamic roles: the default roles, a custom role whose rules deny commands (refused on the
API with CloudStack's 432 and on the pages: no button, 403 on POST), first matching rule
wins in order, bad input changes nothing, and a change made through one app instance is seen
at once by another (the per-process cache follows the role's version)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app import create_app
from app.extensions import db
from app.models import AccountRole, RolePermission
from app.services import accounts, roles
from tests.integration.test_quotas import api
from tests.integration.test_vm_pages import _engines, deploy, post, world  # noqa: F401  (fixtures)



def snapshot(app) -> tuple:
    with app.app_context():
        return (tuple(db.session.execute(select(AccountRole.uuid, AccountRole.name, AccountRole.role_type,
                                                AccountRole.description, AccountRole.removed)
                                         .order_by(AccountRole.id)).all()),
                tuple(db.session.execute(select(RolePermission.uuid, RolePermission.rule, RolePermission.permission,
                                                RolePermission.sort_order).order_by(RolePermission.id)).all()),
                tuple(db.session.execute(select(func.count()).select_from(AccountRole)).all()))


def ok(app, client, user="admin", **params) -> dict:
    status, body = api(app, client, user, **params)
    assert status == 200, body
    return body


@pytest.mark.db
def test_default_roles(app, client, users):
    body = ok(app, client, command="listRoles")
    by_name = {r["name"]: r for r in body["role"]}
    assert {n: r["type"] for n, r in by_name.items()} == {
        "Root Admin": "Admin", "Resource Admin": "ResourceAdmin", "Domain Admin": "DomainAdmin", "User": "User"}
    assert all(r["isdefault"] for r in by_name.values())
    rules = ok(app, client, command="listRolePermissions", roleid=by_name["User"]["id"])["rolepermission"]
    names = {r["rule"] for r in rules}
    assert {"deployVirtualMachine", "listZones", "listRoles"} - names == {"listRoles"}  # listRoles: admins
    assert "createZone" not in names and all(r["permission"] == "allow" for r in rules)
    admin_rules = ok(app, client, command="listRolePermissions", roleid=by_name["Root Admin"]["id"])
    assert [r["rule"] for r in admin_rules["rolepermission"]] == ["*"]
    # Accounts and users carry their role.
    alice = ok(app, client, command="listAccounts", name="alice")["account"][0]
    assert (alice["roleid"], alice["rolename"], alice["roletype"], alice["accounttype"]) == (
        by_name["User"]["id"], "User", "User", 0)
    assert alice["user"][0]["rolename"] == "User"
    admin = ok(app, client, command="listUsers", username="admin")["user"][0]
    assert (admin["rolename"], admin["roletype"], admin["accounttype"]) == ("Root Admin", "Admin", 1)
    # Users see no Admin-type role and may not list roles at all (an admins' command).
    status, body = api(app, client, "alice", command="listRoles")
    assert status == 432 and body["errortext"] == "The API [listRoles] does not exist or is not available " \
                                                  "for the account alice."
    # Default roles cannot be changed.
    before = snapshot(app)
    for params in ({"command": "updateRole", "id": by_name["User"]["id"], "description": "x"},
                   {"command": "deleteRole", "id": by_name["User"]["id"]},
                   {"command": "createRolePermission", "roleid": by_name["User"]["id"], "rule": "listZones",
                    "permission": "deny"}):
        status, body = api(app, client, "admin", **params)
        assert status == 531, body
    assert snapshot(app) == before


def test_custom_role_denies_on_api_and_pages(app, client, users, world, auth):
    vm = deploy(app, world, name="web1")
    role = ok(app, client, command="createRole", name="No destroy", type="User",
              description="Users who may not destroy")["role"]
    assert (role["type"], role["isdefault"]) == ("User", False)
    deny = ok(app, client, command="createRolePermission", roleid=role["id"], rule="destroyVirtualMachine",
              permission="deny", description="keep VMs")["rolepermission"]
    assert (deny["rule"], deny["permission"], deny["rolename"]) == ("destroyVirtualMachine", "deny", "No destroy")
    alice_acct = ok(app, client, command="listAccounts", name="alice")["account"][0]
    body = ok(app, client, command="updateAccount", id=alice_acct["id"], roleid=role["id"])
    assert body["account"]["rolename"] == "No destroy" and body["account"]["roletype"] == "User"

    status, body = api(app, client, "alice", command="destroyVirtualMachine", id=vm)
    assert status == 432 and body["errortext"] == ("The API [destroyVirtualMachine] does not exist or is not "
                                                   "available for the account alice.")
    apis = {a["name"] for a in ok(app, client, "alice", command="listApis")["api"]}
    assert "destroyVirtualMachine" not in apis and "stopVirtualMachine" in apis and "createZone" not in apis
    # Not named by a rule: the command's own declaration decides (users may stop their VMs).
    assert ok(app, client, "alice", command="listVirtualMachines")["count"] == 1

    # The pages: no Destroy button, and a POST is refused.
    auth.login("alice")
    page = client.get(f"/vms/{vm}").get_data(as_text=True)
    assert f"/vms/{vm}/destroy" not in page and f"/vms/{vm}/stop" in page
    assert post(client, auth, f"/vms/{vm}/destroy").status_code == 403
    with app.app_context():
        assert accounts.get_user("alice") is not None
    # First matching rule wins, in order: "*Virtual*" allowed before the deny lets it through.
    allow = ok(app, client, command="createRolePermission", roleid=role["id"], rule="*Virtual*",
               permission="allow")["rolepermission"]
    status, _ = api(app, client, "alice", command="destroyVirtualMachine", id=vm)
    assert status == 432  # the deny is still first
    ok(app, client, command="updateRolePermission", roleid=role["id"], ruleorder=f"{allow['id']},{deny['id']}")
    rules = ok(app, client, command="listRolePermissions", roleid=role["id"])["rolepermission"]
    assert [r["rule"] for r in rules] == ["*Virtual*", "destroyVirtualMachine"]
    assert f"/vms/{vm}/destroy" in client.get(f"/vms/{vm}").get_data(as_text=True)
    # One rule's permission changed: the deny becomes an allow, and "*Virtual*" a deny.
    ok(app, client, command="updateRolePermission", roleid=role["id"], ruleid=allow["id"], permission="deny")
    status, _ = api(app, client, "alice", command="listVirtualMachines")
    assert status == 432
    ok(app, client, command="deleteRolePermission", id=allow["id"])
    assert ok(app, client, "alice", command="listVirtualMachines")["count"] == 1

    # The role is in use: it cannot be deleted nor change its type; cloned, it brings its rules.
    before = snapshot(app)
    for params, code in (({"command": "deleteRole", "id": role["id"]}, 531),
                         ({"command": "updateRole", "id": role["id"], "type": "DomainAdmin"}, 531)):
        status, body = api(app, client, "admin", **params)
        assert status == code, body
    assert snapshot(app) == before
    clone = ok(app, client, command="createRole", name="No destroy 2", roleid=role["id"])["role"]
    assert clone["type"] == "User"
    assert [r["rule"] for r in ok(app, client, command="listRolePermissions", roleid=clone["id"])["rolepermission"]] \
        == ["destroyVirtualMachine"]
    renamed = ok(app, client, command="updateRole", id=clone["id"], name="Keepers", type="DomainAdmin")["role"]
    assert (renamed["name"], renamed["type"]) == ("Keepers", "DomainAdmin")
    assert ok(app, client, command="deleteRole", id=clone["id"]) == {"success": True}
    assert "Keepers" not in {r["name"] for r in ok(app, client, command="listRoles")["role"]}


@pytest.mark.db
def test_bad_input_changes_nothing(app, client, users):
    role = ok(app, client, command="createRole", name="Custom", type="User")["role"]
    perm = ok(app, client, command="createRolePermission", roleid=role["id"], rule="list*",
              permission="allow")["rolepermission"]
    before = snapshot(app)
    random = "5e1f0000-0000-4000-8000-00000000abcd"
    cases = [
        ({"command": "createRole", "name": "X"}, 431),                      # neither type nor roleid
        ({"command": "createRole", "name": "X", "type": "Wizard"}, 431),
        ({"command": "createRole", "name": "X", "type": "User", "roleid": role["id"]}, 431),
        ({"command": "createRole", "name": "custom", "type": "User"}, 431),  # names are unique
        ({"command": "createRole", "name": "X", "roleid": random}, 431),
        ({"command": "updateRole", "id": random, "name": "Y"}, 431),
        ({"command": "createRolePermission", "roleid": role["id"], "rule": "list Zones", "permission": "allow"}, 431),
        ({"command": "createRolePermission", "roleid": role["id"], "rule": "noSuchApi", "permission": "allow"}, 431),
        ({"command": "createRolePermission", "roleid": role["id"], "rule": "listZones", "permission": "maybe"}, 431),
        ({"command": "createRolePermission", "roleid": role["id"], "rule": "list*", "permission": "deny"}, 531),
        ({"command": "updateRolePermission", "roleid": role["id"], "ruleorder": random}, 431),
        ({"command": "updateRolePermission", "roleid": role["id"]}, 431),
        ({"command": "updateRolePermission", "roleid": role["id"], "ruleid": perm["id"], "permission": "x"}, 431),
        ({"command": "deleteRolePermission", "id": random}, 431),
        ({"command": "createAccount", "username": "carol", "password": "Carol-long-pass-1", "email": "c@x",
          "firstname": "C", "lastname": "D", "roleid": role["id"], "accounttype": 1}, 431),
    ]
    for params, code in cases:
        status, body = api(app, client, "admin", **params)
        assert status == code, (params, body)
    # Users may not touch roles at all.
    for params in ({"command": "createRole", "name": "Mine", "type": "Admin"},
                   {"command": "deleteRolePermission", "id": perm["id"]}):
        status, body = api(app, client, "alice", **params)
        assert status == 432, body
    assert snapshot(app) == before
    with app.app_context():
        assert accounts.get_user("carol") is None


@pytest.mark.db
def test_account_with_a_role_and_role_changes(app, client, users):
    role = ok(app, client, command="createRole", name="Ops", type="DomainAdmin")["role"]
    acct = ok(app, client, command="createAccount", username="carol", password="Carol-long-pass-1", email="c@x",
              firstname="C", lastname="D", roleid=role["id"], networkdomain="corp.example")["account"]
    assert (acct["rolename"], acct["roletype"], acct["accounttype"], acct["networkdomain"]) == (
        "Ops", "DomainAdmin", 2, "corp.example")
    # A root admin role only for root admin accounts (and back).
    admin_role = next(r for r in ok(app, client, command="listRoles")["role"] if r["name"] == "Root Admin")
    status, body = api(app, client, "admin", command="updateAccount", id=acct["id"], roleid=admin_role["id"])
    assert status == 531, body
    with app.app_context():
        carol = accounts.get_account("carol")
        assert carol.role_type == "DomainAdmin" and not carol.is_admin


@pytest.mark.db
def test_role_change_seen_by_another_app_instance(app, client, users):
    """Two app instances on one database (two web processes): a rule added through the first
    is applied by the second at its next call, with no query per call while nothing changes."""
    role = ok(app, client, command="createRole", name="Watchers", type="User")["role"]
    alice = ok(app, client, command="listAccounts", name="alice")["account"][0]
    ok(app, client, command="updateAccount", id=alice["id"], roleid=role["id"])
    other = create_app({"INSTANCE_PATH": app.instance_path, "DATABASE_URL": app.config["DATABASE_URL"],
                        "SECRET_KEY": app.config["SECRET_KEY"], "TESTING": True, "SEED_DEMO": False,
                        "JOBS_IMMEDIATE": True})
    second = other.test_client()
    assert api(other, second, "alice", command="listZones")[0] == 200
    ok(app, client, command="createRolePermission", roleid=role["id"], rule="listZones", permission="deny")
    assert api(other, second, "alice", command="listZones")[0] == 432
    perm = ok(app, client, command="listRolePermissions", roleid=role["id"])["rolepermission"][0]
    ok(app, client, command="deleteRolePermission", id=perm["id"])
    assert api(other, second, "alice", command="listZones")[0] == 200
    with other.app_context():
        db.engine.dispose()


def test_the_check_costs_no_query(app, users):
    """With the role's rules cached, checking a command runs no SQL."""
    from sqlalchemy import event

    from app.api.registry import lookup
    with app.app_context():
        user = accounts.get_user("alice")
        cmd = lookup("listZones")
        assert roles.allowed(user, cmd)
        statements = []
        listener = lambda *a, **k: statements.append(a[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            for _ in range(10):
                assert roles.allowed(user, cmd)
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        assert statements == []


def test_role_pages(app, client, users, auth):
    auth.login("admin")
    page = client.get("/admin/roles/").get_data(as_text=True)
    assert "Root Admin" in page and "Domain Admin" in page and 'href="/admin/roles/"' in page
    token = auth.csrf("/admin/roles/new")
    resp = client.post("/admin/roles/new", data={"csrf_token": token, "name": "Auditors", "type": "User",
                                                 "source": "", "description": "read only"})
    assert resp.status_code == 302
    with app.app_context():
        role = db.session.scalar(select(AccountRole).where(AccountRole.name == "Auditors"))
        url = f"/admin/roles/{role.uuid}"
    assert resp.location == url
    for rule, permission in (("list*", "allow"), ("*", "deny")):
        resp = client.post(f"{url}/rules", data={"csrf_token": auth.csrf(url), "rule": rule, "permission": permission})
        assert resp.status_code == 302
    resp = client.post(f"{url}/rules", data={"csrf_token": auth.csrf(url), "rule": "bad rule!", "permission": "allow"})
    assert resp.status_code == 422 and "Only API names and wildcards are allowed" in resp.get_data(as_text=True)
    with app.app_context():
        perms = roles.list_permissions(accounts.get_user("admin"), db.session.get(AccountRole, role.id))
        assert [(p.rule, p.permission) for p in perms] == [("list*", "allow"), ("*", "deny")]
        star = perms[1].uuid
    assert client.post(f"{url}/rules/{star}/up", data={"csrf_token": auth.csrf(url)}).status_code == 302
    assert client.post(f"{url}/rules/{star}/allow", data={"csrf_token": auth.csrf(url)}).status_code == 302
    with app.app_context():
        perms = roles.list_permissions(accounts.get_user("admin"), db.session.get(AccountRole, role.id))
        assert [(p.rule, p.permission) for p in perms] == [("*", "allow"), ("list*", "allow")]
    resp = client.post(f"{url}/edit", data={"csrf_token": auth.csrf(url), "name": "Auditors 2", "type": "User",
                                            "description": ""})
    assert resp.status_code == 302 and "Auditors 2" in client.get(url).get_data(as_text=True)
    # Users get no role pages.
    auth.logout()
    auth.login("alice")
    assert client.get("/admin/roles/").status_code == 403
    assert client.get(url).status_code == 403
    auth.logout()
    auth.login("admin")
    assert client.post(f"{url}/delete", data={"csrf_token": auth.csrf(url)}).status_code == 302
    assert client.get(url).status_code == 404


def test_pages_follow_the_role_rules(app, client, users, world, auth):
    """A role denying listVolumes (and listSSHKeyPairs): the Volumes and SSH keys pages are 403,
    their nav entries gone, their actions refused; the other pages stay. Every page's command
    is a real API command (a typo would hide a page from everyone)."""
    from app.web import PAGE_COMMANDS
    with app.app_context():
        missing = [n for n in PAGE_COMMANDS.values() if roles.command(n) is None]
    assert not missing, missing
    role = ok(app, client, command="createRole", name="No volumes", type="User")["role"]
    for rule in ("listVolumes", "listSSHKeyPairs"):
        ok(app, client, command="createRolePermission", roleid=role["id"], rule=rule, permission="deny")
    alice_acct = ok(app, client, command="listAccounts", name="alice")["account"][0]
    ok(app, client, command="updateAccount", id=alice_acct["id"], roleid=role["id"])
    auth.login("alice")
    home = client.get("/portal/")
    assert home.status_code == 200
    html = home.get_data(as_text=True).split('<nav class="mainnav"')[1]
    assert 'href="/volumes/"' not in html and 'href="/portal/keys/"' not in html
    assert 'href="/snapshots/"' in html  # another page's entry stays
    for url in ("/volumes/", "/portal/keys/"):
        assert client.get(url).status_code == 403, url
    assert post(client, auth, "/portal/keys/new", {"name": "k"}).status_code == 403
    assert client.get("/snapshots/").status_code == 200
    # The default User role sees them all.
    ok(app, client, command="updateAccount", id=alice_acct["id"],
       roleid=ok(app, client, command="listRoles", name="User")["role"][0]["id"])
    html = client.get("/portal/").get_data(as_text=True)
    assert 'href="/volumes/"' in html and client.get("/volumes/").status_code == 200

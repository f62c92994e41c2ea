"""Projects in the portal (Simulator zone): the navigation's project switcher scopes every
list and every create to the project (a member sees the project's VMs only under the
project, a non-member can neither switch to it nor open it); the projects page (my
projects, my invitations: accept, decline; create), a project's page (members with roles,
add and remove, invitations, usage against its limits); each page checked against the role
rules of the API command it stands for."""
from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import AccountRole, Permission, Project, RolePermission, VirtualMachine
from app.services import access, accounts, projects, roles, vms
from tests.integration.test_domains import job, ok
from tests.integration.test_quotas import api
from tests.integration.test_vm_pages import _engines, world  # noqa: F401  (fixtures)


def _project_with_vms(app, world):
    """alice's project "web" with its VM "pvm"; alice's own VM "own"."""
    with app.app_context():
        alice = accounts.get_user("alice")
        p = projects.create_project(alice, "web", "Web team")
        access.enter_scope(alice, p.uuid, listing=False)
        try:
            vms.deploy(alice, zone_uuid=world.zone, service_offering_uuid=world.small, template_uuid=world.template,
                       name="pvm")
        finally:
            access.leave_scope()
        vms.deploy(alice, zone_uuid=world.zone, service_offering_uuid=world.small, template_uuid=world.template,
                   name="own")
        return p.uuid


def switch(client, auth, project=""):
    return client.post("/projects/switch", data={"csrf_token": auth.csrf(), "project": project})


def test_the_switcher_scopes_lists_and_creations(app, client, auth, world):
    p = _project_with_vms(app, world)
    auth.login("alice")
    page = client.get("/portal/").get_data(as_text=True)
    assert "Default view" in page and "Project: web" in page  # the switcher in the navigation
    # The default view: her own VMs only. (A name as the list shows it, ">pvm<": bare, "pvm" was
    # once found inside the page's random CSRF token.)
    assert ">own<" in page and ">pvm<" not in page
    assert switch(client, auth, p).status_code == 302
    page = client.get("/portal/").get_data(as_text=True)
    assert "VMs of the project web" in page and "pvm" in page and ">own<" not in page
    assert "Usage against the project&#39;s limits" in page
    listed = client.get("/vms/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "pvm" in listed and ">own<" not in listed
    # A key pair made under the project is the project's.
    r = client.post("/portal/keys/new", data={"csrf_token": auth.csrf(), "name": "team-key", "keytype": "ed25519"})
    assert r.status_code in (200, 302, 303), r.status_code
    with app.app_context():
        from app.models import SSHKeyPair
        key = db.session.scalar(select(SSHKeyPair).where(SSHKeyPair.name == "team-key"))
        project = db.session.scalar(select(Project).where(Project.uuid == p))
        assert key is not None and key.account_id == project.account_id
    # Back to the default view.
    switch(client, auth, "")
    page = client.get("/portal/").get_data(as_text=True)
    assert ">own<" in page and ">pvm<" not in page


def test_a_non_member_gets_nothing(app, client, auth, world):
    p = _project_with_vms(app, world)
    auth.login("bob")
    page = client.get("/portal/").get_data(as_text=True)
    assert "Project: web" not in page and ">pvm<" not in page
    assert switch(client, auth, p).status_code == 404
    assert client.get(f"/projects/{p}").status_code == 404
    assert "web" not in client.get("/projects/").get_data(as_text=True)
    with app.app_context():
        vm = db.session.scalar(select(VirtualMachine.uuid).where(VirtualMachine.name == "pvm"))
    assert client.get(f"/vms/{vm}").status_code == 404
    r = client.post(f"/projects/{p}/members", data={"csrf_token": auth.csrf(), "account": "bob",
                                                     "roletype": "Regular"})
    assert r.status_code == 404


def test_project_pages_members_and_invitations(app, client, auth, world):
    auth.login("alice")
    r = client.post("/projects/new", data={"csrf_token": auth.csrf(), "name": "ops", "displaytext": "Ops"})
    assert r.status_code == 302, r.get_data(as_text=True)
    with app.app_context():
        p = db.session.scalar(select(Project.uuid).where(Project.name == "ops"))
    page = client.get(f"/projects/{p}").get_data(as_text=True)
    assert "Project ops" in page and "alice" in page and "Admin" in page and "Resources against" in page
    # Bad input: the form comes back with the service's refusal (422), nothing added.
    r = client.post(f"/projects/{p}/members", data={"csrf_token": auth.csrf(), "account": "nobody",
                                                     "roletype": "Regular"})
    assert r.status_code == 422 and "Unable to find account" in r.get_data(as_text=True)
    # Invitations off: bob joins at once; then removed.
    r = client.post(f"/projects/{p}/members", data={"csrf_token": auth.csrf(), "account": "bob",
                                                     "roletype": "Regular"})
    assert r.status_code == 302
    page = client.get(f"/projects/{p}").get_data(as_text=True)
    assert 'id="member-' in page and "bob" in page
    with app.app_context():
        bob_acct = accounts.get_user("bob").account.uuid
    assert client.post(f"/projects/{p}/members/{bob_acct}/remove", data={"csrf_token": auth.csrf()}).status_code == 302
    assert "bob" not in client.get(f"/projects/{p}").get_data(as_text=True).split("Invitations")[0].split("Members")[1]
    # Invitations on: bob is invited, sees it on his projects page, declines, is invited again, accepts.
    ok(api(app, client, "admin", command="updateConfiguration", name="project.invite.required", value="true"))
    client.post(f"/projects/{p}/members", data={"csrf_token": auth.csrf(), "account": "bob", "roletype": "Regular"})
    assert "Pending" in client.get(f"/projects/{p}").get_data(as_text=True)
    auth.logout()
    auth.login("bob")
    page = client.get("/projects/").get_data(as_text=True)
    assert "Invitations" in page and "ops" in page and "Accept" in page
    assert client.get(f"/projects/{p}").status_code == 404  # not a member yet
    assert client.post(f"/projects/{p}/invitation", data={"csrf_token": auth.csrf(), "accept": "0"}).status_code \
        == 302
    assert "Accept" not in client.get("/projects/").get_data(as_text=True)
    auth.logout()
    auth.login("alice")
    client.post(f"/projects/{p}/members", data={"csrf_token": auth.csrf(), "account": "bob", "roletype": "Admin"})
    auth.logout()
    auth.login("bob")
    assert client.post(f"/projects/{p}/invitation", data={"csrf_token": auth.csrf(), "accept": "1"}).status_code \
        == 302
    page = client.get(f"/projects/{p}").get_data(as_text=True)
    assert "Invitations" in page and "Completed" in page  # bob is an admin of it now: he sees them


def test_pages_follow_the_role_rules(app, client, auth, world):
    """A custom User role denying createProject and updateProjectInvitation: the pages refuse
    them (403) and hide their buttons, exactly as the API answers 432."""
    with app.app_context():
        role = roles.create_role(accounts.get_user("admin"), name="No projects", type="User")
        for i, rule in enumerate(("createProject", "updateProjectInvitation")):
            db.session.add(RolePermission(role_id=role.id, rule=rule, permission=Permission.DENY, sort_order=i))
        db.session.commit()
        alice = accounts.get_user("alice")
        alice.account.role_id = db.session.scalar(select(AccountRole.id).where(AccountRole.name == "No projects"))
        db.session.commit()
    assert api(app, client, "alice", command="createProject", name="x")[0] == 432
    auth.login("alice")
    page = client.get("/projects/").get_data(as_text=True)
    assert "Create a project" not in page
    assert client.get("/projects/new").status_code == 403
    assert client.post("/projects/new", data={"csrf_token": auth.csrf(), "name": "x"}).status_code == 403
    with app.app_context():
        assert db.session.query(Project).count() == 0


def test_the_switcher_offers_one_page_and_keeps_the_current_project(app, client, auth, world, monkeypatch):
    """Every page's navigation lists at most SWITCHER_SIZE projects; one chosen from the Projects
    page beyond them still shows as the current choice."""
    monkeypatch.setattr(projects, "SWITCHER_SIZE", 2)
    with app.app_context():
        alice = accounts.get_user("alice")
        made = [projects.create_project(alice, f"p{i}").uuid for i in range(3)]
    auth.login("alice")
    page = client.get("/vms/").get_data(as_text=True)
    assert "Project: p0" in page and "Project: p1" in page and "Project: p2" not in page
    assert switch(client, auth, made[2]).status_code == 302
    page = client.get("/vms/").get_data(as_text=True)
    assert f'<option value="{made[2]}" selected>Project: p2</option>' in page

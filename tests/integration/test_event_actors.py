"""The audit log names who acted (CloudStack's event: userid is the actor, accountid the
owner of what was acted on): an admin creating, disabling or keying a user, or stopping a
user's VM, is the event's user; the subject's account owns the event (so its users see it);
what the system does on its own (the expunge sweeper) names no user."""
from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Event
from app.services import accounts, vms
from tests.integration.test_vm_pages import _engines, deploy, post, world  # noqa: F401  (fixtures)


def last_event(app, type_):
    with app.app_context():
        ev = db.session.scalar(select(Event).where(Event.type == type_).order_by(Event.id.desc()))
        return (ev.user.username if ev.user else None), (ev.account.name if ev.account else None)


def test_user_events_name_the_admin_who_acted(app, users):
    with app.app_context():
        admin = accounts.get_user("admin")
        carol = accounts.create_user_in(admin, "carol", "carolpass-123", account="alice")
        accounts.set_user_state(carol, enabled=False, caller=admin)
        accounts.register_keys(carol, caller=admin)
    assert last_event(app, "USER.CREATE") == ("admin", "alice")
    assert last_event(app, "USER.DISABLE") == ("admin", "alice")
    assert last_event(app, "REGISTER.USER.KEY") == ("admin", "alice")


def test_user_created_from_the_accounts_page_names_the_admin(app, users, client, auth):
    auth.login()
    with app.app_context():
        uuid = accounts.get_account("alice").uuid
    resp = client.post(f"/admin/accounts/{uuid}/users/new", data={
        "username": "dave", "password": "davepass-1234", "confirm": "davepass-1234", "email": "",
        "firstname": "", "lastname": "", "csrf_token": auth.csrf(f"/admin/accounts/{uuid}/users/new")})
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:2000]
    assert last_event(app, "USER.CREATE") == ("admin", "alice")


def test_vm_events_name_who_acted_and_the_owner(app, world, client, auth):
    uuid = deploy(app, world)  # alice deploys
    assert last_event(app, "VM.START") == ("alice", "alice")
    auth.login("admin")
    post(client, auth, f"/vms/{uuid}/stop")
    assert last_event(app, "VM.STOP") == ("admin", "alice")
    with app.app_context():  # the sweeper expunges on its own: no user acted
        vms.destroy(accounts.get_user("alice"), uuid)
        assert last_event(app, "VM.DESTROY") == ("alice", "alice")
        vm = vms.get_vm(accounts.get_user("admin"), uuid)
        db.session.execute(db.update(type(vm)).where(type(vm).id == vm.id).values(
            state_updated=vm.state_updated.replace(year=2000)))
        db.session.commit()
        vms.sweep_expunge()
    assert last_event(app, "VM.EXPUNGE") == (None, "alice")


def test_a_download_job_names_who_registered_the_template(app, users, tmp_path):
    from app.services import settings, storage, templates, zones
    from tests.helpers.www import raw_image, serve
    (tmp_path / "www").mkdir()
    raw_image(tmp_path / "www" / "d.raw", "1M")
    with app.app_context():
        z = zones.create_zone(None, name="Z1", dns1="8.8.8.8", internal_dns1="10.0.0.2")
        storage.add_image_store(None, provider="Local", url=f"file://{tmp_path}/sec", zone_uuid=z.uuid)
        settings.update("template.url.allow.internal", "true")  # the loopback server below
        with serve(tmp_path / "www") as url:
            templates.register(accounts.get_user("alice"), url=f"{url}/d.raw", name="d", hypervisor="KVM",
                               format="RAW", zone_uuid=z.uuid)  # the job runs inline here
    assert last_event(app, "TEMPLATE.DOWNLOAD") == ("alice", "alice")


def test_list_events_rows_answer_as_the_event_objects_do(app, world, client):
    """listEvents reads rows (events.event_views), the portal's pages objects (list_events): the
    same events, each answered alike, for a user, a project, an admin, a page and no page; an
    event of no account and no user included."""
    from app.api.serializers import clean, serialize
    from app.services import access, events
    from tests.integration.test_domains import ok
    from tests.integration.test_projects import make_project
    from tests.integration.test_quotas import api
    project = make_project(app, client)
    ok(api(app, client, "alice", command="deployVirtualMachine", zoneid=world.zone, serviceofferingid=world.small,
           templateid=world.template, projectid=project["id"], name="pvm"))
    deploy(app, world)
    with app.app_context():
        events.record("SYSTEM.CHECK", "of no one", commit=True)
    cases = [("alice", None, None), ("alice", project["id"], None), ("admin", None, None), ("admin", None, (2, 3)),
             ("admin", "-1", (1, 4))]
    for who, project_id, page in cases:
        with app.test_request_context():
            caller = accounts.get_user(who)
            access.enter_scope(caller, project_id, listing=True)
            rows, total = events.event_views(caller, page=page)
            objects, expected_total = events.list_events(caller, page=page)
            assert [clean(serialize("event", r)) for r in rows] == [clean(serialize("event", e)) for e in objects]
            assert total == expected_total and rows, (who, project_id, page)
    answered = ok(api(app, client, "alice", command="listEvents", projectid=project["id"]))["event"]
    assert answered and all(e["project"] == "web" and "account" not in e for e in answered)
    mine = ok(api(app, client, "alice", command="listEvents", type="VM.CREATE"))["event"]
    assert [e["account"] for e in mine] == ["alice"] and mine[0]["username"] == "alice"
    assert any(e["type"] == "SYSTEM.CHECK" and "account" not in e
               for e in ok(api(app, client, "admin", command="listEvents", listall="true"))["event"])

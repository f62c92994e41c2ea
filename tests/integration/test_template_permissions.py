"""updateTemplatePermissions / listTemplatePermissions (and the ISO variants) through the
API on a Simulator zone: alice shares her private template with bob, who then sees it
(listTemplates executable/shared, listTemplatePermissions showing only his own name) and
deploys from it; remove and reset take it away again; another account's template is
"not found" / 531 as CloudStack answers; every refused call changes nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import DownloadState, Template, TemplatePermission, TemplateStoreRef, new_uuid
from app.services import accounts, vms
from tests.integration.test_quotas import api
from tests.integration.test_vm_pages import world  # noqa: F401  (fixture)

pytestmark = pytest.mark.db


def private(app, owner: str, *, is_iso=False) -> str:
    """A ready private template (or ISO) of `owner` in the world's zone."""
    with app.app_context():
        tiny = db.session.scalar(select(Template).where(Template.name == ("rescue-iso" if is_iso else "tiny")))
        ref = db.session.scalar(select(TemplateStoreRef).where(TemplateStoreRef.template_id == tiny.id))
        t = Template(uuid=new_uuid(), name=f"{owner}-{'iso' if is_iso else 'tpl'}", format=tiny.format,
                     is_iso=is_iso, hypervisor_type=tiny.hypervisor_type, is_public=False,
                     account_id=accounts.get_account(owner).id, size=tiny.size, physical_size=tiny.size)
        db.session.add(t)
        db.session.flush()
        db.session.add(TemplateStoreRef(template_id=t.id, zone_id=ref.zone_id, image_store_id=ref.image_store_id,
                                        state=DownloadState.DOWNLOADED, download_pct=100, size=ref.size,
                                        install_path=ref.install_path))
        db.session.commit()
        return t.uuid


def ids(app, client, user, **params) -> set[str]:
    _, body = api(app, client, user, command="listTemplates", **params)
    return {t["id"] for t in body.get("template", [])}


def state(app, uuid) -> tuple:
    with app.app_context():
        t = db.session.scalar(select(Template).where(Template.uuid == uuid))
        perms = db.session.scalar(select(func.count()).select_from(TemplatePermission)
                                  .where(TemplatePermission.template_id == t.id))
        return t.is_public, t.featured, t.extractable, perms


def test_share_a_template_with_another_account(app, client, world):
    mine = private(app, "alice")
    assert mine not in ids(app, client, "bob", templatefilter="executable")
    code, _ = api(app, client, "bob", command="listTemplatePermissions", id=mine)
    assert code == 431  # not his to see: "not found" like a missing id

    # Refused calls change nothing
    before = state(app, mine)
    for user, params, want in [
        ("bob", dict(accounts="bob", op="add"), 431),            # another account's template: not found
        ("alice", dict(accounts="bob"), 431),                    # accounts without op
        ("alice", dict(accounts="bob", op="grant"), 431),        # unknown op
        ("alice", dict(accounts="bob,nobody", op="add"), 431),   # an unknown account: none granted
        ("alice", dict(accounts="bob", projectids=new_uuid(), op="add"), 431),
        ("alice", dict(ispublic="true"), 531),                   # public is for admins
        ("alice", dict(isextractable="true"), 431),              # a template's isextractable: root admins
    ]:
        code, body = api(app, client, user, command="updateTemplatePermissions", id=mine, **params)
        assert code == want, (params, body)
        assert state(app, mine) == before
    code, _ = api(app, client, "alice", command="updateIsoPermissions", id=mine, accounts="bob", op="add")
    assert code == 431  # a template is not an ISO

    code, body = api(app, client, "alice", command="updateTemplatePermissions", id=mine, accounts="bob,alice",
                     op="add")
    assert (code, body) == (200, {"success": True})
    code, body = api(app, client, "alice", command="updateTemplatePermissions", id=mine, accounts="bob", op="add")
    assert code == 200 and state(app, mine)[3] == 1  # idempotent; the owner needs no permission

    # bob sees it (executable, shared, sharedexecutable) but not as his own, and deploys from it
    assert mine in ids(app, client, "bob", templatefilter="executable")
    assert mine in ids(app, client, "bob", templatefilter="sharedexecutable")
    assert mine in ids(app, client, "bob", templatefilter="shared")
    assert mine not in ids(app, client, "bob", templatefilter="self")
    assert mine not in ids(app, client, "bob", templatefilter="community")
    assert mine not in ids(app, client, "alice", templatefilter="shared")
    with app.app_context():
        vm, _ = vms.deploy(accounts.get_user("bob"), zone_uuid=world.zone, service_offering_uuid=world.small,
                           template_uuid=mine, name="from-alice", start=False)
        assert vm.account_id == accounts.get_account("bob").id
    # ... but may not change or delete it
    code, _ = api(app, client, "bob", command="updateTemplate", id=mine, name="mine-now")
    assert code == 531
    code, _ = api(app, client, "bob", command="updateTemplatePermissions", id=mine, accounts="bob", op="remove")
    assert code == 531

    _, body = api(app, client, "alice", command="listTemplatePermissions", id=mine)
    assert body["templatepermission"] | {} == {"id": mine, "ispublic": False, "account": ["bob"],
                                               "domainid": body["templatepermission"]["domainid"]}
    _, body = api(app, client, "bob", command="listTemplatePermissions", id=mine)
    assert body["templatepermission"]["account"] == ["bob"]
    _, body = api(app, client, "admin", command="listTemplatePermissions", id=mine)
    assert body["templatepermission"]["account"] == ["bob"]

    # Only the shared one: alice's other private template stays hidden from bob
    other = private(app, "alice")
    assert other not in ids(app, client, "bob", templatefilter="executable")

    code, _ = api(app, client, "alice", command="updateTemplatePermissions", id=mine, accounts="bob", op="remove")
    assert code == 200 and mine not in ids(app, client, "bob", templatefilter="executable")
    code, _ = api(app, client, "bob", command="listTemplatePermissions", id=mine)
    assert code == 431


def test_admin_flags_and_reset(app, client, world):
    mine = private(app, "alice")
    code, _ = api(app, client, "admin", command="updateTemplatePermissions", id=mine, ispublic="true",
                  isfeatured="true", isextractable="true")
    assert code == 200 and state(app, mine) == (True, True, True, 0)
    assert mine in ids(app, client, "bob", templatefilter="featured")
    _, body = api(app, client, "bob", command="listTemplates", templatefilter="executable", id=mine)
    assert body["template"][0]["ispublic"] is True
    code, _ = api(app, client, "alice", command="updateTemplatePermissions", id=mine, accounts="bob", op="add")
    assert code == 200 and state(app, mine) == (True, True, True, 1)
    # reset: every permission gone, private and not featured again (CloudStack's reset)
    code, _ = api(app, client, "alice", command="updateTemplatePermissions", id=mine, op="reset")
    assert code == 200 and state(app, mine) == (False, False, True, 0)
    assert mine not in ids(app, client, "bob", templatefilter="executable")


def test_iso_permissions(app, client, world):
    iso = private(app, "alice", is_iso=True)
    code, _ = api(app, client, "alice", command="updateIsoPermissions", id=iso, accounts="bob", op="add",
                  isextractable="true")  # an ISO's owner may make it extractable
    assert code == 200 and state(app, iso) == (False, False, True, 1)
    _, body = api(app, client, "bob", command="listIsos", isofilter="executable", id=iso)
    assert [i["id"] for i in body["iso"]] == [iso]
    _, body = api(app, client, "bob", command="listIsoPermissions", id=iso)
    assert body["templatepermission"]["account"] == ["bob"]
    code, _ = api(app, client, "alice", command="listTemplatePermissions", id=iso)
    assert code == 431

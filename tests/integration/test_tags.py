"""Resource tags through the API (Flask test client, jobs inline) on a Simulator zone:
createTags / deleteTags / listTags with CloudStack's errors, `tags` in the VM, volume,
template, ISO and network responses, the tags[i].key/value filter done in SQL (paging and
totals right), another account's objects "not found" like missing ones, nothing changed
by a refused call, and the tags of removed objects hidden then purged."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Event, ResourceTag, Volume
from app.services import accounts, tags, vms, volumes
from tests.integration.test_quotas import api
from tests.integration.test_vm_pages import _engines, deploy, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.db
RANDOM = "5e1f0000-0000-4000-8000-00000000abcd"


def call(app, client, user, **params):
    """An API call; an async one followed to its end: (code, body or job result)."""
    status, body = api(app, client, user, **params)
    if status == 200 and "jobid" in body:
        _, job = api(app, client, user, command="queryAsyncJobResult", jobid=body["jobid"])
        assert job["jobstatus"] in (1, 2), job
        return (200 if job["jobstatus"] == 1 else job["jobresultcode"]), job["jobresult"]
    return status, body


def kvmap(param: str, **kv) -> dict:
    """CloudStack's key/value map parameter: param[0].key=..&param[0].value=.. (None: no value)."""
    out = {}
    for i, (k, v) in enumerate(kv.items()):
        out[f"{param}[{i}].key"] = k
        if v is not None:
            out[f"{param}[{i}].value"] = v
    return out


def tagmap(**kv) -> dict:
    return kvmap("tags", **kv)


def n_tags(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ResourceTag))


def test_tag_life_cycle_and_responses(app, client, world):
    vm1, vm2, vm3 = (deploy(app, world, name=n) for n in ("web1", "web2", "db1"))
    code, body = call(app, client, "alice", command="createTags", resourcetype="UserVm",
                      resourceids=f"{vm1},{vm2}", **tagmap(env="prod", team="web"))
    assert (code, body) == (200, {"success": True})
    code, _ = call(app, client, "alice", command="createTags", resourcetype="uservm", resourceids=vm3,
                   customer="crm", **tagmap(env="Dev"))
    assert code == 200

    # The VM's own answer and the list carry its tags, in CloudStack's ResourceTagResponse shape
    _, listed = api(app, client, "alice", command="listVirtualMachines", id=vm1)
    got = {t["key"]: t for t in listed["virtualmachine"][0]["tags"]}
    assert set(got) == {"env", "team"}
    assert got["env"] | {} == {"key": "env", "value": "prod", "resourcetype": "UserVm", "resourceid": vm1,
                               "account": "alice", "domainid": got["env"]["domainid"], "domain": "ROOT"}
    # The filter: any of the pairs (CloudStack ORs them), case-insensitive, in SQL (count and paging)
    _, body = api(app, client, "alice", command="listVirtualMachines", **tagmap(env="prod"))
    assert {v["id"] for v in body["virtualmachine"]} == {vm1, vm2} and body["count"] == 2
    _, body = api(app, client, "alice", command="listVirtualMachines", **tagmap(env="PROD", team="nope"))
    assert body["count"] == 2
    _, body = api(app, client, "alice", command="listVirtualMachines", page=1, pagesize=1, **tagmap(env="prod"))
    assert body["count"] == 2 and len(body["virtualmachine"]) == 1
    _, body = api(app, client, "alice", command="listVirtualMachines", **tagmap(env="prod", team="db"))
    assert body["count"] == 2
    _, body = api(app, client, "alice", command="listVirtualMachines", **tagmap(env="dev"))
    assert [v["id"] for v in body["virtualmachine"]] == [vm3]
    _, body = api(app, client, "alice", command="listVirtualMachines", **tagmap(env="none"))
    assert body == {}
    code, body = api(app, client, "alice", command="listVirtualMachines", **{"tags[0].key": "env"})
    assert code == 431 and "No value is passed in for key env" in body["errortext"]

    # listTags and its filters
    _, body = api(app, client, "alice", command="listTags")
    assert body["count"] == 5
    _, body = api(app, client, "alice", command="listTags", resourceid=vm3)
    assert [(t["key"], t["value"], t["customer"]) for t in body["tag"]] == [("env", "Dev", "crm")]
    _, body = api(app, client, "alice", command="listTags", key="ENV", value="prod", resourcetype="UserVm")
    assert body["count"] == 2
    _, body = api(app, client, "alice", command="listTags", customer="crm")
    assert body["count"] == 1
    _, body = api(app, client, "alice", command="listTags", resourcetype="Volume")
    assert body == {}

    # Errors: CloudStack's codes, nothing made
    before = n_tags(app)
    for params, code, text in [
        (dict(resourcetype="UserVm", resourceids=vm1, **tagmap(env="x")), 431, f"tag env already on UserVm with id {vm1}"),
        (dict(resourcetype="UserVm", resourceids=vm1, **tagmap(ENV="x")), 431, "already on UserVm"),
        (dict(resourcetype="UserVm", resourceids=f"{vm3},{vm1}", **tagmap(team="x")), 431, "already on UserVm"),
        (dict(resourcetype="Bogus", resourceids=vm1, **tagmap(a="b")), 431, "Invalid resource type Bogus"),
        (dict(resourcetype="Zone", resourceids=vm1, **tagmap(a="b")), 431,
         "The resource type Zone doesn't support resource tags"),
        (dict(resourcetype="Volume", resourceids=vm1, **tagmap(a="b")), 431,
         f"Unable to find resource by uuid {vm1} and type Volume"),
        (dict(resourcetype="Snapshot", resourceids=vm1, **tagmap(a="b")), 431, "Unable to find resource"),
        (dict(resourcetype="UserVm", resourceids=RANDOM, **tagmap(a="b")), 431,
         f"Unable to find resource by uuid {RANDOM} and type UserVm"),
        (dict(resourcetype="UserVm", resourceids=vm1, **tagmap(a="")), 431, "Value for the key a is either null or empty"),
        (dict(resourcetype="UserVm", resourceids=vm1, **tagmap(a=None)), 431, "No value is passed in for key a"),
        (dict(resourcetype="UserVm", resourceids=vm1, **{"tags[0].key": "a", "tags[0].value": "1",
                                                          "tags[1].key": "A", "tags[1].value": "2"}), 431, "Duplicate key"),
        (dict(resourcetype="UserVm", resourceids=vm1, **tagmap(a="x\ny")), 431, "control characters"),
        (dict(resourcetype="UserVm", resourceids=vm1, **tagmap(a="x" * 256)), 431, "longer than 255"),
        (dict(resourcetype="UserVm", resourceids=vm1), 431, "missing parameter tags"),
    ]:
        got, body = call(app, client, "alice", command="createTags", **params)
        assert (got, text in body["errortext"]) == (code, True), (params, got, body)
    assert n_tags(app) == before

    # deleteTags: by key and value, by key alone, every tag; nothing matched is "Failed to delete tags"
    code, body = call(app, client, "alice", command="deleteTags", resourcetype="UserVm", resourceids=vm1,
                      **tagmap(env="other"))
    assert (code, body["errortext"]) == (530, "Failed to delete tags")
    assert call(app, client, "alice", command="deleteTags", resourcetype="UserVm", resourceids=vm1,
                **tagmap(ENV="Prod"))[0] == 200
    assert call(app, client, "alice", command="deleteTags", resourcetype="UserVm", resourceids=f"{vm2},{vm3}",
                **tagmap(env=None))[0] == 200
    _, body = api(app, client, "alice", command="listTags")
    assert sorted((t["resourceid"], t["key"]) for t in body["tag"]) == sorted([(vm1, "team"), (vm2, "team")])
    assert call(app, client, "alice", command="deleteTags", resourcetype="UserVm", resourceids=vm2)[0] == 200
    _, body = api(app, client, "alice", command="listVirtualMachines", id=vm2)
    assert body["virtualmachine"][0]["tags"] == []
    with app.app_context():
        kinds = {e.type for e in db.session.scalars(select(Event).where(Event.type.like("%TAGS")))}
    assert kinds == {"CREATE_TAGS", "DELETE_TAGS"}


def test_other_accounts_objects_are_not_found(app, client, world):
    alice_vm = deploy(app, world, name="a1")
    bob_vm = deploy(app, world, user="bob", name="b1")
    assert call(app, client, "alice", command="createTags", resourcetype="UserVm", resourceids=alice_vm,
                **tagmap(owner="alice"))[0] == 200
    before = n_tags(app)
    for params in (dict(command="createTags", resourcetype="UserVm", **tagmap(k="v")),
                   dict(command="deleteTags", resourcetype="UserVm", **tagmap(owner=None)),
                   dict(command="deleteTags", resourcetype="UserVm")):
        mine = call(app, client, "bob", resourceids=alice_vm, **params)
        missing = call(app, client, "bob", resourceids=RANDOM, **params)
        assert mine[0] == missing[0] == 431
        assert mine[1]["errortext"].replace(alice_vm, "<id>") == missing[1]["errortext"].replace(RANDOM, "<id>")
    assert n_tags(app) == before
    # bob lists nothing of alice's, whatever he asks
    for extra in ({}, {"listall": "true"}, {"resourceid": alice_vm}, {"account": "alice"}):
        code, body = api(app, client, "bob", command="listTags", **extra)
        assert alice_vm not in str(body), extra
    _, body = api(app, client, "bob", command="listVirtualMachines", **tagmap(owner="alice"))
    assert body == {}
    # the public template is visible to alice but the admin's: tagging it is refused (531)
    code, body = call(app, client, "alice", command="createTags", resourcetype="Template",
                      resourceids=world.template, **tagmap(k="v"))
    assert code == 531
    # an admin tags anyone's; listTags shows them with listall (own only without, as CloudStack)
    assert call(app, client, "admin", command="createTags", resourcetype="UserVm", resourceids=bob_vm,
                **tagmap(by="admin"))[0] == 200
    _, body = api(app, client, "admin", command="listTags")
    assert body == {}
    _, body = api(app, client, "admin", command="listTags", listall="true")
    assert {(t["resourceid"], t["account"]) for t in body["tag"]} == {(alice_vm, "alice"), (bob_vm, "bob")}
    _, body = api(app, client, "bob", command="listTags")
    assert [(t["key"], t["account"]) for t in body["tag"]] == [("by", "bob")]


def test_other_kinds_and_removed_objects(app, client, world):
    vm = deploy(app, world, name="t1")
    with app.app_context():
        alice = accounts.get_user("alice")
        admin = accounts.get_user("admin")
        off = volumes.create_disk_offering(admin, name="d1", disk_size=1)
        vol = volumes.create_volume(alice, name="data1", zone_uuid=world.zone, disk_offering_uuid=off.uuid).uuid
        root = db.session.scalar(select(Volume.uuid).where(Volume.vm_id == vms.get_vm(alice, vm).id))
    for kind, rid in (("Volume", vol), ("Volume", root)):
        assert call(app, client, "alice", command="createTags", resourcetype=kind, resourceids=rid,
                    **tagmap(tier="gold"))[0] == 200
    assert call(app, client, "admin", command="createTags", resourcetype="Template", resourceids=world.template,
                **tagmap(os="linux"))[0] == 200
    assert call(app, client, "admin", command="createTags", resourcetype="ISO", resourceids=world.iso,
                **tagmap(os="rescue"))[0] == 200
    code, body = call(app, client, "admin", command="createTags", resourcetype="Template", resourceids=world.iso,
                      **tagmap(os="x"))
    assert code == 431  # an ISO is not a Template

    _, body = api(app, client, "alice", command="listVolumes", **tagmap(tier="gold"))
    assert body["count"] == 2 and all(v["tags"][0]["value"] == "gold" for v in body["volume"])
    _, body = api(app, client, "alice", command="listTemplates", templatefilter="executable", **tagmap(os="linux"))
    assert [t["id"] for t in body["template"]] == [world.template]
    assert body["template"][0]["tags"][0] | {} == {**body["template"][0]["tags"][0], "account": "admin",
                                                   "resourcetype": "Template"}
    _, body = api(app, client, "alice", command="listIsos", **tagmap(os="rescue"))
    assert [t["id"] for t in body["iso"]] == [world.iso] and body["iso"][0]["tags"][0]["resourcetype"] == "ISO"
    _, body = api(app, client, "alice", command="listTemplates", templatefilter="executable", **tagmap(os="rescue"))
    assert body == {}

    # A deleted volume's tags are hidden at once and purged later; an expunged VM's too
    with app.app_context():
        volumes.delete_volume(accounts.get_user("alice"), vol)
    _, body = api(app, client, "alice", command="listTags", resourcetype="Volume")
    assert [t["resourceid"] for t in body["tag"]] == [root]
    with app.app_context():
        alice = accounts.get_user("alice")
        vms.destroy(alice, vm, True)
    _, body = api(app, client, "alice", command="listTags")
    assert body == {}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ResourceTag)) == 4
        assert tags.purge() == 2
        assert db.session.scalar(select(func.count()).select_from(ResourceTag)) == 2  # the admin's, still there


def test_list_queries_do_not_grow_with_the_page(app, client, world):
    """listVirtualMachines and listVolumes load the page's tags in one query."""
    ids = [deploy(app, world, name=f"q{i}") for i in range(4)]
    for i, vm in enumerate(ids):
        call(app, client, "alice", command="createTags", resourcetype="UserVm", resourceids=vm, **tagmap(n=str(i)))

    def statements(command, n):
        import sqlalchemy as sa
        seen = []
        with app.app_context():
            engine = db.engine
        listener = lambda conn, cursor, statement, *a: seen.append(statement)  # noqa: E731
        sa.event.listen(engine, "before_cursor_execute", listener)
        try:
            status, body = api(app, client, "alice", command=command, page=1, pagesize=n)
            assert status == 200
        finally:
            sa.event.remove(engine, "before_cursor_execute", listener)
        # the tags' own query (listVirtualMachines' VM query also asks EXISTS in resource_tags)
        return len([s for s in seen if s.startswith("SELECT resource_tags.")])

    assert statements("listVirtualMachines", 1) == statements("listVirtualMachines", 4) == 1
    assert statements("listVolumes", 1) == statements("listVolumes", 4) == 1


def test_tags_card_on_pages(app, client, world, auth, hx):
    vm = deploy(app, world, name="p1")
    auth.login("alice")
    page = client.get(f"/vms/{vm}").get_data(as_text=True)
    assert 'id="tags-' + vm + '"' in page and "No tags." in page
    # HTMX: the card comes back with the tag; a plain POST redirects back
    resp = hx.post(f"/tags/UserVm/{vm}", data={"key": "env", "value": "prod"})
    assert resp.status_code == 200 and "Tag env added" in resp.get_data(as_text=True)
    token = auth.csrf()
    resp = client.post(f"/tags/UserVm/{vm}", data={"key": "team", "value": "web", "csrf_token": token},
                       headers={"Referer": f"http://localhost/vms/{vm}"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/vms/{vm}")
    resp = hx.post(f"/tags/UserVm/{vm}", data={"key": "ENV", "value": "x"})
    assert resp.status_code == 422 and "already on UserVm" in resp.get_data(as_text=True)
    resp = hx.post(f"/tags/UserVm/{vm}", data={"key": "", "value": "x"})
    assert resp.status_code == 422
    _, body = api(app, client, "alice", command="listTags", resourceid=vm)
    assert sorted((t["key"], t["value"]) for t in body["tag"]) == [("env", "prod"), ("team", "web")]
    env = next(t for t in body["tag"] if t["key"] == "env")
    with app.app_context():
        tag_uuid = db.session.scalar(select(ResourceTag.uuid).where(ResourceTag.key == env["key"]))
    resp = hx.post(f"/tags/UserVm/{vm}/{tag_uuid}/delete")
    assert resp.status_code == 200 and "Tag removed" in resp.get_data(as_text=True)
    page = client.get(f"/vms/{vm}").get_data(as_text=True)
    assert ">team<" in page and ">env<" not in page
    # The template page shows the admin's tags read-only to alice
    call(app, client, "admin", command="createTags", resourcetype="Template", resourceids=world.template,
         **tagmap(os="linux"))
    page = client.get(f"/templates/{world.template}").get_data(as_text=True)
    assert ">linux<" in page and "Add tag" not in page.split('id="tags-')[1]
    assert hx.post(f"/tags/Template/{world.template}", data={"key": "a", "value": "b"}).status_code == 422
    assert client.get(f"/tags/Bogus/{vm}").status_code == 404
    auth.logout()
    # Bob: alice's VM's card is "not found", like a missing one
    auth.login("bob")
    for path in (f"/tags/UserVm/{vm}", f"/tags/UserVm/{RANDOM}"):
        assert client.get(path).status_code == 404
        assert hx.post(path, data={"key": "a", "value": "b"}).status_code == 404
    assert hx.post(f"/tags/UserVm/{vm}/{tag_uuid}/delete").status_code == 404
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ResourceTag)) == 2


def test_parallel_creates_of_one_key_leave_one_tag(app, world):
    """Six requests tag one VM with the same key at once: one wins, the others get CloudStack's
    431, and the VM has one tag (the unique key and the re-check after a lost race)."""
    import threading

    from app.services.errors import ServiceError
    vm = deploy(app, world, name="race1")
    barrier, outcomes = threading.Barrier(6), []

    def one(i):
        with app.app_context():
            alice = accounts.get_user("alice")
            barrier.wait()
            try:
                tags.create(alice, [vm], "UserVm", [{"key": "slot", "value": str(i)}])
                outcomes.append("ok")
            except ServiceError as e:
                outcomes.append(e.code)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes, key=str) == sorted(["ok"] + [431] * 5, key=str), outcomes
    assert n_tags(app) == 1

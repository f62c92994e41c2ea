"""Resource details and regions through the API (Flask test client, jobs inline) on a Simulator
zone: addResourceDetail / removeResourceDetail (async) and listResourceDetails with CloudStack's
errors; a VM's details are ONE store with updateVirtualMachine details and listVirtualMachines
`details`; fordisplay=false details hidden from users; bob neither sees nor changes alice's;
zone and offering details changed by root admins only; a refused call changes nothing; the
details of removed objects hidden, then purged, and gone with deleteAccount. Regions: add,
update, remove with RegionManagerImpl's rules, root admins only, region 1 kept."""
from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import Region, ResourceDetail, VirtualMachine, utcnow
from app.services import resource_details
from tests.integration.test_quotas import api
from tests.integration.test_tags import call, kvmap
from tests.integration.test_vm_pages import _engines, deploy, world  # noqa: F401  (fixtures)

RANDOM = "5e1f0000-0000-4000-8000-00000000abcd"


def dmap(**kv) -> dict:
    return kvmap("details", **kv)


def rows(app) -> set:
    with app.app_context():
        return set(db.session.execute(select(ResourceDetail.resource_type, ResourceDetail.resource_id,
                                             ResourceDetail.name, ResourceDetail.value, ResourceDetail.display)))


def listed(app, client, user, **params) -> dict:
    code, body = api(app, client, user, command="listResourceDetails", **params)
    assert code == 200, body
    return {(d["key"], d["value"], d["fordisplay"]) for d in body.get("resourcedetail", [])}


def test_details_of_a_vm_are_its_details(app, client, world, auth):
    vm = deploy(app, world, name="web1")
    code, body = call(app, client, "alice", command="addResourceDetail", resourcetype="UserVm", resourceid=vm,
                      **dmap(env="prod", team="web"))
    assert (code, body) == (200, {"success": True})
    _, body = api(app, client, "alice", command="listResourceDetails", resourcetype="uservm", resourceid=vm)
    assert body["count"] == 2
    assert {"resourceid": vm, "resourcetype": "UserVm", "key": "env", "value": "prod",
            "fordisplay": True} in body["resourcedetail"]
    # The same data as listVirtualMachines' details and updateVirtualMachine's
    _, body = api(app, client, "alice", command="listVirtualMachines", id=vm)
    assert body["virtualmachine"][0]["details"] == {"env": "prod", "team": "web"}
    code, body = api(app, client, "alice", command="updateVirtualMachine", id=vm, **{"details[0].cpu": "fast"})
    assert code == 200 and body["virtualmachine"]["details"] == {"cpu": "fast"}
    assert listed(app, client, "alice", resourcetype="UserVm", resourceid=vm) == {("cpu", "fast", True)}
    # An existing key (any case) is replaced, not doubled
    assert call(app, client, "alice", command="addResourceDetail", resourcetype="UserVm", resourceid=vm,
                **dmap(CPU="slow"))[0] == 200
    assert listed(app, client, "alice", resourcetype="UserVm", resourceid=vm) == {("CPU", "slow", True)}

    # fordisplay=false (set by the admin): kept from the user, in the VM response too
    assert call(app, client, "admin", command="addResourceDetail", resourcetype="UserVm", resourceid=vm,
                fordisplay="false", **dmap(rack="r7"))[0] == 200
    assert listed(app, client, "alice", resourcetype="UserVm", resourceid=vm) == {("CPU", "slow", True)}
    assert listed(app, client, "admin", resourcetype="UserVm", resourceid=vm) == {("CPU", "slow", True),
                                                                                  ("rack", "r7", False)}
    assert listed(app, client, "admin", resourcetype="UserVm", resourceid=vm, fordisplay="false") == \
        {("rack", "r7", False)}
    _, body = api(app, client, "alice", command="listVirtualMachines", id=vm)
    assert body["virtualmachine"][0]["details"] == {"CPU": "slow"}
    # updateVirtualMachine cleanupdetails drops the displayed ones; the hidden one stays
    assert api(app, client, "alice", command="updateVirtualMachine", id=vm, cleanupdetails="true")[0] == 200
    assert listed(app, client, "admin", resourcetype="UserVm", resourceid=vm) == {("rack", "r7", False)}
    # key / value search (admins), and by key
    assert listed(app, client, "admin", resourcetype="UserVm", key="rack", value="r7") == {("rack", "r7", False)}
    assert listed(app, client, "admin", resourcetype="UserVm", resourceid=vm, key="RACK") == {("rack", "r7", False)}

    # removeResourceDetail: one key, then all
    assert call(app, client, "alice", command="addResourceDetail", resourcetype="UserVm", resourceid=vm,
                **dmap(a="1", b="2"))[0] == 200
    assert call(app, client, "alice", command="removeResourceDetail", resourcetype="UserVm", resourceid=vm,
                key="A")[0] == 200
    assert listed(app, client, "alice", resourcetype="UserVm", resourceid=vm) == {("b", "2", True)}
    assert call(app, client, "alice", command="removeResourceDetail", resourcetype="UserVm", resourceid=vm,
                key="nope")[0] == 200  # no such key: no error, as CloudStack
    assert call(app, client, "admin", command="removeResourceDetail", resourcetype="UserVm", resourceid=vm)[0] == 200
    assert listed(app, client, "admin", resourcetype="UserVm", resourceid=vm) == set()

    # The VM page shows them
    assert call(app, client, "alice", command="addResourceDetail", resourcetype="UserVm", resourceid=vm,
                **dmap(shown="on-page"))[0] == 200
    auth.login("alice")
    page = client.get(f"/vms/{vm}").get_data(as_text=True)
    assert "Resource details" in page and "on-page" in page


def test_bad_input_is_refused_and_changes_nothing(app, client, world):
    vm = deploy(app, world, name="web1")
    assert call(app, client, "alice", command="addResourceDetail", resourcetype="UserVm", resourceid=vm,
                **dmap(keep="me"))[0] == 200
    before = rows(app)
    cases = [
        (dict(resourcetype="Nonsense", resourceid=vm, **dmap(a="1")), 431, "Invalid resource type"),
        (dict(resourcetype="SecurityGroup", resourceid=vm, **dmap(a="1")), 431, "doesn't support metadata"),
        (dict(resourcetype="Volume", resourceid=vm, **dmap(a="1")), 431, "Unable to find resource by uuid"),
        (dict(resourcetype="Vpc", resourceid=vm, **dmap(a="1")), 431, "Unable to find resource by uuid"),
        (dict(resourcetype="UserVm", resourceid=RANDOM, **dmap(a="1")), 431, "Unable to find resource"),
        (dict(resourcetype="UserVm", resourceid="not-a-uuid", **dmap(a="1")), 431, "resourceid"),
        (dict(resourcetype="UserVm", resourceid=vm), 431, "details"),
        (dict(resourcetype="UserVm", resourceid=vm, **dmap(a=None)), 431, "Value for the key a is either null"),
        (dict(resourcetype="UserVm", resourceid=vm, **dmap(a="")), 431, "Value for the key a is either null"),
        (dict(resourcetype="UserVm", resourceid=vm, **{"details[0].value": "x"}), 431, "No key"),
        (dict(resourcetype="UserVm", resourceid=vm, **dmap(a="x" * 5121)), 431, "longer than"),
        (dict(resourcetype="UserVm", resourceid=vm, **dmap(a="x\ny")), 431, "control characters"),
    ]
    for params, code, text in cases:
        got, body = call(app, client, "alice", command="addResourceDetail", **params)
        assert got == code and text in body["errortext"], (params, got, body)
    for params, text in [(dict(resourcetype="UserVm", resourceid=RANDOM), "Unable to find resource"),
                         (dict(resourcetype="Bogus", resourceid=vm), "Invalid resource type")]:
        got, body = call(app, client, "alice", command="removeResourceDetail", **params)
        assert got == 431 and text in body["errortext"], body
    # listResourceDetails: CloudStack's own checks
    code, body = api(app, client, "alice", command="listResourceDetails", resourcetype="UserVm")
    assert code == 431 and "Insufficient parameters" in body["errortext"]
    code, body = api(app, client, "admin", command="listResourceDetails", resourcetype="UserVm", value="me")
    assert code == 431 and "key is null" in body["errortext"]
    code, body = api(app, client, "alice", command="listResourceDetails", resourceid=vm)
    assert code == 431 and "resourcetype" in body["errortext"]
    assert rows(app) == before


def test_bob_neither_sees_nor_changes_alices(app, client, world):
    vm = deploy(app, world, name="web1")
    bob_vm = deploy(app, world, user="bob", name="bob1")
    assert call(app, client, "alice", command="addResourceDetail", resourcetype="UserVm", resourceid=vm,
                **dmap(secret="alice-only"))[0] == 200
    before = rows(app)
    for params in (dict(command="addResourceDetail", resourcetype="UserVm", **dmap(x="1")),
                   dict(command="removeResourceDetail", resourcetype="UserVm"),
                   dict(command="removeResourceDetail", resourcetype="UserVm", key="secret"),
                   dict(command="listResourceDetails", resourcetype="UserVm")):
        theirs = call(app, client, "bob", resourceid=vm, **params)
        missing = call(app, client, "bob", resourceid=RANDOM, **params)
        assert theirs[0] == missing[0] == 431, (params, theirs)
        assert theirs[1]["errortext"].replace(vm, "<id>") == missing[1]["errortext"].replace(RANDOM, "<id>")
    # a key/value search is an admin's: bob's value is ignored, so "insufficient parameters"
    code, body = api(app, client, "bob", command="listResourceDetails", resourcetype="UserVm", key="secret",
                     value="alice-only")
    assert code == 431 and "alice-only" not in str(body)
    assert rows(app) == before
    # bob's own VM is his to detail; the admin's key/value search sees both
    assert call(app, client, "bob", command="addResourceDetail", resourcetype="UserVm", resourceid=bob_vm,
                **dmap(secret="bobs"))[0] == 200
    _, body = api(app, client, "admin", command="listResourceDetails", resourcetype="UserVm", key="secret",
                  value="bobs")
    assert [d["resourceid"] for d in body["resourcedetail"]] == [bob_vm]


def test_zone_and_offering_details_are_root_admins(app, client, world):
    before = rows(app)
    for rtype, rid in (("Zone", world.zone), ("ServiceOffering", world.small)):
        code, body = call(app, client, "alice", command="addResourceDetail", resourcetype=rtype, resourceid=rid,
                          **dmap(a="1"))
        assert code == 531 and "doesn't have permissions" in body["errortext"], body
    assert rows(app) == before
    assert call(app, client, "admin", command="addResourceDetail", resourcetype="Zone", resourceid=world.zone,
                **dmap(site="dc1"))[0] == 200
    assert call(app, client, "admin", command="addResourceDetail", resourcetype="Zone", resourceid=world.zone,
                fordisplay="false", **dmap(internal="x"))[0] == 200
    # users read a zone's displayed details; the admin all of them
    assert listed(app, client, "alice", resourcetype="Zone", resourceid=world.zone) == {("site", "dc1", True)}
    assert len(listed(app, client, "admin", resourcetype="Zone", resourceid=world.zone)) == 2
    code, _ = call(app, client, "alice", command="removeResourceDetail", resourcetype="Zone", resourceid=world.zone)
    assert code == 531 and len(listed(app, client, "admin", resourcetype="Zone", resourceid=world.zone)) == 2


def test_details_of_removed_objects_hidden_purged_and_gone_with_the_account(app, client, world):
    vm = deploy(app, world, name="web1")
    bob_vm = deploy(app, world, user="bob", name="bob1")
    for who, v in (("alice", vm), ("bob", bob_vm)):
        assert call(app, client, who, command="addResourceDetail", resourcetype="UserVm", resourceid=v,
                    **dmap(k="v"))[0] == 200
    with app.app_context():  # as if expunged
        db.session.execute(db.update(VirtualMachine).where(VirtualMachine.uuid == vm).values(removed=utcnow()))
        db.session.commit()
    _, body = api(app, client, "admin", command="listResourceDetails", resourcetype="UserVm", key="k", value="v")
    assert [d["resourceid"] for d in body["resourcedetail"]] == [bob_vm]
    with app.app_context():
        assert resource_details.purge() == 1
    assert len(rows(app)) == 1
    third = deploy(app, world, user="bob", name="bob2")  # an expunged VM's details go with it at once
    assert call(app, client, "bob", command="addResourceDetail", resourcetype="UserVm", resourceid=third,
                **dmap(k="v"))[0] == 200
    assert call(app, client, "admin", command="destroyVirtualMachine", id=third, expunge="true")[0] == 200
    assert len(rows(app)) == 1
    # deleteAccount takes its objects' details along
    with app.app_context():
        from app.services import account_deletion, accounts
        account_deletion.run_now(accounts.get_user("admin"), accounts.get_account("bob"))
        assert db.session.scalar(select(func.count()).select_from(ResourceDetail)) == 0


def test_regions(app, client, world, auth):
    _, body = api(app, client, "alice", command="listRegions")
    assert [(r["id"], r["name"], r["endpoint"]) for r in body["region"]] == [(1, "Local", "http://localhost/client/")]
    code, body = api(app, client, "admin", command="addRegion", id=2, name="west", endpoint="https://west/client/")
    assert code == 200 and body["region"] == {"id": 2, "name": "west", "endpoint": "https://west/client/",
                                              "gslbserviceenabled": False, "portableipserviceenabled": False}

    def regions():
        with app.app_context():
            return set(db.session.execute(select(Region.id, Region.name, Region.endpoint)))
    before = regions()
    for params, code, text in [
            (dict(command="addRegion", id=2, name="other", endpoint="e"), 431, "Region with id: 2 already exists"),
            (dict(command="addRegion", id=3, name="WEST", endpoint="e"), 431, "Region with name: WEST already"),
            (dict(command="addRegion", id=0, name="zero", endpoint="e"), 431, "Invalid region id"),
            (dict(command="addRegion", id=3, name="three"), 431, "endpoint"),
            (dict(command="addRegion", id="x", name="three", endpoint="e"), 431, "id"),
            (dict(command="updateRegion", id=9, name="nine"), 431, "Region with id: 9 does not exist"),
            (dict(command="updateRegion", id=1, name="west"), 431, "Region with name: west already exists"),
            (dict(command="removeRegion", id=9), 431, "Failed to delete Region: 9, Region not found"),
            (dict(command="removeRegion", id=1), 431, "cannot be removed")]:
        got, body = api(app, client, "admin", **params)
        assert got == code and text in body["errortext"], (params, body)
    for params in (dict(command="addRegion", id=3, name="three", endpoint="e"), dict(command="removeRegion", id=2),
                   dict(command="updateRegion", id=2, name="mine")):
        assert api(app, client, "alice", **params)[0] == 432
    assert regions() == before
    code, body = api(app, client, "admin", command="updateRegion", id=2, endpoint="https://w2/client/")
    assert code == 200 and (body["region"]["name"], body["region"]["endpoint"]) == ("west", "https://w2/client/")
    assert api(app, client, "admin", command="listRegions", name="WEST")[1]["region"][0]["id"] == 2
    assert api(app, client, "admin", command="listRegions", id=5)[1] == {}
    auth.login("admin")  # the zones page lists them
    page = client.get("/admin/zones").get_data(as_text=True)
    assert "Regions" in page and "https://w2/client/" in page and "(this server)" in page
    assert api(app, client, "admin", command="removeRegion", id=2)[1] == {"success": True}
    assert regions() == {(1, "Local", None)}

"""Compute and disk offerings restricted to domains (CloudStack 4.13+ `domainid`): who sees them in
listServiceOfferings / listDiskOfferings (root admin every one; others public ones and those of their
domain or an ancestor; a domain admin with isrecursive=true also their subtree's), the response's
domainid / domain, the domainid filter, bad ids refused with nothing made, a domain admin's limits
(only their subtree, never public), and deployVirtualMachine / createVolume /
changeServiceForVirtualMachine refusing an offering the owner may not use (531)."""
from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import DiskOffering, OfferingDomain, ServiceOffering
from tests.integration.test_domains import PASSWORD, job, ok, tree  # noqa: F401  (fixture)
from tests.integration.test_self_service_pages import html_of, wizard
from tests.integration.test_quotas import api
from tests.integration.test_vm_pages import _engines, world  # noqa: F401  (fixtures)

FIXED = {"command": "createServiceOffering", "cpuspeed": 1000, "cpunumber": 1, "memory": 256}


def names(app, client, user, command="listServiceOfferings", **params):
    key = "serviceoffering" if command == "listServiceOfferings" else "diskoffering"
    return sorted(o["name"] for o in ok(api(app, client, user, command=command, **params)).get(key, []))


def test_visibility_per_role_and_subdomain(app, client, tree):
    sales, emea, ops = tree["sales"], tree["emea"], tree["ops"]
    ok(api(app, client, "admin", **FIXED, name="pub"))
    s = ok(api(app, client, "admin", **FIXED, name="for-sales", domainid=sales["id"]))["serviceoffering"]
    assert (s["domainid"], s["domain"]) == (sales["id"], "sales")
    ok(api(app, client, "admin", **FIXED, name="for-emea", domainid=emea["id"]))
    both = ok(api(app, client, "admin", **FIXED, name="for-two", domainid=f"{ops['id']},{emea['id']}"))
    assert set(both["serviceoffering"]["domain"].split(",")) == {"ops", "emea"}
    # A domain named with its parent: the parent's subtree covers it (CloudStack's filterChildSubDomains).
    covered = ok(api(app, client, "admin", **FIXED, name="covered", domainid=f"{sales['id']},{emea['id']}"))
    assert covered["serviceoffering"]["domainid"] == sales["id"]

    everything = ["covered", "for-emea", "for-sales", "for-two", "pub"]
    assert names(app, client, "admin") == everything
    assert names(app, client, "carol") == ["covered", "for-sales", "pub"]  # sales: not its child's
    assert names(app, client, "dave") == ["covered", "for-emea", "for-sales", "for-two", "pub"]  # emea: + ancestors
    assert names(app, client, "olga") == ["for-two", "pub"]
    assert names(app, client, "alice") == ["pub"]  # ROOT's user: public only
    assert names(app, client, "sam") == ["covered", "for-sales", "pub"]
    assert names(app, client, "sam", isrecursive="true") == ["covered", "for-emea", "for-sales", "for-two", "pub"]
    # domainid: only the offerings restricted to that domain; one the caller may not see is 431.
    assert names(app, client, "admin", domainid=emea["id"]) == ["for-emea", "for-two"]
    assert names(app, client, "sam", domainid=sales["id"]) == ["covered", "for-sales"]
    assert api(app, client, "carol", command="listServiceOfferings", domainid=ops["id"])[0] == 431
    # By id, an offering of another domain is not there.
    assert ok(api(app, client, "olga", command="listServiceOfferings", id=s["id"])) == {}


def test_bad_domains_and_domain_admin_limits(app, client, tree):
    sales, emea, ops = tree["sales"], tree["emea"], tree["ops"]
    status, body = api(app, client, "admin", **FIXED, name="x", domainid=f"{sales['id']},5e1f0000-0000-4000-8000-000000000000")
    assert status == 431 and body["errortext"] == "Please specify a valid domain id", body
    # A domain admin: only their subtree, never public, no tags.
    for params, text in (({"name": "p"}, "Unable to create public service offering"),
                         ({"name": "o", "domainid": ops["id"]}, "which is not a child domain"),
                         ({"name": "t", "domainid": sales["id"], "hosttags": "ssd"}, "host tags")):
        status, body = api(app, client, "sam", **FIXED, **params)
        assert status == 431 and text in body["errortext"], (params, body)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ServiceOffering)) == 0
        assert db.session.scalar(select(func.count()).select_from(OfferingDomain)) == 0
    mine = ok(api(app, client, "sam", **FIXED, name="sams", domainid=emea["id"]))["serviceoffering"]
    assert mine["domain"] == "emea"
    # Update: to sales is fine; public or another domain's refused; the root admin may make it public.
    assert ok(api(app, client, "sam", command="updateServiceOffering", id=mine["id"],
                  domainid=sales["id"]))["serviceoffering"]["domain"] == "sales"
    for domainid, text in (("public", "to a public offering"), (ops["id"], "not a child domain")):
        status, body = api(app, client, "sam", command="updateServiceOffering", id=mine["id"], domainid=domainid)
        assert status == 431 and text in body["errortext"], body
    pub = ok(api(app, client, "admin", **FIXED, name="pub"))["serviceoffering"]
    status, body = api(app, client, "sam", command="updateServiceOffering", id=pub["id"], name="mine")
    assert status == 431 and "Unable to update public service offering" in body["errortext"]
    assert api(app, client, "sam", command="deleteServiceOffering", id=pub["id"])[0] == 431
    assert "domainid" not in ok(api(app, client, "admin", command="updateServiceOffering", id=mine["id"],
                                    domainid="public"))["serviceoffering"]
    assert names(app, client, "olga") == ["pub", "sams"]
    # A user may not create one at all.
    assert api(app, client, "carol", **FIXED, name="c", domainid=sales["id"])[0] == 432

    # Disk offerings: the same rules.
    d = ok(api(app, client, "admin", command="createDiskOffering", name="d-ops", disksize=1,
               domainid=ops["id"]))["diskoffering"]
    assert (d["domainid"], d["domain"]) == (ops["id"], "ops")
    ok(api(app, client, "sam", command="createDiskOffering", name="d-sales", disksize=1, domainid=sales["id"]))
    assert names(app, client, "olga", "listDiskOfferings") == ["d-ops"]
    assert names(app, client, "dave", "listDiskOfferings") == ["d-sales"]
    assert names(app, client, "admin", "listDiskOfferings") == ["d-ops", "d-sales"]
    status, body = api(app, client, "sam", command="updateDiskOffering", id=d["id"], name="x")
    assert status == 431 and "not child domain" in body["errortext"], body
    ok(api(app, client, "admin", command="updateDiskOffering", id=d["id"], domainid="public"))
    assert names(app, client, "carol", "listDiskOfferings") == ["d-ops", "d-sales"]
    with app.app_context():
        assert db.session.scalar(select(DiskOffering.name).where(DiskOffering.name == "x")) is None


def test_deploy_volume_and_scale_refuse_another_domains_offering(app, world, client, tree):
    sales, ops = tree["sales"], tree["ops"]
    ops_only = ok(api(app, client, "admin", **FIXED, name="ops-only", domainid=ops["id"]))["serviceoffering"]["id"]
    sales_so = ok(api(app, client, "admin", **FIXED, name="sales-so", domainid=sales["id"]))["serviceoffering"]["id"]
    ops_disk = ok(api(app, client, "admin", command="createDiskOffering", name="ops-disk", disksize=1,
                      domainid=ops["id"]))["diskoffering"]["id"]
    base = {"command": "deployVirtualMachine", "zoneid": world.zone, "templateid": world.template}
    status, body = api(app, client, "carol", **base, serviceofferingid=ops_only)
    assert status == 531 and "has access to service offering ops-only" in body["errortext"], body
    # An admin deploying for carol: the offering must be carol's to use.
    status, body = api(app, client, "admin", **base, serviceofferingid=ops_only, account="carol",
                       domainid=sales["id"])
    assert status == 531, body
    status, body = api(app, client, "carol", command="createVolume", zoneid=world.zone, diskofferingid=ops_disk)
    assert status == 531 and "disk offering ops-disk" in body["errortext"], body
    vm = job(app, client, "carol", **base, serviceofferingid=sales_so, name="c1", startvm="false")[1]
    vm = vm["virtualmachine"]
    assert vm["serviceofferingname"] == "sales-so"
    status, body = api(app, client, "carol", command="changeServiceForVirtualMachine", id=vm["id"],
                       serviceofferingid=ops_only)
    assert status == 531, body
    # The root admin's own VM may use any offering.
    assert job(app, client, "admin", **base, serviceofferingid=ops_only, name="a1",
               startvm="false")[1]["virtualmachine"]["serviceofferingname"] == "ops-only"


def test_pages_choose_the_domains(app, client, auth, hx, tree):
    sales, ops = tree["sales"], tree["ops"]
    auth.login("admin")
    html = client.get("/admin/offerings/").get_data(as_text=True)
    assert 'name="domainid"' in html and "ROOT/sales/emea" in html
    token = auth.csrf("/admin/offerings/")
    form = {"name": "sales-only", "cpunumber": "1", "cpuspeed": "1000", "memory": "256", "storagetype": "shared",
            "csrf_token": token}
    # Without JavaScript: a plain POST, then the list shows the domain.
    assert client.post("/admin/offerings/", data={**form, "domainid": [sales["id"]]}).status_code == 302
    assert hx.post("/admin/offerings/", data={**form, "name": "public"}).status_code == 204
    html = client.get("/admin/offerings/").get_data(as_text=True)
    assert "ROOT/sales" in html and "Public" in html
    with app.app_context():
        uuid = db.session.scalar(select(ServiceOffering.uuid).where(ServiceOffering.name == "sales-only"))
    # The list's Edit link presets the domains; saving with two, then with none (public).
    edit = client.get(f"/admin/offerings/{uuid}/edit?name=sales-only&domainid={sales['id']}").get_data(as_text=True)
    assert f'value="{sales["id"]}" selected' in edit or f'selected value="{sales["id"]}"' in edit
    r = hx.post(f"/admin/offerings/{uuid}/edit", data={"name": "sales-only", "domainid": [sales["id"], ops["id"]]})
    assert r.status_code == 204
    assert names(app, client, "olga") == ["public", "sales-only"]
    assert hx.post(f"/admin/offerings/{uuid}/edit", data={"name": "sales-only"}).status_code == 204
    assert names(app, client, "alice") == ["public", "sales-only"]
    # A bad domain id: refused beside the field, nothing made.
    r = hx.post("/admin/offerings/", data={**form, "name": "bad", "domainid": ["nope"]})
    assert r.status_code == 422 and "Please specify a valid domain id" in r.get_data(as_text=True)
    # Disk offerings: the same select.
    r = hx.post("/volumes/offerings", data={"name": "ops-disk", "disksize": "1", "storagetype": "shared",
                                            "domainid": [ops["id"]]})
    assert r.status_code == 204
    assert "ROOT/ops" in client.get("/volumes/offerings").get_data(as_text=True)
    assert names(app, client, "carol", "listDiskOfferings") == []
    with app.app_context():
        d = db.session.scalar(select(DiskOffering.uuid).where(DiskOffering.name == "ops-disk"))
    assert hx.post(f"/volumes/offerings/{d}/edit", data={"name": "ops-disk"}).status_code == 204
    assert names(app, client, "carol", "listDiskOfferings") == ["ops-disk"]


def test_wizard_offers_only_the_owners_offerings(app, world, client, auth, tree):
    ops = tree["ops"]
    ops_only = ok(api(app, client, "admin", **FIXED, name="ops-only", domainid=ops["id"]))["serviceoffering"]["id"]
    state = {"step": "offering", "zoneid": world.zone, "templateid": world.template, "owner": ""}
    auth.login("carol", PASSWORD)
    html = html_of(wizard(client, auth, state, go="stay"))
    assert "small" in html and "ops-only" not in html
    r = wizard(client, auth, {**state, "serviceofferingid": ops_only})
    assert r.status_code == 422 and "Choose one of the offerings offered" in html_of(r)
    auth.logout()
    auth.login("olga", PASSWORD)
    assert "ops-only" in html_of(wizard(client, auth, state, go="stay"))


def test_deleting_a_domain_forgets_it(app, client, tree):
    sales, ops = tree["sales"], tree["ops"]
    ok(api(app, client, "admin", **FIXED, name="ops-only", domainid=ops["id"]))
    ok(api(app, client, "admin", **FIXED, name="two", domainid=f"{ops['id']},{sales['id']}"))
    ok(api(app, client, "admin", command="createDiskOffering", name="ops-disk", disksize=1, domainid=ops["id"]))
    assert job(app, client, "admin", command="deleteDomain", id=ops["id"], cleanup="true")[0] == 1
    # The offering of ops alone went with it (it must not turn public); the other keeps sales.
    listed = ok(api(app, client, "admin", command="listServiceOfferings"))["serviceoffering"]
    assert [(o["name"], o["domain"]) for o in listed] == [("two", "sales")]
    assert ok(api(app, client, "admin", command="listDiskOfferings")) == {}
    assert names(app, client, "alice") == []


def test_offerings_per_zone(app, world, client, auth, hx, tree):
    from app.services import zones
    with app.app_context():
        other = zones.create_zone(None, name="Z2", dns1="8.8.8.8", internal_dns1="10.0.0.2",
                                  guest_cidr="10.8.0.0/24").uuid
    z2 = ok(api(app, client, "admin", **FIXED, name="z2-only", zoneid=other))["serviceoffering"]
    assert (z2["zoneid"], z2["zone"]) == (other, "Z2")
    disk = ok(api(app, client, "admin", command="createDiskOffering", name="z2-disk", disksize=1,
                  zoneid=other))["diskoffering"]
    status, body = api(app, client, "admin", **FIXED, name="bad", zoneid="5e1f0000-0000-4000-8000-000000000000")
    assert status == 431 and body["errortext"] == "Please specify a valid zone id"
    # listed with zoneid: the offerings serving that zone (those of every zone too)
    assert names(app, client, "carol", zoneid=world.zone) == ["big", "small"]
    assert names(app, client, "carol", zoneid=other) == ["big", "small", "z2-only"]
    base = {"command": "deployVirtualMachine", "zoneid": world.zone, "templateid": world.template}
    for user in ("carol", "admin"):  # zones bind root admins too
        status, body = api(app, client, user, **base, serviceofferingid=z2["id"])
        assert status == 531 and "in zone Z1" in body["errortext"], body
    status, body = api(app, client, "carol", command="createVolume", zoneid=world.zone, diskofferingid=disk["id"])
    assert status == 531, body
    # A domain admin may not change an offering's zones.
    mine = ok(api(app, client, "sam", **FIXED, name="sams", domainid=tree["sales"]["id"], zoneid=other))
    status, body = api(app, client, "sam", command="updateServiceOffering", id=mine["serviceoffering"]["id"],
                       zoneid="all")
    assert status == 431 and "Unable to update zone(s)" in body["errortext"], body
    # zoneid=all: every zone again; then the deploy in Z1 works.
    assert "zoneid" not in ok(api(app, client, "admin", command="updateServiceOffering", id=z2["id"],
                                  zoneid="all"))["serviceoffering"]
    assert job(app, client, "carol", **base, serviceofferingid=z2["id"], name="c2",
               startvm="false")[1]["virtualmachine"]["serviceofferingname"] == "z2-only"
    # The wizard offers only the zone's offerings; the pages choose zones.
    ok(api(app, client, "admin", command="updateServiceOffering", id=z2["id"], zoneid=other))
    auth.login("carol", PASSWORD)
    state = {"step": "offering", "zoneid": world.zone, "templateid": world.template, "owner": ""}
    assert "z2-only" not in html_of(wizard(client, auth, state, go="stay"))
    auth.logout()
    auth.login("admin")
    html = client.get("/admin/offerings/").get_data(as_text=True)
    assert 'name="zoneid"' in html and "Every zone" in html
    r = hx.post("/volumes/offerings", data={"name": "z1-disk", "disksize": "1", "storagetype": "shared",
                                            "zoneid": [world.zone]})
    assert r.status_code == 204
    listed = ok(api(app, client, "admin", command="listDiskOfferings", name="z1-disk"))["diskoffering"][0]
    assert listed["zone"] == "Z1"

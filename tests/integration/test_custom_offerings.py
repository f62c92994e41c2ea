"""Customized compute offerings (CloudStack's customized service offering): vCPUs and memory chosen
at deploy (details cpuNumber, memory) within the offering's bounds; contradictions refused (a size
given to a custom offering, min above max, bounds on a fixed one); the VM gets the size chosen and
its account counts it; the deploy wizard asks for it; the compute offerings page makes one."""
from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import ResourceCount, ServiceOffering, VirtualMachine
from app.services import accounts
from tests.integration.test_quotas import api
from tests.integration.test_self_service_pages import hidden, html_of, wizard
from tests.integration.test_vm_pages import _engines, world  # noqa: F401  (fixtures)

CUSTOM = {"command": "createServiceOffering", "name": "flex", "cpuspeed": 1000, "customized": "true",
          "mincpunumber": 1, "maxcpunumber": 4, "minmemory": 256, "maxmemory": 4096}


def ok(status_body):
    status, body = status_body
    assert status == 200, body
    return body


def test_create_and_contradictions(app, client, users):
    o = ok(api(app, client, "admin", **CUSTOM))["serviceoffering"]
    assert o["iscustomized"] is True and o["serviceofferingdetails"] == {
        "mincpunumber": "1", "maxcpunumber": "4", "minmemory": "256", "maxmemory": "4096"}
    for bad, word in (({"name": "a", "cpunumber": 2}, "takes no cpunumber"),
                      ({"name": "b", "mincpunumber": 5}, "mincpunumber must not be more than maxcpunumber"),
                      ({"name": "c", "minmemory": 8192}, "minmemory must not be more than maxmemory"),
                      ({"name": "d", "maxmemory": None}, "maxmemory must be between")):
        params = {k: v for k, v in {**CUSTOM, **bad}.items() if v is not None}
        status, body = api(app, client, "admin", **params)
        assert status == 431 and word in body["errortext"], body
    status, body = api(app, client, "admin", command="createServiceOffering", name="e", cpuspeed=1000, cpunumber=1,
                       memory=512, mincpunumber=1)
    assert status == 431 and "customized" in body["errortext"]
    status, body = api(app, client, "admin", command="createServiceOffering", name="f", cpuspeed=1000)
    assert status == 431 and "cpunumber" in body["errortext"]  # a fixed one needs its size
    with app.app_context():
        assert db.session.scalar(select(ServiceOffering.name).where(ServiceOffering.name.in_(list("abcdef")))) is None


def test_deploy_with_a_size_in_range(app, world, client, users):
    flex = ok(api(app, client, "admin", **CUSTOM))["serviceoffering"]["id"]
    base = {"command": "deployVirtualMachine", "zoneid": world.zone, "serviceofferingid": flex,
            "templateid": world.template}
    status, body = api(app, client, "alice", **base)
    assert status == 431 and "Need to specify custom parameter values" in body["errortext"]
    status, body = api(app, client, "alice", **base, **{"details[0].cpuNumber": 8, "details[0].memory": 512})
    assert status == 431 and body["errortext"] == "Invalid cpu cores value, specify a value between 1 and 4"
    status, body = api(app, client, "alice", **base, **{"details[0].cpuNumber": 2, "details[0].memory": 9000})
    assert status == 431 and "Invalid memory value" in body["errortext"]
    ok(api(app, client, "alice", **base, name="flexy", **{"details[0].cpuNumber": 3, "details[0].memory": 1536}))
    with app.app_context():
        vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.name == "flexy"))
        assert (vm.cpu_number, vm.memory, vm.cpu_speed) == (3, 1536, 1000)
        acct = accounts.get_account("alice")
        counts = dict(db.session.execute(select(ResourceCount.resource_type, ResourceCount.count)
                                         .where(ResourceCount.account_id == acct.id)).all())
        assert counts["cpu"] == 3 and counts["memory"] == 1536


def test_wizard_asks_for_the_size(app, world, client, auth, users):
    flex = ok(api(app, client, "admin", **CUSTOM))["serviceoffering"]["id"]
    auth.login("alice")
    state = {"step": "offering", "zoneid": world.zone, "templateid": world.template, "owner": ""}
    html = html_of(wizard(client, auth, {**state, "serviceofferingid": flex}, go="stay"))
    assert 'name="cpunumber"' in html and "custom size: 1–4 vCPU" in html
    r = wizard(client, auth, {**state, "serviceofferingid": flex, "cpunumber": "9", "memory": "512"})
    assert r.status_code == 422
    r = wizard(client, auth, {**state, "serviceofferingid": flex, "cpunumber": "5", "memory": "512"})
    assert r.status_code == 422 and "between 1 and 4" in html_of(r)
    html = html_of(wizard(client, auth, {**state, "serviceofferingid": flex, "cpunumber": "2", "memory": "1024"}))
    assert 'aria-current="step">Network' in html
    html = html_of(wizard(client, auth, hidden(html)))
    html = html_of(wizard(client, auth, {**hidden(html), "keypair": "", "userdata": ""}))
    html = html_of(wizard(client, auth, {**hidden(html), "name": "flexw", "displayname": ""}))
    assert "flex: 2 vCPU · 1024 MiB" in html
    assert wizard(client, auth, hidden(html), go="deploy").status_code == 302
    with app.app_context():
        vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.name == "flexw"))
        assert (vm.cpu_number, vm.memory) == (2, 1024)


def test_page_makes_a_custom_offering(app, client, auth, hx):
    auth.login("admin")
    form = {"name": "flexp", "cpuspeed": "1500", "storagetype": "shared", "customized": "y", "mincpunumber": "1",
            "maxcpunumber": "8", "minmemory": "512", "maxmemory": "8192"}
    r = hx.post("/admin/offerings/", data={**form, "maxcpunumber": "0"})
    assert r.status_code == 422
    r = hx.post("/admin/offerings/", data={**form, "mincpunumber": "9"})
    assert r.status_code == 422 and "must not be more than" in html_of(r)
    assert hx.post("/admin/offerings/", data=form).status_code == 204
    html = html_of(client.get("/admin/offerings/"))
    assert "1–8 × 1500 MHz" in html and "custom" in html

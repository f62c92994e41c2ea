"""Domain limits (CloudStack's max.domain.* and updateResourceLimit domainid=), on a
Simulator zone: a domain's limit holds for the accounts of the domain and of every domain
below it together; a sub-domain without its own limit inherits its parent's; a child's limit
may not pass its parent's; ROOT is never limited; what is given back frees the domain's
count; and parallel deploys from two sub-domains never pass the shared limit (PostgreSQL,
MariaDB and SQLite)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Domain, DomainResourceCount, VirtualMachine
from app.services import accounts, vms
from tests.integration.test_domains import job, ok, tree  # noqa: F401  (fixture)
from tests.integration.test_quotas import _parallel, api
from tests.integration.test_vm_pages import _engines, world  # noqa: F401  (fixtures)

ROOT = "00000000-0000-0000-0000-000000000001"


def deploy(app, client, world, user, **kw):
    return api(app, client, user, command="deployVirtualMachine", zoneid=world.zone, serviceofferingid=world.small,
               templateid=world.template, **kw)


def domain_count(app, name: str, resource: str = "user_vm") -> int:
    with app.app_context():
        return db.session.scalar(select(DomainResourceCount.count).join(Domain, Domain.id == DomainResourceCount.domain_id)
                                 .where(Domain.name == name, DomainResourceCount.resource_type == resource)) or 0


def live_vms(app, user: str) -> int:
    with app.app_context():
        account_id = accounts.get_user(user).account_id
        return db.session.scalar(select(func.count()).select_from(VirtualMachine).where(
            VirtualMachine.account_id == account_id, VirtualMachine.removed.is_(None)))


def limit_of(app, client, domainid, resourcetype=0):
    rows = ok(api(app, client, "admin", command="listResourceLimits", domainid=domainid,
                  resourcetype=resourcetype))["resourcelimit"]
    assert len(rows) == 1 and rows[0]["domainid"] == domainid and "account" not in rows[0]
    return rows[0]["max"]


def test_a_domain_limit_holds_for_its_subtree(app, client, world, tree):
    sales, emea = tree["sales"], tree["emea"]
    # The max.domain.* defaults, before any row; ROOT: unlimited.
    assert limit_of(app, client, sales["id"]) == 40 and limit_of(app, client, ROOT) == -1
    assert ok(api(app, client, "admin", command="updateResourceLimit", domainid=sales["id"], resourcetype=0,
                  max=2))["resourcelimit"]["max"] == 2
    assert limit_of(app, client, emea["id"]) == 2  # inherited: emea has no limit of its own
    # carol (sales) and dave (emea) share sales' two instances.
    status, body = deploy(app, client, world, "carol")
    assert status == 200, body
    vm = ok(api(app, client, "carol", command="queryAsyncJobResult", jobid=body["jobid"]))["jobresult"]["virtualmachine"]
    assert deploy(app, client, world, "dave")[0] == 200
    status, body = deploy(app, client, world, "dave")
    assert status == 532 and body["errortext"] == (
        f"Maximum domain resource limits of Type 'user_vm' for Domain Id = {sales['id']} is exceeded: Domain "
        "Resource Limit = 2, Current Domain Resource Amount = 2, Requested Resource Amount = 1."), body
    assert deploy(app, client, world, "carol")[0] == 532
    assert deploy(app, client, world, "olga")[0] == 200  # ops, beside sales: not limited by it
    assert (domain_count(app, "sales"), domain_count(app, "emea"), domain_count(app, "ops")) == (2, 1, 1)
    # A child may not pass its parent's limit; ROOT takes none; a domain's limit is the admin's.
    status, body = api(app, client, "admin", command="updateResourceLimit", domainid=emea["id"], resourcetype=0, max=5)
    assert status == 431 and "please specify a value less than or equal to 2" in body["errortext"]
    assert api(app, client, "admin", command="updateResourceLimit", domainid=ROOT, resourcetype=0, max=5)[0] == 531
    assert api(app, client, "carol", command="updateResourceLimit", domainid=sales["id"], resourcetype=0,
               max=9)[0] == 432
    # emea's own, lower limit: dave is held at 1 while carol still may use sales' second.
    assert ok(api(app, client, "admin", command="updateResourceLimit", domainid=emea["id"], resourcetype=8,
                  max=1))["resourcelimit"]["max"] == 1
    assert limit_of(app, client, emea["id"], 8) == 1 and limit_of(app, client, sales["id"], 8) == 80
    # Given back: carol's VM expunged frees one of sales' instances.
    assert job(app, client, "carol", command="destroyVirtualMachine", id=vm["id"], expunge="true")[0] == 1
    assert domain_count(app, "sales") == 1
    status, body = deploy(app, client, world, "dave")
    assert status == 532 and "Type 'cpu'" in body["errortext"] and emea["id"] in body["errortext"]
    assert deploy(app, client, world, "carol")[0] == 200
    # The setting is the default of every domain without a limit of its own (or an ancestor's).
    ok(api(app, client, "admin", command="updateConfiguration", name="max.domain.user.vms", value="1"))
    assert limit_of(app, client, tree["ops"]["id"]) == 1
    assert deploy(app, client, world, "olga")[0] == 532
    # updateResourceCount rebuilds the domains' counts from their accounts'.
    with app.app_context():
        db.session.execute(DomainResourceCount.__table__.update().values(count=0))
        db.session.commit()
    ok(api(app, client, "admin", command="updateResourceCount", domainid=ROOT))
    assert (domain_count(app, "sales"), domain_count(app, "emea"), domain_count(app, "ops")) == (2, 1, 1)
    # A deleted account's domain no longer counts what it had.
    with app.app_context():
        olga = accounts.get_user("olga").account.uuid
    assert job(app, client, "admin", command="deleteAccount", id=olga)[0] == 1
    assert domain_count(app, "ops") == 0 and domain_count(app, "ops", "volume") == 0


def test_the_domain_limits_page(app, client, auth, tree):
    sales, emea = tree["sales"], tree["emea"]
    auth.login("admin")
    assert "Limits" in client.get("/admin/accounts/domains").get_data(as_text=True)
    page = client.get(f"/admin/accounts/domains/{sales['id']}/limits").get_data(as_text=True)
    assert "Limits of ROOT/sales" in page and "Save limits" in page
    r = client.post(f"/admin/accounts/domains/{sales['id']}/limits", data={"csrf_token": auth.csrf(), "user_vm": "3"})
    assert r.status_code == 302
    assert limit_of(app, client, sales["id"]) == 3 and limit_of(app, client, sales["id"], 8) == 80
    # Above the parent's: refused, beside the form (422), nothing saved.
    r = client.post(f"/admin/accounts/domains/{emea['id']}/limits", data={"csrf_token": auth.csrf(), "user_vm": "9"})
    assert r.status_code == 422 and "less than or equal to 3" in r.get_data(as_text=True)
    assert limit_of(app, client, emea["id"]) == 3
    assert "ROOT is never limited" in client.get(f"/admin/accounts/domains/{ROOT}/limits").get_data(as_text=True)
    auth.logout()
    auth.login("alice")
    assert client.get(f"/admin/accounts/domains/{sales['id']}/limits").status_code == 403


@pytest.mark.db
def test_parallel_deploys_from_two_sub_domains_at_a_domain_limit(app, client, world, tree):
    """Ten deploys at once, five by carol (sales) and five by dave (emea, below sales), with
    sales limited to three instances: exactly three pass, on every database."""
    ok(api(app, client, "admin", command="updateResourceLimit", domainid=tree["sales"]["id"], resourcetype=0, max=3))

    def one(i: int):
        user = accounts.get_user("carol" if i % 2 else "dave")
        vms.deploy(user, zone_uuid=world.zone, service_offering_uuid=world.small, template_uuid=world.template,
                   name=f"r{i}")

    results = _parallel(app, 10, one)
    assert results.count("ok") == 3, results
    assert all(r.startswith("532 Maximum domain resource limits of Type 'user_vm'") for r in results if r != "ok")
    assert domain_count(app, "sales") == 3 and live_vms(app, "carol") + live_vms(app, "dave") == 3
    assert domain_count(app, "emea") == live_vms(app, "dave")

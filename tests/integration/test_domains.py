"""Domains through the API (signed calls, jobs run inline): the tree (create, list, children,
rename with the subtree's paths, delete with and without cleanup), accounts in domains (names
unique per domain), and a domain admin who manages their subtree and sees nothing above or
beside it."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, Domain, User, VirtualMachine
from tests.integration.test_quotas import api
from tests.integration.test_vm_pages import _engines, deploy, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.db
ROOT = "00000000-0000-0000-0000-000000000001"
PASSWORD = "domains-test-pass-42"


def ok(status_body):
    status, body = status_body
    assert status == 200, body
    return body


def job(app, client, user, **params):
    """An async command, followed to its end: (jobstatus, jobresult)."""
    body = ok(api(app, client, user, **params))
    res = ok(api(app, client, user, command="queryAsyncJobResult", jobid=body["jobid"]))
    return res["jobstatus"], res.get("jobresult", {})


def make_domain(app, client, name, parent=None, user="admin"):
    args = {"parentdomainid": parent} if parent else {}
    return ok(api(app, client, user, command="createDomain", name=name, **args))["domain"]


def make_account(app, client, name, domainid, accounttype=0, user="admin", username=None):
    return ok(api(app, client, user, command="createAccount", username=username or name, password=PASSWORD,
                  email=f"{name}@x.y", firstname=name, lastname="T", domainid=domainid, accounttype=accounttype,
                  account=name))["account"]


@pytest.fixture
def tree(app, client, users):
    """ROOT / sales / emea, and beside sales: ops. Accounts: carol (user, sales), dave (user,
    emea), sam (domain admin of sales), olga (user, ops)."""
    sales = make_domain(app, client, "sales")
    emea = make_domain(app, client, "emea", sales["id"])
    ops = make_domain(app, client, "ops")
    make_account(app, client, "carol", sales["id"])
    make_account(app, client, "dave", emea["id"])
    make_account(app, client, "sam", sales["id"], accounttype=2)
    make_account(app, client, "olga", ops["id"])
    return {"sales": sales, "emea": emea, "ops": ops}


def test_the_tree(app, client, tree):
    sales, emea = tree["sales"], tree["emea"]
    assert sales["path"] == "ROOT/sales" and sales["level"] == 1 and sales["parentdomainid"] == ROOT
    assert emea["path"] == "ROOT/sales/emea" and emea["level"] == 2 and emea["parentdomainname"] == "sales"
    # Without listall: the caller's own domain; with it, the whole tree.
    assert [d["name"] for d in ok(api(app, client, "admin", command="listDomains"))["domain"]] == ["ROOT"]
    listed = ok(api(app, client, "admin", command="listDomains", listall="true"))["domain"]
    assert {d["path"]: d["haschild"] for d in listed} == {"ROOT": True, "ROOT/ops": False, "ROOT/sales": True,
                                                         "ROOT/sales/emea": False}
    assert [d["name"] for d in ok(api(app, client, "admin", command="listDomains", listall="true",
                                      level=2))["domain"]] == ["emea"]
    kids = ok(api(app, client, "admin", command="listDomainChildren", id=sales["id"]))["domain"]
    assert [d["name"] for d in kids] == ["emea"]
    everything = ok(api(app, client, "admin", command="listDomainChildren", isrecursive="true"))["domain"]
    assert sorted(d["name"] for d in everything) == ["emea", "ops", "sales"]
    # Bad input: 431, and nothing made.
    for args in ({"name": "sales"}, {"name": "a/b"}, {"name": "x", "parentdomainid": "5e1f0000-0000-4000-8000-000000000000"},
                 {"name": "x", "networkdomain": "-bad-"}):
        status, body = api(app, client, "admin", command="createDomain", **args)
        assert status == 431, (args, body)
    with app.app_context():
        assert db.session.query(Domain).count() == 4
    # A user sees only their own domain, and may not make domains (432: the User role may not call it).
    assert [d["name"] for d in ok(api(app, client, "carol", command="listDomains", listall="true"))["domain"]] == \
        ["sales"]
    assert api(app, client, "carol", command="createDomain", name="mine")[0] == 432


def test_accounts_are_named_per_domain(app, client, tree):
    sales = tree["sales"]
    # alice also exists in ROOT: another account (user names stay unique across domains in Nubo)
    alice2 = make_account(app, client, "alice", sales["id"], username="alice-sales")
    assert alice2["domainid"] == sales["id"] and alice2["domain"] == "sales" and alice2["domainpath"] == "ROOT/sales"
    status, body = api(app, client, "admin", command="createAccount", username="alice3", password=PASSWORD,
                       email="a@b.c", firstname="a", lastname="b", account="alice", domainid=sales["id"])
    assert status == 431 and "already exists" in body["errortext"]
    in_sales = ok(api(app, client, "admin", command="listAccounts", domainid=sales["id"]))["account"]
    assert sorted(a["name"] for a in in_sales) == ["alice", "carol", "sam"]
    below = ok(api(app, client, "admin", command="listAccounts", domainid=sales["id"], isrecursive="true"))["account"]
    assert sorted(a["name"] for a in below) == ["alice", "carol", "dave", "sam"]
    users = ok(api(app, client, "admin", command="listUsers", domainid=tree["emea"]["id"]))["user"]
    assert [u["username"] for u in users] == ["dave"] and users[0]["domain"] == "emea"
    sam = ok(api(app, client, "admin", command="listAccounts", name="sam", domainid=sales["id"]))["account"][0]
    assert sam["accounttype"] == 2 and sam["roletype"] == "DomainAdmin"
    # createUser names the account with its domain.
    u = ok(api(app, client, "admin", command="createUser", username="carol2", password=PASSWORD, email="c@x.y",
               firstname="c", lastname="d", account="carol", domainid=sales["id"]))["user"]
    assert u["account"] == "carol" and u["domainid"] == sales["id"]
    assert api(app, client, "admin", command="createUser", username="carol3", password=PASSWORD, email="c@x.y",
               firstname="c", lastname="d", account="carol")[0] == 431  # no carol in ROOT


def test_a_domain_admin_manages_the_subtree_only(app, client, world, tree):
    sales, emea, ops = tree["sales"], tree["emea"], tree["ops"]
    dave_vm, olga_vm, alice_vm = (deploy(app, world, user=u, name=f"{u}-vm") for u in ("dave", "olga", "alice"))
    # Sees the accounts, users, VMs and domains of sales and below; nothing of ROOT's or ops'.
    names = sorted(a["name"] for a in ok(api(app, client, "sam", command="listAccounts", listall="true"))["account"])
    assert names == ["carol", "dave", "sam"]
    doms = ok(api(app, client, "sam", command="listDomains", listall="true"))["domain"]
    assert sorted(d["path"] for d in doms) == ["ROOT/sales", "ROOT/sales/emea"]
    vm_ids = [v["id"] for v in ok(api(app, client, "sam", command="listVirtualMachines", listall="true"))
              .get("virtualmachine", [])]
    assert vm_ids == [dave_vm]
    for vm in (olga_vm, alice_vm):  # another domain's VM: "not found", like a missing one
        status, body = api(app, client, "sam", command="stopVirtualMachine", id=vm)
        assert status == 431, body
    assert job(app, client, "sam", command="stopVirtualMachine", id=dave_vm)[0] == 1  # his subtree's: done
    # Makes domains and accounts below his own domain, none elsewhere.
    sub = make_domain(app, client, "apac", sales["id"], user="sam")
    assert sub["path"] == "ROOT/sales/apac"
    assert api(app, client, "sam", command="createDomain", name="x", parentdomainid=ROOT)[0] == 431
    assert api(app, client, "sam", command="createDomain", name="x", parentdomainid=ops["id"])[0] == 431
    make_account(app, client, "erin", emea["id"], user="sam")
    for domainid, accounttype in ((ops["id"], 0), (ROOT, 0), (emea["id"], 1)):
        status, _ = api(app, client, "sam", command="createAccount", username="zed", password=PASSWORD,
                        email="z@x.y", firstname="z", lastname="z", domainid=domainid, accounttype=accounttype)
        assert status in (431, 531)
    assert api(app, client, "sam", command="updateDomain", id=ROOT, name="x")[0] == 431
    assert api(app, client, "sam", command="updateDomain", id=sales["id"], name="x")[0] == 531  # his own
    assert api(app, client, "sam", command="deleteDomain", id=ops["id"])[0] == 431
    olga = ok(api(app, client, "admin", command="listUsers", username="olga", listall="true"))["user"][0]
    assert api(app, client, "sam", command="disableUser", id=olga["id"])[0] == 531  # outside: CloudStack's 531
    # A user of the subtree is no admin: carol sees her own account only.
    mine = ok(api(app, client, "carol", command="listAccounts", listall="true"))["account"]
    assert [a["name"] for a in mine] == ["carol"]
    # An owned object names its domain.
    v = ok(api(app, client, "sam", command="listVirtualMachines", id=dave_vm))["virtualmachine"][0]
    assert v["domainid"] == emea["id"] and v["domain"] == "emea" and v["account"] == "dave"


def test_a_job_is_seen_by_its_account_its_domain_admins_and_root(app, client, world, tree):
    """queryAsyncJobResult reads the job's row, then decides: plain for root and for the job's own
    account; asked of the database for the others (a domain admin's subtree)."""
    started = {u: ok(api(app, client, u, command="deployVirtualMachine", zoneid=world.zone, serviceofferingid=world.small,
                         templateid=world.template, name=f"{u}-vm"))["jobid"] for u in ("dave", "olga")}
    mine = ok(api(app, client, "dave", command="queryAsyncJobResult", jobid=started["dave"]))
    assert mine["jobid"] == started["dave"] and mine["account"] == "dave" and mine["cmd"] == "deployVirtualMachine"
    assert mine["domainid"] == tree["emea"]["id"] and mine["userid"] and mine["jobinstancetype"] == "VirtualMachine"
    for who in ("sam", "admin"):  # his subtree's job; root's every job
        assert ok(api(app, client, who, command="queryAsyncJobResult", jobid=started["dave"])) == mine
    for who, jobid in (("sam", started["olga"]), ("olga", started["dave"]), ("carol", started["dave"])):
        status, body = api(app, client, who, command="queryAsyncJobResult", jobid=jobid)
        assert status == 431 and "Unable to find job" in body["errortext"], (who, body)
    # The lists agree: a page (read by its ids), and every row (no page).
    for args in ({}, {"page": 1, "pagesize": 1}):
        listed = ok(api(app, client, "sam", command="listAsyncJobs", **args))
        assert [j["jobid"] for j in listed["asyncjobs"]] == [started["dave"]] and listed["count"] == 1
        assert listed["asyncjobs"][0] == mine
    assert ok(api(app, client, "olga", command="listAsyncJobs"))["asyncjobs"][0]["jobid"] == started["olga"]


def test_rename_moves_the_subtree_paths(app, client, tree):
    ok(api(app, client, "admin", command="updateDomain", id=tree["sales"]["id"], name="sales2",
           networkdomain="sales.example"))
    listed = ok(api(app, client, "admin", command="listDomains", listall="true"))["domain"]
    assert sorted(d["path"] for d in listed) == ["ROOT", "ROOT/ops", "ROOT/sales2", "ROOT/sales2/emea"]
    assert next(d for d in listed if d["name"] == "sales2")["networkdomain"] == "sales.example"
    assert api(app, client, "admin", command="updateDomain", id=tree["sales"]["id"], name="ops")[0] == 431
    assert api(app, client, "admin", command="updateDomain", id=ROOT, name="TOP")[0] == 431
    # The domain admin of the renamed domain still manages its subtree.
    doms = ok(api(app, client, "sam", command="listDomains", listall="true"))["domain"]
    assert sorted(d["path"] for d in doms) == ["ROOT/sales2", "ROOT/sales2/emea"]


def test_delete(app, client, world, tree):
    ops, sales = tree["ops"], tree["sales"]
    status, body = api(app, client, "admin", command="deleteDomain", id=ops["id"])
    assert status == 536 and "accounts" in body["errortext"]  # not empty, no cleanup: refused before any job
    assert api(app, client, "admin", command="deleteDomain", id=ROOT)[0] == 531
    # cleanup: its accounts go through deleteAccount's steps (their names freed: "olga#<id>"), then the domain.
    assert job(app, client, "admin", command="deleteDomain", id=ops["id"], cleanup="true")[0] == 1
    names = [d["name"] for d in ok(api(app, client, "admin", command="listDomains", listall="true"))["domain"]]
    assert "ops" not in names
    with app.app_context():
        olga = db.session.scalar(select(Account).where(Account.name.startswith("olga#")))
        assert olga is not None and olga.removed is not None and olga.cleanup_started is not None
        assert db.session.scalar(select(User.api_key).where(User.username.startswith("olga#"))) is None  # keys too
    # An account of the subtree owning a VM: the VM is expunged with its account, the domains go.
    deploy(app, world, user="dave", name="keep")
    assert job(app, client, "admin", command="deleteDomain", id=sales["id"], cleanup="true")[0] == 1
    with app.app_context():
        assert db.session.scalar(select(Domain.removed).where(Domain.uuid == sales["id"])) is not None
        assert db.session.scalar(select(VirtualMachine.removed).where(VirtualMachine.name == "keep")) is not None
        assert db.session.scalar(select(Account.id).where(Account.name == "dave")) is None
    # The same name may be used again once the domain is gone.
    assert make_domain(app, client, "ops")["path"] == "ROOT/ops"


def test_domain_pages(app, client, auth, tree):
    """Admin → Accounts → Domains: the tree, create, edit, delete (with clean-up); an account
    made in a domain from the account form."""
    import re
    auth.login("admin")
    html = client.get("/admin/accounts/domains").get_data(as_text=True)
    assert "ROOT/sales/emea" in html and "ROOT/ops" in html
    token = auth.csrf("/admin/accounts/domains/new")
    resp = client.post("/admin/accounts/domains/new", data={"csrf_token": token, "name": "apac",
                                                            "parent": tree["sales"]["id"], "network_domain": ""})
    assert resp.status_code == 302
    resp = client.post("/admin/accounts/domains/new", data={"csrf_token": token, "name": "a/b", "parent": ROOT})
    assert resp.status_code == 422 and "can&#39;t contain" in resp.get_data(as_text=True)
    with app.app_context():
        apac = db.session.scalar(select(Domain).where(Domain.name == "apac"))
        assert apac.path == "/sales/apac/"
    edit = client.get(f"/admin/accounts/domains/{apac.uuid}/edit", follow_redirects=True).get_data(as_text=True)
    assert 'value="apac"' in edit
    resp = client.post(f"/admin/accounts/domains/{apac.uuid}/edit?name=apac",
                       data={"csrf_token": token, "name": "asia", "network_domain": "asia.example"})
    assert resp.status_code == 302
    resp = client.post("/admin/accounts/new", data={"csrf_token": token, "domain": apac.uuid, "role": "domainadmin",
                                                    "account": "ann", "username": "ann", "password": PASSWORD})
    assert resp.status_code == 302
    accounts_html = client.get("/admin/accounts/").get_data(as_text=True)
    assert re.search(r"ann</strong></a></td>\s*<td[^>]*>asia</td>\s*<td>Domain admin", accounts_html)
    resp = client.post(f"/admin/accounts/domains/{apac.uuid}/delete", data={"csrf_token": token})
    assert resp.status_code == 302  # refused (flash): it has an account
    with app.app_context():
        assert db.session.get(Domain, apac.id).removed is None
    client.post(f"/admin/accounts/domains/{apac.uuid}/delete", data={"csrf_token": token, "cleanup": "y"})
    with app.app_context():
        assert db.session.get(Domain, apac.id).removed is not None
    auth.logout()
    auth.login("alice")
    assert client.get("/admin/accounts/domains").status_code == 403

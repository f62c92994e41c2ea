"""Domains with the real `cs` client against a live server (a real huey consumer): a tree made,
listed, renamed and deleted (async, with cleanup), accounts and users in a domain, and a domain
admin's view of their subtree."""
from __future__ import annotations

import pytest
from cs import CloudStackApiException

pytestmark = pytest.mark.xdist_group("live-api")
ROOT = "00000000-0000-0000-0000-000000000001"
PASSWORD = "domains-cs-pass-0042"


def err(call) -> dict:
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def test_domains_with_cs(live):
    api = live.client(fetch_result=True)
    sales = api.createDomain(name="sales", networkdomain="sales.example")["domain"]
    emea = api.createDomain(name="emea", parentdomainid=sales["id"])["domain"]
    assert emea["path"] == "ROOT/sales/emea" and emea["parentdomainname"] == "sales"
    assert err(lambda: api.createDomain(name="emea", parentdomainid=sales["id"]))["errorcode"] == 431
    listed = api.listDomains(listall=True)["domain"]
    assert [d["path"] for d in listed] == ["ROOT", "ROOT/sales", "ROOT/sales/emea"]
    assert [d["name"] for d in api.listDomainChildren(id=ROOT, isrecursive=True)["domain"]] == ["sales", "emea"]
    acct = api.createAccount(username="sam", password=PASSWORD, email="sam@example.org", firstname="Sam",
                             lastname="Admin", accounttype=2, domainid=sales["id"])["account"]
    assert acct["domainid"] == sales["id"] and acct["roletype"] == "DomainAdmin"
    api.createAccount(username="dave", password=PASSWORD, email="dave@example.org", firstname="Dave",
                      lastname="User", domainid=emea["id"])
    api.createUser(username="dave2", password=PASSWORD, email="d2@example.org", firstname="D", lastname="2",
                   account="dave", domainid=emea["id"])
    assert sorted(u["username"] for u in api.listUsers(domainid=emea["id"])["user"]) == ["dave", "dave2"]
    # The domain admin, with his own keys: his subtree, nothing above.
    with live.flask_app.app_context():
        from app.services import accounts
        key, secret = accounts.ensure_keys(accounts.get_user("sam"))
    from cs import CloudStack
    sam = CloudStack(endpoint=live.url, key=key, secret=secret, fetch_result=True, poll_interval=0.2)
    assert [d["path"] for d in sam.listDomains(listall=True)["domain"]] == ["ROOT/sales", "ROOT/sales/emea"]
    assert sorted(a["name"] for a in sam.listAccounts(listall=True)["account"]) == ["dave", "sam"]
    assert err(lambda: sam.createDomain(name="x", parentdomainid=ROOT))["errorcode"] == 431
    apac = sam.createDomain(name="apac", parentdomainid=sales["id"])["domain"]
    # Rename: the subtree's paths follow.
    api.updateDomain(id=sales["id"], name="sales2")
    assert sorted(d["path"] for d in api.listDomains(listall=True)["domain"]) == [
        "ROOT", "ROOT/sales2", "ROOT/sales2/apac", "ROOT/sales2/emea"]
    # Delete: an empty leaf at once; a domain with accounts only with cleanup (async).
    assert sam.deleteDomain(id=apac["id"])["success"] is True
    assert err(lambda: api.deleteDomain(id=emea["id"]))["errorcode"] == 536
    assert api.deleteDomain(id=emea["id"], cleanup=True)["success"] is True
    assert api.listUsers(username="dave", listall=True) == {}
    assert err(lambda: api.deleteDomain(id=ROOT))["errorcode"] == 531

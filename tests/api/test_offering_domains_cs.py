"""Offerings restricted to domains with the real `cs` client: createServiceOffering /
createDiskOffering with domainid (a comma-separated list), the response's domainid / domain, a
user of another domain not seeing them and refused with 531 when creating a volume from one,
updateDiskOffering domainid=public making one public again; an offering of one zone (zoneid)."""
import pytest
from cs import CloudStack, CloudStackApiException

pytestmark = pytest.mark.xdist_group("live-api")
PASSWORD = "offering-domains-pass-0042"


def err(call):
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def test_offerings_per_domain_with_cs(live):
    api = live.client()
    sales = api.createDomain(name="sales")["domain"]
    ops = api.createDomain(name="ops")["domain"]
    api.createAccount(username="carol", password=PASSWORD, email="c@example.org", firstname="C", lastname="U",
                      domainid=sales["id"])
    with live.flask_app.app_context():
        from app.services import accounts
        key, secret = accounts.ensure_keys(accounts.get_user("carol"))
    carol = CloudStack(endpoint=live.url, key=key, secret=secret, poll_interval=0.2)
    z = api.createZone(name="DZ", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2")["zone"]

    so = api.createServiceOffering(name="two", cpunumber=1, cpuspeed=1000, memory=256,
                                   domainid=f"{sales['id']},{ops['id']}")["serviceoffering"]
    assert set(so["domainid"].split(",")) == {sales["id"], ops["id"]} and set(so["domain"].split(",")) == {"sales", "ops"}
    api.createServiceOffering(name="ops-only", cpunumber=1, cpuspeed=1000, memory=256, domainid=ops["id"])
    api.createServiceOffering(name="public", cpunumber=1, cpuspeed=1000, memory=256)
    assert sorted(o["name"] for o in carol.listServiceOfferings()["serviceoffering"]) == ["public", "two"]
    assert sorted(o["name"] for o in api.listServiceOfferings(domainid=ops["id"])["serviceoffering"]) == \
        ["ops-only", "two"]
    e = err(lambda: api.createServiceOffering(name="bad", cpunumber=1, cpuspeed=1000, memory=256,
                                              domainid="5e1f0000-0000-4000-8000-000000000000"))
    assert e["errorcode"] == 431
    assert "bad" not in [o["name"] for o in api.listServiceOfferings()["serviceoffering"]]

    disk = api.createDiskOffering(name="ops-disk", disksize=1, domainid=ops["id"])["diskoffering"]
    assert (disk["domainid"], disk["domain"]) == (ops["id"], "ops")
    assert carol.listDiskOfferings() == {}
    e = err(lambda: carol.createVolume(name="v", zoneid=z["id"], diskofferingid=disk["id"]))
    assert e["errorcode"] == 531 and "disk offering ops-disk" in e["errortext"]
    public = api.updateDiskOffering(id=disk["id"], domainid="public")["diskoffering"]
    assert "domainid" not in public
    v = carol.createVolume(name="v", zoneid=z["id"], diskofferingid=disk["id"], fetch_result=True)["volume"]
    assert v["diskofferingname"] == "ops-disk"

    in_dz = api.createDiskOffering(name="dz-disk", disksize=1, zoneid=z["id"])["diskoffering"]
    assert (in_dz["zoneid"], in_dz["zone"]) == (z["id"], "DZ")
    assert [o["name"] for o in carol.listDiskOfferings(zoneid=z["id"])["diskoffering"]] == ["ops-disk", "dz-disk"]

"""Scoped settings (CloudStack's ConfigKey scopes): values per zone, cluster, account and domain,
the fallback order of a read (cluster → zone → global, account → domain → parent domains →
global), the services that read them (the planner's overprovisioning factor per cluster), and
listConfigurations/updateConfiguration/resetConfiguration with zoneid, clusterid, accountid."""
from __future__ import annotations

import dataclasses

import pytest

from app.extensions import db
from app.models import Cluster, Pod
from app.services import accounts, planner, settings
from app.services.errors import InsufficientCapacity, InvalidParameter
from app.services.planner import Need
from tests.integration.test_planner import make_zone
from tests.integration.test_quotas import api

CPU = "cpu.overprovisioning.factor"


def ok(status_body):
    status, body = status_body
    assert status == 200, body
    return body


def two_clusters():
    zone, hosts = make_zone(n_hosts=1, cpus=1, mhz=1000, mem_gib=1)
    other = Cluster(zone=zone, pod=db.session.get(Pod, hosts[0].pod_id), name="C2", hypervisor_type="Simulator")
    db.session.add(other)
    db.session.commit()
    return zone, db.session.get(Cluster, hosts[0].cluster_id), other


def test_cluster_then_zone_then_global(app):
    with app.app_context():
        zone, c1, c2 = two_clusters()
        assert settings.get(CPU, cluster=c1.id) == 1.0
        settings.update(CPU, "3", scope="zone", target=zone)
        assert settings.get(CPU, cluster=c1.id) == 3.0 and settings.get(CPU, zone=zone.id) == 3.0
        settings.update(CPU, "2", scope="cluster", target=c1)
        assert settings.get(CPU, cluster=c1.id) == 2.0  # the cluster's own
        assert settings.get(CPU, cluster=c2) == 3.0  # its zone's
        assert settings.get(CPU) == 1.0  # the global value is untouched
        settings.reset(CPU, scope="cluster", target=c1)
        assert settings.get(CPU, cluster=c1.id) == 3.0
        settings.reset(CPU, scope="zone", target=zone)
        assert settings.get(CPU, cluster=c1.id) == 1.0


def test_account_then_domain_then_global(app, users):
    name = "custom.diskoffering.size.max"
    with app.app_context():
        alice = accounts.get_account("alice")
        settings.update(name, "10", scope="account", target=alice)
        assert settings.get(name, account=alice.id) == 10
        assert settings.get(name, account=accounts.get_account("bob")) == 1024
        with pytest.raises(InvalidParameter, match="Invalid scope id provided for the parameter"):
            settings.update(name, "5", scope="domain", target=alice.domain_id)  # not a domain setting
        with pytest.raises(InvalidParameter, match="Invalid scope id provided for the parameter"):
            settings.update("vm.allocation.algorithm", "firstfit", scope="zone", target=1)


def test_bad_value_in_a_scope_changes_nothing(app):
    with app.app_context():
        zone, c1, _ = two_clusters()
        settings.update(CPU, "2", scope="cluster", target=c1)
        for bad in ("abc", "0.5", "nan", ""):
            with pytest.raises(InvalidParameter):
                settings.update(CPU, bad, scope="cluster", target=c1)
        assert settings.get(CPU, cluster=c1.id) == 2.0


@pytest.mark.db  # the factor per cluster is a CASE in the planner's SQL
def test_planner_reads_the_clusters_factor(app):
    with app.app_context():
        zone, c1, _ = two_clusters()
        with pytest.raises(InsufficientCapacity):
            planner.plan_and_reserve(zone, "Simulator", Need.of(2, 1000, 512))
        settings.update(CPU, "2", scope="cluster", target=c1)
        assert planner.plan_and_reserve(zone, "Simulator", Need.of(2, 1000, 512))
        db.session.rollback()


@pytest.mark.db  # capacity sums per cluster factor in SQL
def test_capacity_counts_each_clusters_factor(app):
    from app.services import capacity, inventory
    from app.models import Host
    with app.app_context():
        zone, c1, c2 = two_clusters()
        settings.update(CPU, "2", scope="cluster", target=c1)
        settings.update("mem.overprovisioning.factor", "3", scope="zone", target=zone)
        cpu = next(c for c in capacity.list_capacity(zone.uuid) if c["type"] == capacity.CPU)
        assert cpu["capacitytotal"] == 2000  # one host of 1 × 1000 MHz, times 2
        sums = inventory.host_sums(Host.cluster_id, [c1.id])[c1.id]
        assert sums.cpu.total == 2000 and sums.memory.total == 3 * (1 << 30)


def test_api_scoped_values(app, client, users):
    with app.app_context():
        zone, c1, _ = two_clusters()
        zone_id, cluster_id = zone.uuid, c1.uuid
        alice = accounts.get_account("alice").uuid
    body = ok(api(app, client, "admin", command="updateConfiguration", name=CPU, value="2.5", clusterid=cluster_id))
    assert body["configuration"]["scope"] == "cluster" and body["configuration"]["value"] == "2.5"
    listed = ok(api(app, client, "admin", command="listConfigurations", clusterid=cluster_id))["configuration"]
    by_name = {c["name"]: c for c in listed}
    assert by_name[CPU]["value"] == "2.5" and by_name[CPU]["scope"] == "cluster"
    assert "vm.allocation.algorithm" not in by_name  # global only
    assert ok(api(app, client, "admin", command="listConfigurations", name=CPU, zoneid=zone_id)
              )["configuration"][0]["value"] == "1.0"
    glob = ok(api(app, client, "admin", command="listConfigurations", name=CPU))["configuration"][0]
    assert glob["value"] == "1.0" and glob["scope"] == "cluster" and glob["type"] == "Decimal"
    assert glob["defaultvalue"] == "1.0" and glob["isdynamic"] is True
    status, body = api(app, client, "admin", command="updateConfiguration", name=CPU, value="2",
                       clusterid=cluster_id, zoneid=zone_id)
    assert status == 431 and "cannot handle multiple IDs" in body["errortext"]
    status, body = api(app, client, "admin", command="updateConfiguration", name="vm.allocation.algorithm",
                       value="firstfit", zoneid=zone_id)
    assert status == 431 and body["errortext"] == "Invalid scope id provided for the parameter vm.allocation.algorithm"
    ok(api(app, client, "admin", command="updateConfiguration", name="allow.user.expunge.recover.vm", value="false",
           accountid=alice))
    with app.app_context():
        assert settings.get("allow.user.expunge.recover.vm", account=accounts.get_account("alice").id) is False
        assert settings.get("allow.user.expunge.recover.vm", account=accounts.get_account("bob").id) is True
    reset = ok(api(app, client, "admin", command="resetConfiguration", name=CPU, clusterid=cluster_id))
    assert reset["configuration"]["value"] == "1.0"
    status, _ = api(app, client, "alice", command="updateConfiguration", name=CPU, value="2", clusterid=cluster_id)
    assert status != 200


def test_domain_chain(app, users):
    name = "custom.diskoffering.size.max"
    with app.app_context():
        # a domain scope only where the definition names it: patch one in for this test
        d = settings.DEFINITIONS[name]
        settings.DEFINITIONS[name] = dataclasses.replace(d, scopes=("account", "domain"))
        try:
            alice = accounts.get_account("alice")
            settings.update(name, "20", scope="domain", target=alice.domain_id)  # ROOT, alice's domain
            assert settings.get(name, account=alice.id) == 20
            settings.update(name, "7", scope="account", target=alice)
            assert settings.get(name, account=alice.id) == 7
            assert settings.get(name, domain=alice.domain_id) == 20
        finally:
            settings.DEFINITIONS[name] = d


def test_values_go_with_what_they_were_set_for(app, users):
    """A removed cluster's, zone's or account's values are removed with it (CloudStack drops
    its *_details rows): none is left behind to apply to a later object with the same id."""
    from app.models import SettingValue, User
    from app.services import account_deletion, zones
    name = "custom.diskoffering.size.max"
    with app.app_context():
        zone, c1, c2 = two_clusters()
        settings.update(CPU, "2", scope="cluster", target=c2)
        settings.update(CPU, "3", scope="zone", target=zone)
        alice = accounts.get_account("alice")
        settings.update(name, "10", scope="account", target=alice)
        admin = db.session.scalar(db.select(User).where(User.username == "admin"))

        def scopes():
            return sorted((v.scope, v.scope_id) for v in db.session.scalars(db.select(SettingValue)))
        assert scopes() == sorted([("cluster", c2.id), ("zone", zone.id), ("account", alice.id)])
        zones.delete_cluster(admin, c2.uuid)
        assert ("cluster", c2.id) not in scopes()
        account_deletion.run_now(admin, alice)
        assert scopes() == [("zone", zone.id)]
        assert settings.get(name, account=alice.id) == 1024

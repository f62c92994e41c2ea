"""Public IP addresses and the rules on them, through the services (CloudStack's model):
associate/disassociate with quota type 1 taken and given back in the rows' own transaction
(parallel associates at the limit), static NAT, firewall / port forwarding / ip forwarding /
egress rules with CloudStack's checks and conflict rules, a router failure that leaves
nothing changed, release_all for deleteNetwork, and what the router is given (for_router).

The zone, the isolated network, the public range and the NICs are rows made here (the
network services that normally make them are other modules'); routers.apply is the stub or
a monkeypatched failure."""
from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.hypervisors.simulator import dispose_engines
from app.models import (Event, FirewallRule, IpState, Network, NetworkOffering, Nic, PublicIpAddress, ResourceCount,
                        RuleState, VlanIpRange, new_uuid)
from app.services import accounts, settings, vms
from app.services.errors import ResourceUnavailable, ServiceError
from app.services.network import public_ips, routers, rules
from tests.helpers.sim_zone import simulator_zone

# The tests where the database's locking and transactions decide also run on PostgreSQL and MariaDB (db).

ISOLATED_SERVICES = {"Dhcp": "VirtualRouter", "Dns": "VirtualRouter", "UserData": "VirtualRouter",
                     "SourceNat": "VirtualRouter", "StaticNat": "VirtualRouter", "PortForwarding": "VirtualRouter",
                     "Firewall": "VirtualRouter"}


@pytest.fixture(autouse=True)
def _engines():
    yield
    dispose_engines()


def _isolated(zone, owner_id: int, offering, cidr: str, name: str) -> Network:
    net = Network(uuid=new_uuid(), name=name, zone_id=zone.id, network_offering_id=offering.id, guest_type="Isolated",
                  account_id=owner_id, cidr=cidr, gateway=cidr.replace("0/24", "1"), netmask="255.255.255.0",
                  start_ip=cidr.replace("0/24", "2"), end_ip=cidr.replace("0/24", "254"), state="Implemented")
    db.session.add(net)
    db.session.flush()
    return net


def _vm_on(user, sz, net: Network, address: str, name: str):
    vm, _ = vms.deploy(user, zone_uuid=sz.zone.uuid, service_offering_uuid=sz.offering.uuid,
                       template_uuid=sz.template.uuid, name=name, start=False)
    db.session.add(Nic(uuid=new_uuid(), vm_id=vm.id, network_id=net.id, mac_address=f"02:00:0a:{address.split('.')[-1]:0>2}:"
                       f"{len(name):02x}:{abs(hash(name)) % 256:02x}", ip_address=address, is_default=False,
                       device_id=1))
    db.session.commit()
    return vm


@pytest.fixture
def nw(app, users, tmp_path):
    """A Simulator zone, alice's and bob's isolated networks (offering with source NAT, static
    NAT, port forwarding, firewall), a public range 198.18.0.10-29 (Free), a VM of each on
    their network, and the source-NAT address of alice's network (as implementing it takes)."""
    with app.app_context():
        admin, alice, bob = (accounts.get_user(n) for n in ("admin", "alice", "bob"))
        sz = simulator_zone(admin, tmp_path, name="Z1", guest_cidr="10.9.0.0/24",
                            host_urls=["simulator://h1?cpus=8&memory=16384"])
        off = NetworkOffering(uuid=new_uuid(), name="DefaultIsolatedNetworkOfferingWithSourceNatService",
                              display_text="iso", guest_ip_type="Isolated", services=json.dumps(ISOLATED_SERVICES),
                              egress_default_policy=False)
        db.session.add(off)
        db.session.flush()
        anet = _isolated(sz.zone, alice.account_id, off, "10.1.1.0/24", "alice-net")
        bnet = _isolated(sz.zone, bob.account_id, off, "10.1.2.0/24", "bob-net")
        rng = VlanIpRange(uuid=new_uuid(), zone_id=sz.zone.id, vlan="untagged", gateway="198.18.0.1",
                          netmask="255.255.255.0", start_ip="198.18.0.10", end_ip="198.18.0.29")
        db.session.add(rng)
        db.session.flush()
        db.session.add_all([PublicIpAddress(uuid=new_uuid(), zone_id=sz.zone.id, vlan_range_id=rng.id,
                                            address=f"198.18.0.{i}") for i in range(10, 30)])
        db.session.commit()
        for limit in ("max.account.user.vms", "max.account.cpus", "max.account.memory", "max.account.volumes",
                      "max.account.primary.storage"):
            settings.update(limit, "-1")
        avm = _vm_on(alice, sz, anet, "10.1.1.10", "web")
        bvm = _vm_on(bob, sz, bnet, "10.1.2.10", "bobvm")
        snat = public_ips.claim(sz.zone.id, alice.account_id, anet.id, source_nat=True)
        return SimpleNamespace(zone=sz.zone.uuid, zone_id=sz.zone.id, anet=anet.uuid, bnet=bnet.uuid, avm=avm.uuid,
                               bvm=bvm.uuid, snat=snat.uuid, snat_address=snat.address, offering=off.id)


def _user(name):
    return accounts.get_user(name)


def _count(name: str) -> int:
    acct = accounts.get_user(name).account_id
    return db.session.scalar(select(ResourceCount.count).where(ResourceCount.account_id == acct,
                                                               ResourceCount.resource_type == "public_ip")) or 0


def _associate(name="alice", net=None, nw=None) -> PublicIpAddress:
    ip = public_ips.associate_ip(_user(name), network_uuid=net or nw.anet)
    return public_ips.finish_associate(_user(name), ip.uuid)


def _rules(ip_uuid=None) -> list[FirewallRule]:
    q = select(FirewallRule)
    if ip_uuid:
        q = q.where(FirewallRule.public_ip_id == select(PublicIpAddress.id).where(
            PublicIpAddress.uuid == ip_uuid).scalar_subquery())
    return list(db.session.scalars(q))


def _pf(ip, vm, public=80, private=8080, **kw) -> FirewallRule:
    r = rules.create_port_forwarding_rule(_user(kw.pop("user", "alice")), ip_uuid=ip, protocol=kw.pop("protocol", "tcp"),
                                          public_port=public, private_port=private, vm_uuid=vm, **kw)
    return rules.activate(_user("alice"), r.uuid)


def _fw(ip, start=None, end=None, user="alice", **kw) -> FirewallRule:
    r = rules.create_firewall_rule(_user(user), ip_uuid=ip, protocol=kw.pop("protocol", "tcp"), start_port=start,
                                   end_port=end, **kw)
    return rules.activate(_user(user), r.uuid)


def _error(fn, *a, **kw) -> ServiceError:
    with pytest.raises(ServiceError) as e:
        fn(*a, **kw)
    db.session.rollback()
    return e.value


# --- Associate, quota, release ------------------------------------------------------------------

@pytest.mark.db
def test_associate_counts_and_release_gives_back_with_the_rules(app, nw):
    with app.app_context():
        assert _count("alice") == 1  # the source NAT address counts
        ip = _associate(nw=nw)
        assert (ip.state, ip.is_source_nat, ip.quota_counted) == (IpState.ALLOCATED, False, True)
        assert _count("alice") == 2
        _fw(ip.uuid, 22, 22, cidrs=["203.0.113.0/24"])
        pf = _pf(ip.uuid, nw.avm, 80, 8080)
        assert {r.purpose for r in _rules(ip.uuid)} == {"Firewall", "PortForwarding"}
        assert len(_rules(ip.uuid)) == 3  # with the PF rule's own firewall rule (openfirewall)
        assert pf.state == RuleState.ACTIVE
        public_ips.disassociate_ip(_user("alice"), ip.uuid)
        db.session.expire_all()
        ip = db.session.get(PublicIpAddress, ip.id)
        assert (ip.state, ip.account_id, ip.network_id, ip.quota_counted, ip.allocated) == (IpState.FREE, None, None,
                                                                                            False, None)
        assert _rules(ip.uuid) == [] and _count("alice") == 1
        types = set(db.session.scalars(select(Event.type)))
        assert {"NET.IPASSIGN", "NET.IPRELEASE", "FIREWALL.OPEN", "NET.RULEADD"} <= types


@pytest.mark.db
def test_parallel_associates_at_the_limit_take_exactly_the_limit(app, nw):
    with app.app_context():
        settings.update("max.account.public.ips", "4")  # the source NAT address is one of them
        alice = _user("alice")
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(10, timeout=60)

    def one():
        barrier.wait()
        with app.app_context():
            try:
                public_ips.associate_ip(accounts.get_user("alice"), network_uuid=nw.anet)
                out = "ok"
            except ServiceError as e:
                out = f"{e.code}"
            finally:
                db.session.remove()
        with lock:
            results.append(out)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count("ok") == 3, results
    assert set(results) == {"ok", "532"}, results
    with app.app_context():
        held = db.session.scalar(select(func.count()).select_from(PublicIpAddress).where(
            PublicIpAddress.account_id == alice.account_id, PublicIpAddress.quota_counted.is_(True)))
        assert held == 4 and _count("alice") == 4
        addresses = db.session.scalars(select(PublicIpAddress.address).where(
            PublicIpAddress.state == IpState.ALLOCATED)).all()
        assert len(addresses) == len(set(addresses)) == 4


def test_associate_refusals_change_nothing(app, nw):
    with app.app_context():
        e = _error(public_ips.associate_ip, _user("alice"), network_uuid=nw.bnet)
        assert e.code == 431  # another account's network: not found
        e = _error(public_ips.associate_ip, _user("alice"), network_uuid=nw.anet, address="198.18.0.200")
        assert e.code == 431
        settings.update("max.account.public.ips", "1")
        e = _error(public_ips.associate_ip, _user("alice"), network_uuid=nw.anet)
        assert e.code == 532
        settings.update("max.account.public.ips", "20")
        ip = public_ips.associate_ip(_user("alice"), zone_uuid=nw.zone, address="198.18.0.29")  # its one network
        assert ip.address == "198.18.0.29"
        e = _error(public_ips.associate_ip, _user("bob"), network_uuid=nw.bnet, address="198.18.0.29")
        assert e.code == 431  # not free
        assert _count("alice") == 2 and _count("bob") == 0


def test_no_free_address_is_insufficient_capacity(app, nw):
    with app.app_context():
        db.session.execute(db.update(PublicIpAddress).where(PublicIpAddress.state == IpState.FREE)
                           .values(state=IpState.ALLOCATED))
        db.session.commit()
        assert _error(public_ips.associate_ip, _user("bob"), network_uuid=nw.bnet).code == 533
        assert _count("bob") == 0


def test_source_nat_address_cannot_be_released(app, nw):
    with app.app_context():
        e = _error(public_ips.disassociate_ip, _user("alice"), nw.snat)
        assert e.code == 431 and "source nat" in e.message
        assert db.session.scalar(select(PublicIpAddress.state).where(PublicIpAddress.uuid == nw.snat)) == "Allocated"


def test_another_accounts_ip_is_refused(app, nw):
    with app.app_context():
        ip = _associate(nw=nw)
        before = len(_rules())
        for call in (lambda: rules.create_firewall_rule(_user("bob"), ip_uuid=ip.uuid, protocol="tcp", start_port=22),
                     lambda: rules.create_port_forwarding_rule(_user("bob"), ip_uuid=ip.uuid, protocol="tcp",
                                                               public_port=80, private_port=80, vm_uuid=nw.bvm),
                     lambda: public_ips.disassociate_ip(_user("bob"), ip.uuid),
                     lambda: public_ips.enable_static_nat(_user("bob"), ip_uuid=ip.uuid, vm_uuid=nw.bvm)):
            e = _error(call)
            assert e.code == 431 and "Unable to find" in e.message, e.message  # as a missing one
        assert len(_rules()) == before
        # alice's rule cannot name bob's VM (another account's VM is not found)
        assert _error(rules.create_port_forwarding_rule, _user("alice"), ip_uuid=ip.uuid, protocol="tcp",
                      public_port=80, private_port=80, vm_uuid=nw.bvm).code == 431
        # and bob cannot delete alice's rule
        fw = _fw(ip.uuid, 22)
        assert _error(rules.delete_firewall_rule, _user("bob"), fw.uuid).code == 431


# --- Conflicts and validation ---------------------------------------------------------------------

def test_colliding_ranges_are_refused_and_nothing_changes(app, nw):
    with app.app_context():
        ip = _associate(nw=nw).uuid
        _pf(ip, nw.avm, 8000, 8000, public_end_port=8010, private_end_port=8010)
        before = {(r.purpose, r.start_port, r.end_port) for r in _rules(ip)}
        e = _error(rules.create_port_forwarding_rule, _user("alice"), ip_uuid=ip, protocol="tcp", public_port=8005,
                   public_end_port=8015, private_port=8005, private_end_port=8015, vm_uuid=nw.avm)
        assert e.code == 537 and e.message.startswith("The range specified, 8005-8015, conflicts with rule"), e.message
        assert {(r.purpose, r.start_port, r.end_port) for r in _rules(ip)} == before
        # the same ports in UDP are another rule (and get their own firewall rule)
        _pf(ip, nw.avm, 8000, 8000, public_end_port=8010, private_end_port=8010, protocol="udp")
        # two firewall rules: same protocol, overlapping ports and a shared CIDR collide
        _fw(ip, 100, 200, cidrs=["192.0.2.0/24"])
        e = _error(rules.create_firewall_rule, _user("alice"), ip_uuid=ip, protocol="tcp", start_port=150,
                   end_port=250, cidrs=["192.0.2.0/24", "198.51.100.0/24"])
        assert e.code == 537
        _fw(ip, 150, 250, cidrs=["198.51.100.0/24"])  # other sources: fine
        _fw(ip, 150, 250, protocol="udp", cidrs=["192.0.2.0/24"])  # other protocol: fine
        _fw(ip, protocol="icmp", icmp_type=8, icmp_code=0)
        e = _error(rules.create_firewall_rule, _user("alice"), ip_uuid=ip, protocol="icmp", icmp_type=8, icmp_code=0)
        assert e.code == 431 and "conflicts with existing rule" in e.message


@pytest.mark.parametrize("kwargs, message", [
    (dict(public_port=0), "publicPort is an invalid value: 0"),
    (dict(public_port=80, public_end_port=70000), "Public port range is an invalid value: 70000"),
    (dict(public_port=90, public_end_port=80), "Start port can't be bigger than end port"),
    (dict(public_port=80, public_end_port=81, private_port=80, private_end_port=90),
     "Source port and destination port ranges should be of equal sizes."),
    (dict(public_port=80, public_end_port=81, private_port=90, private_end_port=91),
     "Private port start should be equal to public port start"),
    (dict(public_port=80, protocol="icmp"), "Protocol icmp is currently supported only for rules with purpose Firewall"),
    (dict(public_port=80, protocol="gre"), "Protocol gre is not supported in zone"),
    (dict(public_port=80, vm_guest_ip="10.1.1.99"), "IP Address is not in the VM nic's network"),
])
def test_port_forwarding_validation(app, nw, kwargs, message):
    with app.app_context():
        ip = _associate(nw=nw).uuid
        args = dict(ip_uuid=ip, protocol="tcp", private_port=kwargs.get("public_port"), vm_uuid=nw.avm)
        args.update(kwargs)
        e = _error(rules.create_port_forwarding_rule, _user("alice"), **args)
        assert e.code == 431 and message in e.message, e.message
        assert _rules(ip) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(protocol="tcp", icmp_type=8), "Can specify icmpCode and icmpType for ICMP protocol only"),
    (dict(protocol="icmp", start_port=22), "Can't specify start/end port when protocol is ICMP"),
    (dict(protocol="all"), "Protocol all is not supported in zone"),
    (dict(protocol="icmp", icmp_code=3), "An ICMP code needs an ICMP type"),
    (dict(protocol="tcp", start_port=22, cidrs=["10.0.0.300/8"]), "Source CIDRs formatting error 10.0.0.300/8"),
    (dict(protocol="tcp", start_port=65536), "publicPort is an invalid value: 65536"),
])
def test_firewall_validation(app, nw, kwargs, message):
    with app.app_context():
        ip = _associate(nw=nw).uuid
        e = _error(rules.create_firewall_rule, _user("alice"), ip_uuid=ip, **kwargs)
        assert e.code == 431 and message in e.message, e.message
        assert _rules(ip) == []


# --- Router failures -------------------------------------------------------------------------------

def _failing(monkeypatch):
    def boom(network):
        raise ResourceUnavailable("The router's host refused the configuration")
    monkeypatch.setattr(routers, "apply", boom)


@pytest.mark.db
def test_a_router_failure_leaves_no_rule(app, nw, monkeypatch):
    with app.app_context():
        ip = _associate(nw=nw).uuid
        _fw(ip, 22)
        _failing(monkeypatch)
        r = rules.create_port_forwarding_rule(_user("alice"), ip_uuid=ip, protocol="tcp", public_port=80,
                                              private_port=80, vm_uuid=nw.avm)
        assert len(_rules(ip)) == 3  # PF + its firewall rule, in state Add
        e = _error(rules.activate, _user("alice"), r.uuid)
        assert e.code == 534
        assert [(x.purpose, x.start_port, x.state) for x in _rules(ip)] == [("Firewall", 22, "Active")]
        e = _error(rules.activate, _user("alice"),
                   rules.create_egress_rule(_user("alice"), network_uuid=nw.anet, protocol="all").uuid)
        assert _rules() and all(x.traffic_type == "Ingress" for x in _rules())
        # a failed delete keeps the rule as it was
        fw = _rules(ip)[0]
        assert _error(rules.delete_firewall_rule, _user("alice"), fw.uuid).code == 534
        db.session.expire_all()
        assert db.session.get(FirewallRule, fw.id).state == RuleState.ACTIVE
        # a failed release keeps the address, its rules and its count
        assert _error(public_ips.disassociate_ip, _user("alice"), ip).code == 534
        db.session.expire_all()
        row = db.session.scalar(select(PublicIpAddress).where(PublicIpAddress.uuid == ip))
        assert row.state == IpState.ALLOCATED and _count("alice") == 2
        assert [x.state for x in _rules(ip)] == ["Active"]
        # a failed associate gives the address and the count back
        new = public_ips.associate_ip(_user("alice"), network_uuid=nw.anet)
        assert _count("alice") == 3
        assert _error(public_ips.finish_associate, _user("alice"), new.uuid).code == 534
        db.session.expire_all()
        assert db.session.get(PublicIpAddress, new.id).state == IpState.FREE and _count("alice") == 2


def test_the_router_is_applied_with_the_rule_being_added(app, nw, monkeypatch):
    seen = []
    with app.app_context():
        ip = _associate(nw=nw)
        monkeypatch.setattr(routers, "apply", lambda network: seen.append(rules.for_router(network)))
        _pf(ip.uuid, nw.avm, 2222, 22)
        got = seen[-1]
        assert any(n.public_start == 2222 and n.guest_ip == "10.1.1.10" and n.private_start == 22 for n in got.nat)
        assert any(f.start_port == 2222 and f.public_ip == ip.address for f in got.ingress)
        pf = next(r for r in _rules(ip.uuid) if r.purpose == "PortForwarding")
        rules.delete_port_forwarding_rule(_user("alice"), pf.uuid)
        got = seen[-1]  # applied while Revoke: without it (and without its firewall rule)
        assert not got.nat and not got.ingress
        assert _rules(ip.uuid) == []


# --- Static NAT ---------------------------------------------------------------------------------------

def test_static_nat(app, nw):
    with app.app_context():
        ip = _associate(nw=nw)
        _pf(ip.uuid, nw.avm, 80, 80)
        e = _error(public_ips.enable_static_nat, _user("alice"), ip_uuid=ip.uuid, vm_uuid=nw.avm)
        assert e.code == 537 and "already has PortForwarding rules" in e.message
        e = _error(public_ips.enable_static_nat, _user("alice"), ip_uuid=nw.snat, vm_uuid=nw.avm)
        assert e.code == 431 and "sourceNat" in e.message
        ip2 = _associate(nw=nw)
        public_ips.enable_static_nat(_user("alice"), ip_uuid=ip2.uuid, vm_uuid=nw.avm)
        ip3 = _associate(nw=nw)
        e = _error(public_ips.enable_static_nat, _user("alice"), ip_uuid=ip3.uuid, vm_uuid=nw.avm)
        assert e.code == 431 and "already associated with another public ip" in e.message
        e = _error(rules.create_port_forwarding_rule, _user("alice"), ip_uuid=ip2.uuid, protocol="tcp",
                   public_port=22, private_port=22, vm_uuid=nw.avm)
        assert e.code == 431 and "has static nat enabled" in e.message
        r = rules.create_ip_forwarding_rule(_user("alice"), ip_uuid=ip2.uuid, protocol="tcp", start_port=443)
        rules.activate(_user("alice"), r.uuid)
        net = db.session.scalar(select(Network).where(Network.uuid == nw.anet))
        got = rules.for_router(net)
        assert any(n.protocol == "all" and n.public_ip == ip2.address and n.guest_ip == "10.1.1.10" for n in got.nat)
        assert any(f.start_port == 443 and f.public_ip == ip2.address for f in got.ingress)  # openfirewall
        view = rules.views([r])[0]
        assert view.vm.uuid == nw.avm
        public_ips.disable_static_nat(_user("alice"), ip2.uuid)
        db.session.expire_all()
        assert db.session.get(PublicIpAddress, ip2.id).vm_id is None and _rules(ip2.uuid) == []
        assert {"STATICNAT.ENABLE", "STATICNAT.DISABLE"} <= set(db.session.scalars(select(Event.type)))


# --- Egress, for_router, release_all, listing --------------------------------------------------------

def test_egress_rules_and_what_the_router_gets(app, nw):
    with app.app_context():
        e = _error(rules.create_egress_rule, _user("alice"), network_uuid=nw.anet, protocol="tcp", start_port=80,
                   cidrs=["10.2.0.0/24"])
        assert e.code == 431 and "is not within the guest CIDR" in e.message
        e = _error(rules.create_egress_rule, _user("alice"), network_uuid=nw.anet, protocol="all", start_port=80)
        assert e.code == 431
        r = rules.create_egress_rule(_user("alice"), network_uuid=nw.anet, protocol="tcp", start_port=443,
                                     dest_cidrs=["198.51.100.0/24"])
        rules.activate(_user("alice"), r.uuid)
        e = _error(rules.create_egress_rule, _user("alice"), network_uuid=nw.anet, protocol="tcp", start_port=400,
                   end_port=500, dest_cidrs=["198.51.100.0/24"])
        assert e.code == 537
        ip = _associate(nw=nw)
        net = db.session.scalar(select(Network).where(Network.uuid == nw.anet))
        got = rules.for_router(net)
        assert got.public_ips[0] == nw.snat_address == got.source_nat_ip
        assert set(got.public_ips) == {nw.snat_address, ip.address} and got.public_prefixes == (24, 24)
        assert got.egress_default_allow is False
        assert [(f.protocol, f.start_port, f.cidrs) for f in got.egress] == [("tcp", 443, ("198.51.100.0/24",))]
        rows, total = rules.list_egress_rules(_user("alice"), network_uuid=nw.anet)
        assert total == 1 and rows[0].rule.uuid == r.uuid
        assert rules.list_egress_rules(_user("bob"))[1] == 0


def test_release_all_frees_every_address_and_rule_of_the_network(app, nw):
    with app.app_context():
        ip = _associate(nw=nw)
        _pf(ip.uuid, nw.avm, 80, 80)
        rules.activate(_user("alice"), rules.create_egress_rule(_user("alice"), network_uuid=nw.anet,
                                                                protocol="udp", start_port=53).uuid)
        assert _count("alice") == 2
        net = db.session.scalar(select(Network).where(Network.uuid == nw.anet))
        assert public_ips.release_all(net) == 2
        assert _count("alice") == 0 and _rules() == []
        assert db.session.scalar(select(func.count()).select_from(PublicIpAddress).where(
            PublicIpAddress.state != IpState.FREE)) == 0


def test_list_public_ips_filters(app, nw):
    with app.app_context():
        ip = _associate(nw=nw)
        public_ips.enable_static_nat(_user("alice"), ip_uuid=ip.uuid, vm_uuid=nw.avm)
        _associate("bob", nw.bnet)
        alice, bob, admin = _user("alice"), _user("bob"), _user("admin")
        rows, total = public_ips.list_public_ips(alice)
        assert total == 2 and {v.ip.address for v in rows} == {nw.snat_address, ip.address}
        assert public_ips.list_public_ips(alice, is_source_nat=True)[0][0].ip.uuid == nw.snat
        static = public_ips.list_public_ips(alice, is_static_nat=True)[0]
        assert [v.vm.uuid for v in static] == [nw.avm]
        assert public_ips.list_public_ips(alice, associated_network_uuid=nw.anet)[1] == 2
        assert public_ips.list_public_ips(alice, allocated_only=False)[1] == 20 - 1  # bob's is not hers
        assert public_ips.list_public_ips(alice, state="Free")[1] == 17
        assert public_ips.list_public_ips(admin, listall=True)[1] == 3
        assert public_ips.list_public_ips(admin, account="bob")[1] == 1
        assert _error(public_ips.list_public_ips, bob, account="alice").code == 531
        assert public_ips.list_public_ips(bob, address=ip.address)[1] == 0
        zone_net = public_ips.public_network_id(rows[0].zone)
        assert public_ips.list_public_ips(alice, network_uuid=zone_net)[1] == 2


def test_an_expunged_vm_takes_its_rules_and_static_nat(app, nw):
    with app.app_context():
        ip = _associate(nw=nw)
        _pf(ip.uuid, nw.avm, 80, 80)
        ip2 = _associate(nw=nw)
        public_ips.enable_static_nat(_user("alice"), ip_uuid=ip2.uuid, vm_uuid=nw.avm)
        _fw(ip2.uuid, 443)
        vm = vms.get_vm(_user("alice"), nw.avm)
        public_ips.release_for_vm(vm)
        db.session.expire_all()
        assert _rules() == [] and db.session.get(PublicIpAddress, ip2.id).vm_id is None
        assert db.session.get(PublicIpAddress, ip2.id).state == IpState.ALLOCATED  # the address stays the account's


@pytest.mark.db
def test_parallel_colliding_rules_on_one_address_one_wins(app, nw):
    """Rule checks on one address run one at a time (its row is locked): of eight creates of
    the same public port, exactly one is written."""
    with app.app_context():
        ip = _associate(nw=nw).uuid
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8, timeout=60)

    def one(i: int):
        barrier.wait()
        with app.app_context():
            try:
                rules.create_port_forwarding_rule(accounts.get_user("alice"), ip_uuid=ip, protocol="tcp",
                                                  public_port=443, private_port=443, vm_uuid=nw.avm,
                                                  open_firewall=False)
                out = "ok"
            except ServiceError as e:
                out = f"{e.code}"
            finally:
                db.session.remove()
        with lock:
            results.append(out)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["537"] * 7 + ["ok"], results
    with app.app_context():
        assert len(_rules(ip)) == 1


def test_delete_account_leaves_no_address_rule_or_dedicated_range(app, nw):
    """deleteAccount: its addresses are Free, its rules gone, a range dedicated to it is the
    system's again (CloudStack's releaseAccountSpecificVirtualRanges)."""
    from app.services import account_deletion
    from app.services.network import ranges
    from tests.integration.test_account_deletion import live_rows
    with app.app_context():
        alice = _user("alice")
        ip = _associate(nw=nw)
        _pf(ip.uuid, nw.avm, 80, 80)
        _fw(ip.uuid, 22, 22)
        rules.activate(alice, rules.create_egress_rule(alice, network_uuid=nw.anet, protocol="udp",
                                                       start_port=53).uuid)
        r = ranges.create_range(None, zone_uuid=nw.zone, vlan="untagged", gateway="198.18.0.1",
                                netmask="255.255.255.0", start_ip="198.18.0.40", end_ip="198.18.0.42", for_virtual_network=True, account_id=alice.account_id)
        range_uuid, account_id = r.uuid, alice.account_id
        assert {"public_ip_addresses", "firewall_rules", "vlan_ip_ranges"} <= set(live_rows(account_id))
        account_deletion.run_now(_user("admin"), alice.account)
        assert live_rows(account_id) == {}
        r = ranges.get_range(range_uuid)
        assert r.account_id is None and r.removed is None

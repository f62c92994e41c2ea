"""Security groups on a Simulator zone with a shared security-group network: rules and
CloudStack's errors, the rulesets built for the hosts (anti-spoofing, union of groups, other
groups expanded to their members' addresses), and re-application at once on the hosts that
run affected VMs (a recording driver stands for the hosts), undone when a host refuses."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.hypervisors.base import OperationFailed
from app.models import (JobStatus, Network, SecurityGroup, SecurityGroupRule, VirtualMachine, VmSecurityGroup,
                        new_uuid)
from app.network.host.specs import SgRule, nic_device
from app.services import accounts, vms
from app.services.errors import InvalidParameter, NotFound, ResourceInUse, ServiceError
from app.services.network import secgroups
from tests.helpers.sim_zone import simulator_zone

pytestmark = pytest.mark.db


class Recorder:
    """Stands for the hosts: records each sg_apply / sg_remove by host name; `refuse` names
    hosts that fail."""

    def __init__(self):
        self.calls: list[tuple[str, str, list]] = []
        self.refuse: set[str] = set()

    def driver(self, host):
        rec, name = self, host.name

        class D:
            def sg_apply(self, rulesets):
                if name in rec.refuse:
                    raise OperationFailed("nft: refused")
                rec.calls.append((name, "apply", list(rulesets)))

            def sg_remove(self, taps):
                rec.calls.append((name, "remove", list(taps)))

            def close(self):
                pass
        return D()

    def applied(self):
        return [(h, sorted(rs.tap for rs in sets)) for h, kind, sets in self.calls if kind == "apply"]


@pytest.fixture
def rec(monkeypatch):
    r = Recorder()
    monkeypatch.setattr(secgroups, "_enforces", lambda host: True)
    monkeypatch.setattr(secgroups, "_driver", r.driver)
    return r


@pytest.fixture
def world(app, tmp_path):
    with app.app_context():
        admin = accounts.create_user("root", "Kx-admin-secret-7", role="admin", account="admin")
        alice = accounts.create_user("alice", "Kx-user-secret-7")
        bob = accounts.create_user("bob", "Kx-user-secret-8")
        w = simulator_zone(admin, tmp_path, name="sgz", guest_cidr=None,
                           host_urls=[f"simulator://sg{i}?cpus=8&memory=16384" for i in (1, 2)])
        net = Network(uuid=new_uuid(), name="sg-shared", zone_id=w.zone.id, guest_type="Shared", account_id=None,
                      cidr="10.50.0.0/24", gateway="10.50.0.1", netmask="255.255.255.0", start_ip="10.50.0.10",
                      end_ip="10.50.0.200", security_groups=True, is_default=True, state="Implemented")
        plain = Network(uuid=new_uuid(), name="plain", zone_id=w.zone.id, guest_type="Shared", account_id=None,
                        cidr="10.60.0.0/24", gateway="10.60.0.1", netmask="255.255.255.0", start_ip="10.60.0.10",
                        end_ip="10.60.0.200", state="Implemented")
        db.session.add_all([net, plain])
        db.session.commit()
        return dict(zone=w.zone.uuid, t=w.template.uuid, so=w.offering.uuid, alice=alice.uuid, bob=bob.uuid,
                    admin=admin.uuid, net=net.uuid, plain=plain.uuid, hosts=[h.name for h in w.hosts])


def _user(w, who):
    return accounts.user_by_uuid(w[who])


def _deploy(w, who, name, **kw):
    kw.setdefault("network_uuids", [w["net"]])
    vm, job = vms.deploy(_user(w, who), zone_uuid=w["zone"], service_offering_uuid=w["so"], template_uuid=w["t"],
                         name=name, **kw)
    db.session.refresh(job)
    assert job.status == JobStatus.SUCCEEDED, job.result
    return db.session.get(VirtualMachine, vm.id)


def _group(w, who, name):
    return db.session.scalar(select(SecurityGroup).where(SecurityGroup.name == name,
                                                         SecurityGroup.account_id == _user(w, who).account_id))


def _authorize(w, who, direction="ingress", **kw):
    job = secgroups.authorize(_user(w, who), direction, **kw)
    db.session.refresh(job)
    return job


def test_groups_and_their_errors(app, world, rec):
    w = world
    with app.app_context():
        alice = _user(w, "alice")
        web = secgroups.create_group(alice, name="web", description="web servers")
        assert _group(w, "alice", "default") is not None  # made with the account's first group
        with pytest.raises(InvalidParameter, match="a group with name web already exists"):
            secgroups.create_group(alice, name="web")
        secgroups.create_group(_user(w, "bob"), name="web")  # unique per account only
        with pytest.raises(InvalidParameter, match="cannot be empty"):
            secgroups.create_group(alice, name="  ")
        with pytest.raises(InvalidParameter, match="The network group default is reserved"):
            secgroups.delete_group(alice, name="default")
        with pytest.raises(NotFound):  # another account's group is not found
            secgroups.get_group(_user(w, "bob"), web.uuid)

        bad = [dict(protocol="tcp", start_port=80, cidrs=["0.0.0.0/0"]),  # no end port
               dict(protocol="tcp", start_port=90, end_port=80, cidrs=["0.0.0.0/0"]),
               dict(protocol="tcp", start_port=1, end_port=70000, cidrs=["0.0.0.0/0"]),
               dict(protocol="icmp", cidrs=["0.0.0.0/0"]),  # no type/code
               dict(protocol="icmp", icmp_type=-1, icmp_code=3, cidrs=["0.0.0.0/0"]),
               dict(protocol="all", start_port=1, end_port=2, cidrs=["0.0.0.0/0"]),
               dict(protocol="gopher", cidrs=["0.0.0.0/0"]),
               dict(protocol="300", cidrs=["0.0.0.0/0"]),
               dict(protocol="tcp", start_port=22, end_port=22, cidrs=["10.0.0.300/8"]),
               dict(protocol="tcp", start_port=22, end_port=22),  # neither cidr nor group
               dict(protocol="tcp", start_port=22, end_port=22, user_groups=[{"group": "web"}]),
               dict(protocol="tcp", start_port=22, end_port=22, user_groups=[{"group": "web", "account": "nobody"}]),
               dict(protocol="tcp", start_port=22, end_port=22, user_groups=[{"group": "nope", "account": "bob"}])]
        for kw in bad:
            with pytest.raises(InvalidParameter):
                secgroups.authorize(alice, "ingress", group_uuid=web.uuid, **kw)
        with pytest.raises(InvalidParameter, match="mutually exclusive"):
            secgroups.authorize(alice, "ingress", group_uuid=web.uuid, group_name="web", cidrs=["0.0.0.0/0"])
        assert db.session.scalar(select(func.count()).select_from(SecurityGroupRule)) == 0  # nothing written

        job = _authorize(w, "alice", group_name="web", protocol="TCP", start_port=80, end_port=80,
                         cidrs=["0.0.0.0/0", "10.9.0.0/16"], user_groups=[{"group": "web", "account": "bob"}])
        assert job.status == JobStatus.SUCCEEDED, job.result
        answer = vms.json.loads(job.result)["securitygroup"]
        assert answer["name"] == "web" and len(answer["ingressrule"]) == 3  # one per cidr and per group
        by = {r.get("cidr") or r["securitygroupname"] + "/" + r["account"]: r for r in answer["ingressrule"]}
        assert set(by) == {"0.0.0.0/0", "10.9.0.0/16", "web/bob"}
        assert by["0.0.0.0/0"]["startport"] == 80 and by["0.0.0.0/0"]["protocol"] == "tcp"
        # The same rule again: nothing to add, CloudStack's failure, nothing changed
        again = _authorize(w, "alice", group_uuid=web.uuid, protocol="tcp", start_port=80, end_port=80,
                           cidrs=["0.0.0.0/0"])
        assert again.status == JobStatus.FAILED and "Failed to authorize security group ingress" in again.result
        icmp = _authorize(w, "alice", group_uuid=web.uuid, protocol="1", cidrs=["0.0.0.0/0"])  # 1 = icmp any
        rule = vms.json.loads(icmp.result)["securitygroup"]["ingressrule"][0]
        assert (rule["protocol"], rule["icmptype"], rule["icmpcode"]) == ("icmp", -1, -1)
        egress = _authorize(w, "alice", "egress", group_uuid=web.uuid, protocol="udp", start_port=0, end_port=0,
                            cidrs=["10.0.0.0/8"])
        rule = vms.json.loads(egress.result)["securitygroup"]["egressrule"][0]
        assert (rule["startport"], rule["endport"]) == (0, 65535)
        assert db.session.scalar(select(func.count()).select_from(SecurityGroupRule)) == 5

        with pytest.raises(InvalidParameter, match="Mismatch in rule type"):
            secgroups.revoke(alice, "ingress", rule["ruleid"])
        with pytest.raises(NotFound):  # bob cannot revoke alice's rule
            secgroups.revoke(_user(w, "bob"), "egress", rule["ruleid"])
        job = secgroups.revoke(alice, "egress", rule["ruleid"])
        db.session.refresh(job)
        assert job.status == JobStatus.SUCCEEDED
        with pytest.raises(ResourceInUse, match="security rules that allow this group"):
            secgroups.delete_group(_user(w, "bob"), name="web")  # alice's rule names it
        rows, total = secgroups.list_groups(alice)
        listed = secgroups.describe(rows)
        assert total == 2 and {g["name"] for g in listed} == {"default", "web"}
        assert next(g for g in listed if g["name"] == "default")["ingressrule"] == []  # default: no rules


def test_deploy_with_groups_and_the_rulesets(app, world, rec):
    w = world
    with app.app_context():
        alice = _user(w, "alice")
        web = secgroups.create_group(alice, name="web")
        db_ = secgroups.create_group(alice, name="db")
        with pytest.raises(InvalidParameter, match="mutually exclusive"):
            vms.deploy(alice, zone_uuid=w["zone"], service_offering_uuid=w["so"], template_uuid=w["t"],
                       network_uuids=[w["net"]], security_group_uuids=[web.uuid], security_group_names=["web"])
        with pytest.raises(InvalidParameter, match="security group feature is not enabled"):
            vms.deploy(alice, zone_uuid=w["zone"], service_offering_uuid=w["so"], template_uuid=w["t"],
                       network_uuids=[w["plain"]], security_group_names=["web"])
        with pytest.raises(InvalidParameter, match="Unable to find group by name"):
            vms.deploy(alice, zone_uuid=w["zone"], service_offering_uuid=w["so"], template_uuid=w["t"],
                       network_uuids=[w["net"]], security_group_names=["nope"])
        assert db.session.scalar(select(func.count()).select_from(VirtualMachine)) == 0  # nothing made

        w1 = _deploy(w, "alice", "w1", security_group_names=["web"], ip_address="10.50.0.77")
        plain_vm = _deploy(w, "alice", "p1", network_uuids=[w["plain"]])
        d1 = _deploy(w, "alice", "d1", security_group_uuids=[db_.uuid])
        anon = _deploy(w, "alice", "a1")  # no group named: the default group
        assert w1.nics[0].ip_address == "10.50.0.77"
        assert secgroups.vm_group_ids(anon.id) == [_group(w, "alice", "default").id]
        assert secgroups.vm_group_ids(plain_vm.id) == []  # not on a security-group network
        with pytest.raises(ResourceInUse, match="in use by virtual machines"):
            secgroups.delete_group(alice, uuid=web.uuid)
        with pytest.raises(ServiceError, match="already in use"):
            _deploy(w, "bob", "clash", ip_address="10.50.0.77")

        rec.calls.clear()
        # db allows tcp/5432 from the members of web: d1's ruleset carries w1's address
        job = _authorize(w, "alice", group_uuid=db_.uuid, protocol="tcp", start_port=5432, end_port=5432,
                         user_groups=[{"group": "web", "account": "alice"}])
        assert job.status == JobStatus.SUCCEEDED, job.result
        d1_host = db.session.get(VirtualMachine, d1.id).host.name
        assert rec.applied() == [(d1_host, [nic_device(d1.nics[0].uuid)])]  # only db's member, on its host
        (_, _, [ruleset]) = rec.calls[-1]
        assert ruleset.mac == d1.nics[0].mac_address and ruleset.ips == (d1.nics[0].ip_address,)
        assert ruleset.rules == (SgRule("ingress", "tcp", ("10.50.0.77/32",), 5432, 5432),)

        # A new member of web: d1's rules follow at once (membership expanded again)
        rec.calls.clear()
        w2 = _deploy(w, "alice", "w2", security_group_names=["web"])
        applied_d1 = [sets for h, kind, sets in rec.calls if kind == "apply"
                      and any(rs.tap == nic_device(d1.nics[0].uuid) for rs in sets)]
        assert applied_d1 and applied_d1[-1][0].rules[0].cidrs == tuple(sorted(
            ["10.50.0.77/32", f"{w2.nics[0].ip_address}/32"]))

        # Two groups' rules are a union on the VM
        _authorize(w, "alice", group_uuid=web.uuid, protocol="tcp", start_port=80, end_port=80, cidrs=["0.0.0.0/0"])
        both = _deploy(w, "alice", "both", security_group_uuids=[web.uuid, db_.uuid])
        sets = secgroups.rulesets([both.id])[both.id]
        assert {(r.direction, r.protocol, r.start_port) for r in sets[0].rules} == {("ingress", "tcp", 80),
                                                                                  ("ingress", "tcp", 5432)}
        # A host that refuses: the API error, the rule row gone again, the other hosts put back
        rec.calls.clear()
        rec.refuse = {db.session.get(VirtualMachine, both.id).host.name}
        before = db.session.scalar(select(func.count()).select_from(SecurityGroupRule))
        job = _authorize(w, "alice", group_uuid=web.uuid, protocol="udp", start_port=53, end_port=53,
                         cidrs=["10.0.0.0/8"])
        assert job.status == JobStatus.FAILED and "could not be applied" in job.result
        assert db.session.scalar(select(func.count()).select_from(SecurityGroupRule)) == before
        rec.refuse = set()

        # Expunge: the member leaves, d1's rules lose its address
        rec.calls.clear()
        admin = _user(w, "admin")
        for job in (vms.destroy(admin, w2.uuid, expunge=True),):
            db.session.refresh(job)
            assert job.status == JobStatus.SUCCEEDED, job.result
        assert db.session.scalar(select(func.count()).select_from(VmSecurityGroup)
                                 .where(VmSecurityGroup.vm_id == w2.id)) == 0
        d1_sets = secgroups.rulesets([d1.id])[d1.id]
        assert f"{w2.nics[0].ip_address}/32" not in d1_sets[0].rules[0].cidrs
        assert any(kind == "apply" and any(rs.tap == nic_device(d1.nics[0].uuid) for rs in sets)
                   for _h, kind, sets in rec.calls)


def test_apply_and_remove_for_vm(app, world, rec):
    w = world
    with app.app_context():
        vm = _deploy(w, "alice", "one")
        host = vm.host
        rec.calls.clear()
        secgroups.apply_for_vm(vm, host)
        secgroups.remove_for_vm(vm, host)
        tap = nic_device(vm.nics[0].uuid)
        assert rec.calls[0][0] == host.name and [rs.tap for rs in rec.calls[0][2]] == [tap]
        assert rec.calls[0][2][0].rules == ()  # the default group: no ingress allowed, egress open
        assert rec.calls[1] == (host.name, "remove", [tap])
        plain_vm = _deploy(w, "alice", "two", network_uuids=[w["plain"]])
        rec.calls.clear()
        secgroups.apply_for_vm(plain_vm, plain_vm.host)
        secgroups.remove_for_vm(plain_vm, plain_vm.host)
        assert rec.calls == []  # no NIC on a security-group network

"""The guest networking pages (app/web/network/) on a Simulator zone with a VXLAN physical
network, the default offerings and a public range: pages render, forms make and delete
things through the services, refusals come back as form messages with nothing changed, a
user never sees another account's networks or addresses, CSRF is required."""
from __future__ import annotations


import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import FirewallRule, Network, PublicIpAddress, Router
from app.services import accounts, vms, zones
from tests.helpers.net_zone import ISOLATED, network_zone, offering
from tests.integration.test_vm_pages import _engines, post, world  # noqa: F401  (fixtures)

# Pages on SQLite; the address/rule round trip also on PostgreSQL and MariaDB (db).


def html_of(resp) -> str:
    return resp.get_data(as_text=True)


@pytest.fixture
def nz(app, world):
    with app.app_context():
        network_zone(zones.get_zone(world.zone))
        world.offering = offering(ISOLATED).uuid
    return world


def _create(client, auth, nz, name="web-net", cidr="10.7.1.0/24"):
    return post(client, auth, "/networks/new", {"name": name, "zone": nz.zone, "offering": nz.offering, "cidr": cidr})


def _net(app, name) -> Network | None:
    with app.app_context():
        n = db.session.scalar(select(Network).where(Network.name == name, Network.removed.is_(None)))
        if n is not None:
            db.session.expunge(n)
        return n


def _count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _vm_on(app, nz, net_uuid, name="web-vm", user="alice") -> str:
    with app.app_context():
        vm, _ = vms.deploy(accounts.get_user(user), zone_uuid=nz.zone, service_offering_uuid=nz.small,
                           template_uuid=nz.template, name=name, network_uuids=[net_uuid])
        return vm.uuid


def test_networks_list_create_detail_delete(app, nz, auth, client, hx):
    auth.login("alice")
    assert "Networks" in html_of(client.get("/portal/"))  # in the navigation
    page = html_of(client.get("/networks/new"))
    assert "Create an isolated network" in page and nz.offering in page
    r = _create(client, auth, nz)
    assert r.status_code == 302, html_of(r)
    net = _net(app, "web-net")
    assert net.guest_type == "Isolated" and net.cidr == "10.7.1.0/24"
    assert r.headers["Location"].endswith(f"/networks/{net.uuid}")
    lst = html_of(client.get("/networks/"))
    assert f'id="network-{net.uuid}"' in lst and "10.7.1.0/24" in lst and "Isolated" in lst
    detail = html_of(client.get(f"/networks/{net.uuid}"))
    assert "Virtual router" in detail and "No VMs on this network" in detail and "Egress rules" in detail
    # The search answers HTMX with the list alone.
    frag = html_of(hx.get("/networks/?q=web"))
    assert f'id="network-{net.uuid}"' in frag and "<html" not in frag

    # A VM on it: the network is implemented, its router is shown in the state the host gave.
    vm = _vm_on(app, nz, net.uuid)
    detail = html_of(client.get(f"/networks/{net.uuid}"))
    with app.app_context():
        router = db.session.scalar(select(Router).where(Router.network_id == net.id, Router.removed.is_(None)))
        nic_ip = vms.get_vm(accounts.get_user("alice"), vm).nics[0].ip_address
    assert router is not None and router.name in detail and f"state-{router.state.lower()}" in detail
    assert "web-vm" in detail and nic_ip in detail
    # Deleting a network with VMs is refused: the service's message, nothing changed.
    r = hx.post(f"/networks/{net.uuid}/delete")
    assert r.status_code == 422 and "it has VMs on it" in html_of(r)
    assert _net(app, "web-net") is not None
    # Restart (with clean-up) rebuilds the router.
    r = hx.post(f"/networks/{net.uuid}/restart", data={"cleanup": "y"})
    assert r.status_code == 200, html_of(r)
    assert "restarted with clean-up" in html_of(r)


def test_create_refusals_are_form_messages(app, nz, auth, client):
    auth.login("alice")
    r = _create(client, auth, nz, cidr="10.7.1.0/33")
    assert r.status_code == 422 and 'class="error"' in html_of(r)
    r = post(client, auth, "/networks/new", {"name": "", "zone": nz.zone, "offering": nz.offering})
    assert r.status_code == 422 and "Give the network a name" in html_of(r)
    assert _count(app, Network, Network.removed.is_(None), Network.name.in_(["web-net", ""])) == 0


def test_empty_network_deleted(app, nz, auth, client):
    auth.login("alice")
    _create(client, auth, nz)
    net = _net(app, "web-net")
    r = post(client, auth, f"/networks/{net.uuid}/delete")
    assert r.status_code == 302 and _net(app, "web-net") is None
    assert f'id="network-{net.uuid}"' not in html_of(client.get("/networks/"))


def _acquire(client, auth, net_uuid):
    return post(client, auth, "/publicips/", {"network": net_uuid})


@pytest.mark.db
def test_public_ip_rules_and_release(app, nz, auth, client, hx):
    auth.login("alice")
    _create(client, auth, nz)
    net = _net(app, "web-net")
    vm = _vm_on(app, nz, net.uuid)
    page = html_of(client.get("/publicips/"))
    assert "Acquire a public IP" in page and net.uuid in page
    r = _acquire(client, auth, net.uuid)
    assert r.status_code == 302, html_of(r)
    with app.app_context():
        ip = db.session.scalar(select(PublicIpAddress).where(PublicIpAddress.network_id == net.id,
                                                             PublicIpAddress.is_source_nat.is_(False)))
        address, ip_uuid = ip.address, ip.uuid
    assert r.headers["Location"].endswith(f"/publicips/{ip_uuid}")
    assert f'id="ip-{ip_uuid}"' in html_of(client.get("/publicips/"))
    detail = html_of(client.get(f"/publicips/{ip_uuid}"))
    assert "Port forwarding" in detail and "Firewall" in detail and "Static NAT" in detail and vm in detail

    r = hx.post(f"/publicips/{ip_uuid}/portforwarding",
                data={"protocol": "tcp", "public_port": "2222", "private_port": "22", "vm": vm})
    assert r.status_code == 200, html_of(r)
    r = hx.post(f"/publicips/{ip_uuid}/firewall", data={"protocol": "tcp", "start_port": "2222", "cidr": "198.18.5.0/24"})
    assert r.status_code == 200, html_of(r)
    body = html_of(r)
    assert "2222" in body and "198.18.5.0/24" in body and "web-vm" in body
    with app.app_context():
        rows = list(db.session.scalars(select(FirewallRule).where(FirewallRule.network_id == net.id)))
        assert {(r.purpose, r.state) for r in rows} >= {("PortForwarding", "Active"), ("Firewall", "Active")}

    # Refusals: the service's message beside the form, nothing made.
    before = _count(app, FirewallRule, FirewallRule.network_id == net.id)
    r = hx.post(f"/publicips/{ip_uuid}/firewall", data={"protocol": "icmp", "icmp_code": "3"})
    assert r.status_code == 422 and 'role="alert"' in html_of(r)
    r = hx.post(f"/publicips/{ip_uuid}/portforwarding",
                data={"protocol": "tcp", "public_port": "2222", "private_port": "22", "vm": vm})
    assert r.status_code == 422 and 'role="alert"' in html_of(r)  # conflicts with the rule above
    r = hx.post(f"/publicips/{ip_uuid}/portforwarding", data={"protocol": "tcp", "private_port": "22", "vm": vm})
    assert r.status_code == 422 and "Give the public port" in html_of(r)
    assert _count(app, FirewallRule, FirewallRule.network_id == net.id) == before

    # Delete one rule, then release: the address and every rule on it go.
    with app.app_context():
        fw = db.session.scalar(select(FirewallRule.uuid).where(FirewallRule.network_id == net.id,
                                                               FirewallRule.purpose == "Firewall"))
    r = hx.post(f"/publicips/{ip_uuid}/firewall-delete", data={"rule": fw})
    assert r.status_code == 200 and f'id="fw-{fw}"' not in html_of(r)
    r = post(client, auth, f"/publicips/{ip_uuid}/release")
    assert r.status_code == 302
    assert _count(app, FirewallRule, FirewallRule.public_ip_id.isnot(None), FirewallRule.network_id == net.id) == 0
    assert f'id="ip-{ip_uuid}"' not in html_of(client.get("/publicips/")) and address


def test_egress_rules_on_network_page(app, nz, auth, client, hx):
    auth.login("alice")
    _create(client, auth, nz)
    net = _net(app, "web-net")
    _vm_on(app, nz, net.uuid)
    r = hx.post(f"/networks/{net.uuid}/egress", data={"protocol": "tcp", "start_port": "443", "cidr": "198.18.9.0/24"})
    assert r.status_code == 200, html_of(r)
    assert "198.18.9.0/24" in html_of(r) and "Egress rule added" in html_of(r)
    r = hx.post(f"/networks/{net.uuid}/egress", data={"protocol": "tcp", "start_port": "443", "cidr": "nonsense"})
    assert r.status_code == 422
    with app.app_context():
        rule = db.session.scalar(select(FirewallRule.uuid).where(FirewallRule.network_id == net.id,
                                                                 FirewallRule.traffic_type == "Egress"))
    assert _count(app, FirewallRule, FirewallRule.network_id == net.id, FirewallRule.traffic_type == "Egress") == 1
    r = hx.post(f"/networks/{net.uuid}/egress-delete", data={"rule": rule})
    assert r.status_code == 200 and f'id="egress-{rule}"' not in html_of(r)


def test_other_accounts_never_seen(app, nz, auth, client):
    auth.login("alice")
    _create(client, auth, nz)
    net = _net(app, "web-net")
    _vm_on(app, nz, net.uuid)
    _acquire(client, auth, net.uuid)
    with app.app_context():
        ip_uuid = db.session.scalar(select(PublicIpAddress.uuid).where(PublicIpAddress.network_id == net.id))
    auth.logout()
    auth.login("bob")
    assert net.uuid not in html_of(client.get("/networks/"))
    assert client.get(f"/networks/{net.uuid}").status_code == 404
    assert net.uuid not in html_of(client.get("/publicips/"))  # not offered for acquiring either
    assert client.get(f"/publicips/{ip_uuid}").status_code == 404
    assert post(client, auth, f"/networks/{net.uuid}/delete").status_code == 404
    assert post(client, auth, f"/publicips/{ip_uuid}/release").status_code == 404
    r = _acquire(client, auth, net.uuid)
    assert r.status_code == 422 and _net(app, "web-net") is not None
    # Admins see every account's.
    auth.logout()
    auth.login("admin")
    assert f'id="network-{net.uuid}"' in html_of(client.get("/networks/"))


def test_csrf_required(app, nz, auth, client):
    auth.login("alice")
    _create(client, auth, nz)
    net = _net(app, "web-net")
    assert client.post(f"/networks/{net.uuid}/delete").status_code == 400
    assert client.post("/networks/new", data={"name": "x", "zone": nz.zone, "offering": nz.offering}).status_code in (400, 422)
    assert _count(app, Network, Network.name == "x") == 0
    assert client.post("/publicips/", data={"network": net.uuid}).status_code == 400
    assert _net(app, "web-net") is not None


def test_security_group_pages(app, nz, auth, client, hx):
    from app.models import SecurityGroup, SecurityGroupRule
    auth.login("alice")
    assert "default" in html_of(client.get("/securitygroups/"))  # the account's default group
    r = post(client, auth, "/securitygroups/new", {"name": "web", "description": "web servers"})
    assert r.status_code == 302, html_of(r)
    r = post(client, auth, "/securitygroups/new", {"name": "web"})
    assert r.status_code == 422 and "already exists" in html_of(r)
    with app.app_context():
        g = db.session.scalar(select(SecurityGroup).where(SecurityGroup.name == "web"))
        g_uuid, g_id = g.uuid, g.id
    assert f'id="secgroup-{g_uuid}"' in html_of(client.get("/securitygroups/"))
    page = html_of(client.get(f"/securitygroups/{g_uuid}"))
    assert "Ingress rules" in page and "Egress rules" in page
    r = hx.post(f"/securitygroups/{g_uuid}/ingress", data={"ingress-protocol": "tcp", "ingress-start_port": "80",
                                                           "ingress-end_port": "80", "ingress-cidr": "198.18.0.0/16"})
    assert r.status_code == 200, html_of(r)
    assert "198.18.0.0/16" in html_of(r)
    r = hx.post(f"/securitygroups/{g_uuid}/ingress", data={"ingress-protocol": "tcp", "ingress-start_port": "22",
                                                           "ingress-group": "default"})
    assert r.status_code == 200, html_of(r)[html_of(r).find("flash"):][:300]
    assert "group default" in html_of(r)
    r = hx.post(f"/securitygroups/{g_uuid}/egress", data={"egress-protocol": "icmp", "egress-icmp_type": "8",
                                                          "egress-icmp_code": "0", "egress-cidr": "10.0.0.0/8"})
    assert r.status_code == 200 and "type 8, code 0" in html_of(r)
    # A refusal (neither CIDR nor group) is the service's message; nothing added.
    r = hx.post(f"/securitygroups/{g_uuid}/ingress", data={"ingress-protocol": "tcp", "ingress-start_port": "443"})
    assert r.status_code == 422 and "At least one cidr" in html_of(r)
    assert _count(app, SecurityGroupRule, SecurityGroupRule.security_group_id == g_id) == 3
    with app.app_context():
        rule = db.session.scalar(select(SecurityGroupRule.uuid).where(SecurityGroupRule.security_group_id == g_id,
                                                                      SecurityGroupRule.type == "egress"))
    r = hx.post(f"/securitygroups/{g_uuid}/revoke-egress", data={"rule": rule})
    assert r.status_code == 200 and f'id="rule-{rule}"' not in html_of(r)
    assert client.post(f"/securitygroups/{g_uuid}/delete").status_code == 400  # CSRF
    # Bob never sees it.
    auth.logout()
    auth.login("bob")
    assert g_uuid not in html_of(client.get("/securitygroups/"))
    assert client.get(f"/securitygroups/{g_uuid}").status_code == 404
    assert post(client, auth, f"/securitygroups/{g_uuid}/delete").status_code == 404
    auth.logout()
    auth.login("alice")
    r = post(client, auth, f"/securitygroups/{g_uuid}/delete")
    assert r.status_code == 302 and _count(app, SecurityGroup, SecurityGroup.id == g_id) == 0


def test_admin_zone_networking_page(app, nz, auth, client):
    from app.models import NetworkServiceProvider, VlanIpRange
    auth.login("alice")
    assert client.get("/admin/network/").status_code == 403
    assert client.get(f"/admin/network/zones/{nz.zone}").status_code == 403
    auth.logout()
    auth.login("admin")
    assert "Physical networks" in html_of(client.get("/admin/"))  # the sidebar's Network group
    index = html_of(client.get("/admin/network/"))
    assert f'id="zone-{nz.zone}"' in index and "198.18.0.10" in index
    page = html_of(client.get(f"/admin/network/zones/{nz.zone}"))
    assert "VXLAN" in page and "5000-5003" in page and "Public IP ranges" in page
    assert re.search(r"198\.18\.0\.10–198\.18\.0\.12</td>.*?<td class=\"num\">0</td><td class=\"num\">3</td>", page, re.S)
    # Add a range: an overlapping one is refused beside its field, nothing added; a good one is listed.
    before = _count(app, VlanIpRange, VlanIpRange.removed.is_(None))
    r = post(client, auth, f"/admin/network/zones/{nz.zone}/range",
             {"gateway": "198.18.0.1", "netmask": "255.255.255.0", "start_ip": "198.18.0.11", "end_ip": "198.18.0.20"})
    assert r.status_code == 422 and "overlap" in html_of(r)
    assert _count(app, VlanIpRange, VlanIpRange.removed.is_(None)) == before
    r = post(client, auth, f"/admin/network/zones/{nz.zone}/range",
             {"gateway": "198.18.0.1", "netmask": "255.255.255.0", "start_ip": "198.18.0.40", "end_ip": "198.18.0.44"})
    assert r.status_code == 302, html_of(r)
    page = html_of(client.get(f"/admin/network/zones/{nz.zone}"))
    assert "198.18.0.40–198.18.0.44" in page
    with app.app_context():
        rng = db.session.scalar(select(VlanIpRange.uuid).where(VlanIpRange.start_ip == "198.18.0.40"))
    r = post(client, auth, f"/admin/network/zones/{nz.zone}/range-delete", {"range": rng})
    assert r.status_code == 302 and "198.18.0.40" not in html_of(client.get(f"/admin/network/zones/{nz.zone}"))
    assert client.post(f"/admin/network/zones/{nz.zone}/range-delete", data={"range": rng}).status_code == 400
    # Providers: disable and enable again (when the zone's physical network has them).
    with app.app_context():
        nsp = db.session.scalar(select(NetworkServiceProvider).where(NetworkServiceProvider.state == "Enabled"))
        nsp_uuid = nsp.uuid if nsp else None
    if nsp_uuid:
        r = post(client, auth, f"/admin/network/zones/{nz.zone}/provider-disable", {"provider": nsp_uuid})
        assert r.status_code == 302
        assert f'id="provider-{nsp_uuid}"' in html_of(client.get(f"/admin/network/zones/{nz.zone}"))


def test_admin_offerings_page(app, nz, auth, client):
    from app.models import NetworkOffering
    auth.login("admin")
    page = html_of(client.get("/admin/network/offerings"))
    assert ISOLATED in page and "SourceNat" in page
    r = post(client, auth, "/admin/network/offerings",
             {"name": "web-offering", "guest_type": "Isolated", "services": ["Dhcp", "Dns", "SourceNat", "Firewall"],
              "egress_allow": "y"})
    assert r.status_code == 302, html_of(r)
    with app.app_context():
        o = db.session.scalar(select(NetworkOffering).where(NetworkOffering.name == "web-offering"))
        o_uuid, state = o.uuid, o.state
    assert state == "Disabled"
    r = post(client, auth, "/admin/network/offerings", {"name": "web-offering", "guest_type": "Isolated",
                                                        "services": ["Dhcp"]})
    assert r.status_code == 422 and "already exists" in html_of(r)
    post(client, auth, f"/admin/network/offerings/{o_uuid}/enable")
    with app.app_context():
        assert db.session.scalar(select(NetworkOffering.state).where(NetworkOffering.uuid == o_uuid)) == "Enabled"
    assert post(client, auth, f"/admin/network/offerings/{o_uuid}/delete").status_code == 302
    assert f'id="offering-{o_uuid}"' not in html_of(client.get("/admin/network/offerings"))
    # The default offering cannot be deleted: the service's message.
    r = post(client, auth, f"/admin/network/offerings/{nz.offering}/delete", follow_redirects=True)
    assert "Default network offering can&#39;t be deleted" in html_of(r)


def test_admin_routers_page(app, nz, auth, client):
    auth.login("alice")
    _create(client, auth, nz)
    net = _net(app, "web-net")
    _vm_on(app, nz, net.uuid)
    auth.logout()
    auth.login("admin")
    with app.app_context():
        router = db.session.scalar(select(Router).where(Router.network_id == net.id, Router.removed.is_(None)))
        router.state, router.state_reason = "Alert", "dnsmasq is not running"
        db.session.commit()
        r_uuid, r_name = router.uuid, router.name
    page = html_of(client.get("/admin/network/routers"))
    assert r_name in page and "web-net" in page and "alice" in page
    assert 'class="row-alert"' in page and "dnsmasq is not running" in page
    r = post(client, auth, f"/admin/network/routers/{r_uuid}/restart-cleanup", follow_redirects=True)
    assert r.status_code == 200
    assert "Router" in html_of(r)
    assert client.post(f"/admin/network/routers/{r_uuid}/reboot").status_code == 400


def test_deploy_wizard_network_and_security_groups(app, world, auth, client):
    """The wizard's network step offers the zone's usable networks and, where a network has
    security groups, the caller's groups; the VM gets the NIC there and the chosen group,
    and its page shows its NICs with the network linked."""
    from app.models import Network as Net
    from app.models import SecurityGroup, VirtualMachine, VmSecurityGroup, new_uuid
    from app.services.network import secgroups
    with app.app_context():
        z = zones.get_zone(world.zone)
        sg_net = Net(uuid=new_uuid(), name="sg-shared", zone_id=z.id, guest_type="Shared", account_id=None,
                     cidr="10.50.0.0/24", gateway="10.50.0.1", netmask="255.255.255.0", start_ip="10.50.0.10",
                     end_ip="10.50.0.200", security_groups=True, state="Implemented")
        db.session.add(sg_net)
        db.session.commit()
        net_uuid = sg_net.uuid
        web = secgroups.create_group(accounts.get_user("alice"), name="web")
        web_uuid, web_id = web.uuid, web.id
    auth.login("alice")
    state = {"step": "network", "zoneid": world.zone, "templateid": world.template, "serviceofferingid": world.small,
             "csrf_token": auth.csrf()}
    html = html_of(client.post("/portal/deploy", data={**state, "go": "stay"}))
    assert 'aria-current="step">Network' in html and "sg-shared" in html
    assert 'id="deploy-secgroups"' in html and web_uuid in html
    # A group that is not the caller's is refused on its step.
    r = client.post("/portal/deploy", data={**state, "networkid": net_uuid, "securitygroupids": new_uuid()})
    assert r.status_code == 422 and "Choose among your security groups" in html_of(r)
    state.update(networkid=net_uuid, securitygroupids=web_uuid, keypair="", userdata="", name="sgvm",
                 displayname="", step="review")
    html = html_of(client.post("/portal/deploy", data={**state, "go": "stay"}))
    assert "security groups: web" in html and f'name="securitygroupids" value="{web_uuid}"' in html
    r = client.post("/portal/deploy", data={**state, "go": "deploy"})
    assert r.status_code == 302, html_of(r)
    with app.app_context():
        vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.name == "sgvm"))
        assert [n.network.uuid for n in vm.nics if n.removed is None] == [net_uuid]
        assert db.session.scalar(select(VmSecurityGroup.security_group_id).where(VmSecurityGroup.vm_id == vm.id)) \
            == web_id
        vm_uuid = vm.uuid
        assert db.session.get(SecurityGroup, web_id) is not None
    page = html_of(client.get(f"/vms/{vm_uuid}"))
    assert f'href="/networks/{net_uuid}"' in page and "10.50.0." in page

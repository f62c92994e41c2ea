"""Zone networking rules through the services: default offerings, offering validation, public
ranges (overlaps, in use), VLAN range shrink, traffic labels, addHost's label check, and the zone
wizard's networking (Basic and VXLAN zones, a launch failing at the public range leaves no row)."""
import json

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.hypervisors.simulator import SimulatorDriver
from app.models import (GuestVnet, Host, IpState, Network, NetworkOffering, NetworkServiceProvider, PhysicalNetwork,
                        PhysicalNetworkTrafficType, PublicIpAddress, VlanIpRange)
from app.services import hosts, zones
from app.services.errors import InvalidParameter, ResourceInUse, ServiceError
from app.services.network import networks, offerings, physical, ranges
from tests.helpers.users import existing_user

# Range creation (one row per address in one transaction) and the wizard's rollback also run on PostgreSQL and MariaDB (db).


@pytest.fixture
def admin(app):
    with app.app_context():
        existing_user("admin", "adminpass", role="admin", account="admin")
    ctx = app.app_context()
    ctx.push()
    from app.services import accounts
    yield accounts.get_user("admin")
    db.session.remove()
    ctx.pop()


def count(model, *where):
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def advanced_zone(admin, name="nz", vlan="100-199", method="VLAN"):
    z = zones.create_zone(admin, name=name, dns1="8.8.8.8", internal_dns1="10.0.0.2", guest_cidr="10.1.1.0/24",
                          default_network=False)
    pn = physical.create_physical_network(admin, zone=z, name="pn", vlan=vlan, isolation_method=method)
    return z, pn


def test_default_offerings_exist_once(admin):
    offerings.ensure_defaults()
    offerings.ensure_defaults()
    names = sorted(db.session.scalars(select(NetworkOffering.name)))
    assert names == sorted(d.name for d in offerings.DEFAULTS) and len(names) == 6
    iso = offerings.default_for("Isolated")
    assert iso.name == "DefaultIsolatedNetworkOfferingWithSourceNatService" and iso.availability == "Required"
    assert offerings.services_of(iso)["SourceNat"] == "VirtualRouter"
    assert offerings.default_for("Shared", security_groups=True).name == "DefaultSharedNetworkOfferingWithSGService"
    assert offerings.default_for("L2").name == "DefaultL2NetworkOffering"
    assert offerings.get_offering("00000000-0000-0000-0000-00000000000a").name == "DefaultSharedNetworkOffering"


@pytest.mark.parametrize("kw, text", [
    (dict(guest_ip_type="Shared", supported_services=["Dhcp", "StaticNat"], specify_vlan=True), "Isolated"),
    (dict(guest_ip_type="Isolated", supported_services=["SecurityGroup"]), "Shared"),
    (dict(guest_ip_type="L2", supported_services=["Dhcp"]), "L2"),
    (dict(guest_ip_type="Isolated", supported_services=["Dhcp", "PortForwarding"]), "SourceNat"),
    (dict(guest_ip_type="Shared", supported_services=["Dhcp"], specify_vlan=False), "specifyVlan"),
    (dict(guest_ip_type="Isolated", supported_services=["Vpn"]), "not supported"),
    (dict(guest_ip_type="Isolated", supported_services=["Dhcp"], service_provider_list=[
        {"service": "Dns", "provider": "VirtualRouter"}]), "not in the supportedservices"),
    (dict(guest_ip_type="Isolated", supported_services=["Dhcp"], for_vpc=True), "VPC"),
])
def test_offering_validation_refuses_and_makes_nothing(admin, kw, text):
    before = count(NetworkOffering)
    with pytest.raises(InvalidParameter) as e:
        offerings.create_offering(admin, name="bad", display_text="bad", **kw)
    assert text in e.value.message
    assert count(NetworkOffering) == before


def test_offering_in_use_cannot_be_deleted(admin):
    o = offerings.create_offering(admin, name="mine", display_text="m", guest_ip_type="Isolated",
                                  supported_services=["Dhcp", "Dns", "SourceNat"])
    assert o.state == "Disabled"
    z, pn = advanced_zone(admin)
    n = networks.create_network(admin, zone_uuid=z.uuid, name="n", cidr="10.5.0.0/24")
    n.network_offering_id = o.id
    db.session.commit()
    with pytest.raises(ResourceInUse, match="as its used by 1 networks"):
        offerings.delete_offering(admin, o.uuid)
    n.network_offering_id = None
    db.session.commit()
    offerings.delete_offering(admin, o.uuid)
    assert offerings.by_name("mine") is None


@pytest.mark.db
def test_public_ranges_overlap_in_use_and_delete(admin):
    z, pn = advanced_zone(admin)
    r = ranges.create_range(admin, zone_uuid=z.uuid, vlan="vlan://untagged", gateway="198.18.0.1",
                            netmask="255.255.255.0", start_ip="198.18.0.10", end_ip="198.18.0.59")
    assert count(PublicIpAddress, PublicIpAddress.vlan_range_id == r.id, PublicIpAddress.state == "Free") == 50
    assert r.physical_network_id == pn.id and r.for_virtual_network
    bad = [
        (dict(start_ip="198.18.0.50", end_ip="198.18.0.70"), "overlap with the new range"),
        (dict(start_ip="198.18.0.100", end_ip="198.18.0.110", netmask="255.255.255.128"), "has already been added"),
        (dict(start_ip="10.1.1.10", end_ip="10.1.1.20", gateway="10.1.1.1", vlan="400"), "guest network cidr"),
        (dict(start_ip="198.18.0.100", end_ip="198.18.0.110", vlan="120"), "overlapped with the subnet"),
        (dict(start_ip="198.18.3.10", end_ip="198.18.3.20", gateway="198.18.3.1", vlan="120"),
         "dynamic vlan allocation"),
        (dict(start_ip="198.18.0.9", end_ip="198.18.0.9", gateway="198.18.0.9"), "gateway shouldn't overlap"),
    ]
    for kw, text in bad:
        args = dict(zone_uuid=z.uuid, gateway="198.18.0.1", netmask="255.255.255.0", vlan="untagged")
        args.update(kw)
        with pytest.raises(InvalidParameter) as e:
            ranges.create_range(admin, **args)
        assert text in e.value.message, (kw, e.value.message)
        db.session.rollback()
    assert count(VlanIpRange) == 1 and count(PublicIpAddress) == 50
    # One address taken: the range stays.
    ip = db.session.scalar(select(PublicIpAddress).where(PublicIpAddress.address == "198.18.0.12"))
    ip.state = IpState.ALLOCATED
    db.session.commit()
    with pytest.raises(ResourceInUse, match="allocated public IP addresses"):
        ranges.delete_range(admin, r.uuid)
    assert count(PublicIpAddress) == 50 and ranges.get_range(r.uuid)
    ip.state = IpState.FREE
    db.session.commit()
    ranges.delete_range(admin, r.uuid)
    assert count(PublicIpAddress) == 0 and count(VlanIpRange, VlanIpRange.removed.is_(None)) == 0
    # Adjacent range in the same subnet after the delete: fine again.
    ranges.create_range(admin, zone_uuid=z.uuid, gateway="198.18.0.1", netmask="255.255.255.0",
                        start_ip="198.18.0.60", end_ip="198.18.0.61")
    assert count(PublicIpAddress) == 2


def test_shared_network_range_extends_its_addresses(admin):
    z, pn = advanced_zone(admin)
    n = networks.create_network(admin, zone_uuid=z.uuid, name="shared", cidr="10.9.0.0/24", start_ip="10.9.0.10",
                                end_ip="10.9.0.20")
    n.guest_type = "Shared"
    db.session.commit()
    r = ranges.create_range(admin, network_uuid=n.uuid, gateway=n.gateway, netmask=n.netmask,
                            start_ip="10.9.0.21", end_ip="10.9.0.30")
    assert not r.for_virtual_network and r.network_id == n.id and count(PublicIpAddress) == 0
    assert (n.start_ip, n.end_ip) == ("10.9.0.10", "10.9.0.30")
    with pytest.raises(InvalidParameter, match="CIDR"):
        ranges.create_range(admin, network_uuid=n.uuid, gateway="10.8.0.1", netmask="255.255.255.0",
                            start_ip="10.8.0.5", end_ip="10.8.0.6")


def test_vlan_range_grows_and_shrinks_only_where_free(admin):
    z, pn = advanced_zone(admin)
    n = networks.create_network(admin, zone_uuid=z.uuid, name="n", cidr="10.5.0.0/24", vlan=150)
    db.session.add(GuestVnet(physical_network_id=pn.id, vnet=150, network_id=n.id))
    db.session.commit()
    with pytest.raises(ResourceInUse, match="allocated vnets"):
        physical.update_physical_network(admin, pn.uuid, vlan="100-120")
    assert physical.get_physical_network(pn.uuid).vlan_range == "100-199"
    assert physical.update_physical_network(admin, pn.uuid, vlan="100-160,300-399").vlan_range == "100-160,300-399"
    assert physical.update_physical_network(admin, pn.uuid, vlan="100-499").vlan_range == "100-499"
    with pytest.raises(ResourceInUse, match="network"):
        n.physical_network_id = pn.id
        db.session.commit()
        physical.delete_physical_network(admin, pn.uuid)
    # VXLAN: VNIs up to 16777214.
    z2, pn2 = advanced_zone(admin, "vx", vlan="5000-5999", method="VXLAN")
    assert pn2.isolation_method == "VXLAN" and pn2.vlan_range == "5000-5999"
    with pytest.raises(InvalidParameter):
        physical.update_physical_network(admin, pn2.uuid, vlan="5000-16777215")


def test_labels_one_function_for_everyone(admin):
    z, pn = advanced_zone(admin)
    assert physical.label_for(z.id, "Guest", "KVM") == "cloudbr0"  # the type's default
    assert physical.label_for(z.id, "Guest", "Simulator") == "simbr0"
    physical.add_traffic_type(admin, pn.uuid, "Guest", {"KVM": "brguest", "Hyperv": "Guest Switch"})
    physical.add_traffic_type(admin, pn.uuid, "Public", {"KVM": "brpub"})
    assert physical.label_for(z.id, "Guest", "KVM") == "brguest"
    assert physical.label_for(z.id, "Guest", "LXC") == "brguest"  # the KVM family shares the KVM label
    assert physical.label_for(z.id, "Guest", "Hyperv") == "Guest Switch"
    assert physical.label_for(z.id, "Public", "KVM") == "brpub"
    assert networks.traffic_label(z.id, "KVM") == "brguest"  # the old entry point, same answer
    assert json.loads(physical.get_physical_network(pn.uuid).traffic_labels) == {"KVM": "brguest",
                                                                                "Hyperv": "Guest Switch"}
    guest = db.session.scalar(select(PhysicalNetworkTrafficType).where(
        PhysicalNetworkTrafficType.traffic_type == "Guest"))
    physical.update_traffic_type(admin, guest.uuid, {"KVM": "brguest2", "Hyperv": ""})
    assert json.loads(physical.get_physical_network(pn.uuid).traffic_labels) == {"KVM": "brguest2"}
    assert physical.labels_for_host(z.id, "KVM") == [("Guest", "brguest2"), ("Public", "brpub")]
    with pytest.raises(InvalidParameter, match="already added to physical network"):
        pn2 = physical.create_physical_network(admin, zone=z, name="pn2", vlan="300-310")
        physical.add_traffic_type(admin, pn2.uuid, "Public", {})


def test_providers_start_disabled_and_need_the_element(admin):
    z, pn = advanced_zone(admin)
    vr = db.session.scalar(select(NetworkServiceProvider).where(NetworkServiceProvider.name == "VirtualRouter"))
    assert vr.state == "Disabled" and vr.element_uuid and not vr.element_enabled
    with pytest.raises(InvalidParameter, match="configure the provider first"):
        physical.update_provider(admin, vr.uuid, state="Enabled")
    physical.configure_vr_element(admin, vr.element_uuid, True)
    assert physical.update_provider(admin, vr.uuid, state="Enabled").state == "Enabled"
    assert physical.provider_enabled(z.id, "VirtualRouter")
    assert not physical.provider_enabled(z.id, "SecurityGroupProvider")


def _sim_cluster(admin, z):
    p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="192.168.10.1", netmask="255.255.255.0",
                         start_ip="192.168.10.10")
    return zones.add_cluster(admin, pod_uuid=p.uuid, name="c", hypervisor="Simulator")


def test_add_host_refuses_a_missing_label_and_changes_nothing(admin, monkeypatch):
    z, pn = advanced_zone(admin)
    physical.add_traffic_type(admin, pn.uuid, "Guest", {"Simulator": "simbr0"})
    physical.add_traffic_type(admin, pn.uuid, "Public", {"Simulator": "cloudbr1"})
    c = _sim_cluster(admin, z)
    asked = []

    def check_labels(self, labels):
        asked.append(labels)
        return [x for x in labels if x == "cloudbr1"]
    monkeypatch.setattr(SimulatorDriver, "check_labels", check_labels)
    with pytest.raises(ServiceError) as e:
        hosts.add_host(admin, cluster_uuid=c.uuid, url="simulator://lbl-1", fields={})
    assert "traffic label cloudbr1 of Public traffic does not exist on host lbl-1" in e.value.message
    assert asked == [["cloudbr1", "simbr0"]] and count(Host) == 0
    monkeypatch.setattr(SimulatorDriver, "check_labels", lambda self, labels: [])
    assert hosts.add_host(admin, cluster_uuid=c.uuid, url="simulator://lbl-1", fields={}).name == "lbl-1"


def test_add_host_skips_drivers_that_cannot_check(admin, monkeypatch):
    z, pn = advanced_zone(admin)
    physical.add_traffic_type(admin, pn.uuid, "Guest", {"Simulator": "simbr0"})
    c = _sim_cluster(admin, z)

    def cannot(self, labels):
        raise NotImplementedError
    monkeypatch.setattr(SimulatorDriver, "check_labels", cannot)
    assert hosts.add_host(admin, cluster_uuid=c.uuid, url="simulator://lbl-2", fields={}).state == "Up"


# --- The zone wizard's networking ------------------------------------------------------

@pytest.mark.parametrize("cidr", ["", "10.1.1.0/24"])
def test_wizard_basic_zone_gets_a_security_group_network(app, client, auth, tmp_path, cidr):
    from tests.integration.test_zone_wizard import CLUSTER, HOST, POD, PRIMARY, ZONE, Wizard
    w = Wizard(client, auth, stored=False)
    w.next("zone", {**ZONE, "networktype": "Basic", "guestcidraddress": cidr})
    r = w.post("network", {"trafficlabel": "cloudbr0"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/pod")  # Basic: no public step
    for step, data in (("pod", {**POD, "gueststartip": "192.168.10.100", "guestendip": "192.168.10.150"}),
                       ("cluster", CLUSTER), ("host", HOST), ("primary", PRIMARY),
                       ("secondary", {"provider": "Local", "name": "sec-1", "path": str(tmp_path / "sec")})):
        w.next(step, data)
    r = w.launch()
    assert "is ready and Enabled" in client.get(r.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        net = db.session.scalar(select(Network))
        assert net.guest_type == "Shared" and net.security_groups and net.cidr == "192.168.10.0/24"
        assert net.offering.name == "DefaultSharedNetworkOfferingWithSGService"
        r = db.session.scalar(select(VlanIpRange))
        assert (r.network_id, r.start_ip, r.end_ip, r.for_virtual_network) == (
            net.id, "192.168.10.100", "192.168.10.150", False)
        assert (net.start_ip, net.end_ip) == ("192.168.10.100", "192.168.10.150")
        assert count(PublicIpAddress) == 0
        assert {t for t in db.session.scalars(select(PhysicalNetworkTrafficType.traffic_type))} == {
            "Guest", "Management"}
        assert db.session.scalar(select(PhysicalNetwork)).broadcast_domain_range == "POD"
    # Guests get addresses from the range the wizard asked for, not from the whole subnet
    # (issue 18's audit), with a guest CIDR typed in the zone step or not.
    with app.app_context():
        from app.models import ImageStore, ServiceOffering, Template, TemplateStoreRef, Zone, new_uuid
        from app.services import accounts, vms
        zone = db.session.scalar(select(Zone))
        store = db.session.scalar(select(ImageStore))
        admin = accounts.get_user("admin")
        t = Template(uuid=new_uuid(), name="tiny", format="RAW", hypervisor_type="Simulator", is_public=True,
                     account_id=admin.account_id, size=1 << 30, physical_size=1 << 30)
        db.session.add(t)
        db.session.flush()
        db.session.add(TemplateStoreRef(template_id=t.id, zone_id=zone.id, image_store_id=store.id,
                                        state="DOWNLOADED", download_pct=100, install_path="x.raw"))
        so = ServiceOffering(uuid=new_uuid(), name="s", cpu_number=1, cpu_speed=500, memory=256)
        db.session.add(so)
        db.session.commit()
        vm, _ = vms.deploy(admin, zone_uuid=zone.uuid, service_offering_uuid=so.uuid, template_uuid=t.uuid)
        vm = db.session.get(type(vm), vm.id)
        ip = next(n.ip_address for n in vm.nics)
        assert 100 <= int(ip.rsplit(".", 1)[1]) <= 150, ip


@pytest.mark.db
def test_wizard_vxlan_and_a_launch_failing_at_the_public_range_leaves_no_row(app, client, auth, tmp_path,
                                                                             monkeypatch):
    from tests.integration.test_zone_wizard import CLUSTER, HOST, NETWORK, POD, PRIMARY, PUBLIC, Wizard, counts
    w = Wizard(client, auth)
    r = w.post("network", {**NETWORK, "isolationmethod": "VXLAN", "vlan": "5000-5999"})
    assert r.status_code == 302
    r = w.post("public", {**PUBLIC, "gateway": "10.1.1.1", "startip": "10.1.1.10", "endip": "10.1.1.20"})
    assert r.status_code == 422 and b"guest CIDR" in r.data
    for step, data in (("public", PUBLIC), ("pod", POD), ("cluster", CLUSTER), ("host", HOST), ("primary", PRIMARY),
                       ("secondary", {"provider": "Local", "name": "sec-1", "path": str(tmp_path / "sec")})):
        w.next(step, data)
    real = ranges.create_range

    def failing(*a, **kw):
        real(*a, commit=False, **{k: v for k, v in kw.items() if k != "commit"})
        raise ServiceError("injected failure after the rows were written")
    monkeypatch.setattr(ranges, "create_range", failing)
    r = w.launch()
    assert "Create the public IP range failed" in client.get(r.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert set(counts(networking=True).values()) == {0}
        assert count(GuestVnet) == 0
    monkeypatch.setattr(ranges, "create_range", real)
    r = w.launch()
    assert "is ready and Enabled" in client.get(r.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        pn = db.session.scalar(select(PhysicalNetwork))
        assert (pn.isolation_method, pn.vlan_range) == ("VXLAN", "5000-5999")
        assert count(PublicIpAddress) == 20
        assert db.session.scalar(select(Network)).vlan == 5000



def test_demo_zone_has_public_range_labels_and_enabled_providers(app):
    from app.hypervisors.simulator import dispose_engines
    from app.services import bootstrap
    try:
        with app.app_context():
            bootstrap.run({**app.config, "SEED_DEMO": True})
            r = db.session.scalar(select(VlanIpRange))
            assert (r.gateway, r.start_ip, r.end_ip, r.vlan) == ("198.18.0.1", "198.18.0.10", "198.18.0.250",
                                                                 "untagged")
            assert count(PublicIpAddress, PublicIpAddress.state == "Free") == 241
            zone_id = r.zone_id
            for traffic in ("Guest", "Public", "Management"):
                assert physical.label_for(zone_id, traffic, "Simulator") == "simbr0"
            assert physical.provider_enabled(zone_id, "VirtualRouter")
            assert offerings.default_for("Isolated").state == "Enabled"
    finally:
        dispose_engines()


def test_zone_page_shows_traffic_providers_and_public_ranges(app, client, auth):
    with app.app_context():
        from app.services import accounts
        admin = accounts.get_user("admin")  # made by the auth fixture
        z, pn = advanced_zone(admin, vlan="5000-5010", method="VXLAN")
        physical.add_traffic_type(admin, pn.uuid, "Guest", {"KVM": "brguest"})
        physical.add_traffic_type(admin, pn.uuid, "Public", {"KVM": "brpub"})
        ranges.create_range(admin, zone_uuid=z.uuid, gateway="198.18.0.1", netmask="255.255.255.0",
                            start_ip="198.18.0.10", end_ip="198.18.0.19")
        zone_uuid = z.uuid
    auth.login("admin")
    html = client.get(f"/admin/zones/{zone_uuid}").get_data(as_text=True)
    assert "5000-5010" in html and "VXLAN" in html and "KVM: <code>brguest</code>" in html
    assert "KVM: <code>brpub</code>" in html and "VirtualRouter: Disabled" in html
    assert "198.18.0.10 – 198.18.0.19" in html and "10 of 10" in html

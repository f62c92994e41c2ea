"""Issue 16's acceptance scenario with real guests on the real local libvirtd, end to end
through Nubo's API (the real `cs` client against a live Nubo: tests/api/conftest.py).

An Advanced zone is built through the API on this machine's libvirtd: a physical network
with VXLAN isolation and a random VNI range; the Guest traffic label is a test-made bridge
(the VXLAN underlay, no uplink), the Public label another test-made bridge on which a
namespace stands for the outside world (198.18.x.1: the public gateway, with a TCP listener
that records the source address of each connection); public range 198.18.x.10-30.

The guests are tests/guests/net_guest.py (a Debian kernel + busybox: DHCP client, HTTP
server on port 80, metadata reads like cloud-init's CloudStack datasource, outbound
connections on command over the serial console), under QEMU emulation.

What is checked on the host at the end: no router namespace, no VXLAN bridge or device of
the network's VNI, no nftables table of the router or of the VMs' NICs.

Every name made on the host is random per run, and everything is removed in fixtures, even
when a test fails. Traffic goes only to addresses inside the namespaces and bridges made here.
"""
from __future__ import annotations

import base64
import contextlib
import random
import subprocess
import time
import uuid

import libvirt
import pytest
from cs import CloudStackApiException

from tests.api.conftest import live  # noqa: F401  (fixture: a live Nubo with job consumers)
from tests.guests import net_guest
from tests.helpers.www import serve

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("libvirt-guests"), pytest.mark.timeout(900)]
URI = "qemu:///system"
ISOLATED = "DefaultIsolatedNetworkOfferingWithSourceNatService"
SHARED_SG = "DefaultSharedNetworkOfferingWithSGService"
LISTEN_PORT = 9000


# --- waiting with deadlines -------------------------------------------------------------------------------------

def until(check, deadline_s: float = 30.0, every: float = 0.25, what: str = "the condition"):
    """check() until it returns something truthy; its value, or AssertionError at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"{what} was not true within {deadline_s:.0f} s")
        time.sleep(every)


def reaches(outside: net_guest.Outside, ip: str, port: int) -> dict:
    """The identity of the guest that answered GET / on ip:port from the outside ({} when none)."""
    body = outside.http_body(ip, port, timeout=2.0)
    return net_guest.identity_of(body) if body else {}


def reached_by(outside, ip, port, vm, deadline_s=30.0) -> None:
    """The outside reaches exactly this VM's HTTP server on ip:port (rules apply at once,
    but the first packets after a change may race it: poll with a deadline)."""
    until(lambda: reaches(outside, ip, port).get("instance-id") == vm["id"], deadline_s,
          what=f"the outside reaching VM {vm['name']} on {ip}:{port}")


def not_reached(outside, ip, port, deadline_s=30.0) -> None:
    """Nothing answers on ip:port from the outside, twice in a row (a deleted rule is gone)."""
    until(lambda: not reaches(outside, ip, port) and not reaches(outside, ip, port), deadline_s,
          what=f"{ip}:{port} being closed to the outside")


def arrives_from(outside: net_guest.Outside, console: net_guest.Console, vm: dict) -> str:
    """The guest connects to the outside's listener on command: the source address seen outside."""
    before = len(outside.accepted)
    assert console.send(outside.address, LISTEN_PORT), "the guest could not connect to the outside"
    src, data = until(lambda: next((a for a in outside.accepted[before:] if f"instance-id={vm['id']}" in a[1]),
                                   None), 30, what="the guest's connection arriving outside")
    return src


def err(call) -> dict:
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


# --- what is on the host ---------------------------------------------------------------------------------------

def host_names() -> dict[str, set[str]]:
    """Namespaces, links and nftables tables on this host, by name."""
    ns = {ln.split()[0] for ln in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
          .splitlines() if ln.strip()}
    links = {ln.split()[0].split("@")[0] for ln in subprocess.run(["ip", "-br", "link"], capture_output=True,
                                                                   text=True).stdout.splitlines() if ln.strip()}
    tables = {" ".join(ln.split()[1:]) for ln in subprocess.run(["nft", "list", "tables"], capture_output=True,
                                                                 text=True).stdout.splitlines() if ln.strip()}
    return {"netns": ns, "links": links, "tables": tables}


def leftovers(router_keys: set[str], vnis: set[int], nic_devs: set[str]) -> list[str]:
    """Whatever of these routers, segments and NICs is still on the host."""
    now = host_names()
    left = [n for n in now["netns"] if any(n == f"nr-{k}" for k in router_keys)]
    left += [d for d in now["links"] if any(d in (f"brvx-{v}", f"vxlan{v}") for v in vnis)]
    left += [d for d in now["links"] if any(d.startswith(f"vr{k}") for k in router_keys) or d in nic_devs]
    left += [t for t in now["tables"] if any(k in t for k in router_keys) or any(d in t for d in nic_devs)]
    return left


def assert_nothing_left(router_keys: set[str], vnis: set[int], nic_devs: set[str]) -> None:
    """Nothing of these is on the host (a namespace's own devices go asynchronously after
    it is deleted: a short deadline)."""
    end = time.monotonic() + 10
    while (left := leftovers(router_keys, vnis, nic_devs)) and time.monotonic() < end:
        time.sleep(0.2)
    assert left == [], f"left on the host: {left}"


def vni_of(network: dict) -> int:
    """The VNI of an implemented network (broadcasturi vxlan://N)."""
    uri = network.get("broadcasturi") or ""
    assert uri.startswith("vxlan://"), f"not a VXLAN network: {network}"
    return int(uri.split("://", 1)[1])


def nic_dev(nic: dict) -> str:
    from app.network.host.specs import nic_device
    return nic_device(nic["id"])


def router_key(router: dict) -> str:
    from app.network.host.specs import router_key as key
    return key(router["id"])


# --- fixtures --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def guest_image(tmp_path_factory):
    reason = net_guest.missing()
    if reason:
        pytest.fail(f"the networked test guest cannot be built: {reason} (scripts/sysdeps.sh test installs it)")
    return net_guest.build(tmp_path_factory.mktemp("netguest"))


@pytest.fixture
def www(tmp_path, guest_image):
    root = tmp_path / "www"
    root.mkdir()
    (root / "net-guest.raw").symlink_to(guest_image)
    with serve(root) as url:
        yield url


@contextlib.contextmanager
def lab_made():
    """The host side the admin prepares: two bridges (the Guest label: VXLAN underlay, and
    the Public label), the outside namespace on the public bridge holding the public gateway
    with a TCP listener. Random names, a random 198.18.x.0/24 and a random VNI range."""
    tag = uuid.uuid4().hex[:6]
    x = random.randint(0, 255)
    made = dict(tag=tag, guest_br=f"ngu{tag}", public_br=f"npb{tag}", net=f"198.18.{x}",
                vni_base=random.randrange(100000, 16000000 - 64), suffix="R" + uuid.uuid4().hex[:8])
    outside = None
    try:
        for br in (made["guest_br"], made["public_br"]):
            subprocess.run(["ip", "link", "add", br, "type", "bridge"], check=True)
            subprocess.run(["ip", "link", "set", br, "up"], check=True)
        outside = net_guest.Outside(f"nout{tag}", made["public_br"], f"{made['net']}.1/24")
        outside.listen(LISTEN_PORT)
        made["outside"] = outside
        yield made
    finally:
        if outside is not None:
            outside.close()
        for br in (made["guest_br"], made["public_br"]):
            subprocess.run(["ip", "link", "del", br], capture_output=True)


@pytest.fixture
def lab():
    with lab_made() as made:
        yield made


def build_zone(api, lab: dict, www: str, tmp_path) -> dict:
    """An Advanced zone on the local libvirtd through the API (as an admin would, in
    CloudStack's order): physical network (VXLAN, VNI range), traffic types with the
    test's bridges as KVM labels, the VirtualRouter and SecurityGroupProvider providers,
    the public range, pod, cluster, the libvirtd host (QEMU emulation), storage, the
    guest template and an offering."""
    net = lab["net"]
    z = api.createZone(name=f"rg-{lab['tag']}", networktype="Advanced", dns1=f"{net}.1", internaldns1=f"{net}.1",
                       guestcidraddress="10.1.0.0/16")["zone"]
    pn = api.createPhysicalNetwork(zoneid=z["id"], name=f"pn-{lab['tag']}", isolationmethods="VXLAN",
                                   vlan=f"{lab['vni_base']}-{lab['vni_base'] + 31}",
                                   fetch_result=True)["physicalnetwork"]
    for traffic, label in (("Guest", lab["guest_br"]), ("Public", lab["public_br"]),
                           ("Management", lab["guest_br"])):
        api.addTrafficType(physicalnetworkid=pn["id"], traffictype=traffic, kvmnetworklabel=label, fetch_result=True)
    for nsp in api.listNetworkServiceProviders(physicalnetworkid=pn["id"]).get("networkserviceprovider", []):
        if nsp["name"] == "VirtualRouter":
            for el in api.listVirtualRouterElements(nspid=nsp["id"]).get("virtualrouterelement", []):
                api.configureVirtualRouterElement(id=el["id"], enabled="true", fetch_result=True)
        if nsp["name"] in ("VirtualRouter", "SecurityGroupProvider") and nsp["state"] != "Enabled":
            api.updateNetworkServiceProvider(id=nsp["id"], state="Enabled", fetch_result=True)
    api.updatePhysicalNetwork(id=pn["id"], state="Enabled", fetch_result=True)
    api.createVlanIpRange(zoneid=z["id"], physicalnetworkid=pn["id"], vlan="untagged", forvirtualnetwork="true",
                          gateway=f"{net}.1", netmask="255.255.255.0", startip=f"{net}.10", endip=f"{net}.30")
    p = api.createPod(zoneid=z["id"], name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                      startip="10.0.0.10", endip="10.0.0.20")["pod"]
    c = api.addCluster(zoneid=z["id"], podid=p["id"], clustername="c", hypervisor="KVM",
                       clustertype="CloudManaged")["cluster"][0]
    h = api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"], url=URI,
                    details=[{"acceleration": "emulated"}])["host"][0]
    pool = api.createStoragePool(zoneid=z["id"], clusterid=c["id"], name="primary",
                                 url=f"file://{tmp_path}/primary")["storagepool"]
    api.addImageStore(provider="Local", url=f"file://{tmp_path}/secondary", zoneid=z["id"], name="sec")
    t = api.registerTemplate(name="net-guest", displaytext="net guest", url=f"{www}/net-guest.raw", zoneid=z["id"],
                             hypervisor="KVM", format="RAW", ostypeid=None, ispublic="true")["template"][0]
    until(lambda: api.listTemplates(templatefilter="all", id=t["id"])["template"][0].get("isready"), 300,
          what="the template being ready")
    so = api.createServiceOffering(name="tiny", displaytext="tiny", cpunumber=1, cpuspeed=500,
                                   memory=128)["serviceoffering"]
    api.updateConfiguration(name="instance.name", value=lab["suffix"])  # our domains' names, unique to this run
    api.updateConfiguration(name="vm.stop.timeout", value="10")
    return dict(zone=z, physnet=pn, host=h, pool=pool, template=t, offering=so)


def clean_zone(api, made: dict, lab: dict) -> None:
    """Everything of ours goes: VMs, networks (through the API, so routers and segments are
    removed by Nubo), then whatever a failure left on libvirtd (domains named *-<suffix>,
    the pool)."""
    with contextlib.suppress(Exception):
        for vm in api.listVirtualMachines(listall="true").get("virtualmachine", []):
            with contextlib.suppress(Exception):
                api.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
    with contextlib.suppress(Exception):
        for n in api.listNetworks(listall="true").get("network", []):
            with contextlib.suppress(Exception):
                api.deleteNetwork(id=n["id"], forced="true", fetch_result=True)
    conn = libvirt.open(URI)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().endswith("-" + lab["suffix"]):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        pool_id = made.get("pool", {}).get("id")
        if pool_id:
            with contextlib.suppress(libvirt.libvirtError):
                p = conn.storagePoolLookupByName(pool_id)
                for name in sorted(p.listVolumes(), key=lambda n: n.startswith("template-")):
                    p.storageVolLookupByName(name).delete(0)
                p.destroy()
                p.undefine()
    finally:
        conn.close()


@pytest.fixture
def zone(live, lab, www, tmp_path):  # noqa: F811
    api = live.client()
    made: dict = {}
    try:
        made.update(build_zone(api, lab, www, tmp_path))
        yield made
    finally:
        clean_zone(api, made, lab)


def ssh_public_key(comment: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " " + comment


def offering_id(api, name: str) -> str:
    (o,) = [o for o in api.listNetworkOfferings(name=name)["networkoffering"] if o["name"] == name]
    return o["id"]


def deploy(api, zone, name, network_id, user_data: str, **kw) -> dict:
    return api.deployVirtualMachine(zoneid=zone["zone"]["id"], templateid=zone["template"]["id"],
                                    serviceofferingid=zone["offering"]["id"], name=name, networkids=network_id,
                                    userdata=base64.b64encode(user_data.encode()).decode(), fetch_result=True,
                                    **kw)["virtualmachine"]


@contextlib.contextmanager
def console_of(vm_instance_name: str):
    conn = libvirt.open(URI)
    try:
        with net_guest.Console.of(conn, vm_instance_name) as c:
            yield c
    finally:
        conn.close()


def instance_name(api, vm) -> str:
    return api.listVirtualMachines(id=vm["id"], listall="true")["virtualmachine"][0]["instancename"]


# --- the isolated network --------------------------------------------------------------------------------------

def test_isolated_network_dhcp_nat_firewall_static_nat_metadata(live, lab, zone):  # noqa: F811
    admin, alice = live.client(), live.client("alice")
    outside, net = lab["outside"], lab["net"]
    key1 = ssh_public_key(f"alice-{lab['tag']}")
    alice.registerSSHKeyPair(name="k1", publickey=key1)
    network = alice.createNetwork(name="web", displaytext="web", zoneid=zone["zone"]["id"],
                                  networkofferingid=offering_id(alice, ISOLATED))["network"]
    ud1 = f"#cloud-config\n# first guest {lab['tag']}\nnubo-connect={net}.1:{LISTEN_PORT}\n"
    vm1 = deploy(alice, zone, "g1", network["id"], ud1, keypair="k1")
    assert vm1["state"] == "Running"
    network = alice.listNetworks(id=network["id"])["network"][0]
    assert network["state"] == "Implemented"
    vni = vni_of(admin.listNetworks(id=network["id"], listall="true")["network"][0])
    assert lab["vni_base"] <= vni <= lab["vni_base"] + 31
    (router,) = admin.listRouters(networkid=network["id"], listall="true")["router"]
    assert router["state"] == "Running"
    key = router_key(router)
    nic1 = alice.listVirtualMachines(id=vm1["id"])["virtualmachine"][0]["nic"][0]  # what Nubo shows
    on_host = host_names()
    assert f"nr-{key}" in on_host["netns"] and f"brvx-{vni}" in on_host["links"] and f"vxlan{vni}" in on_host["links"]

    snat = alice.listPublicIpAddresses(associatednetworkid=network["id"], issourcenat="true")["publicipaddress"][0]
    assert snat["ipaddress"].startswith(f"{net}.")

    with console_of(instance_name(admin, vm1)) as c1:
        # DHCP from the router: exactly the address Nubo shows; gateway and DHCP server = the router.
        s1 = c1.report(deadline_s=240)
        assert s1["ip"] == nic1["ipaddress"], (s1, nic1)
        assert s1["router"] == nic1["gateway"] == s1["server"]
        # Metadata: its own user data, instance id and key, from the DHCP server (the router).
        assert s1["user-data.code"] == "200" and s1["user-data"].decode() == ud1
        assert s1["instance-id"].decode().strip() == vm1["id"]
        assert key1.split()[1] in s1["public-keys"].decode()

        # Its own connections: the offering's default egress policy (CloudStack's default
        # isolated offering: deny) decides, until an egress rule allows; then they arrive
        # outside from the network's source-NAT IP.
        allow = network.get("egressdefaultpolicy")
        assert s1["boot-send"] == (f"{net}.1:{LISTEN_PORT}", bool(allow))  # asked for in its user data
        if not allow:
            assert not c1.send(outside.address, LISTEN_PORT)
            alice.createEgressFirewallRule(networkid=network["id"], protocol="tcp", cidrlist=network["cidr"],
                                           destcidrlist=f"{net}.0/24",
                                           startport=LISTEN_PORT, endport=LISTEN_PORT, fetch_result=True)
        else:
            src, _ = outside.wait_accepted(f"instance-id={vm1['id']}", deadline_s=30)
            assert src == snat["ipaddress"]
        assert arrives_from(outside, c1, vm1) == snat["ipaddress"]

        # Port forwarding: only while a forwarding rule AND a firewall rule allow it.
        public_port = 8080
        assert not reaches(outside, snat["ipaddress"], public_port)
        pf = alice.createPortForwardingRule(ipaddressid=snat["id"], protocol="tcp", publicport=public_port,
                                            privateport=80, virtualmachineid=vm1["id"], openfirewall="false",
                                            fetch_result=True)["portforwardingrule"]
        not_reached(outside, snat["ipaddress"], public_port)  # no firewall rule yet: denied
        fw = alice.createFirewallRule(ipaddressid=snat["id"], protocol="tcp", startport=public_port,
                                      endport=public_port, cidrlist=f"{net}.0/24",
                                      fetch_result=True)["firewallrule"]
        reached_by(outside, snat["ipaddress"], public_port, vm1)
        assert not reaches(outside, snat["ipaddress"], 80)  # only the forwarded port
        alice.deleteFirewallRule(id=fw["id"], fetch_result=True)
        not_reached(outside, snat["ipaddress"], public_port)
        fw = alice.createFirewallRule(ipaddressid=snat["id"], protocol="tcp", startport=public_port,
                                      endport=public_port, cidrlist=f"{net}.0/24",
                                      fetch_result=True)["firewallrule"]
        reached_by(outside, snat["ipaddress"], public_port, vm1)
        alice.deletePortForwardingRule(id=pf["id"], fetch_result=True)
        not_reached(outside, snat["ipaddress"], public_port)
        alice.deleteFirewallRule(id=fw["id"], fetch_result=True)

        # Static NAT: a second public IP for the whole VM, inbound (with a firewall rule) and outbound.
        ip2 = alice.associateIpAddress(networkid=network["id"], fetch_result=True)["ipaddress"]
        assert ip2["ipaddress"].startswith(f"{net}.") and ip2["ipaddress"] != snat["ipaddress"]
        alice.enableStaticNat(ipaddressid=ip2["id"], virtualmachineid=vm1["id"])
        not_reached(outside, ip2["ipaddress"], 80)  # no firewall rule yet
        fw2 = alice.createFirewallRule(ipaddressid=ip2["id"], protocol="tcp", startport=80, endport=80,
                                       cidrlist="0.0.0.0/0", fetch_result=True)["firewallrule"]
        reached_by(outside, ip2["ipaddress"], 80, vm1)
        assert arrives_from(outside, c1, vm1) == ip2["ipaddress"]
        listed = alice.listVirtualMachines(id=vm1["id"])["virtualmachine"][0]
        assert listed.get("publicip") == ip2["ipaddress"]
        alice.disableStaticNat(ipaddressid=ip2["id"], fetch_result=True)
        not_reached(outside, ip2["ipaddress"], 80)
        assert arrives_from(outside, c1, vm1) == snat["ipaddress"]
        with contextlib.suppress(CloudStackApiException):  # disabling static NAT may have removed it already
            alice.deleteFirewallRule(id=fw2["id"], fetch_result=True)
        alice.disassociateIpAddress(id=ip2["id"], fetch_result=True)

        # A second guest on the network gets its own user data and meta-data, never the first's.
        ud2 = f"#cloud-config\n# second guest {lab['tag']}\n"
        vm2 = deploy(alice, zone, "g2", network["id"], ud2)
        with console_of(instance_name(admin, vm2)) as c2:
            s2 = c2.report(deadline_s=240)
            assert s2["ip"] == vm2["nic"][0]["ipaddress"] != s1["ip"]
            assert s2["user-data"].decode() == ud2 and s2["instance-id"].decode().strip() == vm2["id"]
            assert key1.split()[1] not in s2["public-keys"].decode()
            # Asked again now, each still gets its own.
            assert c2.meta()["user-data"].decode() == ud2
            assert c1.meta()["user-data"].decode() == ud1
            # The guests reach each other on their network.
            code, body = c2.get(s1["ip"], 80)
            assert code == "200" and net_guest.identity_of(body)["instance-id"] == vm1["id"]

    # Everything goes: the VMs, the network; nothing of them is left on the host.
    devs = {nic_dev(nic1), nic_dev(vm2["nic"][0])}
    for vm in (vm1, vm2):
        alice.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
    alice.deleteNetwork(id=network["id"], fetch_result=True)
    assert_nothing_left({key}, {vni}, devs)
    assert admin.listRouters(listall="true") == {}
    assert alice.listPublicIpAddresses() == {}  # the source-NAT IP went back to the range


# --- a shared network with security groups ---------------------------------------------------------------------

def test_shared_network_security_groups(live, lab, zone):  # noqa: F811
    """An admin's shared network with security groups (DHCP, DNS and user data from the
    router, no NAT) on the Guest label's bridge; guest 2 reaches guest 1's port 80 only
    while an ingress rule of guest 1's group allows it (by CIDR, then by group)."""
    admin, alice = live.client(), live.client("alice")
    g = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
    shared = admin.createNetwork(name=f"sg-{lab['tag']}", displaytext="shared with security groups",
                                 zoneid=zone["zone"]["id"], networkofferingid=offering_id(admin, SHARED_SG),
                                 gateway=f"{g}.1", netmask="255.255.255.0", startip=f"{g}.10", endip=f"{g}.40",
                                 acltype="Domain")["network"]  # no vlan: untagged, on the Guest label
    web = alice.createSecurityGroup(name="web", description="the web servers")["securitygroup"]
    ud1, ud2 = f"# sg guest 1 {lab['tag']}\n", f"# sg guest 2 {lab['tag']}\n"
    vm1 = deploy(alice, zone, "s1", shared["id"], ud1, securitygroupids=web["id"])
    vm2 = deploy(alice, zone, "s2", shared["id"], ud2, securitygroupnames="default")
    ip1 = alice.listVirtualMachines(id=vm1["id"])["virtualmachine"][0]["nic"][0]["ipaddress"]
    ip2 = alice.listVirtualMachines(id=vm2["id"])["virtualmachine"][0]["nic"][0]["ipaddress"]
    (router,) = admin.listRouters(networkid=shared["id"], listall="true")["router"]
    key = router_key(router)

    def reach() -> bool:
        code, body = c2.get(ip1, 80)
        return code == "200" and net_guest.identity_of(body).get("instance-id") == vm1["id"]

    with console_of(instance_name(admin, vm1)) as c1, console_of(instance_name(admin, vm2)) as c2:
        s1, s2 = c1.report(deadline_s=240), c2.report(deadline_s=240)
        assert (s1["ip"], s2["ip"]) == (ip1, ip2)  # leased from the router: what Nubo shows
        assert s1["user-data"].decode() == ud1 and s2["user-data"].decode() == ud2
        assert s1["instance-id"].decode().strip() == vm1["id"]

        assert not reach()  # guest 1's group allows no ingress
        rule = alice.authorizeSecurityGroupIngress(securitygroupid=web["id"], protocol="tcp", startport=80, endport=80,
                                                   cidrlist=f"{ip2}/32", fetch_result=True)["securitygroup"]
        until(reach, 60, every=0.5, what="guest 2 reaching guest 1 once a CIDR rule allows it")
        rule_id = rule["ingressrule"][0]["ruleid"]
        alice.revokeSecurityGroupIngress(id=rule_id, fetch_result=True)
        until(lambda: not reach(), 60, every=0.5, what="guest 2 no longer reaching guest 1 after the revoke")

        rule = alice.authorizeSecurityGroupIngress(securitygroupid=web["id"], protocol="tcp", startport=80, endport=80,
                                                   usersecuritygrouplist=[{"account": "alice", "group": "default"}],
                                                   fetch_result=True)["securitygroup"]
        until(reach, 60, every=0.5, what="guest 2 reaching guest 1 once a group rule allows it")
        alice.revokeSecurityGroupIngress(id=rule["ingressrule"][0]["ruleid"], fetch_result=True)
        until(lambda: not reach(), 60, every=0.5, what="guest 2 no longer reaching guest 1 after the revoke")

    devs = {nic_dev(vm1["nic"][0]), nic_dev(vm2["nic"][0])}
    for vm in (vm1, vm2):
        alice.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
    admin.deleteNetwork(id=shared["id"], fetch_result=True)
    assert_nothing_left({key}, set(), devs)


# --- a failure half way through implementing a network ----------------------------------------------------------

def test_failed_implementation_leaves_nothing_on_the_host_or_in_the_database(live, lab, zone, monkeypatch):  # noqa: F811
    """The router's host step fails after the segment and the router's namespace were made:
    the implementation is undone, newest first: no namespace, bridge, VXLAN device or
    nftables table on the host; no VNI, source-NAT IP or router in the database."""
    from sqlalchemy import func, select

    from app.extensions import db
    from app.hypervisors.libvirt.driver import LibvirtDriver
    from app.models.networks import GuestVnet, PublicIpAddress, Router
    from app.hypervisors.base import OperationFailed
    alice = live.client("alice")
    keys: list[str] = []
    real_apply = LibvirtDriver.router_apply

    def failing_apply(self, spec):
        keys.append(spec.key)
        real_apply(self, spec)  # the namespace, its veths, dnsmasq, nftables: all made
        assert f"nr-{spec.key}" in host_names()["netns"]
        raise OperationFailed("injected: the router's host step failed after it was made")

    monkeypatch.setattr(LibvirtDriver, "router_apply", failing_apply)
    network = alice.createNetwork(name="doomed", displaytext="doomed", zoneid=zone["zone"]["id"],
                                  networkofferingid=offering_id(alice, ISOLATED))["network"]
    e = err(lambda: deploy(alice, zone, "f1", network["id"], "# doomed\n"))
    assert "injected" in str(e), e
    assert keys, "router_apply was never called"
    vnis = set(range(lab["vni_base"], lab["vni_base"] + 32))
    assert_nothing_left(set(keys), vnis, set())
    assert alice.listNetworks(id=network["id"])["network"][0]["state"] == "Allocated"
    assert alice.listPublicIpAddresses(associatednetworkid=network["id"]) == {}
    with live.flask_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(GuestVnet).where(GuestVnet.network_id.is_not(None))) == 0
        assert db.session.scalar(select(func.count()).select_from(PublicIpAddress)
                                 .where(PublicIpAddress.network_id.is_not(None))) == 0
        assert db.session.scalar(select(func.count()).select_from(Router).where(Router.removed.is_(None))) == 0

    # Once the host step works again, the same network implements and the guest gets its lease.
    monkeypatch.setattr(LibvirtDriver, "router_apply", real_apply)
    vm = deploy(alice, zone, "f2", network["id"], "# after the failure\n")
    with console_of(instance_name(live.client(), vm)) as c:
        assert c.report(deadline_s=240)["ip"] == vm["nic"][0]["ipaddress"]

"""A guest network across two real hosts (issue 19: "a guest on each host of one VXLAN network
reach each other"), on the lab's two libvirt hosts (scripts/lab.sh), reached by Nubo over
qemu+ssh with their SSH keys pinned: every host-side network step (bridges, VXLAN devices
and their head-end replication lists, the router's namespace) goes over SSH.

An Advanced zone with a VXLAN physical network whose Guest and Public labels are the hosts'
cloudbr0 (their address on the lab's datacenter bridge: the VXLAN underlay). An Isolated
network gets a real networked guest (tests/guests/net_guest.py, QEMU emulation) on each host:
the network is implemented at the first start, its router next to the first guest, so the
second guest gets its DHCP lease from a router on the OTHER host, across VXLAN. Each gets
exactly the address Nubo shows and reaches the other's HTTP server. A guest of another
Isolated network (same CIDR: only the VNI separates them) on the first host reaches neither
(nor they it), though it is on the same host as one and in the same subnet as both.

The hosts are cleaned directly at the end (router namespaces, segments), whatever happened."""
from __future__ import annotations

import contextlib
import ipaddress
import json
import time
import uuid

import pytest

from app.extensions import db
from app.models import ServiceOffering, VirtualMachine, new_uuid
from app.network.host.specs import router_key
from app.services import accounts, hosts, settings, storage, templates, vms, zones
from app.services.network import networks, routers
from tests.guests import net_guest
from tests.helpers.net_zone import network_zone
from tests.helpers.users import existing_user
from tests.helpers.www import built_guest, serve_files

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("lab"), pytest.mark.timeout(900)]
SUFFIX = "X" + uuid.uuid4().hex[:8]
GUEST_CIDR = "10.71.0.0/24"


@pytest.fixture(scope="module")
def guest_image(tmp_path_factory):
    return built_guest(net_guest, tmp_path_factory.mktemp("netguest"))


@pytest.fixture
def www(tmp_path, guest_image):
    with serve_files(tmp_path / "www", {"net-guest.raw": guest_image}) as url:
        yield url


def on_host(lab, name: str) -> dict[str, set[str]]:
    """A lab host's namespaces and links, by name."""
    ns = {ln.split()[0] for ln in lab.run(name, "ip", "netns", "list").stdout.splitlines() if ln.strip()}
    links = {d["ifname"] for d in json.loads(lab.run(name, "ip", "-j", "link", "show").stdout or "[]")}
    return {"netns": ns, "links": links}


def fdb_peers(lab, name: str, vni: int) -> set[str]:
    """The head-end replication list of a host's vxlan<VNI> (its all-zero FDB entries)."""
    r = lab.run(name, "bridge", "-j", "fdb", "show", "dev", f"vxlan{vni}", check=False)
    return {e["dst"] for e in json.loads(r.stdout or "[]") if e.get("mac") == "00:00:00:00:00:00" and e.get("dst")}


@contextlib.contextmanager
def console(lab, host_name: str, instance_name: str):
    with lab.connect(host_name) as conn, net_guest.Console.of(conn, instance_name) as c:
        yield c


def reaches(c: net_guest.Console, ip: str) -> str | None:
    """The instance id of the guest whose HTTP server answered GET http://ip/ from this guest."""
    code, body = c.get(ip, 80, deadline_s=90)
    return net_guest.identity_of(body).get("instance-id") if code == "200" else None


def test_a_guest_on_each_host_of_one_vxlan_network(app, lab, tmp_path, www):
    subnet = ipaddress.ip_network(f"{lab.bridge_address}/24", strict=False)
    base = int(subnet.network_address)
    public = f"{ipaddress.ip_address(base + 100)}-{ipaddress.ip_address(base + 109)}"
    try:
        _scenario(app, lab, tmp_path, www, public)
    finally:
        _clean_hosts(app, lab)


def _clean_hosts(app, lab) -> None:
    """What the scenario made on the hosts, removed there directly (Nubo's own removal path is
    proved on the local host by tests/network/test_real_guest.py; through SSH it would cost the
    lab minutes): the routers' namespaces with their processes and directories, the segments'
    bridges and devices. lab.wipe() then removes the domains. Checked: nothing of it is left."""
    from sqlalchemy import select

    from app.models import Network, Router
    with app.app_context():
        keys = sorted(router_key(u) for u in db.session.scalars(select(Router.uuid)))
        vnis = sorted({v for v in db.session.scalars(select(Network.vlan)) if v is not None} | set(range(7000, 7010)))
    script = """
for k in $KEYS; do
  ip netns pids nr-$k 2>/dev/null | xargs -r kill -9
  ip netns del nr-$k 2>/dev/null; ip link del vh${k}g 2>/dev/null; ip link del vh${k}p 2>/dev/null
  rm -rf /var/lib/nubo/routers/$k
done
for v in $VNIS; do ip link del brvx-$v 2>/dev/null; ip link del vxlan$v 2>/dev/null; done
ip netns list; ip -br link; true"""
    for h in lab.hosts:
        out = lab.run(h.name, "env", f"KEYS={' '.join(keys)}", f"VNIS={' '.join(map(str, vnis))}", "sh", "-c",
                      script).stdout
        left = [w for w in out.split() if any(w.startswith((f"nr-{k}", f"vh{k}", f"vr{k}")) for k in keys)
                or w.split("@")[0] in {f"{p}{v}" for v in vnis for p in ("brvx-", "vxlan")}]
        assert left == [], f"left on {h.name}: {left}"


def _scenario(app, lab, tmp_path, www, public: str) -> None:
    h1, h2 = lab.hosts
    t0 = time.monotonic()

    def mark(what: str) -> None:
        print(f"\n{what} at {time.monotonic() - t0:.0f} s")

    with app.app_context():
        admin = existing_user("root", "rootpass1", role="admin", account="admin")
        alice = existing_user("alice", "alicepass1")
        z = zones.create_zone(admin, name="vx", network_type="Advanced", dns1=lab.bridge_address,
                              internal_dns1=lab.bridge_address, guest_cidr=GUEST_CIDR)
        zones.create_physical_network(admin, z, vlan_range="7000-7009", isolation_method="VXLAN",
                                      traffic_labels={"KVM": lab.traffic_label})
        # Public side of the routers: the lab network too (this machine is its gateway).
        network_zone(z, vnis="7000-7009", public=public, gateway=lab.bridge_address)
        p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                             start_ip="10.0.0.10")
        c = zones.add_cluster(admin, pod_uuid=p.uuid, name="c", hypervisor="KVM")
        host1, host2 = (hosts.add_host(admin, cluster_uuid=c.uuid, url=h.uri, fields=lab.host_fields(h))
                        for h in (h1, h2))
        storage.create_storage_pool(admin, zone_uuid=z.uuid, cluster_uuid=c.uuid, name="lab-primary",
                                    url=lab.storage_url)
        storage.add_image_store(admin, provider="Local", url=f"file://{tmp_path}/secondary", zone_uuid=z.uuid)
        tpl = templates.register(admin, url=f"{www}/net-guest.raw", name="net-guest", hypervisor="KVM",
                                 format="RAW", zone_uuid=z.uuid, is_public=True)
        so = ServiceOffering(uuid=new_uuid(), name="tiny", cpu_number=1, cpu_speed=500, memory=128)
        db.session.add(so)
        db.session.commit()
        settings.update("instance.name", SUFFIX)
        alice = accounts.user_by_uuid(alice.uuid)
        mark("zone, hosts, template")
        web = networks.create_network(alice, zone_uuid=z.uuid, name="web", display_text="web")
        other = networks.create_network(alice, zone_uuid=z.uuid, name="other", display_text="other")
        assert web.cidr == other.cidr == GUEST_CIDR  # one subnet: only the VNI keeps them apart

        def deploy(name, net, host, **kw):
            vm, job = vms.deploy(admin, zone_uuid=z.uuid, service_offering_uuid=so.uuid, template_uuid=tpl.uuid,
                                 name=name, network_uuids=[net.uuid], host_uuid=host.uuid, account="alice",
                                 domainid=alice.account.domain.uuid, **kw)
            db.session.refresh(job)
            assert job.status == 1, job.result
            vm = db.session.get(VirtualMachine, vm.id)
            assert vm.host_id == host.id
            mark(f"{name} deployed")
            return dict(id=vm.uuid, instance=vm.instance_name, ip=vm.nics[0].ip_address)

        a = deploy("va", web, host1)
        b = deploy("vb", web, host2)
        # The third address of the subnet neither of them has: the same subnet, another VNI.
        taken = {a["ip"], b["ip"], web.gateway}
        free = next(str(ip) for ip in ipaddress.ip_network(GUEST_CIDR).hosts() if str(ip) not in taken)
        x = deploy("vx", other, host1, ip_address=free)
        for net in (web, other):
            db.session.refresh(net)
        vni, vni_other = web.vlan, other.vlan
        assert vni != vni_other and web.broadcast_uri == f"vxlan://{vni}"
        router = routers.router_of(web)
        assert router.host_id == host1.id and router.state == "Running"  # next to the first guest
        assert (host1.address, host2.address) == (h1.address, h2.address)
        gw, gw_other = web.gateway, other.gateway

    # On the hosts: each carrier of the web network lists the other as its only peer (the
    # underlay: their cloudbr0 addresses); the other network is on host 1 only: no peer.
    assert fdb_peers(lab, h1.name, vni) == {h2.address}
    assert fdb_peers(lab, h2.name, vni) == {h1.address}
    assert fdb_peers(lab, h1.name, vni_other) == set()
    assert f"vxlan{vni_other}" not in on_host(lab, h2.name)["links"]

    with console(lab, h1.name, a["instance"]) as ca, console(lab, h2.name, b["instance"]) as cb, \
            console(lab, h1.name, x["instance"]) as cx:
        sa, sb, sx = (cn.report(deadline_s=300) for cn in (ca, cb, cx))
        mark("guests reported")
        # DHCP from the network's router: exactly the addresses Nubo shows. Guest b's lease
        # came from the router on host 1, over VXLAN.
        assert (sa["ip"], sb["ip"], sx["ip"]) == (a["ip"], b["ip"], x["ip"]), (sa, sb, sx)
        assert sa["server"] == sb["server"] == gw and sb["router"] == gw
        # Across the hosts, both ways.
        assert reaches(ca, b["ip"]) == b["id"]
        assert reaches(cb, a["ip"]) == a["id"]
        # The other network's guest: its own router answered it; it reaches neither, nor they it.
        assert sx["server"] == gw_other
        assert reaches(cx, a["ip"]) is None  # same host, same subnet, another VNI
        assert reaches(cx, b["ip"]) is None  # the other host
        assert reaches(cb, x["ip"]) is None
        mark("reachability checked")

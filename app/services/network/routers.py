"""Virtual routers: where they run, the RouterSpec built from the database, applying it to
the router's host, destroying it, and the health check the monitor runs.

The database is the desired state and the router a cache of it (docs/networking.md): every
change a router must reflect (a VM's NIC, a rule, a public IP) ends in `apply(network)`,
which renders the whole spec again and hands it to the host; applying is idempotent."""
from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging

from sqlalchemy import select

from app.extensions import db
from app.hypervisors.base import DriverError
from app.models import (Host, HostState, Network, Nic, PhysicalNetwork, PhysicalNetworkTrafficType, PublicIpAddress,
                        ResourceState, Router, RouterState, SSHKeyPair, VirtualMachine, VlanIpRange, utcnow)
from app.network.host.specs import DhcpEntry, RouterSpec, SegmentSpec, VmMetadata, router_key
from app.services import hypervisors as hv
from app.services.errors import InsufficientCapacity, ResourceUnavailable
from app.services.settings import Definition, define

log = logging.getLogger(__name__)

define(Definition("guest.domain.suffix", "cloud.internal", "Suffix of the default DNS domain of guest networks: "
                  "cs<account id in hex><suffix> (CloudStack's guest.domain.suffix).", category="Network"))

LIVE = (RouterState.STARTING, RouterState.RUNNING, RouterState.STOPPING, RouterState.STOPPED, RouterState.ALERT)


# --- What a network needs ---------------------------------------------------------------

def services_of(network: Network) -> dict[str, str]:
    """{Service: Provider} of the network's offering (none for networks without one)."""
    if network.offering is None:
        return {}
    return json.loads(network.offering.services or "{}")


def needs_router(network: Network) -> bool:
    """Only a network whose offering has a service by the VirtualRouter gets a router."""
    return "VirtualRouter" in services_of(network).values()


def router_of(network: Network) -> Router | None:
    return db.session.scalar(select(Router).where(Router.network_id == network.id, Router.removed.is_(None))
                             .order_by(Router.id.desc()))


# --- Segments -----------------------------------------------------------------------------

def physical_of(network: Network) -> PhysicalNetwork | None:
    if network.physical_network is not None:
        return network.physical_network
    return db.session.scalar(select(PhysicalNetwork).where(PhysicalNetwork.zone_id == network.zone_id,
                                                           PhysicalNetwork.removed.is_(None))
                             .order_by(PhysicalNetwork.id))


def label_for(network: Network, traffic_type: str, hypervisor_type: str) -> str:
    """The host-side label of a traffic type for this hypervisor type (Guest: the zone's)."""
    phys = physical_of(network)
    if phys is not None and traffic_type != "Guest":
        row = db.session.scalar(select(PhysicalNetworkTrafficType).where(
            PhysicalNetworkTrafficType.physical_network_id == phys.id,
            PhysicalNetworkTrafficType.traffic_type == traffic_type))
        label = json.loads(row.labels or "{}").get(hypervisor_type) if row else None
        if label:
            return label
    from app.services.network.networks import traffic_label
    return traffic_label(network.zone_id, hypervisor_type)


def segment_for(network: Network, host: Host, *, carriers: list[Host] | None = None) -> SegmentSpec:
    """The network's segment as `host` makes it; VXLAN peers: the underlay addresses of the
    other hosts carrying it (`carriers`, or the network's carriers now)."""
    phys = physical_of(network)
    label = label_for(network, "Guest", host.hypervisor_type)
    if network.vlan is None:
        return SegmentSpec(isolation="untagged", label=label)
    isolation = (phys.isolation_method if phys is not None else "VLAN").upper()
    peers: tuple[str, ...] = ()
    if isolation == "VXLAN":
        from app.services.network import vxlan
        hosts = vxlan.carrier_hosts(network) if carriers is None else carriers
        peers = vxlan.peers_of(network, host, hosts)
    return SegmentSpec(isolation=isolation, label=label, vnet=network.vlan, peers=peers)


def broadcast_uri(network: Network) -> str:
    phys = physical_of(network)
    if network.vlan is None:
        return "vlan://untagged"
    scheme = "vxlan" if phys is not None and phys.isolation_method.upper() == "VXLAN" else "vlan"
    return f"{scheme}://{network.vlan}"


# --- Placement --------------------------------------------------------------------------

def place(network: Network, near_host: Host | None = None, exclude: set[int] = frozenset()) -> Host:
    """An Up, Enabled host of the zone whose type runs routers; `near_host` when it qualifies."""
    types = [t.name for t in hv.enabled_types() if t.capabilities.virtual_router]
    if near_host is not None and near_host.hypervisor_type in types and near_host.state == HostState.UP \
            and near_host.resource_state == ResourceState.ENABLED and near_host.zone_id == network.zone_id \
            and near_host.id not in exclude:
        return near_host
    hosts = [h for h in db.session.scalars(select(Host).where(
        Host.zone_id == network.zone_id, Host.removed.is_(None), Host.state == HostState.UP,
        Host.resource_state == ResourceState.ENABLED, Host.hypervisor_type.in_(types)).order_by(Host.id))
        if h.id not in exclude]
    if not hosts:
        raise InsufficientCapacity(f"No Up host in the zone can run the virtual router of network {network.name}")
    # The least loaded by routers.
    counts = {h.id: 0 for h in hosts}
    for hid in db.session.scalars(select(Router.host_id).where(Router.removed.is_(None),
                                                               Router.host_id.in_(list(counts)))):
        counts[hid] += 1
    return min(hosts, key=lambda h: (counts[h.id], h.id))


# --- The spec ---------------------------------------------------------------------------

def default_domain(network: Network) -> str:
    """CloudStack's default network domain: cs<owner id in hex><guest.domain.suffix>."""
    from app.services import settings
    suffix = settings.get("guest.domain.suffix")
    return f"cs{network.account_id:x}{suffix}" if network.account_id else suffix


def _user_data(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return base64.b64decode(raw, validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return raw


def _prefixed(address: str, netmask: str) -> str:
    return f"{address}/{ipaddress.IPv4Network(f'0.0.0.0/{netmask}').prefixlen}"


def spec_for(router: Router) -> RouterSpec:
    """Everything the router is, from the database now."""
    from app.services.network import rules
    net, host = router.network, router.host
    zone = net.zone
    nics = db.session.execute(
        select(Nic, VirtualMachine).join(VirtualMachine, VirtualMachine.id == Nic.vm_id)
        .where(Nic.network_id == net.id, Nic.removed.is_(None), Nic.ip_address.is_not(None),
               VirtualMachine.removed.is_(None)).order_by(Nic.id)).all()
    source_nat = db.session.get(PublicIpAddress, router.public_ip_id) if router.public_ip_id else None
    public_rules = rules.for_router(net)
    leases, metadata = [], []
    for nic, vm in nics:
        leases.append(DhcpEntry(mac=nic.mac_address, ip=nic.ip_address, hostname=vm.name, default=nic.is_default))
        key = db.session.get(SSHKeyPair, vm.keypair_id) if vm.keypair_id else None
        public_ip = db.session.scalar(select(PublicIpAddress.address).where(
            PublicIpAddress.vm_id == vm.id, PublicIpAddress.vm_ip == nic.ip_address))
        public_ip = public_ip or (source_nat.address if source_nat else None)
        items = [("service-offering", vm.service_offering.name if vm.service_offering else ""),
                 ("availability-zone", zone.name), ("local-ipv4", nic.ip_address),
                 ("local-hostname", vm.name), ("vm-id", vm.uuid), ("instance-id", vm.instance_name)]
        if public_ip:
            items.append(("public-ipv4", public_ip))
        from app.services import userdata as userdata_svc, vm_admin
        taken = {k for k, _ in items}
        # a registered user data's variables (userdatadetails), as CloudStack's VR serves them
        items += [(k.lower(), v) for k, v in userdata_svc.details_of(vm).items() if k.lower() not in taken]
        metadata.append(VmMetadata(ip=nic.ip_address, instance_id=vm.uuid, local_hostname=vm.name,
                                   user_data=_user_data(vm.userdata),
                                   public_keys=(key.public_key.strip(),) if key else (), items=tuple(items),
                                   password=vm_admin.password_of(vm)))
    public = public_mac = public_gw = None
    public_ips: list[str] = []
    if source_nat is not None:
        rng = db.session.get(VlanIpRange, source_nat.vlan_range_id)
        label = label_for(net, "Public", host.hypervisor_type)
        vlan = None if rng.vlan in (None, "", "untagged") else int(str(rng.vlan).removeprefix("vlan://"))
        public = SegmentSpec(isolation="VLAN" if vlan else "untagged", label=label, vnet=vlan)
        public_mac, public_gw = router.public_mac, rng.gateway
        public_ips.append(_prefixed(source_nat.address, rng.netmask))  # the source NAT IP first
        prefixes = public_rules.public_prefixes or ()
        for i, addr in enumerate(public_rules.public_ips):
            if addr.split("/")[0] == source_nat.address:
                continue
            if "/" in addr:
                public_ips.append(addr)
            else:
                public_ips.append(f"{addr}/{prefixes[i]}" if i < len(prefixes) else _prefixed(addr, rng.netmask))
    dns = tuple(d for d in (zone.dns1, zone.dns2) if d)
    offering = net.offering
    return RouterSpec(
        key=router_key(router.uuid), name=router.name, guest=segment_for(net, host), guest_ip=router.guest_ip,
        guest_cidr=net.cidr, guest_mac=router.guest_mac, dhcp_range=(net.start_ip, net.end_ip),
        gateway=net.gateway, domain=net.network_domain or default_domain(net), dns_upstream=dns,
        leases=tuple(leases), metadata=tuple(metadata), public=public, public_mac=public_mac,
        public_ips=tuple(public_ips), public_gateway=public_gw,
        source_nat_ip=source_nat.address if source_nat else None, nat=public_rules.nat,
        ingress=public_rules.ingress, egress=public_rules.egress,
        egress_default_allow=public_rules.egress_default_allow if offering is not None else True)


# --- Host calls ----------------------------------------------------------------------------

def _driver(host: Host):
    from app.services.hosts import connection_for
    return hv.driver_for(host.hypervisor_type, connection_for(host))


def push(router: Router) -> None:
    """Render and apply the router's spec on its host; record the applied hash (committed).
    The router row is locked meanwhile, so two applies of one network never interleave (the
    later one renders after the earlier one committed)."""
    db.session.commit()
    router = db.session.scalar(select(Router).where(Router.id == router.id).with_for_update())
    spec = spec_for(router)
    driver = _driver(router.host)
    try:
        facts = driver.router_apply(spec)
    except DriverError as e:
        db.session.rollback()
        raise ResourceUnavailable(f"Virtual router {router.name} could not be configured on "
                                  f"{router.host.name}: {e}") from None
    finally:
        driver.close()
    router.applied_hash, router.last_checked = facts.config_hash, utcnow()
    db.session.commit()


def apply(network) -> None:
    """Push the network's desired state (leases, metadata, NAT, firewall) to its router now,
    when it has one that runs; raise ResourceUnavailable when the host refuses. Called after
    every change that the router must reflect (rules, public IPs, NICs)."""
    router = router_of(network)
    if router is None or router.host is None or router.state not in (RouterState.RUNNING, RouterState.ALERT):
        return
    push(router)


def destroy_on_host(router: Router, *, quiet: bool = False) -> None:
    """Remove the router (and its segment when nothing else uses it) from its host."""
    if router.host is None:
        return
    driver = _driver(router.host)
    try:
        driver.router_destroy(router_key(router.uuid))
        try:
            driver.release_segment(segment_for(router.network, router.host))
        except DriverError:
            pass  # a segment still in use or gone already: nothing to undo
    except DriverError as e:
        if not quiet:
            raise ResourceUnavailable(f"Virtual router {router.name} could not be removed from "
                                      f"{router.host.name}: {e}") from None
        log.warning("router %s: removing it from %s failed: %s", router.name, router.host.name, e)
    finally:
        driver.close()


def forget(router: Router) -> None:
    """Rows of a destroyed router: its guest addresses, its source NAT IP back to Free (not
    committed)."""
    from app.services.network import ipam
    ipam.release_router_ips(router.id)
    router.removed, router.state = utcnow(), RouterState.DESTROYED


def restart(router: Router) -> None:
    """rebootRouter: its processes restarted, then the configuration applied again."""
    driver = _driver(router.host)
    try:
        driver.router_restart(router_key(router.uuid))
    except DriverError as e:
        raise ResourceUnavailable(f"Virtual router {router.name} could not be restarted: {e}") from None
    finally:
        driver.close()
    push(router)


# --- Commands: listRouters, rebootRouter, stopRouter, startRouter, destroyRouter ------------

def list_routers(caller, *, id=None, name=None, zone_uuid=None, network_uuid=None, host_uuid=None, state=None,
                 keyword=None, account=None, page=None):
    """Admins: every router; users: their networks' routers (CloudStack lists them to domain
    admins and root admins only; users get the routers of their own networks here)."""
    from app.models import Zone
    from app.services.pagination import page_of
    q = select(Router).join(Network, Network.id == Router.network_id).where(Router.removed.is_(None)) \
        .order_by(Router.id)
    from app.services import access
    q = q.where(access.owned(caller, Network.account_id))
    if id:
        q = q.where(Router.uuid == id)
    if name:
        q = q.where(Router.name == name)
    if keyword:
        q = q.where(Router.name.contains(keyword, autoescape=True))
    if zone_uuid:
        q = q.where(Router.zone_id == select(Zone.id).where(Zone.uuid == zone_uuid).scalar_subquery())
    if network_uuid:
        q = q.where(Network.uuid == network_uuid)
    if host_uuid:
        q = q.where(Router.host_id == select(Host.id).where(Host.uuid == host_uuid).scalar_subquery())
    if state:
        q = q.where(Router.state == state)
    if account:
        from app.services import accounts
        q = q.where(Network.account_id == accounts.named_account(caller, account).id)
    return page_of(q, page)


def get_router(caller, uuid: str) -> Router:
    from app.services.errors import NotFound
    rows, _ = list_routers(caller, id=uuid)
    if not rows:
        raise NotFound("Unable to find domain router with id", field="id")
    return rows[0]


def submit(caller, uuid: str, action: str):
    from app.jobs import service as jobs
    router = get_router(caller, uuid)
    cmd = {"reboot": "rebootRouter", "stop": "stopRouter", "start": "startRouter", "destroy": "destroyRouter"}[action]
    return jobs.submit(cmd, caller, f"router.{action}", {"router": router.uuid},
                       instance_type="DomainRouter", instance_id=router.uuid)


def stop(router: Router) -> None:
    """stopRouter: the router removed from its host (the rows stay, Stopped)."""
    destroy_on_host(router)
    router.state = RouterState.STOPPED
    db.session.commit()
    from app.services.network import vxlan
    vxlan.sync_all([router.network])


def start(router: Router) -> None:
    """startRouter: applied again on its host (or on another Up host when its own is not)."""
    if router.host is None or router.host.state != HostState.UP:
        router.host_id = place(router.network).id
        db.session.commit()
        db.session.refresh(router)
    router.state = RouterState.RUNNING
    db.session.commit()
    try:
        push(router)
    except Exception:
        router = db.session.get(Router, router.id)
        router.state = RouterState.STOPPED
        db.session.commit()
        raise
    from app.services.network import vxlan
    vxlan.sync_all([router.network])


def _register_jobs() -> None:
    from app.jobs import service as jobs
    from app.services import events

    def load(params) -> Router:
        return db.session.scalar(select(Router).where(Router.uuid == params["router"]))

    def result(router: Router) -> dict:
        return {"router": jobs.ObjectResult("router", router)}

    def _reboot(router: Router) -> None:
        restart(router)
        router.state, router.state_reason = RouterState.RUNNING, None

    # rebootRouter, stopRouter, startRouter: the step, then CloudStack's event
    for action, step, event, done in (("reboot", _reboot, "ROUTER.REBOOT", "rebooted"),
                                      ("stop", stop, "ROUTER.STOP", "stopped"),
                                      ("start", start, "ROUTER.START", "started")):
        def run(job, params, step=step, event=event, done=done):
            router = load(params)
            step(router)
            events.record(event, f"Virtual router {router.name} {done}", user=events.actor(), resource_type="DomainRouter",
                          resource_id=router.uuid, account_id=router.network.account_id)
            db.session.commit()
            return result(router)
        jobs.handler(f"router.{action}")(run)

    @jobs.handler("router.destroy")
    def _destroy(job, params):
        router = load(params)
        net = router.network
        destroy_on_host(router, quiet=True)
        forget(router)
        # CloudStack: the network needs a restart to get a router again (the next VM start does it)
        net.restart_required = True
        if net.state == "Implemented":
            net.state = "Allocated"
            if net.guest_type == "Isolated":
                from app.models import GuestVnet
                from sqlalchemy import delete
                db.session.execute(delete(GuestVnet).where(GuestVnet.network_id == net.id))
                net.vlan, net.broadcast_uri = None, None
        events.record("ROUTER.DESTROY", f"Virtual router {router.name} destroyed", user=events.actor(), resource_type="DomainRouter",
                      resource_id=router.uuid, account_id=net.account_id)
        db.session.commit()
        from app.services.network import vxlan
        vxlan.sync_all([net])
        return result(router)


_register_jobs()


# --- Health (the monitor, every sweep) --------------------------------------------------

def check_all() -> int:
    """Each Running (or Alert) router whose host is Up: asked for its status; one that is not
    healthy or whose configuration differs from the one applied is applied again; one that
    cannot be is Alert with an event. A router whose host is Down is rebuilt on another Up
    host of the zone (same addresses). Returns the routers acted on."""
    from app.services import events
    acted = 0
    rows = list(db.session.scalars(select(Router).where(
        Router.removed.is_(None), Router.state.in_([RouterState.RUNNING, RouterState.ALERT]))))
    for router in rows:
        host = router.host
        if host is None:
            continue
        try:
            if host.state == HostState.DOWN:
                acted += _move(router)
                continue
            if host.state != HostState.UP:
                continue
            driver = _driver(host)
            try:
                facts = driver.router_status(router_key(router.uuid))
            finally:
                driver.close()
            router.last_checked = utcnow()
            db.session.commit()
            if facts.healthy and facts.config_hash == router.applied_hash and router.state == RouterState.RUNNING:
                continue
            acted += 1
            why = facts.detail or ("configuration differs" if facts.healthy else "not running")
            try:
                if not facts.healthy and facts.exists:
                    restart(router)
                else:
                    push(router)
            except Exception as e:  # noqa: BLE001 - recorded on the router, tried again next sweep
                db.session.rollback()
                router = db.session.get(Router, router.id)
                if router.state != RouterState.ALERT:
                    router.state = RouterState.ALERT
                    events.record("ROUTER.HEALTH.CHECKS", f"Virtual router {router.name} on {host.name} is "
                                  f"unhealthy ({why}) and could not be repaired: {getattr(e, 'message', e)}",
                                  level="ERROR", resource_type="DomainRouter", resource_id=router.uuid,
                                  account_id=router.network.account_id)
                router.state_reason = f"{why}; re-apply failed: {getattr(e, 'message', e)}"[:1024]
                from app.services.alerts import triggers as alert_triggers
                alert_triggers.router_failed(router, router.state_reason)
                db.session.commit()
                continue
            if router.state == RouterState.ALERT:
                from app.services.alerts import triggers as alert_triggers
                alert_triggers.router_recovered(router)
            router.state, router.state_reason = RouterState.RUNNING, None
            events.record("ROUTER.HEALTH.CHECKS", f"Virtual router {router.name} on {host.name} differed "
                          f"from the database ({why}); applied again", level="WARN", resource_type="DomainRouter",
                          resource_id=router.uuid, account_id=router.network.account_id)
            db.session.commit()
        except DriverError as e:
            db.session.rollback()
            log.warning("router %s: status on %s failed: %s", router.name, host.name, e)
        except Exception:  # noqa: BLE001 - one router never stops the sweep
            db.session.rollback()
            log.exception("router %s: health check failed", router.name)
    return acted


def _move(router: Router) -> int:
    """Rebuild a router whose host is Down on another Up host of its zone."""
    from app.services import events
    old = router.host
    try:
        new = place(router.network, exclude={old.id})
    except InsufficientCapacity:
        return 0
    router.host_id = new.id
    db.session.commit()
    db.session.refresh(router)
    try:
        driver = _driver(new)
        try:
            driver.ensure_segment(segment_for(router.network, new))
        finally:
            driver.close()
        push(router)
    except Exception as e:  # noqa: BLE001
        db.session.rollback()
        router = db.session.get(Router, router.id)
        router.state, router.state_reason = RouterState.ALERT, f"rebuild on {new.name} failed: {e}"[:1024]
        db.session.commit()
        return 1
    router.state, router.state_reason = RouterState.RUNNING, None
    events.record("ROUTER.START", f"Virtual router {router.name}: its host {old.name} is Down; rebuilt on "
                  f"{new.name}", level="WARN", resource_type="DomainRouter", resource_id=router.uuid,
                  account_id=router.network.account_id)
    db.session.commit()
    from app.services.network import vxlan
    vxlan.sync_all([router.network])  # the VMs' hosts send to the new router host, no longer to the old one
    return 1

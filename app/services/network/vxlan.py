"""VXLAN across hosts: which hosts carry a network, at which underlay address, and keeping
every carrier's head-end replication list (docs/networking.md) equal to the others.

A host carries a VXLAN network while one of the network's VMs is placed on it (VirtualMachine
.host_id: held from planning until the VM stops or leaves) or its router runs there. Each
carrier's `vxlan<VNI>` device gets one all-zero FDB entry per other carrier, so broadcasts
(DHCP, ARP) reach every host of the network and no multicast is needed underneath.

`sync(network)` sets those lists on every carrier at once. It is called when the set of
carriers changes: before a VM's domain starts on a host (the others learn the new host before
the guest's first DHCP broadcast), after the start, after a VM stopped or left a host, when a
migration is about to land and after it, when a router is made, moved or destroyed. It is best
effort (a host that cannot be reached is logged and caught up by the next sync) and serialised
per network by a row lock, so two syncs never write an older list over a newer one. Hosts whose
device does not exist (yet) are skipped: their own `ensure_segment` at VM start gives them the
list, and the sync after that start gives them any host that joined meanwhile."""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace

from sqlalchemy import select

from app.extensions import db
from app.hypervisors.base import DriverError
from app.models import Host, HostState, Network, Nic, Router, RouterState, VirtualMachine

log = logging.getLogger(__name__)


def is_vxlan(network: Network) -> bool:
    from app.services.network import routers
    if network.vlan is None or network.network_offering_id is None:
        return False
    phys = routers.physical_of(network)
    return phys is not None and (phys.isolation_method or "").upper() == "VXLAN"


def carrier_hosts(network: Network, *, without: tuple[int, int] | None = None) -> list[Host]:
    """The hosts carrying the network now, by id: its placed VMs' hosts and its router's.
    `without` = (vm id, host id): that VM no longer counts on that host (it is leaving it)."""
    q = (select(VirtualMachine.id, VirtualMachine.host_id).join(Nic, Nic.vm_id == VirtualMachine.id)
         .where(Nic.network_id == network.id, Nic.removed.is_(None), VirtualMachine.removed.is_(None),
                VirtualMachine.host_id.is_not(None)))
    ids = {host_id for vm_id, host_id in db.session.execute(q) if (vm_id, host_id) != without}
    ids.update(db.session.scalars(select(Router.host_id).where(
        Router.network_id == network.id, Router.removed.is_(None), Router.host_id.is_not(None),
        Router.state.in_([RouterState.STARTING, RouterState.RUNNING, RouterState.ALERT]))))
    if not ids:
        return []
    return list(db.session.scalars(select(Host).where(Host.id.in_(ids), Host.removed.is_(None)).order_by(Host.id)))


def underlay(host: Host, network: Network, *, ask: bool = True) -> str:
    """The address other hosts send this host's VXLAN traffic to: its address when Nubo
    reaches it by IP (a lab or datacenter host added as qemu+ssh://root@10.0.0.11/system);
    otherwise the IPv4 address its traffic label's device holds, as the host reports it
    (a host added by name, or the local qemu:///system one). Falls back to the address as
    given, which the host side then refuses with a clear message when it is no IP."""
    address = (host.address or "").strip("[]")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    if not ask:
        return host.address
    from app.services.network.routers import _driver, label_for
    label = label_for(network, "Guest", host.hypervisor_type)
    driver = _driver(host)
    try:
        found = driver.underlay_address(label)
    except DriverError as e:
        log.warning("underlay address of %s on %s: %s", host.name, label, e)
        found = None
    finally:
        driver.close()
    return found or host.address


def peers_of(network: Network, host: Host, carriers: list[Host]) -> tuple[str, ...]:
    """The underlay addresses of the carriers other than `host` (never its own address)."""
    others = [h for h in carriers if h.id != host.id]
    if not others:
        return ()
    own = underlay(host, network)
    return tuple(sorted({a for a in (underlay(h, network) for h in others) if a and a != own}))


def sync(network: Network, *, without: tuple[int, int] | None = None, plus: Host | None = None,
         known: bool = False) -> int:
    """Every Up carrier of a VXLAN network (and `plus`, a host about to carry it) gets exactly
    the others as its peers (known: the caller knows the network is a VXLAN one; nothing is
    read to check). Best effort; commits. Returns the hosts whose list was set."""
    if not known and not is_vxlan(network):
        return 0
    from app.services.network import routers
    net_id = network.id
    db.session.commit()
    # One sync of a network at a time: the later one reads the carriers after the earlier wrote.
    # FOR NO KEY UPDATE on PostgreSQL (key_share): it excludes the other syncs all the same, but
    # not the foreign-key checks of rows naming the network (a deploy's NIC and address), which
    # FOR UPDATE would hold up while the hosts answer. MariaDB has only FOR UPDATE.
    db.session.scalar(select(Network.id).where(Network.id == net_id).with_for_update(key_share=True))
    done = 0
    try:
        network = db.session.get(Network, net_id)
        hosts = carrier_hosts(network, without=without)
        if plus is not None and all(h.id != plus.id for h in hosts):
            hosts.append(plus)
        address = {h.id: underlay(h, network, ask=h.state != HostState.DOWN) for h in hosts} if len(hosts) > 1 else {}
        for host in hosts:
            if host.state == HostState.DOWN:
                continue  # its VMs are being dealt with; the next sync after its return catches up
            own = address.get(host.id)
            peers = sorted({a for hid, a in address.items() if hid != host.id and a and a != own})
            segment = replace(routers.segment_for(network, host, carriers=[]), peers=tuple(peers))
            driver = routers._driver(host)
            try:
                if driver.set_segment_peers(segment):
                    done += 1
            except DriverError as e:
                log.warning("VXLAN %s peers on %s: %s", network.vlan, host.name, e)
            finally:
                driver.close()
    finally:
        db.session.commit()  # the lock goes
    return done


def sync_all(nets, *, without: tuple[int, int] | None = None, plus: Host | None = None,
             known: bool = False) -> None:
    """sync() for each of these networks; never raises (it runs beside a VM's own step)."""
    for net in list(nets):
        net_id = net.id
        try:
            sync(net, without=without, plus=plus, known=known)
        except Exception:  # noqa: BLE001 - best effort: never fails the VM's own step
            db.session.rollback()
            log.exception("VXLAN peers of network %s", net_id)

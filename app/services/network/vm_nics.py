"""A VM's NICs: made at deploy (a requested address or the next free one), listed (listNics),
added, removed and made default (addNicToVirtualMachine, removeNicFromVirtualMachine,
updateDefaultNicForVirtualMachine). Every change reaches the network's router (its leases):
routers.apply(network).

Hot-plug: a NIC is added to or removed from a *Stopped* VM; a Running VM is refused with a
clear error (the driver interface has no attach-interface step yet), its start then gives
the domain every NIC."""
from __future__ import annotations

import ipaddress

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError

from app.extensions import db
from app.models import GuestType, IpAddress, Network, Nic, VirtualMachine, VMState, new_uuid, utcnow
from app.services import events
from app.services.network import ipam
from app.services.errors import InsufficientCapacity, InvalidParameter, NotFound, ServiceError


def network_type(net) -> str:
    """Isolated, Shared or L2 (CloudStack's guest types)."""
    return getattr(net, "guest_type", None) or ("Shared" if net.account_id is None else "Isolated")


def broadcast_uri(net) -> str | None:
    if getattr(net, "broadcast_uri", None):
        return net.broadcast_uri
    return f"vlan://{net.vlan}" if net.vlan else None


def check_requested_ip(net: Network, ip: str, field: str = "ipaddress") -> str:
    if not net.cidr:
        raise InvalidParameter(f"Network {net.name} has no addresses ({network_type(net)}): no ipaddress can be "
                               "requested", field=field)
    try:
        addr = ipaddress.IPv4Address(ip.strip())
    except ValueError:
        raise InvalidParameter(f"{ip} is not a valid IPv4 address", field=field) from None
    lo, hi = ipaddress.IPv4Address(net.start_ip), ipaddress.IPv4Address(net.end_ip)
    if not lo <= addr <= hi:
        raise InvalidParameter(f"IP address {addr} is not in the range {net.start_ip}-{net.end_ip} of network "
                               f"{net.name}", field=field)
    return str(addr)


def create_nic(vm: VirtualMachine, net: Network, device_id: int, *, ip: str | None = None,
               default: bool | None = None) -> Nic:
    """A NIC with a unique MAC and `ip` (checked, refused when taken) or the address at the
    network's cursor (ipam.next_address; none on L2 networks), written with its address's claim
    in one transaction: the unique keys decide every race (a MAC drawn twice, an address another
    request took first), and a lost one is tried again with a new MAC or the next address.
    Committed."""
    is_default = device_id == 0 if default is None else default
    net_id, tried = net.id, set()
    for _ in range(16):
        address = None
        try:
            # In the try: taking the network's cursor may lose a race too (InnoDB may end two
            # transactions that make the same network's cursor at once as a deadlock).
            address = (ip or ipam.next_address(net, tried)) if net.cidr else None
            nic = Nic(uuid=new_uuid(), vm_id=vm.id, network_id=net_id, mac_address=ipam.new_mac(),
                      is_default=is_default, device_id=device_id, ip_address=address)
            db.session.add(nic)
            if address is not None:
                db.session.flush()  # the NIC's id, for its address's row
                db.session.add(IpAddress(network_id=net_id, address=address, nic_id=nic.id, allocated=utcnow()))
            db.session.commit()
            return nic
        except DBAPIError as e:
            db.session.rollback()
            if not ipam.lost_race(e):
                raise
            if address is not None and ipam.address_taken(net_id, address):
                if ip:
                    raise InsufficientCapacity(f"The IP address {ip} is already in use in network {net.name}") \
                        from None
                tried.add(address)  # taken meanwhile: the next one
            # otherwise the MAC was drawn twice (or the cursor's race lost): try again
    raise InsufficientCapacity(f"Could not find a unique MAC address and a free IP address in network {net.name}")


def usable_network(caller, vm_account_id: int, uuid: str, zone_id: int, field: str = "networkids") -> Network:
    """A network the VM may join: the account's own (Isolated or L2), or a shared one; in the
    VM's zone."""
    net = db.session.scalar(select(Network).where(Network.uuid == uuid, Network.removed.is_(None)))
    from app.services import access
    if net is None or (net.account_id is not None and net.account_id != vm_account_id
                       and not access.can_see(caller, net.account_id)):
        raise NotFound(f"Unable to find network by id {uuid}", field=field)
    if net.account_id is not None and net.account_id != vm_account_id:
        raise InvalidParameter(f"Network {net.name} belongs to another account than the VM", field=field)
    if net.zone_id != zone_id:
        raise InvalidParameter(f"Network {net.name} is not in the VM's zone", field=field)
    return net


# --- listNics, add, remove, default -----------------------------------------------------

def list_nics(caller, vm_uuid: str, *, nic_uuid: str | None = None, network_uuid: str | None = None, page=None):
    from app.services import vms
    vm = vms.get_vm(caller, vm_uuid, "virtualmachineid")
    q = select(Nic).where(Nic.vm_id == vm.id, Nic.removed.is_(None)).order_by(Nic.device_id)
    if nic_uuid:
        q = q.where(Nic.uuid == nic_uuid)
    if network_uuid:
        q = q.where(Nic.network_id == select(Network.id).where(Network.uuid == network_uuid).scalar_subquery())
    rows = list(db.session.scalars(q))
    return rows, len(rows)


def _stopped(vm: VirtualMachine, what: str) -> None:
    if vm.state != VMState.STOPPED:
        raise InvalidParameter(f"VM {vm.name} is {vm.state}: a NIC can be {what} only while it is Stopped "
                               "(hot-plug is not supported)", field="virtualmachineid")


def _router_apply(net: Network) -> None:
    from app.services.network import routers
    routers.apply(net)


def add_to_vm(caller, vm_uuid: str, network_uuid: str, ip: str | None = None):
    """addNicToVirtualMachine (a job, as in CloudStack)."""
    from app.jobs import service as jobs
    from app.services import vms
    vm = vms.get_vm(caller, vm_uuid, "virtualmachineid")
    net = usable_network(caller, vm.account_id, network_uuid, vm.zone_id, "networkid")
    _stopped(vm, "added")
    if db.session.scalar(select(Nic.id).where(Nic.vm_id == vm.id, Nic.network_id == net.id, Nic.removed.is_(None))):
        raise InvalidParameter(f"VM {vm.name} already has a NIC in network {net.name}", field="networkid")
    if ip:
        ip = check_requested_ip(net, ip)
    return jobs.submit("addNicToVirtualMachine", caller, "vm.nic_add", {"vm": vm.id, "net": net.id, "ip": ip},
                       instance_type="VirtualMachine", instance_id=vm.uuid)


def add_now(vm: VirtualMachine, net: Network, ip: str | None = None) -> Nic:
    from app.services import vms
    token = vms._lock(vm, "nic", (VMState.STOPPED,))
    try:
        device = (db.session.scalar(select(Nic.device_id).where(Nic.vm_id == vm.id, Nic.removed.is_(None))
                                    .order_by(Nic.device_id.desc()).limit(1)) or 0) + 1
        has_default = db.session.scalar(select(Nic.id).where(Nic.vm_id == vm.id, Nic.removed.is_(None),
                                                             Nic.is_default.is_(True)))
        nic = create_nic(vm, net, device, ip=ip, default=has_default is None)
        if net.security_groups:
            from app.services.network import secgroups
            if not secgroups.vm_group_ids(vm.id):
                secgroups.add_vm(vm, [secgroups.ensure_default(vm.account_id)])
            db.session.commit()
            secgroups.members_changed(secgroups.vm_group_ids(vm.id))
        events.record("NIC.CREATE", f"NIC {nic.ip_address or nic.mac_address} in network {net.name} added to VM "
                      f"{vm.name}", user=events.actor(), account_id=vm.account_id, resource_type="Nic", resource_id=nic.uuid)
        db.session.commit()
        _router_apply(net)
        return nic
    finally:
        vms._unlock(vm.id, token)


def _nic_of(caller, vm_uuid: str, nic_uuid: str) -> tuple[VirtualMachine, Nic]:
    from app.services import vms
    vm = vms.get_vm(caller, vm_uuid, "virtualmachineid")
    nic = db.session.scalar(select(Nic).where(Nic.uuid == nic_uuid, Nic.vm_id == vm.id, Nic.removed.is_(None)))
    if nic is None:
        raise NotFound(f"Unable to find nic by id {nic_uuid}", field="nicid")
    return vm, nic


def remove_from_vm(caller, vm_uuid: str, nic_uuid: str):
    """removeNicFromVirtualMachine (a job)."""
    from app.jobs import service as jobs
    vm, nic = _nic_of(caller, vm_uuid, nic_uuid)
    if nic.is_default:
        raise InvalidParameter(f"Unable to remove nic from VM instance {vm.instance_name} in network "
                               f"{nic.network.name}, nic is default.", field="nicid")
    _stopped(vm, "removed")
    return jobs.submit("removeNicFromVirtualMachine", caller, "vm.nic_remove", {"vm": vm.id, "nic": nic.id},
                       instance_type="VirtualMachine", instance_id=vm.uuid)


def remove_now(vm: VirtualMachine, nic: Nic) -> None:
    from app.services import vms
    token = vms._lock(vm, "nic", (VMState.STOPPED,))
    try:
        net = nic.network
        db.session.execute(delete(IpAddress).where(IpAddress.nic_id == nic.id))
        nic.removed = utcnow()
        events.record("NIC.DELETE", f"NIC {nic.ip_address or nic.mac_address} in network {net.name} removed from "
                      f"VM {vm.name}", user=events.actor(), account_id=vm.account_id, resource_type="Nic", resource_id=nic.uuid)
        db.session.commit()
        if net.security_groups:
            from app.services.network import secgroups
            try:
                secgroups.members_changed(secgroups.vm_group_ids(vm.id))
            except ServiceError:
                pass  # the NIC is gone whatever a host says; the next change re-applies
        _router_apply(net)
    finally:
        vms._unlock(vm.id, token)


def replace_nics(vm: VirtualMachine, plan: list[tuple[Network, str | None]]) -> list[Nic]:
    """assignVirtualMachine's network step (the VM stopped and locked by the caller): every NIC
    goes and new ones are made in `plan`'s order, the first the default, each with the address
    given (kept on a shared network) or a free one; the routers of the networks it left and
    joined are re-applied. Committed."""
    old = list(db.session.scalars(select(Nic).where(Nic.vm_id == vm.id, Nic.removed.is_(None))))
    touched = {n.network_id: n.network for n in old}
    for nic in old:
        db.session.execute(delete(IpAddress).where(IpAddress.nic_id == nic.id))
        nic.removed = utcnow()
    db.session.commit()
    made = [create_nic(vm, net, i, ip=ip, default=i == 0) for i, (net, ip) in enumerate(plan)]
    touched.update({net.id: net for net, _ip in plan})
    for net in touched.values():
        try:
            _router_apply(net)
        except ServiceError:
            pass  # the VM is stopped and its NICs are made: the router catches up at its next push
    return made


def update_default(caller, vm_uuid: str, nic_uuid: str):
    """updateDefaultNicForVirtualMachine (a job)."""
    from app.jobs import service as jobs
    vm, nic = _nic_of(caller, vm_uuid, nic_uuid)
    if nic.is_default:
        raise InvalidParameter("The specified NIC is already the default NIC of the VM", field="nicid")
    if vm.state not in (VMState.STOPPED, VMState.RUNNING):
        raise InvalidParameter(f"VM {vm.name} is {vm.state}: its default NIC can change only when it is Running or "
                               "Stopped", field="virtualmachineid")
    return jobs.submit("updateDefaultNicForVirtualMachine", caller, "vm.nic_default", {"vm": vm.id, "nic": nic.id},
                       instance_type="VirtualMachine", instance_id=vm.uuid)


def default_now(vm: VirtualMachine, nic: Nic) -> None:
    from app.services import vms
    token = vms._lock(vm, "nic", (VMState.STOPPED, VMState.RUNNING))
    try:
        old = db.session.scalar(select(Nic).where(Nic.vm_id == vm.id, Nic.removed.is_(None),
                                                  Nic.is_default.is_(True)))
        db.session.execute(update(Nic).where(Nic.vm_id == vm.id).values(is_default=False)
                           .execution_options(synchronize_session=False))
        db.session.execute(update(Nic).where(Nic.id == nic.id).values(is_default=True)
                           .execution_options(synchronize_session=False))
        events.record("NIC.UPDATE", f"VM {vm.name}: NIC {nic.ip_address or nic.mac_address} is now its default NIC",
                      user=events.actor(), account_id=vm.account_id, resource_type="Nic", resource_id=nic.uuid)
        db.session.commit()
        db.session.expire_all()
        for net in {n.network for n in (old, nic) if n is not None}:
            _router_apply(net)  # only the default NIC's lease carries the gateway
    finally:
        vms._unlock(vm.id, token)


def _register_jobs() -> None:
    from app.jobs import service as jobs

    def _load(params):
        from app.services import vms
        vm = db.session.get(VirtualMachine, params["vm"])
        return vm, vms

    @jobs.handler("vm.nic_add")
    def _run_add(job, params):
        vm, vms = _load(params)
        add_now(vm, db.session.get(Network, params["net"]), params.get("ip"))
        return {"virtualmachine": vms._result(vm)}

    @jobs.handler("vm.nic_remove")
    def _run_remove(job, params):
        vm, vms = _load(params)
        remove_now(vm, db.session.get(Nic, params["nic"]))
        return {"virtualmachine": vms._result(vm)}

    @jobs.handler("vm.nic_default")
    def _run_default(job, params):
        vm, vms = _load(params)
        default_now(vm, db.session.get(Nic, params["nic"]))
        return {"virtualmachine": vms._result(vm)}


_register_jobs()


def nic_dict(nic, vm_uuid: str | None = None) -> dict:
    """CloudStack's NicResponse of a NIC (or a vm_views.NicView)."""
    net = nic.network
    kind = network_type(net)
    return {"id": nic.uuid, "networkid": net.uuid, "networkname": net.name, "netmask": net.netmask,
            "gateway": net.gateway, "ipaddress": nic.ip_address, "isolationuri": broadcast_uri(net),
            "broadcasturi": broadcast_uri(net), "traffictype": "Guest", "type": kind,
            "isdefault": nic.is_default, "macaddress": nic.mac_address, "deviceid": str(nic.device_id),
            "virtualmachineid": vm_uuid, "extradhcpoption": []}


__all__ = ["GuestType", "create_nic", "usable_network", "list_nics", "add_to_vm", "remove_from_vm",
           "update_default", "nic_dict", "check_requested_ip"]

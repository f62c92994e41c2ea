"""Address management: NIC MACs and guest addresses (made unique by the database, so
concurrent deploys never share one: a lost race simply tries the next free address), router
guest addresses, and the public-address primitives (claim/free) the other modules build on."""
from __future__ import annotations

import functools
import ipaddress
import secrets

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.extensions import db
from app.models import IpAddress, IpCursor, Network, VirtualMachine, utcnow
from app.services.dbutil import is_retryable
from app.services.errors import InsufficientCapacity


# --- NICs: MAC and IP -------------------------------------------------------------

def new_mac() -> str:
    # Locally administered unicast (02:...), as CloudStack's guest MACs.
    return "02:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))


def next_address(net: Network, tried: set[str] = frozenset()) -> str:
    """The address a new NIC of the network should try. First the one at the network's cursor
    (ip_cursors): each call takes an offset of its own, so concurrent deploys try different
    addresses and a range fills in order. Once one is lost (`tried`: the range wrapped round to
    addresses still held, or a router or a named request took it), the lowest free address, and
    the cursor moves on to the next free one after it. InsufficientCapacity when the range is
    full. The caller's INSERT claims it, in the transaction that moved the cursor: the unique key
    decides every race."""
    start, end = int(ipaddress.IPv4Address(net.start_ip)), int(ipaddress.IPv4Address(net.end_ip))
    if not tried:
        return str(ipaddress.IPv4Address(start + _take_offset(net.id) % (end - start + 1)))
    # The cursor locked before the addresses are read: a claim that holds it (its address not
    # yet committed) ends first, so its address is read as taken and the cursor never steps back.
    _lock_cursor(net.id)
    taken = {int(ipaddress.IPv4Address(a)) for a in db.session.scalars(
        select(IpAddress.address).where(IpAddress.network_id == net.id))}
    taken |= {int(ipaddress.IPv4Address(a)) for a in tried}
    free = next((i for i in range(start, end + 1) if i not in taken), None)
    if free is None:
        raise InsufficientCapacity(f"Network {net.name} has no free address left ({net.start_ip}-{net.end_ip})")
    # The cursor on to the next free address after this one (the range's start past the end).
    after = next((i for i in range(free + 1, end + 1) if i not in taken), start) - start
    _set_cursor(net.id, after)
    return str(ipaddress.IPv4Address(free))


def _take_offset(net_id: int) -> int:
    """The network's next offset, taken (the cursor moved on by one), in one statement that
    also makes the cursor the first time. The row stays locked until the caller commits."""
    done = _cursor(_TAKE, net_id)
    # MariaDB 10.11 has no UPDATE ... RETURNING: LAST_INSERT_ID(expr) hands the value back in the
    # statement's OK packet (the cursor's lastrowid), with no second query.
    return (done.lastrowid if db.session.get_bind().dialect.name == "mysql" else done.scalar_one()) - 1


def _lock_cursor(net_id: int) -> None:
    _cursor(_LOCK, net_id)


def _set_cursor(net_id: int, offset: int) -> None:
    _cursor(_SET, net_id, n=offset)


_TAKE, _LOCK, _SET = range(3)


def _cursor(which: int, net_id: int, **values):
    conn = db.session.connection()
    return conn.execute(_cursor_statements(conn.dialect.name)[which], {"net_id": net_id, **values})


@functools.cache
def _cursor_statements(dialect: str):
    """(take, lock, set) for a network's cursor, each one upsert that also makes the cursor:
    built once (every deploy's NIC takes an offset), their values bound at each run. Core on the
    table, run on the session's connection (an ORM INSERT with parameters would be a bulk one)."""
    t = IpCursor.__table__
    net_id, n, col = bindparam("net_id"), bindparam("n"), t.c.next_offset
    if dialect == "mysql":
        from sqlalchemy.dialects.mysql import insert

        def upsert(first, then):
            return insert(t).values(network_id=net_id, next_offset=first).on_duplicate_key_update(
                next_offset=then)
        return (upsert(func.last_insert_id(1), func.last_insert_id(col + 1)), upsert(0, col), upsert(n, n))
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert

    def upsert(first, then):
        return (insert(t).values(network_id=net_id, next_offset=first)
                .on_conflict_do_update(index_elements=["network_id"], set_={"next_offset": then})
                .returning(col))
    return (upsert(1, col + 1), upsert(0, col), upsert(n, n))


def address_taken(net_id: int, address: str) -> bool:
    return db.session.scalar(select(IpAddress.id).where(IpAddress.network_id == net_id,
                                                        IpAddress.address == address)) is not None


def lost_race(e: Exception) -> bool:
    """An INSERT refused by a unique key, or (InnoDB, for concurrent inserts of one key) aborted
    as a deadlock: another request took the value first."""
    return isinstance(e, IntegrityError) or (isinstance(e, DBAPIError) and is_retryable(e))


def release_nics(vm: VirtualMachine) -> None:
    """Addresses back to their networks; NICs marked removed (expunge, failed deploy)."""
    nic_ids = [n.id for n in vm.nics if n.removed is None]
    if nic_ids:
        db.session.execute(delete(IpAddress).where(IpAddress.nic_id.in_(nic_ids)))
        for n in vm.nics:
            n.removed = utcnow()
    db.session.commit()


# --- Routers' guest addresses -------------------------------------------------------

def allocate_router_ip(net: Network, router_id: int, address: str | None = None) -> str:
    """A guest address held by the network's router (an IpAddress row with router_id): the
    given one (an Isolated network's gateway, outside the guest range) or the lowest free one
    of the range (a Shared network's router). Committed."""
    if address is not None:
        db.session.add(IpAddress(network_id=net.id, address=address, router_id=router_id, allocated=utcnow()))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            raise InsufficientCapacity(f"Address {address} of network {net.name} is taken") from None
        return address
    start, end = int(ipaddress.IPv4Address(net.start_ip)), int(ipaddress.IPv4Address(net.end_ip))
    while True:
        taken = {int(ipaddress.IPv4Address(a)) for a in db.session.scalars(
            select(IpAddress.address).where(IpAddress.network_id == net.id))}
        free = next((i for i in range(start, end + 1) if i not in taken), None)
        if free is None:
            raise InsufficientCapacity(f"Network {net.name} has no free address left for its router")
        db.session.add(IpAddress(network_id=net.id, address=str(ipaddress.IPv4Address(free)),
                                 router_id=router_id, allocated=utcnow()))
        try:
            db.session.commit()
            return str(ipaddress.IPv4Address(free))
        except DBAPIError as e:
            db.session.rollback()
            if not lost_race(e):
                raise


def release_router_ips(router_id: int) -> None:
    db.session.execute(delete(IpAddress).where(IpAddress.router_id == router_id))


# --- Public addresses ---------------------------------------------------------------

def claim_public(zone, account_id: int | None, network=None, *, source_nat: bool = False,
                 address: str | None = None):
    """Take a Free public address of the zone (a given one, or the lowest free) for the account
    and network. A guarded UPDATE ... WHERE state='Free' decides races: the row count says who
    won; a lost race tries the next free address. Committed; InsufficientCapacity when none."""
    from app.models import IpState, PublicIpAddress, VlanIpRange
    from app.services.errors import InvalidParameter
    zone_id = getattr(zone, "id", zone)
    ranges = select(VlanIpRange.id).where(VlanIpRange.zone_id == zone_id, VlanIpRange.removed.is_(None),
                                          VlanIpRange.for_virtual_network.is_(True),
                                          (VlanIpRange.account_id.is_(None)) | (VlanIpRange.account_id == account_id))
    for _ in range(64):
        q = select(PublicIpAddress.id).where(PublicIpAddress.zone_id == zone_id,
                                             PublicIpAddress.state == IpState.FREE,
                                             PublicIpAddress.vlan_range_id.in_(ranges))
        if address is not None:
            q = q.where(PublicIpAddress.address == address)
        candidates = list(db.session.scalars(q.order_by(PublicIpAddress.id).limit(8)))
        if not candidates:
            if address is not None:
                raise InvalidParameter(f"Public IP address {address} is not free in this zone", field="ipaddress")
            raise InsufficientCapacity("Insufficient address capacity")
        for ip_id in candidates:
            won = db.session.execute(
                update(PublicIpAddress).where(PublicIpAddress.id == ip_id, PublicIpAddress.state == IpState.FREE)
                .values(state=IpState.ALLOCATED, account_id=account_id,
                        network_id=getattr(network, "id", network), is_source_nat=source_nat,
                        allocated=utcnow())
                .execution_options(synchronize_session=False)).rowcount
            db.session.commit()
            if won == 1:
                ip = db.session.get(PublicIpAddress, ip_id)
                db.session.refresh(ip)
                return ip
    raise InsufficientCapacity("Insufficient address capacity")


def free_public(ip) -> None:
    """The address back to Free: no account, network, source NAT or static NAT (not committed)."""
    from app.models import IpState
    ip.state, ip.account_id, ip.network_id, ip.is_source_nat = IpState.FREE, None, None, False
    ip.vm_id = ip.vm_ip = ip.allocated = None

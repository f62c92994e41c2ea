"""listVirtualMachines at 100,000 VMs: a page read as plain rows, not ORM entities.

Building 500 VirtualMachine entities with their joined zone, host, template, offering,
account and NICs cost more than the queries themselves (bench/list_bench.py). Here the
page's ids come from an index-only scan (pagination.page_ids), then two flat SELECTs
(the VMs with the names of what they point at; their NICs with their networks) fill
slotted objects shaped like the model (vm.zone.name, vm.nics[0].network.gateway), so
the one serializer, serializers.vm_dict, reads both.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (ARRAY, Cast, Integer, Select, String, any_, bindparam, cast, exists, func, literal_column, null,
                        select)
from sqlalchemy.orm import aliased

from app.extensions import db
from app.models import (Account, Domain, Host, InstanceGroup, Network, Nic, OsType, Project, ServiceOffering,
                        SSHKeyPair, Template, UserData, VirtualMachine, Zone)
from app.services import resource_details, tags
from app.services.pagination import page_ids
from app.services.vms import vm_query


class Ref(NamedTuple):
    uuid: str
    name: str


class OfferingRef(NamedTuple):
    uuid: str
    name: str
    offer_ha: bool


class AccountRef(NamedTuple):
    """The owner fields of a VM (serializers.owner_fields reads them like an Account's)."""
    name: str
    uuid: str | None = None
    domain_uuid: str | None = None
    domain_name: str | None = None
    project_uuid: str | None = None
    project_name: str | None = None


class NetworkRef(NamedTuple):
    uuid: str
    name: str
    gateway: str | None
    netmask: str | None
    vlan: int | None
    guest_type: str | None = None
    account_id: int | None = None
    broadcast_uri: str | None = None


class NetExtras(NamedTuple):
    """A VM's security groups [(uuid, name, description)] and its static-NAT public IP
    (address, uuid) or None."""
    security_groups: list
    public_ip: tuple | None


NO_EXTRAS = NetExtras((), None)  # shared by the VMs that have neither (immutable: a tuple)


class NicView(NamedTuple):
    uuid: str
    network: NetworkRef
    mac_address: str
    ip_address: str | None
    is_default: bool
    device_id: int
    removed: datetime | None = None  # only live NICs are read


@dataclass(slots=True)
class VMView:
    """A VM of a list page (list_vms builds it positionally: a field added or moved here is
    added or moved there too; test_vm_answer compares the answers with the ORM row's)."""
    uuid: str
    name: str
    display_name: str | None
    state: str
    instance_name: str
    hypervisor_type: str
    cpu_number: int
    cpu_speed: int
    memory: int
    created: datetime
    cpu_used_pct: float | None = None
    account: AccountRef | None = None
    zone: Ref | None = None
    host: Ref | None = None
    template: Ref | None = None
    iso: Ref | None = None
    service_offering: OfferingRef | None = None
    nics: list[NicView] | None = None
    net_extras: NetExtras | None = None
    tags: list | tuple | None = None  # [(ResourceTag, Account)], the page's in one query
    # updateVirtualMachine's fields (serializers.vm_dict reads them as from the model)
    ha_enable: bool = False
    group: Ref | None = None
    userdata_obj: Ref | None = None
    userdata_details: str | None = None
    os_type: Ref | None = None
    dynamically_scalable: bool = False
    details: dict[str, str] | None = None  # the displayed details (resource_details)
    keypair_name: str | None = None
    password_enabled: bool = False
    encrypted_password: str | None = None
    # the monitor's last sample (listVirtualMachinesMetrics)
    memory_used_kib: int | None = None
    disk_read_bps: float | None = None
    disk_write_bps: float | None = None
    net_rx_bps: float | None = None
    net_tx_bps: float | None = None
    affinity_groups: list | tuple | None = None


def network_extras(vm_ids, *, security_groups: bool = True, public_ips: bool = True) -> dict[int, NetExtras]:
    """Security groups and static-NAT public IPs of these VMs, two queries whatever their number
    (either left out when the caller knows these VMs have none)."""
    from app.models import PublicIpAddress, SecurityGroup, VmSecurityGroup
    out = {i: NetExtras([], None) for i in vm_ids} if not isinstance(vm_ids, Select) else {}
    if security_groups:
        for vm_id, uuid, name, desc in db.session.execute(
                select(VmSecurityGroup.vm_id, SecurityGroup.uuid, SecurityGroup.name, SecurityGroup.description)
                .join(SecurityGroup, SecurityGroup.id == VmSecurityGroup.security_group_id)
                .where(VmSecurityGroup.vm_id.in_(vm_ids)).order_by(VmSecurityGroup.vm_id, SecurityGroup.id)):
            out.setdefault(vm_id, NetExtras([], None)).security_groups.append((uuid, name, desc))
    if public_ips:
        for vm_id, address, uuid in db.session.execute(
                select(PublicIpAddress.vm_id, PublicIpAddress.address, PublicIpAddress.uuid)
                .where(PublicIpAddress.vm_id.in_(vm_ids)).order_by(PublicIpAddress.id)):
            if out.setdefault(vm_id, NetExtras([], None)).public_ip is None:
                out[vm_id] = out[vm_id]._replace(public_ip=(address, uuid))
    return out


_VM = VirtualMachine
# An owner's columns, in AccountRef's order (events.event_views reads them too).
OWNER = (Account.name, Account.uuid, Domain.uuid, Domain.name, Project.uuid, Project.name)
_BASE = (_VM.id, _VM.uuid, _VM.name, _VM.display_name, _VM.state, _VM.instance_name, _VM.hypervisor_type,
         _VM.cpu_number, _VM.cpu_speed, _VM.memory, _VM.created)


def with_owner(query, account_id=_VM.account_id, *, outer: bool = False):
    """query joined to its rows' owners by `account_id` (the VMs' by default): account, domain
    and project (OWNER's columns). outer: for rows that may have no owner (events)."""
    join = query.outerjoin if outer else query.join
    joined = join(Account, Account.id == account_id)
    joined = (joined.outerjoin if outer else joined.join)(Domain, Domain.id == Account.domain_id)
    return joined.outerjoin(Project, Project.account_id == Account.id)


def _vms_select(where):
    iso = aliased(Template)
    return (
        with_owner(select(*_BASE, _VM.cpu_used_pct, Account.name, Zone.uuid, Zone.name, Host.uuid, Host.name,
                   Template.uuid, Template.name, iso.uuid, iso.name,
                   ServiceOffering.uuid, ServiceOffering.name, ServiceOffering.offer_ha,
                   _VM.ha_enable, InstanceGroup.uuid, InstanceGroup.name, UserData.uuid, UserData.name,
                   _VM.userdata_details, OsType.uuid, OsType.description, _VM.dynamically_scalable,
                   null(),  # r[33]: the details, filled below from resource_details
                   SSHKeyPair.name, Template.password_enabled, _VM.encrypted_password, _VM.memory_used_kib,
                   _VM.disk_read_bps, _VM.disk_write_bps, _VM.net_rx_bps, _VM.net_tx_bps,
                   *OWNER[1:],  # the owner's: r[42:47]
                   *_extras_present()))  # r[47:52]: see _extras_present
        .join(Zone, Zone.id == _VM.zone_id)
        .join(ServiceOffering, ServiceOffering.id == _VM.service_offering_id)
        .outerjoin(Host, Host.id == _VM.host_id).outerjoin(Template, Template.id == _VM.template_id)
        .outerjoin(iso, iso.id == _VM.iso_id)
        .outerjoin(InstanceGroup, InstanceGroup.id == _VM.group_id)
        .outerjoin(UserData, UserData.id == _VM.userdata_id)
        .outerjoin(OsType, OsType.id == _VM.os_type_id)
        .outerjoin(SSHKeyPair, SSHKeyPair.id == _VM.keypair_id)
        .where(_among(_VM.id, where)).order_by(_VM.id.desc()))  # vm_query's order: newest first


def _extras_present() -> tuple:
    """Per VM, whether it has any security group, public IP, tag, detail or affinity group
    (an index probe each): a page where no VM has one skips that kind's query (most pages:
    five statements fewer). The queries themselves stay the answer's source."""
    from app.models import AffinityGroupVM, PublicIpAddress, ResourceDetail, ResourceTag, VmSecurityGroup
    return (exists().where(VmSecurityGroup.vm_id == _VM.id), exists().where(PublicIpAddress.vm_id == _VM.id),
            exists().where(ResourceTag.resource_type == "UserVm", ResourceTag.resource_id == _VM.id),
            exists().where(ResourceDetail.resource_type == "UserVm", ResourceDetail.resource_id == _VM.id),
            exists().where(AffinityGroupVM.vm_id == _VM.id))


_PRESENT_OF_ONE = select(*_extras_present()).where(_VM.id == bindparam("vm_id"))


def extras_of(vm_id: int) -> tuple[bool, bool, bool, bool, bool]:
    """Whether one VM has any (security group, public IP, tag, detail, affinity group): one
    statement, so that a VM's own answer (a job's, updateVirtualMachine's) asks only for the
    kinds it has (most VMs: none) instead of a query for each."""
    return tuple(db.session.execute(_PRESENT_OF_ONE, {"vm_id": vm_id}).one())


def _min_select(where):
    """details=min: the VM's own columns and its owner's (r[11:17])."""
    return with_owner(select(*_BASE, *OWNER)).where(_among(_VM.id, where)).order_by(_VM.id.desc())


def _nics_select(where):
    return (select(Nic.vm_id, Nic.uuid, Nic.mac_address, Nic.ip_address, Nic.is_default, Nic.device_id,
                   Network.uuid, Network.name, Network.gateway, Network.netmask, Network.vlan, Network.guest_type,
                   Network.account_id, Network.broadcast_uri)
            .join(Network, Network.id == Nic.network_id)
            .where(_among(Nic.vm_id, where), Nic.removed.is_(None)).order_by(Nic.vm_id, Nic.device_id))


def _among(column, where):
    """column IN the page's ids (a subquery: every VM's, or SQLite's json_each of the ids; or an
    expanding parameter), or on PostgreSQL column = ANY(the ids' array)."""
    if isinstance(where, Cast):
        return column == any_(where)
    return column.in_(where)


_BUILDERS = {"vms": _vms_select, "nics": _nics_select, "min": _min_select}
_BUILT: dict[tuple[str, str], Select] = {}


def _statement(kind: str, wanted) -> tuple:
    """(statement, params) for a page's ids: built once with one parameter for the ids (building
    a 40-column SELECT with its joins cost more CPU than running it for 20 rows); for a subquery
    (every VM) built each time. The ids go as one text parameter, so the statement's text stays
    the same and is cached (SQLAlchemy's, the driver's, the server's): on PostgreSQL an array
    literal '{7,5,3}' (= ANY), on SQLite a JSON array (IN json_each). An expanding IN of 500 ids
    re-rendered 500 placeholders at every call (2 ms of a 500-VM page on SQLite), and psycopg's
    dumper of a Python list looked at each int (0.38 ms per statement). MariaDB keeps the
    expanding IN: with JSON_TABLE its optimizer planned the 12-table join badly (100,000 VMs:
    the 500-VM page 118 -> 596 ms, list_bench.py)."""
    if isinstance(wanted, Select):
        return (_BUILDERS[kind](wanted),)
    dialect = db.session.get_bind().dialect.name
    stmt = _BUILT.get((kind, dialect))
    if stmt is None:
        if dialect == "postgresql":
            param = cast(bindparam("page_ids", type_=String), ARRAY(Integer))
        elif dialect == "sqlite":
            param = select(literal_column("value")).select_from(func.json_each(bindparam("page_ids", type_=String)))
        else:
            param = bindparam("page_ids", expanding=True)
        stmt = _BUILT[(kind, dialect)] = _BUILDERS[kind](param)
    if dialect in ("postgresql", "sqlite"):
        listed = ",".join(map(str, map(int, wanted)))  # ints only: the text is the statement's
        return stmt, {"page_ids": f"{{{listed}}}" if dialect == "postgresql" else f"[{listed}]"}
    return stmt, {"page_ids": list(wanted)}


def list_vms(caller, *, page=None, details_min: bool = False, **filters) -> tuple[list[VMView], int]:  # noqa: C901
    """Same filters, order and visibility as vms.list_vms (vms.vm_query builds both).
    A page is read by its ids; no page (every VM) by the filter as a subquery, never as
    one bound value per VM (100,000 would pass the databases' limits on parameters)."""
    query = vm_query(caller, **filters)
    if page is None:
        ids = None
        wanted = query.with_only_columns(_VM.id, maintain_column_froms=True).order_by(None)
    else:
        ids, total = page_ids(query, page, scan_once=bool(filters.get("keyword")))
        if not ids:
            return [], total
        wanted = ids
    if details_min:
        accounts: dict[str, AccountRef] = {}
        views = [VMView(*r[1:11], None, accounts.get(r[12]) or accounts.setdefault(r[12], AccountRef(*r[11:])))
                 for r in db.session.connection().execute(*_statement("min", wanted)).all()]
        return views, total if ids is not None else len(views)
    # Core, not the ORM's execute: these are plain column rows (no entities, no ORM events apply).
    conn = db.session.connection()
    rows = conn.execute(*_statement("vms", wanted)).all()
    views: dict[int, VMView] = {}
    # What VMs point at repeats along a page (a few zones, offerings, accounts): one Ref each.
    zones, hosts, templates, isos, offerings, accounts, groups, os_types = {}, {}, {}, {}, {}, {}, {}, {}
    for r in rows:
        zone = zones.get(r[13]) or zones.setdefault(r[13], Ref(r[13], r[14]))
        host = (hosts.get(r[15]) or hosts.setdefault(r[15], Ref(r[15], r[16]))) if r[15] else None
        template = (templates.get(r[17]) or templates.setdefault(r[17], Ref(r[17], r[18]))) if r[17] else None
        iso = (isos.get(r[19]) or isos.setdefault(r[19], Ref(r[19], r[20]))) if r[19] else None
        offering = offerings.get(r[21]) or offerings.setdefault(r[21], OfferingRef(r[21], r[22], r[23]))
        account = accounts.get(r[42]) or accounts.setdefault(r[42], AccountRef(r[12], *r[42:47]))
        group = (groups.get(r[25]) or groups.setdefault(r[25], Ref(r[25], r[26]))) if r[25] else None
        os_type = (os_types.get(r[30]) or os_types.setdefault(r[30], Ref(r[30], r[31]))) if r[30] else None
        # In VMView's field order (positional: a third of the keyword call's cost, per VM)
        views[r[0]] = VMView(
            *r[1:12], account, zone, host, template, iso, offering, [], NO_EXTRAS, (), bool(r[24]), group,
            Ref(r[27], r[28]) if r[27] else None, r[29], os_type, bool(r[32]), r[33], r[34], bool(r[35]),
            *r[36:42], ())
    has_sg, has_ip, has_tags, has_details, has_groups = map(any, zip(*(r[47:52] for r in rows))) \
        if rows else (False,) * 5
    networks: dict[str, NetworkRef] = {}
    for r in conn.execute(*_statement("nics", wanted)).all():
        net = networks.get(r[6]) or networks.setdefault(r[6], NetworkRef(*r[6:14]))
        views[r[0]].nics.append(NicView(r[1], net, r[2], r[3], r[4], r[5]))
    if has_sg or has_ip:
        for vm_id, extras in network_extras(wanted, security_groups=has_sg, public_ips=has_ip).items():
            if vm_id in views:
                views[vm_id].net_extras = extras
    if has_tags:
        for vm_id, pairs in tags.of("UserVm", wanted).items():
            if vm_id in views:
                views[vm_id].tags = pairs
    if has_details:
        for vm_id, details in resource_details.display_maps("UserVm", wanted).items():
            if vm_id in views:
                views[vm_id].details = details
    if has_groups:
        from app.services import affinity
        for vm_id, affinity_groups in affinity.groups_of_vms(wanted).items():
            if vm_id in views:
                views[vm_id].affinity_groups = affinity_groups
    return list(views.values()), total if ids is not None else len(views)

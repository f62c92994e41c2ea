"""Resource limits (CloudStack's max.account.*): instances, vCPUs, memory,
volumes and primary storage per account, with per-account overrides.

Usage lives in resource_counts and is changed only by guarded UPDATEs
(`count + n <= limit` in the WHERE clause), so parallel deploys can never pass a
limit on SQLite, PostgreSQL or MariaDB. A new VM, a new volume and a new offering
take their quota in the same transaction that writes the rows counting it
(take(..., commit=False), then the rows, then one commit): a process killed in
between leaves neither, so nothing is counted for nothing. The count rows stay
locked until that commit, which serialises one account's creates for a few ms.
A VM counts as an instance, its vCPUs and memory from its deploy until it is
destroyed (or its deploy fails), and again from a recover, as CloudStack's destroyVm /
recoverVirtualMachine decrement and increment them (resourceCountDecrement /
incrementVmResourceCount, the recover checked against the limits); its ROOT volume keeps
counting while the VM is Destroyed (destroy.root.volume.on.vm.destruction is off) until
it is expunged. A
volume (ROOT or DATADISK, as CloudStack counts resource type 10) until it is
deleted or expunged. Each row says what it counted (VirtualMachine.quota_counted:
instance, vCPUs, memory; Volume.quota_counted and counted_gib: one volume and
that many GiB), and the flag or size changes in the same transaction as the
count, so exactly what was taken is given back. A count never goes below zero
(a CHECK constraint; give() stops at zero and logs the drift). recount()
rebuilds every count from the rows. Administrators' accounts are not limited.

Domains (CloudStack's max.domain.*, ResourceLimitManagerImpl.checkDomainResourceLimit):
a domain's count is what the accounts of the domain and of every domain below it use.
Each take also adds to the count row of the account's domain and of every ancestor below
ROOT (ROOT is never limited and has no rows), each a guarded UPDATE against that domain's
limit (its own, else the nearest ancestor's, else the max.domain.* setting), in the same
transaction as the account's. Rows are locked in resource type order (sorted): a take
locks the account's rows, then its domains' (deepest first under each type); a give, and a
take that must find which limit it would pass, go type by type, the account's row then its
domains'. Either way a type's domain row comes after that type's account row, and domain
rows come in one order, so parallel takes and gives queue on the shared rows and cannot
deadlock; a count is never passed.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import BigInteger, bindparam, func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.engine import wrote
from app.extensions import db
from app.models import (Account, Domain, DomainResourceCount, DomainResourceLimit, Network, PublicIpAddress,
                        ResourceCount, ResourceLimit, ServiceOffering, VirtualMachine, Volume)
from app.services.dbutil import is_retryable
from app.services.errors import ResourceInUse, ResourceLimitExceeded
from app.services.settings import Definition, define

log = logging.getLogger(__name__)
GIB, MIB = 1 << 30, 1 << 20
# resource type -> (setting, what the message calls it, CloudStack's resourcetype number)
TYPES = {
    "user_vm": ("max.account.user.vms", "instances", 0),
    "volume": ("max.account.volumes", "volumes", 2),
    "cpu": ("max.account.cpus", "vCPUs", 8),
    "memory": ("max.account.memory", "MiB of memory", 9),
    "primary_storage": ("max.account.primary.storage", "GiB of primary storage", 10),
    "public_ip": ("max.account.public.ips", "public IP addresses", 1),
    "network": ("max.account.networks", "networks", 6),
    "snapshot": ("max.account.snapshots", "snapshots", 3),
    "secondary_storage": ("max.account.secondary.storage", "GiB of secondary storage", 11),
}
for _setting, _default, _what in (("max.account.user.vms", "20", "instances"), ("max.account.volumes", "20", "volumes"),
                                  ("max.account.cpus", "40", "vCPUs"), ("max.account.memory", "81920", "MiB of memory"),
                                  ("max.account.primary.storage", "400", "GiB of primary storage"),
                                  ("max.account.public.ips", "20", "public IP addresses"),
                                  ("max.account.networks", "20", "networks"),
                                  ("max.account.snapshots", "20", "snapshots"),
                                  ("max.account.secondary.storage", "400", "GiB of secondary storage")):
    define(Definition(_setting, _default, f"Default limit of {_what} per account (-1: unlimited).",
                      category="Limits", type="integer", min=-1, max=10**9))


# CloudStack's max.domain.* settings (Config.DefaultMaxDomain*), per resource type.
DOMAIN_SETTINGS = {"user_vm": ("max.domain.user.vms", "40"), "public_ip": ("max.domain.public.ips", "40"),
                   "volume": ("max.domain.volumes", "40"), "snapshot": ("max.domain.snapshots", "40"),
                   "network": ("max.domain.networks", "20"), "cpu": ("max.domain.cpus", "80"),
                   "memory": ("max.domain.memory", "81920"), "primary_storage": ("max.domain.primary.storage", "400"),
                   "secondary_storage": ("max.domain.secondary.storage", "800")}
for _resource, (_setting, _default) in DOMAIN_SETTINGS.items():
    define(Definition(_setting, _default, f"Default limit of {TYPES[_resource][1]} per domain, for the accounts of "
                      "the domain and of its sub-domains together (-1: unlimited); ROOT is never limited.",
                      category="Limits", type="integer", min=-1, max=10**9))


def domain_chain(account_id: int) -> list[Domain]:
    """The domains whose limits an account's creates count against: its own and every
    ancestor below ROOT, deepest first (no query for an account of ROOT already loaded)."""
    account = db.session.get(Account, account_id)  # its domain is joined with it
    return ancestors(account.domain.path if account is not None else None)


def ancestors(path: str | None) -> list[Domain]:
    """The live domains at `path` and above it, below ROOT, deepest first."""
    if not path or path == "/":
        return []
    parts = path.strip("/").split("/")
    prefixes = ["/" + "/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1)]
    return list(db.session.scalars(select(Domain).where(Domain.path.in_(prefixes), Domain.parent_id.is_not(None),
                                                        Domain.removed.is_(None)).order_by(Domain.level.desc())))


def domain_limits(chain: list[Domain]) -> dict[tuple[int, str], int]:
    """Each chain domain's limit of each resource: its own row, else the nearest ancestor's
    (below ROOT), else the max.domain.* setting (CloudStack's findCorrectResourceLimitForDomain).
    `chain`: a domain and its ancestors, deepest first (domain_chain / ancestors)."""
    from app.services import settings
    rows = {(d, r): m for d, r, m in db.session.execute(
        select(DomainResourceLimit.domain_id, DomainResourceLimit.resource_type, DomainResourceLimit.max)
        .where(DomainResourceLimit.domain_id.in_([d.id for d in chain])))} if chain else {}
    out = {}
    for i, d in enumerate(chain):
        for resource in TYPES:
            found = next((rows[(a.id, resource)] for a in chain[i:] if (a.id, resource) in rows), None)
            out[(d.id, resource)] = found if found is not None else settings.get(DOMAIN_SETTINGS[resource][0])
    return out


def limits_of(account_id: int, resources: Iterable[str]) -> dict[str, int]:
    """The account's limit of each resource: its override, else the max.account.* setting (one query)."""
    from app.services import settings
    resources = list(resources)
    overrides = dict(db.session.execute(select(ResourceLimit.resource_type, ResourceLimit.max).where(
        ResourceLimit.account_id == account_id, ResourceLimit.resource_type.in_(resources))).all()) \
        if resources else {}
    return {r: overrides[r] if overrides.get(r) is not None else settings.get(TYPES[r][0]) for r in resources}


def usage(account_id: int) -> dict[str, int]:
    rows = dict(db.session.execute(select(ResourceCount.resource_type, ResourceCount.count)
                                   .where(ResourceCount.account_id == account_id)).all())
    return {t: int(rows.get(t, 0)) for t in TYPES}


def _row(account_id: int, resource: str, model=ResourceCount) -> None:
    """Make sure the count row exists (two first-timers may race: one insert wins);
    model=DomainResourceCount: a domain's row (account_id is then the domain's id)."""
    owner = model.account_id if model is ResourceCount else model.domain_id
    if db.session.scalar(select(model.id).where(owner == account_id, model.resource_type == resource)) is None:
        db.session.add(model(**{owner.key: account_id}, resource_type=resource, count=0))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
        except DBAPIError as e:  # InnoDB's answer to concurrent inserts of one key: made by another
            db.session.rollback()
            if not is_retryable(e):
                raise


def _unlimited(account_id: int) -> bool:
    account = db.session.get(Account, account_id)
    return account is None or account.is_admin


def gib(size_bytes: int | None) -> int:
    """The GiB of primary storage a volume of this many bytes counts (rounded up)."""
    return -(-(size_bytes or 0) // GIB)


def _sub(account_id: int, resource: str, n: int, model=ResourceCount) -> None:
    """Take `n` off a count, stopping at zero: a count that would go below zero means
    something was given back that was never taken, which is logged, not stored.
    model=DomainResourceCount: a domain's count (account_id is then the domain's id)."""
    owner = model.account_id if model is ResourceCount else model.domain_id
    q = update(model).where(owner == account_id, model.resource_type == resource)
    done = db.session.execute(q.where(model.count >= n).values(count=model.count - n)
                              .execution_options(synchronize_session=False))
    if done.rowcount == 0:
        drift = db.session.execute(q.where(model.count < n).values(count=0)
                                   .execution_options(synchronize_session=False))
        if drift.rowcount:
            log.warning("resource count %s of %s %s would go below zero (giving back %s): set to 0",
                        resource, owner.key, account_id, n)


def _sub_all(account_id: int, domain_ids: list[int], resource: str, n: int) -> None:
    """`n` off the account's count and its domains' (deepest first: the locking order)."""
    _sub(account_id, resource, n)
    for domain_id in domain_ids:
        _sub(domain_id, resource, n, DomainResourceCount)


_ADD: dict[type, object] = {}


def _add_stmt(model):
    """`count + :n` on one count row (:owner, :resource) unless that passes :limit (-1: none),
    built once per count table: a take runs it for several rows at once (executemany; one
    pipelined round trip on PostgreSQL)."""
    stmt = _ADD.get(model)
    if stmt is None:
        t = model.__table__
        owner = t.c.account_id if model is ResourceCount else t.c.domain_id
        n, limit = bindparam("n", type_=BigInteger), bindparam("limit", type_=BigInteger)
        stmt = _ADD[model] = update(t).where(owner == bindparam("owner"), t.c.resource_type == bindparam("resource"),
                                             or_(limit < 0, t.c.count + n <= limit)).values(count=t.c.count + n)
    return stmt


def _add_all(account_id: int, deltas: dict[str, int], chain: list[tuple[int, str]], limits: dict[str, int],
             dlimits: dict[tuple[int, str], int], unlimited: bool) -> bool:
    """Every count up at once (account rows, then domain rows: the module's lock order);
    False if any would pass its limit (the caller rolls back and finds which)."""
    rows = [{"owner": account_id, "resource": r, "n": n, "limit": -1 if unlimited else limits[r]}
            for r, n in deltas.items()]
    drows = [{"owner": d, "resource": r, "n": n, "limit": -1 if unlimited else dlimits[(d, r)]}
             for r, n in deltas.items() for d, _ in chain]
    conn = db.session.connection()
    if conn.execute(_add_stmt(ResourceCount), rows).rowcount != len(rows):
        return False
    return not drows or conn.execute(_add_stmt(DomainResourceCount), drows).rowcount == len(drows)


def take(account_id: int, deltas: dict[str, int], also: Iterable = (), *, commit: bool = True) -> None:
    """Add to the account's counts, all or nothing, in one short transaction (rows locked in a
    fixed order, so concurrent takes cannot deadlock); 532 naming the limit that would be passed.
    `also`: guarded UPDATEs of the counted rows, run in the same transaction, each of which must
    change exactly one row (otherwise another request changed it first: 536, nothing taken).
    commit=False: the transaction stays open for the caller to write the rows that count what
    was taken and commit them with it (or roll both back). Whatever the session wrote before
    is committed first."""
    deltas = {r: n for r, n in sorted(deltas.items()) if n}
    also = list(also)
    if not deltas and not also:
        return
    have = set(db.session.scalars(select(ResourceCount.resource_type).where(ResourceCount.account_id == account_id)))
    for resource in deltas:
        if resource not in have:
            _row(account_id, resource)
    chain = domain_chain(account_id) if deltas else []
    if chain:
        have = set(db.session.execute(select(DomainResourceCount.domain_id, DomainResourceCount.resource_type)
                                      .where(DomainResourceCount.domain_id.in_([d.id for d in chain]))).all())
        for resource in deltas:
            for d in chain:
                if (d.id, resource) not in have:
                    _row(d.id, resource, DomainResourceCount)
    dlimits = domain_limits(chain)
    chain = [(d.id, d.uuid) for d in chain]  # plain values: a rollback below expires the rows
    unlimited = _unlimited(account_id)
    # What the session wrote before is committed first, so the counts' row locks below are the
    # transaction's first (the lock order above). A transaction that only read goes on: its
    # COMMIT, BEGIN and checkout would end a snapshot and nothing else (a deploy's checks).
    if wrote(db.session()):
        db.session.commit()
    # The account's limits in one query (a limit changed meanwhile is as if changed just after
    # this take); the guarded UPDATEs below decide every race on the counts.
    limits = {} if unlimited else limits_of(account_id, [r for r, n in deltas.items() if n > 0])
    # A create (every delta positive): all rows at once. If a limit would pass, the same again
    # below, one row at a time, to name that limit (or to take it after all, if another request
    # gave some back meanwhile).
    if deltas and min(deltas.values()) > 0:
        if _add_all(account_id, deltas, chain, limits, dlimits, unlimited):
            deltas = {}
        else:
            db.session.rollback()
    for resource, n in deltas.items():
        if n < 0:
            _sub_all(account_id, [d for d, _ in chain], resource, -n)
            continue
        limit = -1 if unlimited else limits[resource]
        q = update(ResourceCount).where(ResourceCount.account_id == account_id,
                                        ResourceCount.resource_type == resource)
        if limit >= 0:
            q = q.where(ResourceCount.count + n <= limit)
        done = db.session.execute(q.values(count=ResourceCount.count + n).execution_options(synchronize_session=False))
        if done.rowcount != 1:
            db.session.rollback()  # nothing of this take stays
            used = usage(account_id)[resource]
            raise ResourceLimitExceeded(f"The account's limit of {limit} {TYPES[resource][1]} would be passed "
                                        f"(it uses {used}, this needs {n} more)")
        for domain_id, domain_uuid in chain:  # deepest first: the order every take locks them in
            dlimit = -1 if unlimited else dlimits[(domain_id, resource)]
            q = update(DomainResourceCount).where(DomainResourceCount.domain_id == domain_id,
                                                  DomainResourceCount.resource_type == resource)
            if dlimit >= 0:
                q = q.where(DomainResourceCount.count + n <= dlimit)
            if db.session.execute(q.values(count=DomainResourceCount.count + n)
                                  .execution_options(synchronize_session=False)).rowcount != 1:
                db.session.rollback()
                used = db.session.scalar(select(DomainResourceCount.count).where(
                    DomainResourceCount.domain_id == domain_id, DomainResourceCount.resource_type == resource))
                raise ResourceLimitExceeded(
                    f"Maximum domain resource limits of Type '{resource}' for Domain Id = {domain_uuid} is exceeded: "
                    f"Domain Resource Limit = {dlimit}, Current Domain Resource Amount = {used}, "
                    f"Requested Resource Amount = {n}.")
    for stmt, busy in also:
        if db.session.execute(stmt.execution_options(synchronize_session=False)).rowcount != 1:
            db.session.rollback()
            raise ResourceInUse(busy)
    if commit:
        db.session.commit()


def give(account_id: int, deltas: dict[str, int], *, commit: bool = True) -> None:
    domain_ids = [d.id for d in domain_chain(account_id)] if any(deltas.values()) else []
    for resource, n in sorted(deltas.items()):
        if n:
            _sub_all(account_id, domain_ids, resource, n)
    if commit:
        db.session.commit()


def _vm_deltas(cpus: int, memory_mib: int, root_bytes: int) -> dict[str, int]:
    return {"user_vm": 1, "cpu": cpus, "memory": memory_mib, **volume_deltas(root_bytes)}


def reserve_vm(account_id: int, offering, root_bytes: int) -> None:
    """A new VM (sized by `offering`: anything with cpu_number and memory, e.g. offerings.Size)
    and its root volume count; 532 when a limit would pass. Uncommitted: the caller
    adds the VM row (quota_counted) and its ROOT volume (count_new_volume) and commits them
    with the counts, or rolls back and nothing was taken."""
    take(account_id, _vm_deltas(offering.cpu_number, offering.memory, root_bytes), commit=False)


def release_instance(vm: VirtualMachine, *, commit: bool = True) -> None:
    """The VM no longer counts as an instance, its vCPUs and memory (a destroy: CloudStack's
    resourceCountDecrement), once however often this is called; its volumes still count."""
    done = db.session.execute(update(VirtualMachine).where(VirtualMachine.id == vm.id,
                                                           VirtualMachine.quota_counted.is_(True))
                              .values(quota_counted=False).execution_options(synchronize_session=False))
    if done.rowcount == 1:
        give(vm.account_id, {"user_vm": 1, "cpu": vm.cpu_number, "memory": vm.memory}, commit=False)
    if commit:
        db.session.commit()


def retake_instance(vm: VirtualMachine) -> None:
    """A recovered VM counts again as an instance, its vCPUs and memory, checked against the
    limits (CloudStack's recoverVirtualMachine: checkVmResourceLimit, then the increment):
    532 when one would pass, and nothing changes. Uncommitted: the caller commits the VM's
    new state with it. A VM still counted (destroyed before destroys released it) is left."""
    if db.session.scalar(select(VirtualMachine.quota_counted).where(VirtualMachine.id == vm.id)):
        return
    take(vm.account_id, {"user_vm": 1, "cpu": vm.cpu_number, "memory": vm.memory},
         also=[(update(VirtualMachine).where(VirtualMachine.id == vm.id, VirtualMachine.quota_counted.is_(False))
                .values(quota_counted=True), f"VM {vm.name} is being changed by another request")], commit=False)


def release(vm: VirtualMachine) -> None:
    """The VM and its ROOT volume(s) no longer count (once, however often this is called);
    data volumes stay counted (they outlive the VM, detached)."""
    release_instance(vm)
    for root in db.session.scalars(select(Volume).where(Volume.vm_id == vm.id, Volume.volume_type == "ROOT",
                                                        Volume.quota_counted.is_(True))).all():
        release_volume(root)


def rescale(caller, vm: VirtualMachine, offering: ServiceOffering) -> None:
    """A new offering for a stopped VM: only the difference counts (atomically). Uncommitted:
    the caller sets the VM's new sizes and commits them with the counts (or rolls back)."""
    if vm.quota_counted:
        take(vm.account_id, {"cpu": offering.cpu_number - vm.cpu_number, "memory": offering.memory - vm.memory},
             commit=False)


def volume_deltas(size: int) -> dict[str, int]:
    return {"volume": 1, "primary_storage": gib(size)}


def release_volume(v: Volume) -> None:
    """The volume no longer counts: exactly the GiB it counted go back, once."""
    for _ in range(3):
        counted = db.session.execute(select(Volume.quota_counted, Volume.counted_gib)
                                     .where(Volume.id == v.id)).one()
        if not counted.quota_counted:
            break
        done = db.session.execute(update(Volume).where(Volume.id == v.id, Volume.quota_counted.is_(True),
                                                       Volume.counted_gib == counted.counted_gib)
                                  .values(quota_counted=False, counted_gib=0)
                                  .execution_options(synchronize_session=False))
        if done.rowcount == 1:
            give(v.account_id, {"volume": 1, "primary_storage": counted.counted_gib}, commit=False)
            break
        db.session.rollback()  # resized meanwhile: read again
    db.session.commit()


def recount_volume(v: Volume, old_gib: int, new_gib: int, *, after_failure: bool = False) -> None:
    """The volume counts `new_gib` GiB instead of `old_gib`, atomically with the account's count:
    growing is checked against the limit (532), going back gives back. If the volume no longer
    counts `old_gib` another request changed it first: 536, nothing changes (after a failure,
    quietly: the later change stands, and it counted the volume's whole size)."""
    if old_gib == new_gib:
        return
    try:
        take(v.account_id, {"primary_storage": new_gib - old_gib},
             also=[(update(Volume).where(Volume.id == v.id, Volume.quota_counted.is_(True),
                                         Volume.counted_gib == old_gib).values(counted_gib=new_gib),
                    f"Volume {v.name} is being changed by another request")])
    except ResourceInUse:
        if not after_failure:
            raise


def count_new_volume(v: Volume) -> None:
    """Mark a new volume row as counted (what reserve_vm / create_volume took for it, in the
    same transaction)."""
    v.quota_counted, v.counted_gib = True, gib(v.size)


# --- Recount -----------------------------------------------------------------------

def counted_from_rows(account_ids: list[int] | None = None) -> dict[int, dict[str, int]]:
    """What each account's counts should be from the rows that say they count."""
    out: dict[int, dict[str, int]] = {}
    q = (select(VirtualMachine.account_id, func.count(), func.coalesce(func.sum(VirtualMachine.cpu_number), 0),
                func.coalesce(func.sum(VirtualMachine.memory), 0))
         .where(VirtualMachine.quota_counted.is_(True)).group_by(VirtualMachine.account_id))
    if account_ids is not None:
        q = q.where(VirtualMachine.account_id.in_(account_ids))
    for aid, n, cpus, mem in db.session.execute(q):
        out.setdefault(aid, {})
        out[aid].update(user_vm=int(n), cpu=int(cpus), memory=int(mem))
    q = (select(Volume.account_id, func.count(), func.coalesce(func.sum(Volume.counted_gib), 0))
         .where(Volume.quota_counted.is_(True)).group_by(Volume.account_id))
    if account_ids is not None:
        q = q.where(Volume.account_id.in_(account_ids))
    for aid, n, size in db.session.execute(q):
        out.setdefault(aid, {})
        out[aid].update(volume=int(n), primary_storage=int(size))
    from app.models import Snapshot
    q = (select(Snapshot.account_id, func.count(), func.coalesce(func.sum(Snapshot.counted_gib), 0))
         .where(Snapshot.quota_counted.is_(True)).group_by(Snapshot.account_id))
    if account_ids is not None:
        q = q.where(Snapshot.account_id.in_(account_ids))
    for aid, n, size in db.session.execute(q):
        out.setdefault(aid, {})
        out[aid].update(snapshot=int(n), secondary_storage=int(size))
    from app.models import VolumeStoreRef  # uploaded volumes' images on the image store
    q = (select(VolumeStoreRef.account_id, func.coalesce(func.sum(VolumeStoreRef.counted_gib), 0))
         .where(VolumeStoreRef.quota_counted.is_(True)).group_by(VolumeStoreRef.account_id))
    if account_ids is not None:
        q = q.where(VolumeStoreRef.account_id.in_(account_ids))
    for aid, size in db.session.execute(q):
        c = out.setdefault(aid, {})
        c["secondary_storage"] = c.get("secondary_storage", 0) + int(size)
    for model, resource in ((PublicIpAddress, "public_ip"), (Network, "network")):
        q = select(model.account_id, func.count()).where(model.quota_counted.is_(True)).group_by(model.account_id)
        if account_ids is not None:
            q = q.where(model.account_id.in_(account_ids))
        for aid, n in db.session.execute(q):
            out.setdefault(aid, {})[resource] = int(n)
    return {aid: {t: c.get(t, 0) for t in TYPES} for aid, c in out.items()}


def recount(account_ids: list[int] | None = None) -> dict[int, dict[str, int]]:
    """Set these accounts' counts (every account's: None) to what their rows count, as
    CloudStack's updateResourceCount does; returns the new counts. A repair for counts left
    wrong by hand or by a bug (a create takes its quota and writes its rows in one transaction,
    so a crash cannot). Run it when the accounts are quiet: a count is set, not adjusted."""
    if account_ids is None:
        account_ids = list(db.session.scalars(select(Account.id).order_by(Account.id)))
    want = counted_from_rows(account_ids)
    out = {}
    for account_id in account_ids:
        counts = want.get(account_id, dict.fromkeys(TYPES, 0))
        have = usage(account_id)
        for resource, n in counts.items():
            if have[resource] != n:
                _row(account_id, resource)
                db.session.execute(update(ResourceCount).where(ResourceCount.account_id == account_id,
                                                               ResourceCount.resource_type == resource)
                                   .values(count=n).execution_options(synchronize_session=False))
                log.warning("resource count %s of account %s was %s, the rows count %s: corrected",
                            resource, account_id, have[resource], n)
        out[account_id] = counts
    db.session.commit()
    recount_domains()
    return out


def recount_domains() -> None:
    """Set every domain's counts (below ROOT) to the sum of its subtree's accounts' counts
    (CloudStack's recalculateDomainResourceCount). Run it when the accounts are quiet."""
    domains = db.session.execute(select(Domain.id, Domain.path).where(Domain.parent_id.is_not(None),
                                                                      Domain.removed.is_(None))).all()
    if not domains:
        return
    want = {(d.id, r): 0 for d in domains for r in TYPES}
    rows = db.session.execute(select(Domain.path, ResourceCount.resource_type, ResourceCount.count)
                              .join(Account, Account.id == ResourceCount.account_id)
                              .join(Domain, Domain.id == Account.domain_id))
    for path, resource, count in rows:
        for d in domains:
            if path.startswith(d.path) and (d.id, resource) in want:
                want[(d.id, resource)] += int(count)
    have = {(d, r): int(c) for d, r, c in db.session.execute(
        select(DomainResourceCount.domain_id, DomainResourceCount.resource_type, DomainResourceCount.count))}
    for (domain_id, resource), n in want.items():
        if have.get((domain_id, resource), 0) != n:
            _row(domain_id, resource, DomainResourceCount)
            db.session.execute(update(DomainResourceCount).where(DomainResourceCount.domain_id == domain_id,
                                                                 DomainResourceCount.resource_type == resource)
                               .values(count=n).execution_options(synchronize_session=False))
            log.warning("resource count %s of domain %s was %s, its accounts count %s: corrected",
                        resource, domain_id, have.get((domain_id, resource), 0), n)
    db.session.commit()

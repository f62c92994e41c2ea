"""Resource limits (CloudStack's max.account.*): instances, vCPUs, memory,
volumes and primary storage per account, with per-account overrides.

Usage lives in resource_counts and is changed only by guarded UPDATEs
(`count + n <= limit` in the WHERE clause), each in its own short transaction,
so parallel deploys can never pass a limit on SQLite, PostgreSQL or MariaDB.
A VM counts from its deploy until it is expunged (or its deploy fails); a
volume until it is deleted. Administrators' accounts are not limited.
"""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.extensions import db
from app.models import Account, ResourceCount, ResourceLimit, ServiceOffering, VirtualMachine, Volume
from app.services.dbutil import is_retryable
from app.services.errors import ResourceLimitExceeded
from app.services.settings import Definition, define

GIB, MIB = 1 << 30, 1 << 20
# resource type -> (setting, what the message calls it, CloudStack's resourcetype number)
TYPES = {
    "user_vm": ("max.account.user.vms", "instances", 0),
    "volume": ("max.account.volumes", "volumes", 2),
    "cpu": ("max.account.cpus", "vCPUs", 8),
    "memory": ("max.account.memory", "MiB of memory", 9),
    "primary_storage": ("max.account.primary.storage", "GiB of primary storage", 10),
}
for _setting, _default, _what in (("max.account.user.vms", "20", "instances"), ("max.account.volumes", "20", "volumes"),
                                  ("max.account.cpus", "40", "vCPUs"), ("max.account.memory", "81920", "MiB of memory"),
                                  ("max.account.primary.storage", "400", "GiB of primary storage")):
    define(Definition(_setting, _default, f"Default limit of {_what} per account (-1: unlimited).",
                      category="Limits", type="integer", min=-1, max=10**9))


def limit_of(account_id: int, resource: str) -> int:
    from app.services import settings
    override = db.session.scalar(select(ResourceLimit.max).where(ResourceLimit.account_id == account_id,
                                                                 ResourceLimit.resource_type == resource))
    return override if override is not None else settings.get(TYPES[resource][0])


def usage(account_id: int) -> dict[str, int]:
    rows = dict(db.session.execute(select(ResourceCount.resource_type, ResourceCount.count)
                                   .where(ResourceCount.account_id == account_id)).all())
    return {t: int(rows.get(t, 0)) for t in TYPES}


def _row(account_id: int, resource: str) -> None:
    """Make sure the count row exists (two first-timers may race: one insert wins)."""
    if db.session.scalar(select(ResourceCount.id).where(ResourceCount.account_id == account_id,
                                                        ResourceCount.resource_type == resource)) is None:
        db.session.add(ResourceCount(account_id=account_id, resource_type=resource, count=0))
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


def take(account_id: int, deltas: dict[str, int]) -> None:
    """Add to the account's counts, all or nothing, in one short transaction (rows locked in a
    fixed order, so concurrent takes cannot deadlock); 532 naming the limit that would be passed."""
    deltas = {r: n for r, n in sorted(deltas.items()) if n}
    if not deltas:
        return
    have = set(db.session.scalars(select(ResourceCount.resource_type).where(ResourceCount.account_id == account_id)))
    for resource in deltas:
        if resource not in have:
            _row(account_id, resource)
    unlimited = _unlimited(account_id)
    db.session.commit()
    for resource, n in deltas.items():
        limit = -1 if unlimited else limit_of(account_id, resource)
        q = update(ResourceCount).where(ResourceCount.account_id == account_id,
                                        ResourceCount.resource_type == resource)
        if limit >= 0 and n > 0:
            q = q.where(ResourceCount.count + n <= limit)
        done = db.session.execute(q.values(count=ResourceCount.count + n).execution_options(synchronize_session=False))
        if done.rowcount != 1:
            db.session.rollback()  # nothing of this take stays
            used = usage(account_id)[resource]
            raise ResourceLimitExceeded(f"The account's limit of {limit} {TYPES[resource][1]} would be passed "
                                        f"(it uses {used}, this needs {n} more)")
    db.session.commit()


def give(account_id: int, deltas: dict[str, int]) -> None:
    for resource, n in deltas.items():
        if n:
            db.session.execute(update(ResourceCount).where(
                ResourceCount.account_id == account_id, ResourceCount.resource_type == resource)
                .values(count=ResourceCount.count - n).execution_options(synchronize_session=False))
    db.session.commit()


def _vm_deltas(cpus: int, memory_mib: int, root_bytes: int) -> dict[str, int]:
    return {"user_vm": 1, "cpu": cpus, "memory": memory_mib, "volume": 1,
            "primary_storage": -(-root_bytes // GIB)}


def reserve_vm(account_id: int, offering: ServiceOffering, root_bytes: int) -> None:
    """A new VM and its root volume count (before their rows exist); 532 when a limit would pass."""
    take(account_id, _vm_deltas(offering.cpu_number, offering.memory, root_bytes))


def unreserve_vm(account_id: int, offering: ServiceOffering, root_bytes: int) -> None:
    give(account_id, _vm_deltas(offering.cpu_number, offering.memory, root_bytes))


def release(vm: VirtualMachine) -> None:
    """The VM no longer counts (once, however often this is called)."""
    done = db.session.execute(update(VirtualMachine).where(VirtualMachine.id == vm.id,
                                                           VirtualMachine.quota_counted.is_(True))
                              .values(quota_counted=False).execution_options(synchronize_session=False))
    if done.rowcount == 1:
        root = next((v.size for v in vm.volumes if v.volume_type == "ROOT"), 0)
        give(vm.account_id, _vm_deltas(vm.cpu_number, vm.memory, root))
    db.session.commit()


def rescale(caller, vm: VirtualMachine, offering: ServiceOffering) -> None:
    """A new offering for a stopped VM: only the difference counts (atomically)."""
    if vm.quota_counted:
        take(vm.account_id, {"cpu": offering.cpu_number - vm.cpu_number, "memory": offering.memory - vm.memory})


def volume_deltas(size: int) -> dict[str, int]:
    return {"volume": 1, "primary_storage": -(-size // GIB)}


def release_volume(v: Volume) -> None:
    done = db.session.execute(update(Volume).where(Volume.id == v.id, Volume.quota_counted.is_(True))
                              .values(quota_counted=False).execution_options(synchronize_session=False))
    if done.rowcount == 1:
        give(v.account_id, volume_deltas(v.size))
    db.session.commit()

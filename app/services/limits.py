"""Resource limits as people and API clients see them: per account and resource,
the limit (a `max.account.*` setting or the admin's override), what is used and
what is left, with CloudStack's resourcetype numbers (quotas.TYPES).

Enforcement stays in app/services/quotas.py (guarded UPDATEs); this module reads
the same rows in bulk (a fixed number of queries for any number of accounts) and
lets admins set or clear an account's override.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, delete, func, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Account, ResourceCount, ResourceLimit, ServiceOffering, VirtualMachine, VMState
from app.services import events, quotas, settings
from app.services import access
from app.services.errors import InvalidParameter, PermissionDenied

UNLIMITED = -1
# CloudStack's AccountResponse prefix of each resource (vmlimit, cputotal, ...).
ACCOUNT_FIELDS = {"user_vm": "vm", "volume": "volume", "cpu": "cpu", "memory": "memory",
                  "primary_storage": "primarystorage", "public_ip": "ip", "network": "network",
                  "snapshot": "snapshot", "secondary_storage": "secondarystorage"}
# Short labels for the usage bars (quotas.TYPES holds the message wording).
LABELS = {"user_vm": "Instances", "cpu": "vCPUs", "memory": "Memory", "volume": "Volumes",
          "primary_storage": "Primary storage", "public_ip": "Public IPs", "network": "Networks",
          "snapshot": "Snapshots", "secondary_storage": "Secondary storage"}
UNITS = {"memory": "MiB", "primary_storage": "GiB", "secondary_storage": "GiB"}


@dataclass(frozen=True)
class Limit:
    resource: str  # a key of quotas.TYPES
    used: int
    max: int  # -1: unlimited
    overridden: bool = False  # an admin's per-account value, not the setting

    @property
    def number(self) -> int:
        return quotas.TYPES[self.resource][2]

    @property
    def label(self) -> str:
        return LABELS[self.resource]

    @property
    def unit(self) -> str:
        return UNITS.get(self.resource, "")

    @property
    def unlimited(self) -> bool:
        return self.max < 0

    @property
    def available(self) -> int | None:
        return None if self.unlimited else self.max - self.used

    @property
    def pct(self) -> float:
        if self.unlimited:
            return 0.0
        return 100.0 if self.max == 0 else min(100.0, 100.0 * self.used / self.max)

    def refusal(self, need: int) -> str | None:
        """Why `need` more would be refused (quotas.take's wording), or None when it fits."""
        if self.unlimited or need <= 0 or self.used + need <= self.max:
            return None
        return (f"The account's limit of {self.max} {quotas.TYPES[self.resource][1]} would be passed "
                f"(it uses {self.used}, this needs {need} more)")


def resource_of(value) -> str:
    """A resource from CloudStack's number (0, 2, 8, 9, 10) or name (user_vm, ...)."""
    for resource, (_, _, number) in quotas.TYPES.items():
        if str(value).strip().lower() in (str(number), resource):
            return resource
    known = ", ".join(f"{n} ({r})" for r, (_, _, n) in quotas.TYPES.items())
    raise InvalidParameter(f"resourcetype {value} is not limited by Nubo; the limited types are {known}",
                           field="resourcetype")


def of_accounts(accounts: list[Account]) -> dict[int, list[Limit]]:
    """Every limit of these accounts, in quotas.TYPES order: two queries whatever their number."""
    ids = [a.id for a in accounts]
    used: dict[tuple[int, str], int] = {}
    overrides: dict[tuple[int, str], int] = {}
    if ids:
        used = {(a, r): int(c) for a, r, c in db.session.execute(
            select(ResourceCount.account_id, ResourceCount.resource_type, ResourceCount.count)
            .where(ResourceCount.account_id.in_(ids)))}
        overrides = {(a, r): m for a, r, m in db.session.execute(
            select(ResourceLimit.account_id, ResourceLimit.resource_type, ResourceLimit.max)
            .where(ResourceLimit.account_id.in_(ids)))}
    out = {}
    for a in accounts:
        rows = []
        for resource, (setting, _, _) in quotas.TYPES.items():
            override = overrides.get((a.id, resource))
            limit = UNLIMITED if a.is_admin else (override if override is not None else settings.get(setting))
            rows.append(Limit(resource, used.get((a.id, resource), 0), limit, override is not None))
        out[a.id] = rows
    return out


def of_account(account: Account) -> list[Limit]:
    return of_accounts([account])[account.id]


def limited_account(caller, account: str | None, domainid: str | None = None) -> Account:
    """The account (or the request's project) whose limits an admin sets."""
    return access.owner_for(caller, account, domainid)


def list_limits(caller, *, account: str | None = None, domainid: str | None = None, resource=None,
                listall: bool = False) -> list[tuple[Account, Limit]]:
    """listResourceLimits: the caller's account or the project named (admins: the account named,
    or every one they may see with listall)."""
    if access.is_any_admin(caller) and listall and not account and not access.current_project():
        accounts = list(db.session.scalars(select(Account).where(Account.removed.is_(None),
                                                                 access.accounts_visible(caller))
                                           .order_by(Account.id)))
    else:
        accounts = [access.owner_for(caller, account, domainid)]
    wanted = resource_of(resource) if resource is not None else None
    limits = of_accounts(accounts)
    return [(a, lim) for a in accounts for lim in limits[a.id] if wanted in (None, lim.resource)]


def set_limit(caller, account: Account, resource: str, value: int | None) -> Limit:
    """An admin's override of one limit (-1: unlimited); None goes back to the setting."""
    if not caller.is_admin:
        raise PermissionDenied("Only administrators may change resource limits")
    if account.is_admin:
        raise InvalidParameter(f"Account {account.name} is an administrators' account: it is not limited",
                               field="account")
    if value is not None and value < UNLIMITED:
        raise InvalidParameter("Give -1 for no limit, or a limit of at least 0", field="max")
    _save(caller, ResourceLimit, ResourceLimit.account_id, account, "Account", resource, value)
    return next(lim for lim in of_account(account) if lim.resource == resource)


def _save(caller, model, owner_col, owner, kind: str, resource: str, value: int | None) -> None:
    """Replace the owner's (account's or domain's) limit row of one resource (None: no row)."""
    for _ in range(2):  # two admins saving at once: the second insert becomes an update
        db.session.execute(delete(model).where(owner_col == owner.id, model.resource_type == resource))
        if value is not None:
            db.session.add(model(**{owner_col.key: owner.id}, resource_type=resource, max=value))
        events.record("RESOURCE.LIMIT.UPDATE", f"Limit of {quotas.TYPES[resource][1]} of {kind.lower()} {owner.name} "
                      f"set to {'the default' if value is None else ('unlimited' if value < 0 else value)}",
                      user=caller, resource_type=kind, resource_id=owner.uuid)
        try:
            db.session.commit()
            break
        except IntegrityError:
            db.session.rollback()


def account_totals(accounts: list[Account]) -> dict[int, dict]:
    """CloudStack's AccountResponse figures (vmlimit, vmtotal, vmavailable, cpu..., memory...,
    volume..., primarystorage..., vmrunning, vmstopped): three queries for all the accounts."""
    limits = of_accounts(accounts)
    ids = [a.id for a in accounts]
    states = {}
    if ids:
        states = {aid: (int(run or 0), int(stop or 0)) for aid, run, stop in db.session.execute(
            select(VirtualMachine.account_id,
                   func.sum(case((VirtualMachine.state == VMState.RUNNING, 1), else_=0)),
                   func.sum(case((VirtualMachine.state == VMState.STOPPED, 1), else_=0)))
            .where(VirtualMachine.account_id.in_(ids), VirtualMachine.removed.is_(None))
            .group_by(VirtualMachine.account_id))}
    out = {}
    for a in accounts:
        row = {}
        for lim in limits[a.id]:
            prefix = ACCOUNT_FIELDS[lim.resource]
            row[f"{prefix}limit"] = "Unlimited" if lim.unlimited else str(lim.max)
            row[f"{prefix}total"] = lim.used
            row[f"{prefix}available"] = "Unlimited" if lim.unlimited else str(lim.available)
        row["vmrunning"], row["vmstopped"] = states.get(a.id, (0, 0))
        out[a.id] = row
    return out


def vm_needs(offering: ServiceOffering, root_bytes: int) -> dict[str, int]:
    """What a new VM with this offering and root disk counts against (quotas.reserve_vm's deltas)."""
    return quotas._vm_deltas(offering.cpu_number, offering.memory, root_bytes)


def refusal(limits: list[Limit], needs: dict[str, int]) -> str | None:
    """The first limit these needs would pass (the message quotas would give), or None."""
    return next((msg for lim in limits if (msg := lim.refusal(needs.get(lim.resource, 0)))), None)


def update_counts(caller, *, account: str | None = None, domainid: str | None = None,
                  resource=None) -> list[tuple[Account, str, int]]:
    """updateResourceCount: an admin sets the counts of one account (or of every account) from
    its rows; (account, resource, count) for each, or for the one resource type asked."""
    if not caller.is_admin:
        raise PermissionDenied("Only administrators may recalculate resource counts")
    wanted = resource_of(resource) if resource is not None else None
    if account or access.current_project():
        accts = [access.owner_for(caller, account, domainid)]
    else:
        d = access.domain_by_uuid(caller, domainid) if domainid else None
        q = select(Account).where(Account.removed.is_(None)).order_by(Account.id)
        if d is not None:
            q = q.where(Account.domain_id.in_(access.domain_ids_under(d.path)))
        accts = list(db.session.scalars(q))
    counts = quotas.recount([a.id for a in accts])
    events.record("RESOURCE.COUNT.UPDATE", f"Resource counts recalculated for "
                  f"{accts[0].name if account else 'every account'}", user=caller, resource_type="Account",
                  resource_id=accts[0].uuid if account else None)
    db.session.commit()
    return [(a, r, n) for a in accts for r, n in counts[a.id].items() if wanted in (None, r)]


# --- Domains (max.domain.*) -------------------------------------------------------------

def of_domain(domain) -> list[Limit]:
    """A domain's limits and what its subtree's accounts use, in quotas.TYPES order. ROOT is
    never limited (what it uses: every account's counts summed)."""
    from app.models import DomainResourceCount, DomainResourceLimit
    if domain.parent_id is None:
        used = dict(db.session.execute(select(ResourceCount.resource_type, func.sum(ResourceCount.count))
                                       .group_by(ResourceCount.resource_type)).all())
        return [Limit(r, int(used.get(r) or 0), UNLIMITED) for r in quotas.TYPES]
    chain = quotas.ancestors(domain.path)
    maxes = quotas.domain_limits(chain)
    used = dict(db.session.execute(select(DomainResourceCount.resource_type, DomainResourceCount.count)
                                   .where(DomainResourceCount.domain_id == domain.id)).all())
    own = set(db.session.scalars(select(DomainResourceLimit.resource_type)
                                 .where(DomainResourceLimit.domain_id == domain.id)))
    return [Limit(r, int(used.get(r) or 0), maxes[(domain.id, r)], r in own) for r in quotas.TYPES]


def list_domain_limits(caller, domainid: str, resource=None) -> list[tuple]:
    """listResourceLimits domainid= (no account): the domain's limits, for admins over it."""
    d = access.domain_by_uuid(caller, domainid)
    wanted = resource_of(resource) if resource is not None else None
    return [(d, lim) for lim in of_domain(d) if wanted in (None, lim.resource)]


def set_domain_limit(caller, domain, resource: str, value: int | None) -> Limit:
    """updateResourceLimit domainid= (no account): a domain's own limit (None: back to the
    parent's or the max.domain.* setting). CloudStack's rules: never ROOT's; a domain admin
    not their own domain's; never above the parent domain's limit."""
    from app.models import DomainResourceLimit
    if not access.is_any_admin(caller):
        raise PermissionDenied("Only administrators may change resource limits")
    if domain.parent_id is None:
        raise PermissionDenied(f"Cannot update resource limit for ROOT domain {domain.uuid}, permission denied")
    if access.is_domain_admin(caller) and domain.id == caller.account.domain_id:
        raise PermissionDenied(f"Unable to update resource limit for domain {domain.uuid}, permission denied")
    if value is not None and value < UNLIMITED:
        raise InvalidParameter("Give -1 for no limit, or a limit of at least 0", field="max")
    parent = domain.parent
    if value is not None and parent is not None and parent.parent_id is not None:
        chain = quotas.ancestors(parent.path)
        parent_max = quotas.domain_limits(chain)[(parent.id, resource)]
        if parent_max >= 0 and (value < 0 or value > parent_max):
            raise InvalidParameter(f"Domain {domain.name}(id: {parent.uuid}) has maximum allowed resource limit "
                                   f"{parent_max} for {resource}, please specify a value less than or equal to "
                                   f"{parent_max}", field="max")
    _save(caller, DomainResourceLimit, DomainResourceLimit.domain_id, domain, "Domain", resource, value)
    return next(lim for lim in of_domain(domain) if lim.resource == resource)

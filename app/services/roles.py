"""Dynamic roles (CloudStack 4.9+): the four default roles, custom roles with ordered
allow/deny rules, and the check every API call and role-gated page goes through.

The check is CloudStack's DynamicRoleBasedAPIAccessChecker: the default Root Admin role
may call everything; any other role's rules are tried in order and the first whose
pattern matches the API name decides; when none matches, the command's own declaration
decides (`implicit_types`: what its role type may call by default, as CloudStack's
@APICommand(authorized=...)). Unlike CloudStack, an allow rule never opens a command
beyond what the role's type may call (a User role allowing "list*" does not get listHosts). Compiled rules are cached per process by (role id,
rules_version); the role row comes joined with the caller's user row, so a change made
by any process (which raises the version) is seen by every process at its next call.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from sqlalchemy import func, select, update

from app.extensions import db
from app.models import Account, AccountRole, Permission, Role, RolePermission, RoleType, User
from app.services import events
from app.services.callers import Caller
from app.services.errors import InvalidParameter, NotFound, PermissionDenied

DEFAULTS = [  # CloudStack's default roles (ids 1-4 there), in its order
    ("Root Admin", RoleType.ADMIN, "Default root admin role"),
    ("Resource Admin", RoleType.RESOURCE_ADMIN, "Default resource admin role"),
    ("Domain Admin", RoleType.DOMAIN_ADMIN, "Default domain admin role"),
    ("User", RoleType.USER, "Default user role"),
]
RULE_RE = re.compile(r"^[A-Za-z0-9*]{1,255}$")

# The API's commands by lower-case name, given by the API layer when it has declared them
# (app/api/commands/__init__.py calls set_commands): imports flow down, so this module never
# reaches up into app.api. Each command has .name, .role and .authorized.
_COMMANDS: dict = {}


def set_commands(commands: dict) -> None:
    """The API layer's registry (by lower-case name); kept by reference, so commands declared
    later are seen too."""
    global _COMMANDS
    _COMMANDS = commands


def command(name: str | None):
    return _COMMANDS.get((name or "").lower())


def implicit_types(cmd) -> frozenset[str]:
    """The role types a command is open to when no rule of the caller's role names it."""
    declared = getattr(cmd, "authorized", None)
    if declared:
        return frozenset(declared)
    if cmd.role == "admin":
        return frozenset({RoleType.ADMIN})
    return frozenset(RoleType)


def compile_rule(rule: str) -> re.Pattern:
    return re.compile("^" + re.escape(rule).replace(r"\*", r"\w*") + "$")


@dataclass(frozen=True)
class Compiled:
    role_type: str
    root: bool  # the default Root Admin role: everything, no rule consulted
    rules: tuple[tuple[re.Pattern, bool], ...]  # (pattern, allowed) in order
    # Each command's answer, found once: a user's role holds a rule per command it may call
    # (~300), and a page's sidebar alone asks about some 35 commands.
    decided: dict[str, bool] = field(default_factory=dict, compare=False)


_cache: dict[tuple[str, int], Compiled] = {}  # by (role uuid, rules_version): unique across databases
_lock = threading.Lock()


def _compiled(role: AccountRole) -> Compiled:
    key = (role.uuid, role.rules_version)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    rows = db.session.execute(select(RolePermission.rule, RolePermission.permission)
                              .where(RolePermission.role_id == role.id)
                              .order_by(RolePermission.sort_order, RolePermission.id)).all()
    compiled = Compiled(role.role_type, role.is_default and role.role_type == RoleType.ADMIN,
                        tuple((compile_rule(r.rule), r.permission == Permission.ALLOW) for r in rows))
    with _lock:
        for old in [k for k in _cache if k[0] == role.uuid]:
            del _cache[old]
        _cache[key] = compiled
    return compiled


def role_of(account: Account) -> AccountRole | None:
    """The account's role: its own, else the default role of its type (rows made before roles)."""
    if account.role_obj is not None:
        return account.role_obj
    return default_role(account.role_type)


def _role_of_user(user):
    if isinstance(user, Caller):  # an API caller's row carries its account's role
        return user.role_ref or default_role(user.role_type)
    return role_of(user.account)


def allowed(user: User | Caller, cmd) -> bool:
    """May this user call this command? (CloudStack's checkAccess; cheap: no query while the
    caller's role is unchanged.)"""
    role = _role_of_user(user)
    if role is None:  # roles not seeded yet (a bare test database): the declaration decides
        return user.role_type in implicit_types(cmd)
    c = _compiled(role)
    if c.root:
        return True
    hit = c.decided.get(cmd.name)
    if hit is None:
        hit = c.decided[cmd.name] = _decide(c, cmd)
    return hit


def _decide(c: Compiled, cmd) -> bool:
    # A rule never opens a command beyond its role type: Nubo's services rely on it (an
    # admin-only command trusts that only Admin-type roles reach it).
    if c.role_type not in implicit_types(cmd):
        return False
    for pattern, allow in c.rules:
        if pattern.match(cmd.name):
            return allow
    return True


def denied_text(cmd_name: str, account: Account) -> str:
    return f"The API [{cmd_name}] does not exist or is not available for the account {account.name}."


def allowed_name(user: User, name: str) -> bool:
    """By command name (pages map their actions to API commands)."""
    if not name:  # an action with no API command of its own
        return True
    cmd = command(name)
    return cmd is not None and allowed(user, cmd)


# --- Default roles ---------------------------------------------------------------

def default_role(role_type: str) -> AccountRole | None:
    return db.session.scalar(select(AccountRole).where(
        AccountRole.is_default.is_(True), AccountRole.role_type == str(role_type),
        AccountRole.removed.is_(None)).order_by(AccountRole.id).limit(1))


def _default_rules(role_type: str) -> list[str]:
    """CloudStack seeds its default roles with the APIs their type may call; here derived
    from the registry (new commands are still open to them through their declaration)."""
    if role_type == RoleType.ADMIN:
        return ["*"]
    return [c.name for c in sorted(_COMMANDS.values(), key=lambda c: c.name) if role_type in implicit_types(c)]


def ensure_defaults(commit: bool = True) -> None:
    """The four default roles, each made once with its rules; accounts without a role get
    their type's default."""
    for name, rtype, description in DEFAULTS:
        if default_role(rtype) is not None:
            continue
        role = AccountRole(name=name, role_type=rtype, description=description, is_default=True)
        db.session.add(role)
        db.session.flush()
        for i, rule in enumerate(_default_rules(rtype)):
            db.session.add(RolePermission(role_id=role.id, rule=rule, permission=Permission.ALLOW, sort_order=i))
    db.session.flush()
    for rtype, acct_role in ((RoleType.ADMIN, Role.ADMIN), (RoleType.DOMAIN_ADMIN, Role.DOMAIN_ADMIN),
                             (RoleType.USER, Role.USER)):
        db.session.execute(update(Account).where(Account.role_id.is_(None), Account.role == acct_role)
                           .values(role_id=default_role(rtype).id))
    if commit:
        db.session.commit()


# --- Roles (the API's role commands and the admin pages) ---------------------------

def _check_admin(caller: User) -> None:
    """CloudStack's RoleManagerImpl.checkCallerAccess: only Admin-type roles manage roles."""
    if caller.role_type != RoleType.ADMIN:
        raise PermissionDenied("Restricted API called by a user account of non-Admin role type")


def _role_type(value: str | None) -> str | None:
    if value is None:
        return None
    for t in RoleType:
        if t.value.lower() == value.strip().lower():
            return t.value
    raise InvalidParameter("Invalid role type provided", field="type")


def get_role(caller: User, uuid: str, field: str = "id") -> AccountRole:
    role = db.session.scalar(select(AccountRole).where(AccountRole.uuid == uuid, AccountRole.removed.is_(None)))
    # Admin-type roles are visible to root admins only (RoleManagerImpl.findRole).
    if role is None or (role.role_type == RoleType.ADMIN and not caller.is_admin):
        raise NotFound("Invalid role id provided", field=field)
    return role


def list_roles(caller: User, *, id: str | None = None, name: str | None = None, type: str | None = None,
               keyword: str | None = None, page=None):
    from app.services.pagination import page_of
    q = select(AccountRole).where(AccountRole.removed.is_(None)).order_by(AccountRole.id)
    if not caller.is_admin:
        q = q.where(AccountRole.role_type != RoleType.ADMIN)
    if id:
        q = q.where(AccountRole.uuid == id)
    if name:
        q = q.where(AccountRole.name == name)
    if type:
        q = q.where(AccountRole.role_type == _role_type(type))
    if keyword:
        q = q.where(AccountRole.name.contains(keyword, autoescape=True))
    return page_of(q, page)


def _check_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name or len(name) > 255:
        raise InvalidParameter("Invalid role name provided", field="name")
    return name


def create_role(caller: User, *, name: str, type: str | None = None, roleid: str | None = None,
                description: str | None = None) -> AccountRole:
    """createRole: a new role of a type, or a copy of another role's type and rules (roleid)."""
    _check_admin(caller)
    name = _check_name(name)
    if (type is None) == (roleid is None):
        raise InvalidParameter("Either role type or role ID should be passed", field="type")
    source = get_role(caller, roleid, field="roleid") if roleid else None
    rtype = source.role_type if source else _role_type(type)
    if db.session.scalar(select(AccountRole.id).where(func.lower(AccountRole.name) == name.lower(),
                                                      AccountRole.removed.is_(None))):
        raise InvalidParameter(f"Role with name {name} already exists", field="name")
    role = AccountRole(name=name, role_type=rtype, description=description, is_default=False)
    db.session.add(role)
    db.session.flush()
    if source is not None:
        for i, p in enumerate(db.session.scalars(select(RolePermission).where(RolePermission.role_id == source.id)
                                                 .order_by(RolePermission.sort_order, RolePermission.id))):
            db.session.add(RolePermission(role_id=role.id, rule=p.rule, permission=p.permission,
                                          description=p.description, sort_order=i))
    events.record("ROLE.CREATE", f"Role {name} created", user=caller, resource_type="Role", resource_id=role.uuid)
    db.session.commit()
    return role


def _in_use(role: AccountRole) -> bool:
    return db.session.scalar(select(Account.id).where(Account.role_id == role.id, Account.removed.is_(None))
                             .limit(1)) is not None


def _bump(role: AccountRole) -> None:
    db.session.execute(update(AccountRole).where(AccountRole.id == role.id)
                       .values(rules_version=AccountRole.rules_version + 1))


def update_role(caller: User, role: AccountRole, *, name: str | None = None, type: str | None = None,
                description: str | None = None) -> AccountRole:
    _check_admin(caller)
    if role.is_default:
        raise PermissionDenied("Default roles cannot be updated")
    rtype = _role_type(type)
    if name is not None:
        name = _check_name(name)
        if db.session.scalar(select(AccountRole.id).where(func.lower(AccountRole.name) == name.lower(),
                                                          AccountRole.id != role.id, AccountRole.removed.is_(None))):
            raise InvalidParameter(f"Role with name {name} already exists", field="name")
    if rtype is not None and rtype != role.role_type:
        if _in_use(role):
            raise PermissionDenied("Found accounts that have role in use, won't allow to change role type")
        role.role_type = rtype
    if name:
        role.name = name
    if description:
        role.description = description
    _bump(role)
    events.record("ROLE.UPDATE", f"Role {role.name} updated", user=caller, resource_type="Role",
                  resource_id=role.uuid)
    db.session.commit()
    db.session.refresh(role)
    return role


def delete_role(caller: User, role: AccountRole) -> None:
    _check_admin(caller)
    if role.is_default:
        raise PermissionDenied("Default roles cannot be deleted")
    # The account row is locked against a parallel createAccount naming this role.
    if _in_use(role):
        raise PermissionDenied("Found accounts that have role in use, won't allow to delete role")
    db.session.execute(RolePermission.__table__.delete().where(RolePermission.role_id == role.id))
    from app.models import utcnow
    role.removed = utcnow()
    _bump(role)
    events.record("ROLE.DELETE", f"Role {role.name} deleted", user=caller, resource_type="Role",
                  resource_id=role.uuid)
    db.session.commit()


# --- Rules ----------------------------------------------------------------------

def _permission(value: str | None) -> str:
    v = (value or "").strip().lower()
    if v not in (Permission.ALLOW, Permission.DENY):
        raise InvalidParameter("Values for permission parameter should be: allow or deny", field="permission")
    return v


def _rule(value: str | None) -> str:
    v = (value or "").strip()
    if not RULE_RE.match(v):
        raise InvalidParameter(f"Only API names and wildcards are allowed, invalid rule provided: {v}",
                               field="rule")
    if "*" not in v:
        if command(v) is None:
            raise InvalidParameter(f"Unable to find API name {v} in the API list", field="rule")
    return v


def list_permissions(caller: User, role: AccountRole | None) -> list[RolePermission]:
    _check_admin(caller)
    q = (select(RolePermission).join(AccountRole).where(AccountRole.removed.is_(None))
         .order_by(RolePermission.role_id, RolePermission.sort_order, RolePermission.id))
    if role is not None:
        q = q.where(RolePermission.role_id == role.id)
    elif not caller.is_admin:
        q = q.where(AccountRole.role_type != RoleType.ADMIN)
    return list(db.session.scalars(q))


def get_permission(caller: User, uuid: str, field: str = "id") -> RolePermission:
    perm = db.session.scalar(select(RolePermission).join(AccountRole).where(
        RolePermission.uuid == uuid, AccountRole.removed.is_(None)))
    if perm is None or (perm.role.role_type == RoleType.ADMIN and not caller.is_admin):
        raise NotFound("Invalid role permission id provided", field=field)
    return perm


def _lock_role(role: AccountRole) -> None:
    """Serialise rule changes of one role (the order and the unique rule check)."""
    db.session.execute(select(AccountRole.id).where(AccountRole.id == role.id).with_for_update())


def create_permission(caller: User, role: AccountRole, *, rule: str, permission: str,
                      description: str | None = None) -> RolePermission:
    _check_admin(caller)
    if role.is_default:
        raise PermissionDenied("Role permission cannot be added for Default roles")
    rule, permission = _rule(rule), _permission(permission)
    _lock_role(role)
    if db.session.scalar(select(RolePermission.id).where(RolePermission.role_id == role.id,
                                                         RolePermission.rule == rule)):
        raise PermissionDenied(f"Rule already exists for the role: {role.name}")
    last = db.session.scalar(select(func.max(RolePermission.sort_order)).where(RolePermission.role_id == role.id))
    perm = RolePermission(role_id=role.id, rule=rule, permission=permission, description=description,
                          sort_order=(last + 1) if last is not None else 0)
    db.session.add(perm)
    _bump(role)
    events.record("ROLE.PERMISSION.CREATE", f"Rule {rule} ({permission}) added to role {role.name}",
                  user=caller, resource_type="Role", resource_id=role.uuid)
    db.session.commit()
    return perm


def update_permission(caller: User, role: AccountRole, *, order: list[str] | None = None,
                      ruleid: str | None = None, permission: str | None = None) -> None:
    """updateRolePermission: a new order of all the role's rules (ruleorder), or one rule's
    permission (ruleid + permission)."""
    _check_admin(caller)
    if role.is_default:
        raise PermissionDenied("Role permission cannot be updated for Default roles")
    if (order is None) == (ruleid is None):
        raise InvalidParameter("Provide either ruleorder or ruleid and permission", field="ruleorder")
    _lock_role(role)
    if order is not None:
        rows = {p.uuid: p for p in db.session.scalars(select(RolePermission).where(RolePermission.role_id == role.id))}
        if len(order) != len(set(order)) or set(order) != set(rows):
            raise InvalidParameter("Role permissions in the new order do not match the role's permissions",
                                   field="ruleorder")
        for i, uuid in enumerate(order):
            rows[uuid].sort_order = i
        what = "reordered"
    else:
        if permission is None:
            raise InvalidParameter("Both ruleid and permission are required", field="permission")
        perm = get_permission(caller, ruleid, field="ruleid")
        if perm.role_id != role.id:
            raise NotFound("Invalid role permission id provided", field="ruleid")
        perm.permission = _permission(permission)
        what = f"rule {perm.rule} set to {perm.permission}"
    _bump(role)
    events.record("ROLE.PERMISSION.UPDATE", f"Role {role.name}: {what}", user=caller, resource_type="Role",
                  resource_id=role.uuid)
    db.session.commit()


def delete_permission(caller: User, perm: RolePermission) -> None:
    _check_admin(caller)
    role = perm.role
    if role.is_default:
        raise PermissionDenied("Role permission cannot be deleted for Default roles")
    db.session.delete(perm)
    _bump(role)
    events.record("ROLE.PERMISSION.DELETE", f"Rule {perm.rule} removed from role {role.name}", user=caller,
                  resource_type="Role", resource_id=role.uuid)
    db.session.commit()


def assignable(caller: User, uuid: str | None, field: str = "roleid") -> AccountRole | None:
    """A role an account may be given by this caller (None: not named)."""
    if not uuid:
        return None
    role = get_role(caller, uuid, field=field)
    if role.state != "enabled":
        raise InvalidParameter(f"Role {role.name} is disabled", field=field)
    return role

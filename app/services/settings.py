"""Global settings: definitions (name, type, default, validation) and values.

Definitions are code; the `settings` table holds one row per definition with the
current value (synced at bootstrap). Reads go through a short-lived per-process
cache so a dynamic setting changed by one process is seen by every other within
CACHE_SECONDS, with no restart.

Scoped values (CloudStack's ConfigKey scopes): a definition names the scopes it may be set in
(zone, cluster, storagepool, account, domain); `setting_values` holds one row per value set in
a scope. get(name, cluster=...) answers the most specific value set: cluster, then its zone,
then the global value; account, then its domain and the domain's ancestors, then global;
storage pool, then its cluster and zone. Only the scopes a definition names are consulted.
"""
from __future__ import annotations

import math
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import case, delete, select

from app.extensions import db
from app.models import Account, Cluster, Domain, Setting, SettingValue, StoragePool, Zone
from app.services.errors import InvalidParameter, NotFound
from app.services.units import duration

# CloudStack's ConfigKey.Scope values below Global, as listConfigurations answers them.
SCOPES = ("zone", "cluster", "storagepool", "account", "domain")
SCOPE_MODELS = {"zone": Zone, "cluster": Cluster, "storagepool": StoragePool, "account": Account, "domain": Domain}

CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Definition:
    name: str
    default: str
    description: str
    category: str = "Advanced"
    type: str = "string"  # string | integer | float | boolean | list
    dynamic: bool = True
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    # Where else than globally it may be set (SCOPES), most specific first.
    scopes: tuple[str, ...] = ()
    # "seconds" | "milliseconds" | "bytes" ...: how pages show the value (" 24 h", not "86400").
    unit: str | None = None
    # Extra check on the parsed value; raises InvalidParameter.
    validate: Callable[[Any], None] | None = field(default=None, compare=False)
    # Called after the value changed: on_change(old, new).
    on_change: Callable[[Any, Any], None] | None = field(default=None, compare=False)


DEFINITIONS: dict[str, Definition] = {}


def define(d: Definition) -> Definition:
    DEFINITIONS[d.name] = d
    return d


def _parse(d: Definition, raw: str | None) -> Any:
    raw = d.default if raw is None else raw
    if d.type == "integer":
        return int(raw)
    if d.type == "float":
        return float(raw)
    if d.type == "boolean":
        return str(raw).strip().lower() == "true"
    if d.type == "list":
        return [p.strip() for p in str(raw).split(",") if p.strip()]
    return raw


_cache: dict[str, Any] = {}
_scoped: dict[tuple[str, str, int], Any] = {}  # (name, scope, scope id) -> parsed value
_scoped_names: set[str] = set()  # names with a value set in some scope (others skip the lookup)
_raw: dict[tuple[str, str, int] | str, str] = {}  # the stored texts of the values above (for display)
_cache_at = 0.0


def clear_cache() -> None:
    global _cache_at
    _cache.clear()
    _scoped.clear()
    _scoped_names.clear()
    _raw.clear()
    _cache_at = 0.0


def _load() -> None:
    global _cache_at
    rows = db.session.execute(select(Setting.name, Setting.value)).all()
    values = {name: value for name, value in rows}
    _cache.clear()
    _raw.clear()
    for name, d in DEFINITIONS.items():
        raw = values.get(name)
        try:
            if raw is not None and has_control_chars(raw):
                raise ValueError(name)
            _cache[name] = _parse(d, raw)
            _raw[name] = d.default if raw is None else raw
        except ValueError:  # a hand-edited bad row: fall back to the default
            _cache[name] = _parse(d, None)
            _raw[name] = d.default
    _scoped.clear()
    _scoped_names.clear()
    for name, scope, scope_id, raw in db.session.execute(
            select(SettingValue.name, SettingValue.scope, SettingValue.scope_id, SettingValue.value)):
        d = DEFINITIONS.get(name)
        if d is None or scope not in d.scopes or has_control_chars(raw):
            continue
        try:
            _scoped[(name, scope, scope_id)] = _parse(d, raw)
            _raw[(name, scope, scope_id)] = raw
            _scoped_names.add(name)
        except ValueError:  # a hand-edited bad row: the next scope up answers
            pass
    _cache_at = time.monotonic()


def _fresh() -> None:
    if time.monotonic() - _cache_at > CACHE_SECONDS:
        _load()


def _row(model, ref):
    """A zone/cluster/... row from a row or its id (None stays None)."""
    if ref is None or isinstance(ref, model):
        return ref
    return db.session.get(model, int(ref))


def chain(*, zone=None, cluster=None, pool=None, account=None, domain=None,
          wanted: tuple[str, ...] = SCOPES) -> list[tuple[str, int]]:
    """The (scope, id) pairs a scoped read consults, most specific first. Each argument is a
    row or its id; the parents (a cluster's zone, an account's domain and its ancestors) follow,
    read only when not given and among the `wanted` scopes."""
    out: list[tuple[str, int]] = []
    if pool is not None:
        pool = _row(StoragePool, pool)
        out.append(("storagepool", pool.id))
        cluster = cluster if cluster is not None else pool.cluster_id
        zone = zone if zone is not None else pool.zone_id
    if cluster is not None:
        if zone is None and "zone" in wanted:
            cluster = _row(Cluster, cluster)
            zone = cluster.zone_id
        out.append(("cluster", getattr(cluster, "id", cluster)))
    if zone is not None:
        out.append(("zone", getattr(zone, "id", zone)))
    if account is not None:
        if domain is None and "domain" in wanted:
            account = _row(Account, account)
            domain = account.domain_id
        out.append(("account", getattr(account, "id", account)))
    domain = _row(Domain, domain)
    while domain is not None:
        out.append(("domain", domain.id))
        domain = _row(Domain, domain.parent_id) if domain.parent_id else None
    return out


def _source(d: Definition, scope: dict) -> tuple[str, str, int] | str:
    """The cache key of the value a read in `scope` answers: a scoped one, else the global name."""
    if scope and d.scopes and d.name in _scoped_names:
        for level, level_id in chain(**scope, wanted=d.scopes):
            if level in d.scopes and (d.name, level, level_id) in _scoped:
                return d.name, level, level_id
    return d.name


def get(name: str, **scope) -> Any:
    """The parsed value of a setting (raises KeyError for an undefined name). With zone=,
    cluster=, pool=, account= or domain= (a row or its id): the value in the most specific of
    those scopes (and their parents) the setting may be set in, else the global value."""
    d = DEFINITIONS[name]
    _fresh()
    if name not in _cache:
        _load()
    key = _source(d, scope)
    if key != name:
        return _scoped[key]
    return _cache.get(name, _parse(d, None))


def get_text(name: str, **scope) -> str:
    """The stored text of the value get() answers (as an admin wrote it: "4", not 4.0)."""
    d = DEFINITIONS[name]
    _fresh()
    if name not in _cache:
        _load()
    return _raw.get(_source(d, scope), d.default)


def scoped_values(name: str, scope: str) -> dict[int, Any]:
    """{scope id: value} of the values set for `name` in one scope (for SQL over many rows)."""
    _fresh()
    if name not in _cache:
        _load()
    return {sid: v for (n, s, sid), v in _scoped.items() if n == name and s == scope}


def sql_snapshot(name: str) -> tuple:
    """What sql_value builds its expression from, hashable (a key for statements built once): the
    global value, then the zone's and the cluster's scoped values as sorted (id, value) pairs."""
    d = DEFINITIONS[name]
    return (get(name),) + tuple(tuple(sorted(scoped_values(name, s).items())) if s in d.scopes else ()
                                for s in ("zone", "cluster"))


def sql_value(name: str, *, cluster_col=None, zone_col=None, snapshot: tuple | None = None):
    """A SQL expression of a numeric setting's value per row: the row's cluster's value, else its
    zone's, else the global value (a CASE over the few scoped values set; the plain value when none).
    snapshot: sql_snapshot(name) taken before (the values the expression is built from)."""
    value, zone_values, cluster_values = snapshot if snapshot is not None else sql_snapshot(name)
    for values, col in ((zone_values, zone_col), (cluster_values, cluster_col)):
        if col is not None and values:
            value = case(dict(values), value=col, else_=value)
    return value


# Strict literals: Python's int()/float() also take "1_000", "nan", "inf" and non-ASCII
# digits, none of which CloudStack (Java's parseInt/parseFloat) or an admin means.
_INTEGER = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")


def has_control_chars(value: str) -> bool:
    """CR, LF, NUL, tabs and other control or line-separator characters (never in a setting:
    values end up in files such as .rdp, in headers and in logs, one per line)."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)


def validate(name: str, value: str, *, extra: bool = True) -> Any:
    """The parsed value, or InvalidParameter (431) with CloudStack's words for a bad one.
    extra=False skips the definition's own check (hooks storing a dependent value)."""
    d = DEFINITIONS.get(name)
    if d is None:
        raise InvalidParameter(f"Unknown configuration setting: {name}", field="name")
    value = "" if value is None else str(value)
    if has_control_chars(value):
        raise InvalidParameter(f"The value of {name} may not contain control characters or line breaks",
                               field="value")
    value = value.strip()
    if d.type == "integer" and not _INTEGER.match(value):
        raise InvalidParameter(f"There was an error trying to parse the integer value for: {name}", field="value")
    if d.type == "float" and not _FLOAT.match(value):
        raise InvalidParameter(f"There was an error trying to parse the float value for: {name}", field="value")
    if d.type == "boolean" and value.lower() not in ("true", "false"):
        raise InvalidParameter(f"Please enter either 'true' or 'false' for {name}", field="value")
    try:
        parsed = _parse(d, value)
    except ValueError:
        raise InvalidParameter(f"{name} must be of type {d.type}", field="value") from None
    if d.type == "float" and not math.isfinite(parsed):
        raise InvalidParameter(f"There was an error trying to parse the float value for: {name}", field="value")
    if (d.min is not None and parsed < d.min) or (d.max is not None and parsed > d.max):
        kind = "an integer" if d.type == "integer" else "a number"
        raise InvalidParameter(f"The provided value is not valid for {name}. Please enter {kind} in the range: "
                               f"[{_bound(d.min)}-{_bound(d.max)}]", field="value")
    if d.choices and parsed not in d.choices:
        raise InvalidParameter(f"{name} must be one of: {', '.join(d.choices)}", field="value")
    if extra and d.validate:
        d.validate(parsed)
    return parsed


def _bound(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


def _normal(d: Definition, value: str) -> str:
    """The text stored for a valid value (booleans as CloudStack writes them)."""
    value = value.strip()
    return value.lower() if d.type == "boolean" else value


@dataclass
class ScopedSetting:
    """A setting as seen in one scope (what listConfigurations answers with a scope id)."""
    name: str
    value: str | None
    default: str | None
    category: str
    description: str
    is_dynamic: bool
    scope: str
    scope_id: int
    is_set: bool  # a value is set in this scope itself (else it is inherited)


def scope_of(scope: str | None, target) -> tuple[str, int] | None:
    """(scope, id) for a zone/cluster/... row, or None for the global scope."""
    if scope is None or scope == "global":
        return None
    if scope not in SCOPE_MODELS:
        raise InvalidParameter(f"Invalid scope: {scope}", field="scope")
    return scope, target.id if hasattr(target, "id") else int(target)


# CloudStack's parameter of each scope (updateConfiguration, listConfigurations, resetConfiguration).
SCOPE_PARAMS = {"zoneid": "zone", "clusterid": "cluster", "storageid": "storagepool", "accountid": "account",
                "domainid": "domain"}
_SCOPE_WORDS = {"zone": "zone", "cluster": "cluster", "storagepool": "storage pool", "account": "account",
                "domain": "domain"}


def find_target(params: dict) -> tuple[str | None, Any]:
    """(scope, row) named by the scope id among params (zoneid, clusterid, ...), or (None, None).
    More than one: CloudStack's error."""
    given = [(param, scope) for param, scope in SCOPE_PARAMS.items() if params.get(param)]
    if len(given) > 1:
        raise InvalidParameter("cannot handle multiple IDs, provide only one ID corresponding to the scope")
    if not given:
        return None, None
    param, scope = given[0]
    model = SCOPE_MODELS[scope]
    row = db.session.scalar(select(model).where(model.uuid == params[param], model.removed.is_(None)))
    if row is None:
        raise NotFound(f"Unable to find {_SCOPE_WORDS[scope]} with the specified id", field=param)
    return scope, row


def _check_scope(d: Definition | None, name: str, scope: str) -> Definition:
    if d is None:
        validate(name, "")  # the unknown-name error
    if scope not in d.scopes:
        raise InvalidParameter(f"Invalid scope id provided for the parameter {name}", field="name")
    return d


_CS_TYPES = {"integer": "Number", "float": "Decimal", "boolean": "Boolean", "string": "String", "list": "CSV"}


def cs_type(d: Definition) -> str:
    """CloudStack's name of the value's type (ConfigurationResponse.type, 4.18+)."""
    return "Select" if d.choices else _CS_TYPES.get(d.type, "String")


def forget(scope: str, scope_ids) -> None:
    """The values set for zones, clusters, pools, accounts or domains that are being removed
    (CloudStack drops their *_details rows with them): in the caller's transaction."""
    ids = [scope_ids] if isinstance(scope_ids, int) else list(scope_ids)
    if ids:
        db.session.execute(delete(SettingValue).where(SettingValue.scope == scope, SettingValue.scope_id.in_(ids))
                           .execution_options(synchronize_session=False))
        clear_cache()


def in_scope(name: str, scope: str, scope_id: int) -> ScopedSetting:
    d = DEFINITIONS[name]
    _fresh()
    row = db.session.scalar(select(SettingValue).where(
        SettingValue.name == name, SettingValue.scope == scope, SettingValue.scope_id == scope_id))
    kw = {"pool" if scope == "storagepool" else scope: scope_id}
    value = row.value if row is not None else get_text(name, **kw)
    return ScopedSetting(name=name, value=value, default=d.default, category=d.category,
                         description=d.description, is_dynamic=d.dynamic, scope=scope, scope_id=scope_id,
                         is_set=row is not None)


def _audit(caller, name: str, where: tuple[str, int] | None, target, what: str) -> None:
    """CloudStack's CONFIGURATION.VALUE.EDIT event (without the value: some are secrets)."""
    if caller is None:
        return
    from app.services import events
    place = f" for {where[0]} {getattr(target, 'name', where[1])}" if where else ""
    events.record("CONFIGURATION.VALUE.EDIT", f"Setting {name}{place} {what}", user=caller,
                  resource_type="Configuration", resource_id=name)


def update(name: str, value: str, *, scope: str | None = None, target=None,
           caller=None) -> Setting | ScopedSetting:
    """Validate and store a new value; runs the definition's on_change hook in the
    same transaction so dependent settings never disagree. With scope (zone, cluster, ...) and
    target (that row or its id): the value in that scope only (no hooks: they follow globals).
    With caller: an event names who changed it."""
    value = "" if value is None else str(value)
    where = scope_of(scope, target)
    if where is not None:
        d = _check_scope(DEFINITIONS.get(name), name, where[0])
        validate(name, value)
        row = db.session.scalar(select(SettingValue).where(
            SettingValue.name == name, SettingValue.scope == where[0], SettingValue.scope_id == where[1]))
        if row is None:
            row = SettingValue(name=name, scope=where[0], scope_id=where[1], value="")
            db.session.add(row)
        row.value = _normal(d, value)
        _audit(caller, name, where, target, "changed")
        db.session.commit()
        clear_cache()
        return in_scope(name, *where)
    parsed = validate(name, value)
    d = DEFINITIONS[name]
    value = _normal(d, value)
    old = get(name)
    row = db.session.get(Setting, name) or _row_for(d)
    row.value = value
    db.session.add(row)
    if d.on_change and old != parsed:
        d.on_change(old, parsed)
    _audit(caller, name, None, None, "changed")
    db.session.commit()
    clear_cache()
    return row


def reset(name: str, *, scope: str | None = None, target=None, caller=None) -> Setting | ScopedSetting:
    """CloudStack's resetConfiguration: the setting back to its default, through update() so the
    default is checked and dependent settings follow as for any change. In a scope: the scope's
    own value goes, and the value inherited from the scope above (or the global one) applies."""
    d = DEFINITIONS.get(name)
    if d is None:
        validate(name, "")  # the unknown-name error, worded as for updateConfiguration
    where = scope_of(scope, target)
    if where is not None:
        _check_scope(d, name, where[0])
        db.session.execute(delete(SettingValue).where(
            SettingValue.name == name, SettingValue.scope == where[0], SettingValue.scope_id == where[1]))
        _audit(caller, name, where, target, "reset")
        db.session.commit()
        clear_cache()
        return in_scope(name, *where)
    return update(name, d.default, caller=caller)


def set_raw(name: str, value: str) -> None:
    """Store a value without hooks (used by on_change hooks for dependent settings).
    The value is still checked: no write path skips the definition's type and range."""
    validate(name, value, extra=False)
    value = _normal(DEFINITIONS[name], str(value))
    row = db.session.get(Setting, name) or _row_for(DEFINITIONS[name])
    row.value = value
    db.session.add(row)
    _cache.pop(name, None)
    _raw.pop(name, None)


def _row_for(d: Definition) -> Setting:
    return Setting(name=d.name, value=d.default, default=d.default, category=d.category,
                   description=d.description, is_dynamic=d.dynamic, scope=_scope_name(d))


def _scope_name(d: Definition) -> str:
    """The scope listConfigurations names for a setting: its most specific one, else global."""
    return d.scopes[0] if d.scopes else "global"


def sync_definitions() -> None:
    """Create rows for new definitions and refresh their metadata (bootstrap)."""
    existing = {s.name: s for s in db.session.scalars(select(Setting))}
    for d in DEFINITIONS.values():
        row = existing.get(d.name)
        if row is None:
            db.session.add(_row_for(d))
        else:
            row.default, row.category = d.default, d.category
            row.description, row.is_dynamic, row.scope = d.description, d.dynamic, _scope_name(d)
    db.session.commit()
    clear_cache()


def list_settings(name: str | None = None, category: str | None = None,
                  keyword: str | None = None, *, scope: str | None = None,
                  target=None) -> list[Setting] | list[ScopedSetting]:
    """Global settings, or with scope and target the settings that may be set in that scope,
    each with its value there (its own, else inherited)."""
    q = select(Setting).order_by(Setting.name)
    if name:
        q = q.where(Setting.name == name)
    if category:
        q = q.where(Setting.category == category)
    if keyword:
        q = q.where(Setting.name.contains(keyword, autoescape=True))
    rows = [s for s in db.session.scalars(q) if s.name in DEFINITIONS]
    where = scope_of(scope, target)
    if where is None:
        return rows
    return [in_scope(s.name, *where) for s in rows if where[0] in DEFINITIONS[s.name].scopes]


# --- Definitions used across the product -------------------------------------
# Later areas add theirs next to the code that reads them, through define().

define(Definition("login.throttle.attempts", "3", "Failed logins allowed before each further "
                  "attempt must wait (the wait doubles per failure, up to login.throttle.max.wait).",
                  category="Security", type="integer", min=1, max=100))
define(Definition("login.throttle.max.wait", "300", "Longest wait in seconds between login "
                  "attempts for a user with repeated failures.", category="Security",
                  type="integer", min=1, max=86400, unit="seconds"))


# --- For the settings pages ------------------------------------------------------

_UNIT_SECONDS = {"milliseconds": 0.001, "seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


def readable(name: str, value: str | None) -> str | None:
    """A duration setting's value as people read it ("24 h" for 86400 seconds), else None.
    A value the description gives a meaning (0: never; 0 or less keeps; -1 infinite) says it."""
    d = DEFINITIONS.get(name)
    if d is None or d.unit not in _UNIT_SECONDS or value is None:
        return None
    try:
        amount = float(value)
    except ValueError:
        return None
    text = d.description.lower()
    if amount <= 0 and "0 or less" in text:
        return "kept forever" if "keep" in text else "off"
    if amount == 0 and "0: never" in text:
        return "never"
    if amount < 0:
        return "no limit" if ("infinite" in text or "-1" in text) else None
    return duration(amount * _UNIT_SECONDS[d.unit])


def categories() -> list[str]:
    return sorted({d.category for d in DEFINITIONS.values()})


def search(q: str | None = None, category: str | None = None) -> list[Setting]:
    """The settings page's list: name or description containing q (any case), in a category."""
    needle = (q or "").strip().lower()
    return [s for s in list_settings(category=category or None)
            if not needle or needle in s.name.lower() or needle in (s.description or "").lower()]

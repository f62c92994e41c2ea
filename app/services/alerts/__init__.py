"""Alerts, as CloudStack's AlertManager keeps them: what an operator must look at.

    alerts.raise_alert(alerts.HOST, "Host h1 is Down ...", zone_id=.., pod_id=.., cluster_id=..,
                       resource=("Host", host.uuid))     # None when that condition is open already
    alerts.clear(alerts.HOST, resource=("Host", host.uuid))   # the condition is over

One open alert per condition (type, zone, pod, cluster and the resource it is about): the
same condition seen again every sweep raises nothing until it clears or an admin archives
the open alert (as CloudStack's getLastAlert skips an alert it has sent already). The
open alert's `open_key` is unique, so two processes cannot both open it.

An alert raised is delivered after its transaction commits (app/services/alerts/delivery.py:
e-mail and a webhook, from a thread, never blocking the caller).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time as dtime, timedelta, timezone

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Alert, utcnow
from app.services.errors import InvalidParameter, ServiceError
from app.services.pagination import page_of

log = logging.getLogger("nubo.alerts")


@dataclass(frozen=True)
class AlertType:
    id: int
    name: str


# AlertService.AlertType, in CloudStack's order (ids from com.cloud.capacity.Capacity for the
# capacity ones; CloudStack gives ids 10 and 32 to several names, and so does listAlertTypes).
ALERT_TYPES: tuple[AlertType, ...] = (
    AlertType(0, "ALERT.MEMORY"), AlertType(1, "ALERT.CPU"), AlertType(2, "ALERT.STORAGE"),
    AlertType(3, "ALERT.STORAGE.ALLOCATED"), AlertType(4, "ALERT.NETWORK.PUBLICIP"),
    AlertType(10, "ALERT.NETWORK.IPV6SUBNET"), AlertType(5, "ALERT.NETWORK.PRIVATEIP"),
    AlertType(6, "ALERT.STORAGE.SECONDARY"), AlertType(7, "ALERT.COMPUTE.HOST"), AlertType(8, "ALERT.USERVM"),
    AlertType(9, "ALERT.SERVICE.DOMAINROUTER"), AlertType(10, "ALERT.SERVICE.CONSOLEPROXY"),
    AlertType(11, "ALERT.NETWORK.ROUTING"), AlertType(12, "ALERT.STORAGE.MISC"), AlertType(13, "ALERT.USAGE"),
    AlertType(14, "ALERT.MANAGEMENT"), AlertType(15, "ALERT.NETWORK.DOMAINROUTERMIGRATE"),
    AlertType(16, "ALERT.SERVICE.CONSOLEPROXYMIGRATE"), AlertType(17, "ALERT.USERVM.MIGRATE"),
    AlertType(18, "ALERT.NETWORK.VLAN"), AlertType(19, "ALERT.SERVICE.SSVM"), AlertType(20, "ALERT.USAGE.RESULT"),
    AlertType(21, "ALERT.STORAGE.DELETE"), AlertType(22, "ALERT.RESOURCE.COUNT"),
    AlertType(23, "ALERT.USAGE.SANITY"), AlertType(24, "ALERT.NETWORK.DIRECTPUBLICIP"),
    AlertType(25, "ALERT.STORAGE.LOCAL"), AlertType(26, "ALERT.RESOURCE.EXCEED"), AlertType(27, "ALERT.TYPE.SYNC"),
    AlertType(28, "ALERT.UPLOAD.FAILED"), AlertType(29, "ALERT.OOBM.AUTHERROR"), AlertType(30, "ALERT.HA.ACTION"),
    AlertType(31, "ALERT.CA.CERT"), AlertType(32, "ALERT.VM.SNAPSHOT"), AlertType(32, "ALERT.VM.START"),
    AlertType(32, "ALERT.VM.STOP"), AlertType(32, "ALERT.VM.REBOOT"), AlertType(32, "ALERT.VM.FORCESTOP"),
    AlertType(32, "ALERT.VR.PUBLIC.IFACE.MTU"), AlertType(32, "ALERT.VR.PRIVATE.IFACE.MTU"),
    # Nubo's own (CloudStack's AlertType.generateAlert allows types beyond its defaults):
    AlertType(100, "ALERT.ASYNC.JOB"),  # async jobs of one command failing
)
_BY_NAME = {t.name: t for t in ALERT_TYPES}
MEMORY, CPU, STORAGE_ALLOCATED = _BY_NAME["ALERT.MEMORY"], _BY_NAME["ALERT.CPU"], _BY_NAME["ALERT.STORAGE.ALLOCATED"]
SECONDARY_STORAGE, HOST = _BY_NAME["ALERT.STORAGE.SECONDARY"], _BY_NAME["ALERT.COMPUTE.HOST"]
DOMAIN_ROUTER, STORAGE_MISC = _BY_NAME["ALERT.SERVICE.DOMAINROUTER"], _BY_NAME["ALERT.STORAGE.MISC"]
ASYNC_JOB = _BY_NAME["ALERT.ASYNC.JOB"]
USERVM = _BY_NAME["ALERT.USERVM"]  # a user VM's HA restart (or its failure), as CloudStack sends it


def type_name(type_id: int) -> str:
    """The first name CloudStack gives an id (32 has several)."""
    return next((t.name for t in ALERT_TYPES if t.id == type_id), str(type_id))


def _open_key(type_: AlertType, zone_id, pod_id, cluster_id, resource) -> str:
    rtype, rid = resource or (None, None)
    return f"{type_.id}|{zone_id or ''}|{pod_id or ''}|{cluster_id or ''}|{rtype or ''}|{rid or ''}"[:512]


_PENDING = "nubo_alerts_to_deliver"  # session.info: alert ids raised in the current transaction


def raise_alert(type_: AlertType, subject: str, *, content: str | None = None, zone_id: int | None = None,
                pod_id: int | None = None, cluster_id: int | None = None,
                resource: tuple[str, str] | None = None) -> Alert | None:
    """Open an alert for this condition unless one is open already (then None). Added in a
    savepoint of the caller's transaction; delivered once that transaction commits."""
    key = _open_key(type_, zone_id, pod_id, cluster_id, resource)
    if db.session.scalar(select(Alert.id).where(Alert.open_key == key)) is not None:
        return None
    alert = Alert(alert_type=type_.id, name=type_.name, subject=subject[:999], content=content, zone_id=zone_id,
                  pod_id=pod_id, cluster_id=cluster_id, resource_type=resource[0] if resource else None,
                  resource_id=resource[1] if resource else None, open_key=key)
    try:
        with db.session.begin_nested():
            db.session.add(alert)
    except IntegrityError:  # another process opened it meanwhile
        return None
    log.warning("alert %s: %s", type_.name, subject)
    db.session.info.setdefault(_PENDING, []).append(alert.id)
    return alert


def clear(type_: AlertType, *, zone_id: int | None = None, pod_id: int | None = None,
          cluster_id: int | None = None, resource: tuple[str, str] | None = None) -> bool:
    """The condition is over: its open alert (if any) is resolved (it stays listed until archived)."""
    key = _open_key(type_, zone_id, pod_id, cluster_id, resource)
    done = db.session.execute(update(Alert).where(Alert.open_key == key).values(
        resolved=utcnow(), open_key=None).execution_options(synchronize_session=False))
    return done.rowcount > 0


def is_open(type_: AlertType, *, zone_id: int | None = None, pod_id: int | None = None,
            cluster_id: int | None = None, resource: tuple[str, str] | None = None) -> bool:
    """Whether that condition has an open alert (one indexed SELECT)."""
    key = _open_key(type_, zone_id, pod_id, cluster_id, resource)
    return db.session.scalar(select(Alert.id).where(Alert.open_key == key).limit(1)) is not None


def open_keys(type_ids: list[int]) -> set[str]:
    """The open alerts' keys of these types: one query (a sweep's checks compare against it)."""
    return set(db.session.scalars(select(Alert.open_key).where(Alert.alert_type.in_(type_ids),
                                                               Alert.open_key.is_not(None))))


def key_of(type_: AlertType, *, zone_id=None, pod_id=None, cluster_id=None, resource=None) -> str:
    return _open_key(type_, zone_id, pod_id, cluster_id, resource)


# --- The API's and the portal's reads and changes ---------------------------------------------

def get(uuid: str) -> Alert:
    alert = db.session.scalar(select(Alert).where(Alert.uuid == uuid))
    if alert is None:
        raise InvalidParameter(f"Unable to find alert with id {uuid}", field="id")
    return alert


def list_alerts(*, id: str | None = None, type: str | None = None, name: str | None = None,
                keyword: str | None = None, archived: bool | None = False, page=None) -> tuple[list[Alert], int]:
    """listAlerts: the alerts not archived (archived=True: the archived ones; None: all), newest first."""
    q = select(Alert).order_by(Alert.id.desc())
    if archived is not None:
        q = q.where(Alert.archived.is_(archived))
    if id:
        q = q.where(Alert.uuid == id)
    if type not in (None, ""):
        q = q.where(Alert.alert_type == _type_id(type))
    if name:
        q = q.where(Alert.name == name)
    if keyword:
        q = q.where(Alert.subject.contains(keyword, autoescape=True))
    return page_of(q, page)


def open_count() -> int:
    """Alerts needing attention: not archived and not cleared (the navigation's badge)."""
    return db.session.scalar(select(func.count()).select_from(Alert).where(Alert.open_key.is_not(None))) or 0


def _type_id(value) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        t = _BY_NAME.get(str(value).strip().upper())
        if t is None:
            raise InvalidParameter(f"Unknown alert type: {value}", field="type") from None
        return t.id


def _utc(value: datetime | None, *, end: bool = False) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    elif end and value.time() == dtime(0):  # a date: "including this date"
        value = value + timedelta(days=1) - timedelta(microseconds=1)
    return value


def _selection(ids, type, start, end):
    if not ids and type in (None, "") and end is None:
        raise InvalidParameter("either ids, type, startdate or enddate must be specified")
    if start is not None and end is None:
        raise InvalidParameter("enddate must be specified with startdate parameter", field="enddate")
    where = []
    if ids:
        where.append(Alert.uuid.in_(list(ids)))
    if type not in (None, ""):
        where.append(Alert.alert_type == _type_id(type))
    if start is not None:
        where.append(Alert.created >= _utc(start))
    if end is not None:
        where.append(Alert.created <= _utc(end, end=True))
    return where


class NothingMatched(ServiceError):
    """CloudStack's answer when archiveAlerts/deleteAlerts found nothing to act on."""


def archive(user, *, ids=None, type=None, start=None, end=None) -> int:
    """archiveAlerts: the alerts chosen leave listAlerts (and an open one stops holding its condition)."""
    where = _selection(ids, type, start, end)
    return _apply(user, "archive", update(Alert).where(Alert.archived.is_(False), *where)
                  .values(archived=True, open_key=None))


def delete_alerts(user, *, ids=None, type=None, start=None, end=None) -> int:
    """deleteAlerts: the alerts chosen are gone (archived or not)."""
    return _apply(user, "delete", delete(Alert).where(*_selection(ids, type, start, end)))


def _apply(user, verb: str, stmt) -> int:
    from app.services import events
    done = db.session.execute(stmt.execution_options(synchronize_session=False)).rowcount
    if not done:
        db.session.rollback()
        raise NothingMatched(f"Unable to {verb} Alerts, one or more parameters has invalid values")
    events.record(f"ALERT.{verb.upper()}", f"{done} alert(s) {verb}d", user=user)
    db.session.commit()
    return done


from app.services.alerts import delivery, triggers  # noqa: E402,F401  (settings, commit hook, job hook)

"""Sending an alert out: by e-mail (CloudStack's alert.smtp.* / alert.email.* settings) and to
a webhook (a JSON POST through app/net/outbound.py, SSRF-checked like a template URL).

Delivery never blocks or fails whoever raised the alert (the monitor's sweep, a job): the ids
raised in a transaction are handed to a small thread pool once it commits; each send has its
own timeouts; the outcome is written on the alert (sent_count, last_sent, delivery_error) and
a failure is also an ALERT.DELIVERY event.
"""
from __future__ import annotations

import json
import logging
import smtplib
from concurrent.futures import Future, ThreadPoolExecutor
from email.message import EmailMessage

from flask import current_app, has_app_context
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import Alert, cs_date, utcnow
from app.services import settings
from app.services.settings import Definition, define

log = logging.getLogger("nubo.alerts")

define(Definition("alert.smtp.host", "", "SMTP hostname used for sending out email alerts (empty: alerts are "
                  "not sent by email).", category="Alert"))
define(Definition("alert.smtp.port", "25", "Port the SMTP server is listening on (plain SMTP, or STARTTLS with "
                  "alert.smtp.useStartTLS; no authentication).", category="Alert", type="integer", min=1,
                  max=65535))
define(Definition("alert.smtp.useStartTLS", "false", "If set to true and if we enable security via "
                  "alert.smtp.useAuth, this will enable StartTLS to secure the connection.", category="Alert",
                  type="boolean"))
define(Definition("alert.smtp.timeout", "30000", "Socket I/O timeout value in milliseconds. -1 for infinite "
                  "timeout.", category="Alert", type="integer", min=100, max=600000, unit="milliseconds"))
define(Definition("alert.email.sender", "nubo@localhost", "Sender of alert email (will be in the From header "
                  "of the email).", category="Alert"))
define(Definition("alert.email.addresses", "", "Comma separated list of email addresses which are going to "
                  "receive alert emails.", category="Alert", type="list"))
define(Definition("alert.webhook.url", "", "Nubo: an http(s) URL every new alert is POSTed to as JSON (empty: "
                  "none). Checked like a template URL: an internal address only within "
                  "alert.webhook.allowed.internal.sites.", category="Alert"))
define(Definition("alert.webhook.allowed.internal.sites", "", "Nubo: internal networks (comma-separated CIDRs) "
                  "the alert webhook may be on.", category="Alert", type="list"))
define(Definition("alert.webhook.timeout", "10", "Nubo: seconds the alert webhook may take to answer.",
                  category="Alert", type="integer", min=1, max=300, unit="seconds"))

_PENDING = "nubo_alerts_to_deliver"  # as in app/services/alerts/__init__.py
_pool: ThreadPoolExecutor | None = None
futures: list[Future] = []  # the last sends (tests wait on them)


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alert-delivery")
    return _pool


@event.listens_for(Session, "after_commit")
def _after_commit(session):
    ids = session.info.pop(_PENDING, None)
    if ids and has_app_context():  # (no SQL here: whether anything is configured, the thread sees)
        app = current_app._get_current_object()
        del futures[:-50]
        futures.extend(_executor().submit(_deliver_in, app, alert_id) for alert_id in ids)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session, previous_transaction):
    if previous_transaction.parent is None:  # the whole transaction, not a savepoint
        session.info.pop(_PENDING, None)


def _configured() -> bool:
    return bool(settings.get("alert.smtp.host") and settings.get("alert.email.addresses")) \
        or bool(settings.get("alert.webhook.url"))


def _deliver_in(app, alert_id: int) -> None:
    with app.app_context():
        try:
            deliver(alert_id)
        except Exception:  # noqa: BLE001 - never lost silently, never raised into anyone
            log.exception("delivering alert %s failed", alert_id)
            db.session.rollback()
        finally:
            db.session.remove()


def payload(alert: Alert) -> dict:
    return {"id": alert.uuid, "type": alert.alert_type, "name": alert.name, "description": alert.subject,
            "content": alert.content, "created": cs_date(alert.created),
            "zoneid": alert.zone.uuid if alert.zone else None, "podid": alert.pod.uuid if alert.pod else None,
            "clusterid": alert.cluster.uuid if alert.cluster else None,
            "resourcetype": alert.resource_type, "resourceid": alert.resource_id}


def deliver(alert_id: int) -> list[str]:
    """Send one alert by every way configured; returns the errors (also recorded on the alert)."""
    from app.services import events
    if not _configured():
        return []
    alert = db.session.get(Alert, alert_id)
    if alert is None:
        return []
    body = payload(alert)
    db.session.commit()  # no transaction held while a server answers
    errors, sent = [], 0
    if settings.get("alert.smtp.host") and settings.get("alert.email.addresses"):
        try:
            send_email(body)
            sent += 1
        except (OSError, smtplib.SMTPException) as e:
            errors.append(f"e-mail: {e}")
    if settings.get("alert.webhook.url"):
        try:
            post_webhook(body)
            sent += 1
        except Exception as e:  # noqa: BLE001 - FetchError or anything the connection raised
            errors.append(f"webhook: {getattr(e, 'message', e)}")
    values: dict = {"delivery_error": "; ".join(errors)[:1024] or None}
    if sent:
        values.update(sent_count=Alert.sent_count + 1, last_sent=utcnow())
    db.session.execute(update(Alert).where(Alert.id == alert_id).values(**values))
    if errors:
        events.record("ALERT.DELIVERY", f"Alert {body['name']} ({body['description'][:200]}) could not be "
                      f"delivered: {'; '.join(errors)}"[:4000], level="WARN", resource_type="Alert",
                      resource_id=body["id"])
    db.session.commit()
    return errors


def send_email(body: dict) -> None:
    msg = EmailMessage()
    msg["From"] = settings.get("alert.email.sender")
    msg["To"] = ", ".join(settings.get("alert.email.addresses"))
    msg["Subject"] = body["description"]
    msg.set_content(f"{body['description']}\n\n{body['content'] or ''}\n\nAlert {body['name']} "
                    f"(type {body['type']}, id {body['id']}), raised {body['created']}\n")
    timeout = settings.get("alert.smtp.timeout") / 1000
    with smtplib.SMTP(settings.get("alert.smtp.host"), settings.get("alert.smtp.port"), timeout=timeout) as smtp:
        if settings.get("alert.smtp.useStartTLS"):
            smtp.starttls()
        smtp.send_message(msg)


def post_webhook(body: dict) -> None:
    from app.net.outbound import FetchPolicy, open_url, parse_networks
    timeout = settings.get("alert.webhook.timeout")
    policy = FetchPolicy(allowed_sites=parse_networks(settings.get("alert.webhook.allowed.internal.sites")),
                         max_bytes=1 << 20, deadline=timeout, window=timeout, connect_timeout=min(timeout, 10),
                         max_redirects=0, user_agent="Nubo alerts")
    data = json.dumps({"alert": body}).encode()
    download = open_url(settings.get("alert.webhook.url"), policy, method="POST", body=data,
                        content_type="application/json")
    for _ in download:  # read (bounded) and close
        pass

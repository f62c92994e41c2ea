"""listAlerts, archiveAlerts, deleteAlerts, listAlertTypes (CloudStack's admin resource commands)."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.api.serializers import serializer
from app.services import alerts


@serializer("alert")
def alert_dict(a) -> dict:
    # AlertResponse: id, type, name, description (the subject), sent (last sent)
    return {"id": a.uuid, "type": a.alert_type, "name": a.name, "description": a.subject, "sent": a.last_sent}


@command("listAlerts", "Lists all alerts.", role=ADMIN, response="alert", list=True, params=[
    Param("type", "string", "List by alert type"), Param("name", "string", "List by alert name")])
def list_alerts(ctx, p):
    return alerts.list_alerts(id=p.get("id"), type=p.get("type"), name=p.get("name"), keyword=p.get("keyword"),
                              page=ctx.page)


SELECTION = [
    Param("ids", "list", "the IDs of the alerts", item_type="uuid"),
    Param("enddate", "date", "end date range (including) this date (use format \"yyyy-MM-dd\" or the new format "
          "\"yyyy-MM-ddThh:mm:ss\")"),
    Param("startdate", "date", "start date range (including) this date (use format \"yyyy-MM-dd\" or the new "
          "format \"yyyy-MM-ddThh:mm:ss\")"),
    Param("type", "string", "the alert type")]


@command("archiveAlerts", "Archive one or more alerts.", role=ADMIN, params=SELECTION)
def archive_alerts(ctx, p):
    alerts.archive(ctx.user, ids=p.get("ids"), type=p.get("type"), start=p.get("startdate"), end=p.get("enddate"))
    return {"success": True}


@command("deleteAlerts", "Delete one or more alerts.", role=ADMIN, params=SELECTION)
def delete_alerts(ctx, p):
    alerts.delete_alerts(ctx.user, ids=p.get("ids"), type=p.get("type"), start=p.get("startdate"),
                         end=p.get("enddate"))
    return {"success": True}


@command("listAlertTypes", "Lists all alerts types", role=ADMIN, response="alerttype", list=True)
def list_alert_types(ctx, p):
    rows = [{"alerttypeid": t.id, "name": t.name} for t in alerts.ALERT_TYPES]
    return rows, len(rows)

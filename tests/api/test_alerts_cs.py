"""Alerts with the real `cs` client against a live server: listAlerts (by type, by name),
archiveAlerts and deleteAlerts with CloudStack's parameters and errors, listAlertTypes; a user
may call none of them."""
from __future__ import annotations

import pytest
from cs import CloudStackApiException

pytestmark = pytest.mark.xdist_group("live-api")


def err(call) -> dict:
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def test_alerts_with_cs(live):
    with live.flask_app.app_context():
        from app.extensions import db
        from app.services import alerts
        down = alerts.raise_alert(alerts.HOST, "Host is Down, name: h1", resource=("Host", "h1")).uuid
        cpu = alerts.raise_alert(alerts.CPU, "System Alert: Low Available CPU in cluster c").uuid
        db.session.commit()
    api = live.client()
    listed = api.listAlerts()
    assert listed["count"] == 2
    assert listed["alert"][0] == {"id": cpu, "type": 1, "name": "ALERT.CPU",
                                  "description": "System Alert: Low Available CPU in cluster c"}
    assert [a["id"] for a in api.listAlerts(type=7)["alert"]] == [down]
    assert [a["id"] for a in api.listAlerts(name="ALERT.CPU")["alert"]] == [cpu]
    assert api.listAlerts(id=down)["alert"][0]["name"] == "ALERT.COMPUTE.HOST"

    e = err(lambda: api.archiveAlerts())
    assert e["errorcode"] == 431 and e["errortext"] == "either ids, type, startdate or enddate must be specified"
    e = err(lambda: api.archiveAlerts(type=7, startdate="2026-01-01"))
    assert e["errorcode"] == 431 and "enddate must be specified" in e["errortext"]
    assert api.archiveAlerts(ids=down)["success"] in (True, "true")
    assert [a["id"] for a in api.listAlerts()["alert"]] == [cpu]
    assert err(lambda: api.archiveAlerts(ids=down))["errorcode"] == 530  # archived already: nothing to do
    assert api.deleteAlerts(ids=f"{down},{cpu}")["success"] in (True, "true")
    assert api.listAlerts() == {}

    types = api.listAlertTypes()["alerttype"]
    assert {"alerttypeid": 7, "name": "ALERT.COMPUTE.HOST"} in types
    assert {"alerttypeid": 0, "name": "ALERT.MEMORY"} in types and {"alerttypeid": 9,
                                                                   "name": "ALERT.SERVICE.DOMAINROUTER"} in types

    user = live.client("alice")
    for call in (user.listAlerts, user.listAlertTypes, lambda: user.archiveAlerts(type=7)):
        assert err(call)["errorcode"] == 432

"""The global settings page: every setting with its facts, search and category filter (HTMX
fragment with the pushed URL), inline edit (valid: saved; invalid: 422 with the message and
nothing changed; without JavaScript: a form post and a redirect), durations as people read
them, the scoped values on a zone's, cluster's and account's Settings card, admins only."""
from __future__ import annotations

from app.models import Event
from app.extensions import db
from app.services import accounts, settings
from tests.integration.test_planner import make_zone
from sqlalchemy import select

CPU = "cpu.overprovisioning.factor"


def test_page_lists_every_setting_with_its_facts(client, auth):
    auth.login("admin")
    html = client.get("/admin/settings/").get_data(as_text=True)
    for name in settings.DEFINITIONS:
        assert f"<code>{name}</code>" in html
    assert "after restart" in html or all(d.dynamic for d in settings.DEFINITIONS.values())
    assert "= 24 h" in html  # expunge.delay's 86400 seconds
    assert "global, cluster, zone" in html  # the overprovisioning factor's scopes


def test_search_and_category(client, auth, hx):
    auth.login("admin")
    r = hx.get("/admin/settings/?q=overprovisioning")
    assert r.status_code == 200 and r.headers["HX-Push-Url"] == "/admin/settings/?q=overprovisioning"
    html = r.get_data(as_text=True)
    assert CPU in html and "expunge.delay" not in html and "<html" not in html
    html = client.get("/admin/settings/?q=recoverable").get_data(as_text=True)  # in the description
    assert "expunge.delay" in html
    html = client.get("/admin/settings/?category=Console").get_data(as_text=True)
    assert "console.token.ttl" in html and "expunge.delay" not in html


def test_inline_edit_valid_and_invalid(app, client, auth, hx):
    auth.login("admin")
    r = hx.post(f"/admin/settings/{CPU}", data={"value": "2.5", "action": "save"})
    assert r.status_code == 200 and 'value="2.5"' in r.get_data(as_text=True)
    for bad in ("abc", "0.5", "1000", "nan"):
        r = hx.post(f"/admin/settings/{CPU}", data={"value": bad, "action": "save"})
        html = r.get_data(as_text=True)
        assert r.status_code == 422 and 'role="alert"' in html and f'value="{bad}"' in html
    with app.app_context():
        settings.clear_cache()
        assert settings.get(CPU) == 2.5  # unchanged by the refusals
        ev = db.session.scalars(select(Event).where(Event.type == "CONFIGURATION.VALUE.EDIT")).all()
        assert len(ev) == 1 and ev[0].user.username == "admin"
    r = hx.post(f"/admin/settings/{CPU}", data={"action": "reset"})
    assert r.status_code == 200
    with app.app_context():
        settings.clear_cache()
        assert settings.get(CPU) == 1.0


def test_without_javascript(app, client, auth):
    auth.login("admin")
    token = auth.csrf("/admin/settings/")
    r = client.post("/admin/settings/expunge.delay", data={"value": "3600", "csrf_token": token,
                                                            "q": "expunge"})
    assert r.status_code == 302 and "/admin/settings/?q=expunge" in r.headers["Location"]
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "expunge.delay is now 3600" in html and "= 1 h" in html
    r = client.post("/admin/settings/expunge.delay", data={"value": "-1", "csrf_token": token})
    assert r.status_code == 302
    assert "range" in client.get(r.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        settings.clear_cache()
        assert settings.get("expunge.delay") == 3600
    assert client.post("/admin/settings/expunge.delay", data={"value": "5"}).status_code == 400  # no CSRF


def test_scoped_cards(app, client, auth, hx):
    with app.app_context():
        zone, hosts = make_zone(n_hosts=1)
        zone_uuid, cluster_uuid = zone.uuid, hosts[0].cluster.uuid if hasattr(hosts[0], "cluster") else None
        from app.models import Cluster
        cluster_uuid = db.session.get(Cluster, hosts[0].cluster_id).uuid
    auth.login("admin")
    html = client.get(f"/admin/settings/zone/{zone_uuid}").get_data(as_text=True)
    assert CPU in html and "storage.allocated.capacity.disablethreshold" in html
    assert "vm.allocation.algorithm" not in html
    r = hx.post(f"/admin/settings/cluster/{cluster_uuid}/{CPU}", data={"value": "3", "action": "save"})
    assert r.status_code == 200 and "Use inherited" in r.get_data(as_text=True)
    r = hx.post(f"/admin/settings/cluster/{cluster_uuid}/{CPU}", data={"value": "x", "action": "save"})
    assert r.status_code == 422
    r = hx.post(f"/admin/settings/cluster/{cluster_uuid}/vm.allocation.algorithm", data={"value": "firstfit"})
    assert r.status_code == 422 and "Invalid scope id" in r.get_data(as_text=True)
    with app.app_context():
        settings.clear_cache()
        assert settings.get(CPU, cluster=db.session.get(Cluster, hosts[0].cluster_id)) == 3.0
        assert settings.get(CPU) == 1.0
    card = hx.get(f"/admin/settings/cluster/{cluster_uuid}").get_data(as_text=True)
    assert 'id="scope-settings"' in card and "<html" not in card
    assert f"/admin/settings/cluster/{cluster_uuid}" in client.get(f"/admin/clusters/{cluster_uuid}"
                                                                   ).get_data(as_text=True)
    with app.app_context():
        alice = accounts.get_account("alice").uuid
    html = client.get(f"/admin/settings/account/{alice}").get_data(as_text=True)
    assert "allow.user.expunge.recover.vm" in html and CPU not in html
    assert client.get("/admin/settings/zone/nope").status_code == 404
    assert client.get("/admin/settings/planet/x").status_code == 404


def test_users_get_403(client, auth):
    auth.login("alice")
    assert client.get("/admin/settings/").status_code == 403
    token = auth.csrf()
    assert client.post(f"/admin/settings/{CPU}", data={"value": "9", "csrf_token": token}).status_code == 403


def test_durations_read_as_people_read_them(app):
    cases = [("expunge.delay", "86400", "24 h"), ("vm.stats.interval", "60000", "1 min"),
             ("session.timeout", "30", "30 min"), ("metrics.hourly.retention.days", "7", "7 d"),
             ("console.idle.timeout", "0", "never"), ("vm.stats.max.retention.time", "0", "kept forever"),
             ("vm.allocation.algorithm", "random", None), ("expunge.delay", "abc", None)]
    for name, value, shown in cases:
        assert settings.readable(name, value) == shown, name

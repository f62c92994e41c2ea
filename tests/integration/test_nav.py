"""The grouped sidebar (app/web/__init__.py NAV_GROUPS, nav_group, nav_groups): an entry
finds its group by itself (also one another area appends), groups keep CloudStack's order,
an admin sees the admin pages and a user only the self-service ones, the page shown is
marked, and a page the role denies has no entry."""
from __future__ import annotations

import re

import pytest

from app.web import ADMIN_NAV, NAV_GROUPS, USER_NAV, nav_group, nav_groups


@pytest.mark.parametrize("endpoint, label, group", [
    ("vms.index", "VMs", "compute"), ("infra.hosts", "Hosts", "infrastructure"),
    ("volumes.offerings", "Disk offerings", "configuration"), ("netadmin.routers_page", "Routers", "network"),
    ("netadmin.offerings_page", "Network offerings", "configuration"), ("images.index", "Templates", "images"),
    ("accounts_admin.domains_index", "Domains", "accounts"), ("admin.dashboard", "Dashboard", "dashboard"),
    # entries other areas append, unknown to the mapping: by the words of endpoint and label
    ("alerts.index", "Alerts", "events"), ("jobs.index", "Jobs", "events"),
    ("settings.index", "Global settings", "configuration"), ("offerings.compute", "Compute offerings",
                                                               "configuration"),
    ("metrics.index", "Metrics", "infrastructure"), ("infra.image_stores", "Image stores", "infrastructure"),
    ("isos.index", "ISOs", "images"), ("whatever.index", "Something new", "more"),
])
def test_an_entry_finds_its_group(endpoint, label, group):
    assert nav_group(endpoint, label) == group


def test_every_entry_of_today_has_a_named_group():
    assert [e for e, label in ADMIN_NAV + USER_NAV if nav_group(e, label) == "more"] == ["apidocs.index"]


def test_groups_keep_cloudstacks_order_and_mark_the_page():
    entries = [("jobs.index", "Jobs"), ("infra.hosts", "Hosts"), ("vms.index", "VMs"), ("infra.zones", "Zones"),
               ("vms.index", "VMs"), ("events.index", "Events")]
    groups = nav_groups(entries, "infra.hosts")
    assert [g.key for g in groups] == ["compute", "events", "infrastructure"]
    assert [g.key for g in groups] == [k for k, _ in NAV_GROUPS if k in {g.key for g in groups}]
    assert groups[0].entries == [("vms.index", "VMs")]  # once
    infra = groups[2]
    assert infra.entries == [("infra.hosts", "Hosts"), ("infra.zones", "Zones")] and infra.current == "infra.hosts"
    assert groups[0].current is None
    # A detail page marks its list's entry when its blueprint has one entry only.
    assert nav_groups(entries, "vms.detail")[0].current == "vms.index"
    host_page = nav_groups(entries, "infra.host")  # two infra entries: none marked, their group open
    assert all(g.current is None for g in host_page)
    assert [g.key for g in host_page if g.open] == ["infrastructure"]


def _nav(html: str) -> str:
    return html.split('<nav class="mainnav"')[1].split("</nav>")[0]


def test_admin_and_user_see_their_own_sidebar(client, auth):
    auth.login("admin")
    nav = _nav(client.get("/admin/hosts").get_data(as_text=True))
    for heading in ("Compute", "Storage", "Network", "Accounts", "Infrastructure", "Configuration"):
        assert f"<summary>{heading}</summary>" in nav, heading
    assert re.search(r'<details class="nav-group" open>\s*<summary>Infrastructure</summary>', nav)
    assert 'href="/admin/hosts" aria-current="page"' in nav
    assert nav.count('aria-current=') == 1
    assert 'href="/portal/"' in nav  # an admin's own VMs too
    assert 'id="project-switch"' in nav or 'href="/projects/"' in nav
    auth.logout()

    auth.login("alice")
    nav = _nav(client.get("/portal/").get_data(as_text=True))
    assert "Infrastructure" not in nav and "Configuration" not in nav
    assert 'href="/admin/' not in nav and 'href="/vms/"' not in nav
    assert 'href="/portal/" aria-current="page"' in nav and 'href="/volumes/"' in nav
    assert client.get("/admin/hosts").status_code == 403


def test_the_page_has_a_skip_link_a_main_landmark_and_a_favicon(client, auth):
    auth.login("alice")
    html = client.get("/portal/").get_data(as_text=True)
    assert '<a class="skip-link" href="#main">' in html and '<main class="content" id="main"' in html
    assert 'rel="icon" href="/static/favicon.svg"' in html
    assert client.get("/static/favicon.svg").status_code == 200
    # The Menu button of phones: a <details> (no JavaScript needed) around the groups.
    assert '<details class="navmenu">' in _nav(html) and "<summary class=\"navmenu-button\">Menu</summary>" in html


def test_an_htmx_fragment_builds_no_sidebar(hx, auth, count_queries, client, monkeypatch):
    import app.web as web
    calls = []
    real = web.nav_groups
    monkeypatch.setattr(web, "nav_groups", lambda *a: calls.append(a) or real(*a))
    auth.login("admin")
    hx.get("/vms/")
    assert calls == []
    client.get("/vms/")
    assert len(calls) == 1

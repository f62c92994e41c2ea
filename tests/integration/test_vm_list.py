"""The admin VM list (app/web/vms.py): sort by every column (server side, in the URL),
columns chosen per viewer (a cookie, a plain GET form), destroyed VMs apart (their tab,
Recover and Expunge), bulk actions (one job a VM, one progress view), and the top bar's
global search (app/services/search). VMs deployed through the services on a Simulator
zone, as tests/integration/test_vm_pages.py does."""
from __future__ import annotations

import re

import pytest

from app.extensions import db
from app.models import AsyncJob, VirtualMachine
from app.services import accounts, vms
from tests.integration.test_vm_pages import deploy, pending_job, post, state_of, world  # noqa: F401  (fixture)


def listed(client, query: str) -> list[str]:
    html = client.get(f"/vms/{query}").get_data(as_text=True)
    return re.findall(r'<tr id="vm-([0-9a-f-]+)"', html)


@pytest.mark.db
def test_sort_by_every_column(app, world, auth, client, hx):
    a = deploy(app, world, name="alpha")
    c = deploy(app, world, user="bob", name="charlie", start=False)
    b = deploy(app, world, name="bravo")
    auth.login("admin")
    assert listed(client, "") == [b, c, a]  # newest first
    assert listed(client, "?sort=name") == [a, b, c]
    assert listed(client, "?sort=-name") == [c, b, a]
    assert listed(client, "?sort=state")[0] == b and listed(client, "?sort=state")[-1] == c  # Running < Stopped
    assert listed(client, "?sort=account")[-1] == c and listed(client, "?sort=-account")[0] == c
    assert listed(client, "?sort=created") == [a, c, b]
    for key in ("ip", "host", "zone", "template", "offering"):
        for order in (key, f"-{key}"):
            assert sorted(listed(client, f"?sort={order}")) == sorted([a, b, c]), order
    assert listed(client, "?sort=nonsense") == [b, c, a]  # not a column: the default order
    # The headers are links that sort (again: reversed), pushed to the address bar by htmx.
    html = client.get("/vms/?sort=name").get_data(as_text=True)
    assert 'aria-sort="ascending"' in html and 'href="/vms/?sort=-name"' in html
    assert 'href="/vms/?sort=host"' in html and 'hx-push-url="true"' in html
    resp = hx.get("/vms/?sort=-name")
    assert resp.headers["HX-Push-Url"] == "/vms/?sort=-name" and "<html" not in resp.get_data(as_text=True)


def test_columns_chosen_are_kept_in_a_cookie(app, world, auth, client):
    deploy(app, world, name="alpha")
    auth.login("admin")
    html = client.get("/vms/").get_data(as_text=True)
    assert ">Template" in html and ">Created" not in html  # the defaults
    assert 'action="/vms/columns"' in html and 'name="col" value="created"' in html
    resp = client.get("/vms/columns?col=created&col=zone&col=bogus", headers={"Referer": "http://localhost/vms/?sort=name"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/vms/?sort=name")
    assert "vm_columns=created.zone;" in resp.headers["Set-Cookie"]
    html = client.get("/vms/").get_data(as_text=True)
    thead = html.split("<thead>")[1].split("</thead>")[0]
    assert "Created" in thead and "Zone" in thead and "Template" not in thead and "IP address" not in thead
    assert "Name" in thead and "State" in thead  # always there
    # A user is never offered the admins' columns.
    auth.logout()
    auth.login("alice")
    html = client.get("/vms/").get_data(as_text=True)
    assert 'value="host"' not in html and 'value="account"' not in html


def test_destroyed_vms_are_apart_with_recover_and_expunge(app, world, auth, client, hx):
    live = deploy(app, world, name="live1")
    gone = deploy(app, world, name="gone1", start=False)
    with app.app_context():
        vms.destroy(accounts.get_user("alice"), gone)
    auth.login("admin")
    assert listed(client, "") == [live]
    html = client.get("/vms/?view=destroyed").get_data(as_text=True)
    assert re.findall(r'<tr id="vm-([0-9a-f-]+)"', html) == [gone]
    assert 'aria-current="page">Destroyed' in html and 'name="view" value="destroyed"' in html
    assert 'value="Destroyed"' in html and 'value="Running"' not in html  # the tab's states only
    assert 'id="vms-bulk"' not in html
    resp = hx.post(f"/vms/{gone}/recover", data={"fragment": "list"})
    assert resp.status_code == 200 and "recovered" in resp.get_data(as_text=True)
    assert state_of(app, gone) == "Stopped" and gone in listed(client, "")
    # The pager and the search keep the tab.
    assert "No destroyed VMs yet." in hx.get("/vms/?view=destroyed").get_data(as_text=True)
    html = hx.get("/vms/?view=destroyed&q=x").get_data(as_text=True)
    assert "No destroyed VMs match these filters." in html


def test_bulk_actions_one_job_each_and_one_progress_view(app, world, auth, client, hx):
    one, two = deploy(app, world, name="one"), deploy(app, world, name="two")
    stopped = deploy(app, world, name="three", start=False)
    bobs = deploy(app, world, user="bob", name="bobs")
    auth.login("alice")
    assert 'id="vms-bulk"' in client.get("/vms/").get_data(as_text=True)
    # Stop all three: the stopped one is refused with its reason, the others get a job each.
    resp = post(client, auth, "/vms/bulk", {"action": "stop", "vm": [one, two, stopped]})
    assert resp.status_code == 302 and "/vms/jobs?job=" in resp.headers["Location"]
    jobs = re.findall(r"job=([0-9a-f-]+)", resp.headers["Location"])
    assert len(jobs) == 2
    with app.app_context():
        assert {j.instance_id for j in db.session.scalars(db.select(AsyncJob).where(AsyncJob.uuid.in_(jobs)))} \
            == {one, two}
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "three" in page and "is Stopped" in page  # the refusal, flashed
    assert page.count('<tr id="job-') == 2 and "2 jobs: 2 done, 0 failed." in page
    assert 'hx-trigger="every 1s"' not in page  # all done (jobs run inline here): no polling
    assert state_of(app, one) == state_of(app, two) == "Stopped"
    # Another account's VM is not found, like a missing one; its jobs are not shown either.
    resp = post(client, auth, "/vms/bulk", {"action": "start", "vm": [bobs]})
    assert resp.status_code == 302 and "/vms/jobs" not in resp.headers["Location"]
    assert state_of(app, bobs) == "Running"
    job = pending_job(app, one)
    html = client.get(f"/vms/jobs?job={job}").get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in html and "Asking the guest to shut down" in html  # polls while running
    auth.logout()
    auth.login("bob")
    assert '<tr id="job-' not in client.get(f"/vms/jobs?job={job}&job={jobs[0]}").get_data(as_text=True)
    # Bad input: no VM, an action that is not a bulk one, no CSRF token.
    assert post(client, auth, "/vms/bulk", {"action": "stop"}).status_code == 302
    assert post(client, auth, "/vms/bulk", {"action": "expunge", "vm": [bobs]}).status_code == 400
    assert client.post("/vms/bulk", data={"action": "stop", "vm": [bobs]}).status_code == 400
    assert state_of(app, bobs) == "Running"


def test_global_search(app, world, auth, client):
    deploy(app, world, name="web-alpha")
    deploy(app, world, user="bob", name="web-bob")
    auth.login("admin")
    html = client.get("/search/?find=web").get_data(as_text=True)
    for kind in ("vms", "templates", "zones", "hosts", "accounts"):
        assert f'id="search-{kind}"' in html, kind
    assert "web-alpha" in html and "web-bob" in html
    assert 'role="search" class="topsearch"' in html  # the top bar's box
    html = client.get("/search/?find=Z1").get_data(as_text=True)
    assert 'href="/admin/zones/' in html
    assert "at least 2 characters" in client.get("/search/?find=w").get_data(as_text=True)
    auth.logout()
    auth.login("alice")
    html = client.get("/search/?find=web").get_data(as_text=True)
    assert "web-alpha" in html and "web-bob" not in html
    assert 'id="search-hosts"' not in html and 'id="search-accounts"' not in html and 'id="search-vms"' in html
    assert 'id="search-templates"' in html


def test_search_queries_do_not_grow(app, world, auth, client, count_queries):
    deploy(app, world, name="srv0")
    auth.login("admin")
    client.get("/search/?find=srv")
    few = count_queries(client, "/search/?find=srv")
    for i in range(1, 15):
        deploy(app, world, name=f"srv{i}")
    assert count_queries(client, "/search/?find=srv") == few


def test_vm_url_is_what_url_for_builds(app):
    """The list's rows build their links without the URL map (vms.vm_url): the same URLs,
    also under a script root."""
    from flask import url_for

    from app.web.vms import VM_ACTIONS, vm_url
    uuid = "0b9c4a52-7d1e-4f0a-9a8e-3c2f1d0e5b6a"
    for base in ("http://localhost/", "http://localhost/nubo/"):
        with app.test_request_context("/", base_url=base):
            assert vm_url(uuid) == url_for("vms.detail", uuid=uuid)
            for key in VM_ACTIONS:
                assert vm_url(uuid, key) == url_for("vms.act", uuid=uuid, action=key)

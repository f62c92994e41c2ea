"""Admin "Deploy VM" for any account: the deploy wizard's zone step offers an admin the accounts
they may act in; the VM is that account's, within that account's limits (the size step says
which offerings would pass them), and its events name the admin who acted and the owner's
account. A user cannot deploy in another account's name."""
from __future__ import annotations

import re

from sqlalchemy import select

from app.extensions import db
from app.models import Event, VirtualMachine
from app.services import accounts
from tests.integration.test_self_service_pages import hidden, html_of, limit, wizard
from tests.integration.test_vm_pages import _engines, world  # noqa: F401  (fixtures)


def test_admin_deploys_for_another_account(app, world, auth, client):
    with app.app_context():
        alice = accounts.get_account("alice").uuid
    auth.login("admin")
    html = html_of(client.get("/portal/deploy"))
    assert 'name="owner"' in html and f'value="{alice}"' in html and "Your own account (admin)" in html
    limit(app, "alice", "cpu", 1)  # alice may have 1 vCPU: "big" (2 vCPU) would pass it
    state = {**hidden(html), "owner": alice, "zoneid": world.zone}
    html = html_of(wizard(client, auth, state))
    state = {**hidden(html), "templateid": world.template}
    html = html_of(wizard(client, auth, state))
    assert 'aria-current="step">Size' in html and "limits of the account alice" in html
    assert re.search(r'value="' + world.big + r'"[^>]*disabled', html)  # refused for alice
    r = wizard(client, auth, {**hidden(html), "serviceofferingid": world.big})
    assert r.status_code == 422  # alice's limit, not the admin's
    state = {**hidden(html), "serviceofferingid": world.small}
    html = html_of(wizard(client, auth, state))
    html = html_of(wizard(client, auth, hidden(html)))  # network: the zone's default
    html = html_of(wizard(client, auth, {**hidden(html), "keypair": "", "userdata": ""}))
    html = html_of(wizard(client, auth, {**hidden(html), "name": "foralice", "displayname": ""}))
    assert 'aria-current="step">Review' in html and "for the account alice" in html
    r = wizard(client, auth, hidden(html), go="deploy")
    assert r.status_code == 302, html_of(r)
    with app.app_context():
        vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.name == "foralice"))
        assert vm.account.name == "alice"
        ev = db.session.scalar(select(Event).where(Event.type == "VM.CREATE", Event.resource_id == vm.uuid))
        assert ev.user.username == "admin" and ev.account_id == vm.account_id  # who acted, whose VM


def test_a_user_cannot_deploy_for_another(app, world, auth, client):
    with app.app_context():
        bob = accounts.get_account("bob").uuid
    auth.login("alice")
    html = html_of(client.get("/portal/deploy"))
    assert '<select id="owner"' not in html and 'name="owner" value=""' in html
    r = wizard(client, auth, {**hidden(html), "owner": bob, "zoneid": world.zone})
    assert r.status_code == 422 and "Choose one of the accounts offered" in html_of(r)


def test_account_page_links_to_a_deploy_for_it(app, world, auth, client):
    with app.app_context():
        alice = accounts.get_account("alice").uuid
    auth.login("admin")
    page = html_of(client.get(f"/admin/accounts/{alice}"))
    assert f'href="/portal/deploy?owner={alice}"' in page
    html = html_of(client.get(f"/portal/deploy?owner={alice}"))
    assert re.search(rf'<option selected value="{alice}"|<option value="{alice}" selected', html)

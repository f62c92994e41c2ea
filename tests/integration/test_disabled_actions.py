"""Actions that cannot succeed are shown disabled with the reason, and the server refuses
them too (issue 18's audit): Migrate with no other host to go to, and the Console of a
Simulator VM (no made-up "VNC console on 127.0.0.1:5900" beside "no screen to show")."""
from __future__ import annotations

import re

import pytest

from app.extensions import db
from app.models import Host, ResourceState, VirtualMachine
from app.services import accounts, vms
from app.services.errors import ResourceUnavailable
from tests.integration.test_vm_pages import _engines, deploy, post, world  # noqa: F401  (fixtures)


def page(client, uuid) -> str:
    return client.get(f"/vms/{uuid}").get_data(as_text=True)


def test_migrate_is_disabled_with_the_reason_when_no_other_host_can_take_the_vm(app, world, client, auth):
    uuid = deploy(app, world)
    auth.login("admin")
    html = page(client, uuid)
    assert 'name="host"' in html and "Let Nubo choose" in html  # the other host is Up and Enabled
    with app.app_context():
        vm = db.session.scalar(db.select(VirtualMachine).where(VirtualMachine.uuid == uuid))
        other = db.session.scalar(db.select(Host).where(Host.id != vm.host_id))
        other.resource_state = ResourceState.DISABLED
        db.session.commit()
    html = page(client, uuid)
    assert 'name="host"' not in html
    button = re.search(r'<button type="button" class="btn btn-sm" disabled aria-describedby="vm-nochoice-migrate">'
                       r'Migrate</button>\s*<small class="muted" id="vm-nochoice-migrate">([^<]*)</small>', html)
    assert button and button.group(1) == "Not now: its cluster has no other host that is Up and Enabled."
    # The server refuses it too (a form posted anyway, the API): nothing is submitted.
    resp = post(client, auth, f"/vms/{uuid}/migrate", {"host": ""})
    assert resp.status_code == 302 and "cannot be migrated: its cluster has no other host" in page(client, uuid)
    with app.app_context():
        with pytest.raises(ResourceUnavailable, match="no other host"):
            vms.migrate(accounts.get_user("admin"), uuid)
        assert db.session.scalar(db.select(VirtualMachine.active_job_id).where(VirtualMachine.uuid == uuid)) is None


def test_simulator_console_is_disabled_without_a_made_up_address(app, world, client, auth):
    uuid = deploy(app, world)
    auth.login("admin")
    html = page(client, uuid)
    section = html.split("<h2>Console</h2>", 1)[1].split("</section>", 1)[0]
    assert 'disabled aria-describedby="vm-console-note"' in section and "no screen to show" in section
    assert "127.0.0.1" not in section and "console on" not in section and "console available" not in section
    # The server refuses it too: back to the VM page with the reason.
    resp = post(client, auth, f"/vms/{uuid}/console")
    assert resp.status_code == 302 and resp.headers["Location"] == f"/vms/{uuid}"
    assert "Simulator VMs have no screen to show" in page(client, uuid)

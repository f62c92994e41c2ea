"""Resource limits under fire, on SQLite, PostgreSQL and MariaDB: 20 parallel deploys
(threads, each with its own app context and session) at an account limited to 5
instances through updateResourceLimit leave exactly 5 VMs and 15 refusals naming the
limit; the vCPU, memory, volume and primary-storage limits each refuse with their own
message and change nothing; a per-account override beats the setting."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import ResourceCount, VirtualMachine, Volume
from app.services import accounts, vms, volumes
from app.services.errors import ServiceError
from tests.integration.test_vm_pages import _engines, deploy, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.db


def api(app, client, user: str, **params):
    """A signed API call through the test client (the user's own keys)."""
    from app.api.signing import sign
    with app.app_context():
        key, secret = accounts.ensure_keys(accounts.get_user(user))
    params = {k: str(v) for k, v in params.items()} | {"apiKey": key, "response": "json"}
    params["signature"] = sign(params, secret)
    resp = client.post("/client/api", data=params)
    body = next(iter(resp.get_json().values()))
    return resp.status_code, body


def counts(app, account="alice") -> dict:
    with app.app_context():
        acct = accounts.get_account(account)
        return dict(db.session.execute(select(ResourceCount.resource_type, ResourceCount.count)
                                       .where(ResourceCount.account_id == acct.id)).all())


def live_vms(app, account="alice") -> int:
    with app.app_context():
        acct = accounts.get_account(account)
        return db.session.scalar(select(func.count()).select_from(VirtualMachine).where(
            VirtualMachine.account_id == acct.id, VirtualMachine.removed.is_(None)))


def test_twenty_parallel_deploys_at_a_limit_of_five(app, world, client):
    status, body = api(app, client, "admin", command="updateResourceLimit", account="alice", resourcetype=0, max=5)
    assert status == 200 and body["resourcelimit"]["max"] == 5
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20, timeout=60)

    def one(i: int):
        barrier.wait()  # all at once, before any takes a pooled connection
        with app.app_context():
            try:
                vms.deploy(accounts.get_user("alice"), zone_uuid=world.zone, service_offering_uuid=world.small,
                           template_uuid=world.template, name=f"p{i}")
                out = "ok"
            except ServiceError as e:
                out = f"{e.code} {e.message}"
            finally:
                db.session.remove()
        with lock:
            results.append(out)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 5, results
    refused = [r for r in results if r != "ok"]
    assert len(refused) == 15 and all(r.startswith("532 The account's limit of 5 instances would be passed")
                                      for r in refused), refused
    assert live_vms(app) == 5
    c = counts(app)
    assert (c["user_vm"], c["cpu"], c["memory"], c["volume"]) == (5, 5, 5 * 512, 5)
    # Through the API the sixth gets the same answer; the limit raised, it fits.
    status, body = api(app, client, "alice", command="deployVirtualMachine", zoneid=world.zone,
                       serviceofferingid=world.small, templateid=world.template, name="sixth")
    assert status == 532 and "limit of 5 instances" in body["errortext"]
    api(app, client, "admin", command="updateResourceLimit", account="alice", resourcetype=0, max=6)
    status, body = api(app, client, "alice", command="deployVirtualMachine", zoneid=world.zone,
                       serviceofferingid=world.small, templateid=world.template, name="sixth")
    assert status == 200 and live_vms(app) == 6


@pytest.mark.parametrize("resource, value, message", [
    (8, 1, "limit of 1 vCPUs"), (9, 1024, "limit of 1024 MiB of memory"),
    (2, 1, "limit of 1 volumes"), (10, 1, "limit of 1 GiB of primary storage")])
def test_each_limit_refuses_with_its_message(app, world, client, resource, value, message):
    deploy(app, world, name="first")  # 1 vCPU, 512 MiB, 1 root volume of 1 GiB
    api(app, client, "admin", command="updateResourceLimit", account="alice", resourcetype=resource, max=value)
    before = counts(app)
    status, body = api(app, client, "alice", command="deployVirtualMachine", zoneid=world.zone,
                       serviceofferingid=world.big, templateid=world.template, name="second")
    assert status == 532 and message in body["errortext"], body
    assert counts(app) == before and live_vms(app) == 1  # nothing taken, nothing made
    if resource in (2, 10):  # a data volume counts against the same limits
        with app.app_context():
            offering = volumes.create_disk_offering(None, name="d", disk_size=5).uuid
        status, body = api(app, client, "alice", command="createVolume", zoneid=world.zone, diskofferingid=offering)
        assert status == 532 and message in body["errortext"]
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Volume).where(
                Volume.volume_type == "DATADISK")) == 0
    if resource in (8, 9):  # so does a bigger offering for a stopped VM
        with app.app_context():
            vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.name == "first"))
            vm_uuid = vm.uuid
        api(app, client, "alice", command="stopVirtualMachine", id=vm_uuid, forced="true")
        status, body = api(app, client, "alice", command="changeServiceForVirtualMachine", id=vm_uuid,
                           serviceofferingid=world.big)
        assert status == 532 and message in body["errortext"]
        assert counts(app) == before


def test_the_override_beats_the_setting_and_admins_are_not_limited(app, world, client):
    from app.services import settings
    with app.app_context():
        settings.update("max.account.user.vms", "1")
    deploy(app, world, name="one")
    status, body = api(app, client, "alice", command="deployVirtualMachine", zoneid=world.zone,
                       serviceofferingid=world.small, templateid=world.template, name="two")
    assert status == 532 and "limit of 1 instances" in body["errortext"]
    api(app, client, "admin", command="updateResourceLimit", account="alice", resourcetype=0, max=-1)
    status, _ = api(app, client, "alice", command="deployVirtualMachine", zoneid=world.zone,
                    serviceofferingid=world.small, templateid=world.template, name="two")
    assert status == 200
    status, body = api(app, client, "bob", command="listResourceLimits", resourcetype=0)
    assert body["resourcelimit"][0]["max"] == 1  # bob still has the setting's
    for i in range(3):  # the admins' account ignores the setting
        deploy(app, world, user="admin", name=f"adm{i}")
    status, body = api(app, client, "admin", command="listAccounts", name="admin")
    assert body["account"][0]["vmlimit"] == "Unlimited" and body["account"][0]["vmtotal"] == 3

"""deleteAccount: the account is marked first (its users are out, nothing new is made in it),
then a job removes its VMs, volumes, snapshots, templates, networks, addresses, security groups, key
pairs and users, with progress. Killed at any step, the job is finished by the reaper's
hook (or the monitor's start-up repair) from where it stopped; the name is free again."""
from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.jobs import service as jobs
from app.models import (Account, AccountRole, AsyncJob, JobStatus, ResourceCount, SecurityGroup, SimVM, Snapshot,
                        SSHKeyPair, Template, User, VirtualMachine, Volume, new_uuid, utcnow)
from app.services import account_deletion, accounts, keypairs, quotas, volumes
from app.services.snapshots import volume as snaps
from tests.helpers.killed_step import run_killed
from tests.integration.test_quotas import api
from tests.integration.test_vm_pages import _engines, deploy, post, world  # noqa: F401  (fixtures)

GIB = 1 << 30


def alice_things(app, world) -> dict:
    """Two VMs (one Running, one Stopped), a data volume attached to the running one and a
    detached one, a snapshot of the attached one, a key pair, a private template: all alice's."""
    running = deploy(app, world, name="web1")
    deploy(app, world, name="web2", start=False)
    with app.app_context():
        alice = accounts.get_user("alice")
        off = volumes.create_disk_offering(None, name="d1", disk_size=1)
        v1 = volumes.create_volume(alice, name="data1", zone_uuid=world.zone, disk_offering_uuid=off.uuid)
        volumes.create_volume(alice, name="data2", zone_uuid=world.zone, disk_offering_uuid=off.uuid)
        volumes.attach_volume(alice, v1.uuid, running)
        keypairs.create(alice, "k1")
        snaps.take(snaps.allocate(alice.account_id, v1, name="s1"))  # a snapshot of the attached volume
        db.session.add(Template(uuid=new_uuid(), name="mine", format="RAW", hypervisor_type="Simulator",
                                account_id=alice.account_id, size=GIB, physical_size=GIB))
        db.session.commit()
        return {"account": alice.account.uuid, "id": alice.account_id}


def left(account_id: int) -> dict:
    q = lambda m, *w: db.session.scalar(select(func.count()).select_from(m).where(*w))  # noqa: E731
    return {
        "vms": q(VirtualMachine, VirtualMachine.account_id == account_id, VirtualMachine.removed.is_(None)),
        "volumes": q(Volume, Volume.account_id == account_id, Volume.removed.is_(None)),
        "snapshots": q(Snapshot, Snapshot.account_id == account_id, Snapshot.removed.is_(None)),
        "templates": q(Template, Template.account_id == account_id, Template.removed.is_(None)),
        "keypairs": q(SSHKeyPair, SSHKeyPair.account_id == account_id),
        "groups": q(SecurityGroup, SecurityGroup.account_id == account_id),
        "users": q(User, User.account_id == account_id, User.removed.is_(None)),
        # On the (simulated) hosts: none of its guests is left.
        "guests": q(SimVM, SimVM.name.in_(select(VirtualMachine.instance_name).where(
            VirtualMachine.account_id == account_id))),
    }


def gone(app, account_id: int) -> None:
    with app.app_context():
        counts = left(account_id)
        assert counts == {"vms": 0, "volumes": 0, "snapshots": 0, "templates": 0, "keypairs": 0, "groups": 0, "users": 0,
                          "guests": 0}
        acct = db.session.get(Account, account_id)
        assert acct.removed is not None
        usage = quotas.usage(account_id)
        assert all(v == 0 for v in usage.values()), usage
        assert db.session.scalar(select(func.count()).select_from(ResourceCount).where(
            ResourceCount.account_id == account_id, ResourceCount.count != 0)) == 0


@pytest.mark.db
def test_delete_account_removes_everything(app, client, world, users):
    things = alice_things(app, world)
    with app.app_context():
        assert left(things["id"])["guests"] >= 1 and left(things["id"])["volumes"] == 4
    status, body = api(app, client, "admin", command="deleteAccount", id=things["account"])
    assert status == 200, body
    with app.app_context():
        job = db.session.scalar(select(AsyncJob).where(AsyncJob.uuid == body["jobid"]))
        assert job.status == JobStatus.SUCCEEDED, job.result
        assert job.progress_message == "Removing the account"
    gone(app, things["id"])
    # The name is free again; the old account's users cannot log in or call the API.
    status, _ = api(app, client, "admin", command="createAccount", username="alice", password="Alice-again-pass-1",
                    email="a@x", firstname="A", lastname="B")
    assert status == 200
    with app.app_context():
        assert accounts.get_account("alice").id != things["id"]


@pytest.mark.db
def test_refused_deletions_change_nothing(app, client, world, users):
    with app.app_context():
        admin = accounts.get_account("admin")
    for user, params, code in (
            ("admin", {"id": admin.uuid}, 431),                                  # one's own account
            ("admin", {"id": "5e1f0000-0000-4000-8000-00000000abcd"}, 431),
            ("alice", {"id": admin.uuid}, 432)):                                 # users: not their command
        status, body = api(app, client, user, command="deleteAccount", **params)
        assert status == code, body
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Account).where(
            Account.cleanup_started.is_not(None))) == 0


# Killed on every database at one step (a dead connection's locks and transaction matter);
# the other steps exercise the same resume path and run on SQLite only (suite time).
@pytest.mark.db
def test_killed_midway_on_every_database(app, world, users):
    test_killed_midway_resumes_and_finishes(app, world, users, "app.services.vms:expunge_any", "after")


@pytest.mark.parametrize("step, when", [("app.services.volumes:delete_volume", "after"),
                                        ("app.services.account_deletion:_finish", "before")])
def test_killed_midway_resumes_and_finishes(app, world, users, step, when):
    things = alice_things(app, world)
    with app.app_context():
        admin = accounts.get_user("admin")
        code = run_killed(app, "delete_account", {"user": admin.uuid, "account": things["account"]},
                          kill_at=step, when=when)
        assert code == -signal.SIGKILL
        acct = db.session.get(Account, things["id"])
        assert acct.cleanup_started is not None and acct.removed is None
        # Marked: its users are out, nothing new is made in it.
        assert not accounts.get_user("alice").is_active
        with pytest.raises(Exception, match="being deleted"):
            accounts.named_account(admin, "alice")
        # A restart: the reaper fails the dead job and its hook submits a new one that finishes.
        jobs.reap(now=utcnow() + timedelta(hours=2))
        db.session.expire_all()
        assert db.session.scalar(select(func.count()).select_from(AsyncJob).where(
            AsyncJob.status == JobStatus.PENDING)) == 0
    gone(app, things["id"])


def test_restart_resumes_a_deletion_whose_job_was_lost(app, world, users):
    """The job row failed for good (e.g. a driver error) or its queue lost it: deleteAccount
    again, or the monitor's start-up repair, goes on."""
    things = alice_things(app, world)
    with app.app_context():
        acct = db.session.get(Account, things["id"])
        acct.cleanup_started = utcnow()  # marked, and no job
        db.session.commit()
        assert account_deletion.resume_all() == 1
    gone(app, things["id"])


def test_account_pages(app, client, world, users, auth):
    """Edit (role), lock, enable, disable (stops its VMs), move a user, delete with progress."""
    vm = deploy(app, world, name="web1")
    with app.app_context():
        alice = accounts.get_account("alice")
        url = f"/admin/accounts/{alice.uuid}"
        user_role = db.session.scalar(select(AccountRole.uuid).where(AccountRole.name == "User"))
        extra = accounts.create_user("alice3", "Alice3-long-pass-1", account="alice")
        extra_uuid = extra.uuid
    auth.login("admin")
    page = client.get(url).get_data(as_text=True)
    assert "Lock" in page and "Delete the account" in page and "Role: <a" in page
    # Edit: the form starts from the account's values.
    resp = client.get(f"{url}/edit")
    assert resp.status_code == 302 and "roleid=" + user_role in resp.location
    resp = client.post(f"{url}/edit", data={"csrf_token": auth.csrf(url), "name": "alice",
                                            "network_domain": "alice.example", "roleid": user_role})
    assert resp.status_code == 302
    assert post(client, auth, f"{url}/lock").status_code == 302
    with app.app_context():
        acct = accounts.get_account("alice")
        assert (acct.state, acct.network_domain) == ("locked", "alice.example")
        assert db.session.scalar(select(VirtualMachine.state).where(VirtualMachine.uuid == vm)) == "Running"
    assert post(client, auth, f"{url}/enable").status_code == 302
    assert post(client, auth, f"{url}/disable").status_code == 302
    with app.app_context():
        assert accounts.get_account("alice").state == "disabled"
        assert db.session.scalar(select(VirtualMachine.state).where(VirtualMachine.uuid == vm)) == "Stopped"
    assert post(client, auth, f"{url}/enable").status_code == 302
    # Move a user to bob's account.
    resp = post(client, auth, f"/admin/accounts/users/{extra_uuid}/move", {"account": "bob"})
    assert resp.status_code == 302
    with app.app_context():
        assert accounts.user_by_uuid(extra_uuid).account.name == "bob"
    # Delete: the job runs (at once here) and the list comes back.
    resp = post(client, auth, f"{url}/delete")
    assert resp.status_code == 302 and resp.location == "/admin/accounts/"
    with app.app_context():
        assert accounts.get_account("alice") is None
    assert client.get(url).status_code == 404


# --- Nothing of the account is left ---------------------------------------------------------

# Tables that keep an account's rows after deleteAccount, as CloudStack keeps them: the audit
# trail (events, jobs), the account's users (marked removed, their names freed) and the account;
# and the change stream's outbox (news of the deletion itself, pruned after live.changes.retention).
KEPT = {"accounts", "users", "events", "async_jobs", "changes"}


def live_rows(account_id: int) -> dict[str, int]:
    """Every table with an account_id column (found from the models, so a new one is checked
    too): how many of its rows of this account are left (a row marked removed is gone)."""
    found = {}
    for table in db.metadata.sorted_tables:
        if table.name in KEPT or "account_id" not in table.c:
            continue
        where = [table.c.account_id == account_id]
        if "removed" in table.c:
            where.append(table.c.removed.is_(None))
        n = db.session.scalar(select(func.count()).select_from(table).where(*where))
        if n:
            found[table.name] = n
    return found


def test_nothing_of_the_account_is_left(app, client, world, users):
    """One of each thing an account can own (tags, instance group, user data, affinity group,
    VM snapshot, snapshot policy, template permission, resource limit, ...): deleteAccount leaves
    no live row of the account in any table (CloudStack's AccountManagerImpl.cleanupAccount)."""
    things = alice_things(app, world)
    vm = deploy(app, world, name="web3")
    with app.app_context():
        vol = db.session.scalar(select(Volume.uuid).where(Volume.account_id == things["id"],
                                                          Volume.name == "data1"))
        tpl = db.session.scalar(select(Template.uuid).where(Template.name == "tiny"))
    calls = [
        ("alice", {"command": "createTags", "resourceids": vm, "resourcetype": "UserVm",
                   "tags[0].key": "env", "tags[0].value": "prod"}),
        ("alice", {"command": "createTags", "resourceids": vol, "resourcetype": "Volume",
                   "tags[0].key": "env", "tags[0].value": "prod"}),
        ("alice", {"command": "createInstanceGroup", "name": "g1"}),
        ("alice", {"command": "registerUserData", "name": "ud1", "userdata": "IyEvYmluL3NoCg=="}),
        ("alice", {"command": "createAffinityGroup", "name": "ag1", "type": "host anti-affinity"}),
        ("alice", {"command": "createVMSnapshot", "virtualmachineid": vm}),
        ("alice", {"command": "createSnapshotPolicy", "volumeid": vol, "intervaltype": "daily",
                   "schedule": "00:01", "timezone": "UTC", "maxsnaps": 2}),
        ("admin", {"command": "updateTemplatePermissions", "id": tpl, "accounts": "alice", "op": "add"}),
        ("admin", {"command": "updateResourceLimit", "account": "alice", "domainid": _root_domain(app),
                   "resourcetype": 0, "max": 50}),
        ("alice", {"command": "getUploadParamsForVolume", "name": "up1", "format": "RAW", "zoneid": world.zone}),
        ("admin", {"command": "extractVolume", "id": vol, "mode": "HTTP_DOWNLOAD", "zoneid": world.zone}),
    ]
    with app.app_context():  # its VM stopped, so that the volume can be extracted
        from app.models import VirtualMachine
        db.session.execute(update(VirtualMachine).where(VirtualMachine.id == db.session.scalar(
            select(Volume.vm_id).where(Volume.uuid == vol))).values(state="Stopped"))
        db.session.commit()
    for user, params in calls:
        status, body = api(app, client, user, **params)
        assert status == 200, (params["command"], body)
    with app.app_context():
        before = live_rows(things["id"])
        for table in ("resource_tags", "instance_groups", "user_data", "affinity_groups", "vm_snapshots",
                      "snapshot_policies", "template_permissions", "resource_limits", "resource_counts",
                      "extracts", "volume_store_refs"):
            assert before.get(table), (table, before)
    status, body = api(app, client, "admin", command="deleteAccount", id=things["account"])
    assert status == 200, body
    gone(app, things["id"])
    with app.app_context():
        left_over = live_rows(things["id"])
        assert left_over == {}, str(left_over)


def _root_domain(app) -> str:
    from app.models import Domain
    with app.app_context():
        return db.session.scalar(select(Domain.uuid).where(Domain.parent_id.is_(None)))

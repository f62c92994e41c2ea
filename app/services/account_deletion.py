"""deleteAccount: an account and everything it owns, removed by a resumable job.

The account is marked first (cleanup_started): its users can no longer log in or call the
API and nothing new may be made in it (accounts.named_account refuses it). Then each deleter in
DELETERS removes what is left of one kind of resource; each is idempotent, so a job killed
at any step is finished by running it again: the reaper's hook and the monitor's start-up
repair (resume_all) submit a new job for a marked account whose job is gone.

A new resource kind adds itself:

    @account_deletion.deleter("snapshots", order=35)
    def _snapshots(caller, account): ...   # remove what is left of the account's snapshots
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import delete, select, update

from app.extensions import db
from app.jobs import service as jobs
from app.models import Account, AsyncJob, JobStatus, SSHKeyPair, Template, User, VirtualMachine, Volume, utcnow
from app.services import events, settings
from app.services.errors import InvalidParameter

HANDLER = "account.delete"
CMD = "org.apache.cloudstack.api.command.admin.account.DeleteAccountCmd"


@dataclass(frozen=True)
class Deleter:
    name: str
    order: int
    fn: Callable


DELETERS: list[Deleter] = []


def deleter(name: str, order: int):
    """Register the step that removes what is left of one resource kind of an account."""
    def decorate(fn):
        DELETERS[:] = sorted([d for d in DELETERS if d.name != name] + [Deleter(name, order, fn)],
                             key=lambda d: d.order)
        return fn
    return decorate


def start(caller: User, account: Account) -> AsyncJob:
    """Mark the account for removal (committed) and submit the job. Called again on a marked
    account whose job ended or died, it submits a new job that goes on from where it stopped."""
    if account.id == caller.account_id:
        raise InvalidParameter("Deletion of your own account is not allowed", field="id")
    if account.name == "admin":
        raise InvalidParameter("The default admin account cannot be deleted", field="id")
    running = _running_job(account)
    if running is not None:
        return running
    _mark(caller, account)
    return jobs.submit(CMD, caller, HANDLER, {"id": account.uuid, "by": caller.uuid},
                       instance_type="Account", instance_id=account.uuid)


def _mark(caller: User, account: Account) -> None:
    if account.cleanup_started is None:
        db.session.execute(update(Account).where(Account.id == account.id, Account.cleanup_started.is_(None))
                           .values(cleanup_started=utcnow()))
        # Every session of its users ends now.
        db.session.execute(update(User).where(User.account_id == account.id)
                           .values(session_version=User.session_version + 1))
        events.record("ACCOUNT.DELETE", f"Account {account.name} marked for removal", user=caller,
                      account_id=account.id, resource_type="Account", resource_id=account.uuid)
        db.session.commit()
        db.session.refresh(account)


def run_now(caller: User, account: Account) -> None:
    """The whole deletion of one account inside the caller's own job (deleteDomain and
    deleteProject with cleanup): marked and committed first, then every step, then removed.
    Killed part way, the mark stays and the start-up repair (resume_all) finishes it."""
    if account.removed is not None:
        return
    _mark(caller, account)
    from app.services import vms
    vms.recover_orphans()
    for d in DELETERS:
        d.fn(caller, account)
        db.session.commit()
    _finish(caller, account)


def job_of(account: Account) -> AsyncJob | None:
    """The account's latest deletion job (for its progress on the account page)."""
    if account.cleanup_started is None:
        return None
    return db.session.scalar(select(AsyncJob).where(
        AsyncJob.instance_type == "Account", AsyncJob.instance_id == account.uuid, AsyncJob.cmd == CMD)
        .order_by(AsyncJob.id.desc()).limit(1))


def error_of(job: AsyncJob | None) -> str | None:
    """Why a failed deletion job stopped (its CloudStack error text)."""
    if job is None or job.status != JobStatus.FAILED:
        return None
    try:
        return json.loads(job.result or "{}").get("errortext")
    except ValueError:
        return None


def _running_job(account: Account) -> AsyncJob | None:
    return db.session.scalar(select(AsyncJob).where(
        AsyncJob.instance_type == "Account", AsyncJob.instance_id == account.uuid,
        AsyncJob.status == JobStatus.PENDING, AsyncJob.cmd == CMD).order_by(AsyncJob.id.desc()).limit(1))


@jobs.handler(HANDLER)
def _run(job: AsyncJob, params: dict) -> dict:
    account = db.session.scalar(select(Account).where(Account.uuid == params["id"]))
    if account is None or account.removed is not None:
        return {"success": True}
    caller = db.session.scalar(select(User).where(User.uuid == params["by"])) or _any_admin()
    from app.services import vms
    vms.recover_orphans()  # VM locks left by an earlier run of this job that was killed
    total = len(DELETERS)
    for i, d in enumerate(DELETERS):
        jobs.progress(job, int(100 * i / (total + 1)), f"Removing {d.name}")
        d.fn(caller, account)
        db.session.commit()
    jobs.progress(job, int(100 * total / (total + 1)), "Removing the account")
    _finish(caller, account)
    return {"success": True}


def _any_admin() -> User:
    return db.session.scalar(select(User).join(Account).where(Account.role == "admin", User.removed.is_(None))
                             .order_by(User.id).limit(1))


def _finish(caller: User, account: Account) -> None:
    now = utcnow()
    # Names are freed for new accounts and users (CloudStack allows making them again);
    # the rows stay, removed, for the audit trail.
    for u in db.session.scalars(select(User).where(User.account_id == account.id)):
        if u.removed is None:
            u.removed = now
        u.api_key, u.secret_key_enc = None, None
        if not u.username.endswith(f"#{u.id}"):
            u.username = f"{u.username[:200]}#{u.id}"
    account.removed = now
    settings.forget("account", account.id)
    name = account.name
    if not account.name.endswith(f"#{account.id}"):
        account.name = f"{account.name[:200]}#{account.id}"
    events.record("ACCOUNT.DELETE", f"Account {name} deleted", user=caller, resource_type="Account",
                  resource_id=account.uuid)
    db.session.commit()


def _reaped(job: AsyncJob) -> None:
    """Its worker died: a new job goes on from where that one stopped."""
    params = json.loads(job.params or "{}").get("params", {})
    account = db.session.scalar(select(Account).where(Account.uuid == params.get("id")))
    if account is None or account.removed is not None or _running_job(account) is not None:
        return
    caller = db.session.scalar(select(User).where(User.uuid == params.get("by"))) or _any_admin()
    jobs.submit(CMD, caller, HANDLER, params, instance_type="Account", instance_id=account.uuid)


jobs.on_reap(HANDLER, _reaped)


def resume_all() -> int:
    """Start-up repair: every account marked for removal and not removed, with no job
    pending, gets a new job (its last one failed or was lost with its process)."""
    n = 0
    for account in list(db.session.scalars(select(Account).where(Account.cleanup_started.is_not(None),
                                                                   Account.removed.is_(None)))):
        if _running_job(account) is None:
            caller = _any_admin()
            jobs.submit(CMD, caller, HANDLER, {"id": account.uuid, "by": caller.uuid},
                        instance_type="Account", instance_id=account.uuid)
            n += 1
    return n


# --- What an account owns, one kind per step (each idempotent) ----------------------

def _live(model, account) -> list:
    """The account's rows of `model` not removed yet (a list: each step changes them as it goes)."""
    return list(db.session.scalars(select(model).where(model.account_id == account.id, model.removed.is_(None))))


def _unpoint(column, model, account, **values) -> None:
    """Rows whose `column` points at one of the account's `model` rows get `values` instead."""
    ids = select(model.id).where(model.account_id == account.id)
    db.session.execute(update(column.class_).where(column.in_(ids)).values(**values)
                       .execution_options(synchronize_session=False))


def _drop(model, account) -> None:
    """Rows that go for good with the account (no removal of their own to run)."""
    db.session.execute(delete(model).where(model.account_id == account.id))


@deleter("virtual machines", order=10)
def _vms(caller, account):
    from app.services import vms
    for vm in _live(VirtualMachine, account):
        vms.expunge_any(vm)


@deleter("volumes", order=20)
def _volumes(caller, account):
    from app.services import volumes
    for v in _live(Volume, account):
        volumes.delete_volume(caller, v.uuid)


@deleter("snapshots", order=25)
def _snapshots(caller, account):
    """Volume snapshots outlive their volumes (their policies went with the volumes)."""
    from app.models import Snapshot
    from app.services.snapshots import volume as snapshots
    for s in _live(Snapshot, account):
        snapshots.delete_row(s, user=caller)


@deleter("snapshot policies", order=27)
def _snapshot_policies(caller, account):
    """Those of volumes that were removed elsewhere (a volume's own removal takes its policies)."""
    from app.models import SnapshotPolicy
    from app.services import tags
    ids = list(db.session.scalars(select(SnapshotPolicy.id).where(SnapshotPolicy.account_id == account.id)))
    tags.forget("SnapshotPolicy", ids)
    _drop(SnapshotPolicy, account)


@deleter("templates and ISOs", order=30)
def _templates(caller, account):
    from app.services import templates
    for t in _live(Template, account):
        templates.delete_template(caller, t.uuid, is_iso=t.is_iso)


@deleter("download URLs", order=32)
def _extracts(caller, account):
    """Its extract URLs end now (a volume's copy on the image store is deleted)."""
    from app.services.transfers import extracts
    extracts.end_all(account.id)


@deleter("launch permissions", order=35)
def _launch_permissions(caller, account):
    """Other accounts' templates it was allowed to use (its own went with them)."""
    from app.models import TemplatePermission
    _drop(TemplatePermission, account)


@deleter("networks", order=40)
def _networks(caller, account):
    from app.models import Network
    from app.services.network import networks
    for net in _live(Network, account):
        networks.delete_network(caller, net.uuid)


@deleter("public IP addresses", order=45)
def _public_ips(caller, account):
    from app.models import PublicIpAddress
    from app.services.network import public_ips
    from app.models import IpState
    for ip in list(db.session.scalars(select(PublicIpAddress).where(PublicIpAddress.account_id == account.id,
                                                                    PublicIpAddress.state != IpState.FREE))):
        public_ips.disassociate_ip(caller, ip.uuid)  # on networks not its own (its own went with them)


@deleter("dedicated public IP ranges", order=47)
def _dedicated_ranges(caller, account):
    """Ranges dedicated to it go back to the system, free for every account (CloudStack's
    releaseAccountSpecificVirtualRanges); so do their free addresses."""
    from app.models import IpState, PublicIpAddress, VlanIpRange
    db.session.execute(update(PublicIpAddress).where(PublicIpAddress.account_id == account.id,
                                                     PublicIpAddress.state == IpState.FREE)
                       .values(account_id=None).execution_options(synchronize_session=False))
    db.session.execute(update(VlanIpRange).where(VlanIpRange.account_id == account.id)
                       .values(account_id=None).execution_options(synchronize_session=False))


@deleter("security groups", order=50)
def _security_groups(caller, account):
    from app.models import SecurityGroup, SecurityGroupRule
    groups = select(SecurityGroup.id).where(SecurityGroup.account_id == account.id)
    db.session.execute(delete(SecurityGroupRule).where(SecurityGroupRule.allowed_group_id.in_(groups)))
    db.session.execute(delete(SecurityGroupRule).where(SecurityGroupRule.security_group_id.in_(groups)))
    _drop(SecurityGroup, account)


@deleter("affinity groups", order=52)
def _affinity_groups(caller, account):
    from app.models import AffinityGroup, AffinityGroupVM
    groups = select(AffinityGroup.id).where(AffinityGroup.account_id == account.id)
    db.session.execute(delete(AffinityGroupVM).where(AffinityGroupVM.affinity_group_id.in_(groups)))
    _drop(AffinityGroup, account)


@deleter("instance groups", order=54)
def _instance_groups(caller, account):
    from app.models import InstanceGroup
    _unpoint(VirtualMachine.group_id, InstanceGroup, account, group_id=None)  # its expunged VMs' rows stay
    _drop(InstanceGroup, account)


@deleter("user data", order=56)
def _userdata(caller, account):
    from app.models import UserData
    _unpoint(VirtualMachine.userdata_id, UserData, account, userdata_id=None)
    # Another account's template linked to one of them (its own templates went already) loses the link.
    _unpoint(Template.userdata_id, UserData, account, userdata_id=None, userdata_policy=None)
    _drop(UserData, account)


@deleter("SSH key pairs", order=60)
def _keypairs(caller, account):
    _drop(SSHKeyPair, account)


@deleter("project memberships", order=80)
def _projects(caller, account):
    """The projects it was a member of lose it; a project's own account takes its project along."""
    from app.services import projects
    projects.remove_account_project_rows(account)
    if account.is_project:
        projects.remove_project_rows(caller, account)


@deleter("resource tags", order=90)
def _tags(caller, account):
    """What is left of its tags (each removed object took its own with it)."""
    from app.models import ResourceTag
    _drop(ResourceTag, account)


@deleter("resource details", order=5)
def _resource_details(caller, account):
    """The details of its objects, first: some kinds (snapshot policies) lose their rows later,
    and a detail is found through its object's owner."""
    from app.services import resource_details
    resource_details.forget_account(account.id)


@deleter("resource limits and counts", order=99)
def _limits(caller, account):
    """Last, as in CloudStack's cleanupAccount: nothing is given back to its counts after this."""
    from app.models import ResourceCount, ResourceLimit
    from app.services import quotas
    quotas.give(account.id, quotas.usage(account.id), commit=False)  # its domains' counts lose what is left
    _drop(ResourceCount, account)
    _drop(ResourceLimit, account)

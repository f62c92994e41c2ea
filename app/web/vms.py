"""VMs: admins see every VM, users their own (the services scope by caller).

- /vms/ — the list: search, filters, pages (newest first, the service's one
  order). While a row is in transition it reloads itself every 2 s.
- /vms/<uuid> — the VM page: facts, NICs, volumes, console, stats, recent jobs
  and events, and the actions that its state, its hypervisor type and the caller
  allow. After an action its job's panel polls (1 s) until the job has finished.
- POST /vms/<uuid>/<action> — one action. A plain POST redirects (+ flash); HTMX
  gets the partial the page includes: the VM page's body, or for the list's quick
  actions a message above the list, which then reloads itself (vmsChanged).
"""
from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.extensions import db
from app.hypervisors import registry
from app.hypervisors.base import Capabilities
from app.models import AsyncJob, JobStatus, VirtualMachine, VMState
from app.services import accounts, events, offerings, roles, settings, templates
from app.services import hosts as hosts_service
from app.services import instance_groups, vm_admin
from app.services import vms as vms_service
from app.services.errors import NotFound, ServiceError
from app.web.forms import EmptyForm
from app.web.infra import _back, _redirect
from app.web.infra_forms import zone_options
from app.web.listing import FilterSelect, Listing, listing, wants_fragment

bp = Blueprint("vms", __name__, url_prefix="/vms")
CHANGED = "vmsChanged"  # HX-Trigger event: the list reloads itself after a quick action
REFRESHER = "vms-refresh"  # id of the list's (hidden) reloading element
PAGESIZE = 50
TRANSITIONAL = (VMState.STARTING, VMState.STOPPING, VMState.MIGRATING, VMState.EXPUNGING)
RECENT = 10  # jobs and events on the VM page


def _vm(uuid: str) -> VirtualMachine:
    """The caller's VM (any VM for an admin); another account's is a 404, like a missing one."""
    try:
        return vms_service.get_vm(current_user, uuid)
    except NotFound:
        abort(404)


def capabilities(vm: VirtualMachine) -> Capabilities:
    t = registry.get(vm.hypervisor_type)
    return t.capabilities if t else Capabilities()  # a plugin no longer installed: no extras


def busy(vm: VirtualMachine) -> bool:
    """In transition, or holding the lock of an action (queued or running)."""
    return vm.state in TRANSITIONAL or vm.active_job_id is not None


@bp.app_template_global()
def vm_working(vm: VirtualMachine) -> bool:
    """Busy with an action that its state does not show (yet): queued, or a reboot."""
    return vm.active_job_id is not None and vm.state not in TRANSITIONAL


# --- Actions --------------------------------------------------------------------

class DestroyForm(FlaskForm):
    expunge = BooleanField("Expunge now (cannot be recovered)")


class MigrateForm(FlaskForm):
    # Choices are only built to show the form; the service checks the host it gets.
    host = SelectField("Destination host", validate_choice=False)


class OfferingForm(FlaskForm):
    offering = SelectField("Service offering", validate_choice=False,
                           validators=[DataRequired("Choose a service offering")])


class IsoForm(FlaskForm):
    iso = SelectField("ISO", validate_choice=False, validators=[DataRequired("Choose an ISO")])


class EditForm(FlaskForm):
    """updateVirtualMachine's everyday fields (the VM page's Settings card)."""
    displayname = StringField("Display name", validators=[Optional(), Length(max=255)])
    group = StringField("Instance group", validators=[Optional(), Length(max=255)],
                        description="Made for the account when it has none of that name")
    haenable = BooleanField("High availability")
    userdata = TextAreaField("User data", validators=[Optional(), Length(max=1 << 20)],
                             description="cloud-init user data; the guest reads it from its router now and "
                                         "from its config drive at the next start")


class RestoreForm(FlaskForm):
    template = SelectField("Template", validate_choice=False)


class KeyForm(FlaskForm):
    keypair = SelectField("SSH key pair", validate_choice=False, validators=[DataRequired("Choose a key pair")])


class AssignForm(FlaskForm):
    account = SelectField("New owner", validate_choice=False, validators=[DataRequired("Choose an account")])


def _edit(caller, uuid: str, f: EditForm):
    vm = vms_service.get_vm(caller, uuid)
    text = (f.userdata.data or "").replace("\r\n", "\n")
    current = base64.b64decode(vm.userdata).decode("utf-8", "replace") if vm.userdata else ""
    userdata = base64.b64encode(text.encode()).decode() if text.strip() and text != current else None
    return vm_admin.update_vm(caller, uuid, display_name=f.displayname.data or None, group=f.group.data or None,
                              ha_enable=f.haenable.data if vm.service_offering.offer_ha else None,
                              userdata_b64=userdata)


def run_by_extension(vm: VirtualMachine) -> bool:
    """An extension runs the VM (External, or Custom bound to one): its disks are the orchestrator's."""
    if vm.hypervisor_type not in ("External", "Custom"):
        return False
    from app.models import Host
    from app.services.extensions import calls
    return calls.serves(vm.host or (db.session.get(Host, vm.last_host_id) if vm.last_host_id else None))


def _may_expunge(vm: VirtualMachine) -> bool:
    return current_user.is_admin or settings.get("allow.user.expunge.recover.vm", account=current_user.account_id)


@dataclass(frozen=True)
class VMAction:
    label: str
    rule: str  # key of vms.ACTIONS_BY_STATE: the states it is offered in
    run: Callable[[Any, str, FlaskForm], Any]  # the service: an AsyncJob, or the VM when synchronous
    form: type[FlaskForm] = EmptyForm
    done: str = ""  # the message of a synchronous action ({name}: the VM's)
    confirm: str | None = None
    danger: bool = False
    admin: bool = False
    capability: str | None = None  # a flag of the type's Capabilities it needs
    when: Callable[[VirtualMachine], bool] = lambda vm: True
    quick: bool = False  # also a button of the list's rows
    choice: str | None = None  # the form's one choice (a select), shown in the page's "Change" card
    no_choice: str = ""  # shown instead of the form when there is nothing to choose
    api: str = ""  # the API command it is: the caller's role must allow it (app/services/roles.py)

    @property
    def simple(self) -> bool:
        """A button and nothing else."""
        return self.form is EmptyForm


VM_ACTIONS: dict[str, VMAction] = {
    "start": VMAction("Start", "start", lambda caller, uuid, f: vms_service.start(caller, uuid), quick=True,
    api="startVirtualMachine"),
    "stop": VMAction("Stop", "stop", lambda caller, uuid, f: vms_service.stop(caller, uuid), quick=True,
    api="stopVirtualMachine"),
    "force-stop": VMAction("Force stop", "stop", lambda caller, uuid, f: vms_service.stop(caller, uuid, True),
                           confirm="Power off {name} without waiting for its guest to shut down?", danger=True,
                           api="stopVirtualMachine"),
    "reboot": VMAction("Reboot", "reboot", lambda caller, uuid, f: vms_service.reboot(caller, uuid),
                       confirm="Reboot {name}?", quick=True, api="rebootVirtualMachine"),
    "destroy": VMAction("Destroy", "destroy",
                        lambda caller, uuid, f: vms_service.destroy(caller, uuid, bool(f.expunge.data)),
                        form=DestroyForm, danger=True, quick=True,
                        confirm="Destroy {name}? It can be recovered until it is expunged.",
                        api="destroyVirtualMachine"),
    "recover": VMAction("Recover", "recover", lambda caller, uuid, f: vms_service.recover(caller, uuid), quick=True,
                        done="VM {name} is recovered: it is Stopped.", api="recoverVirtualMachine"),
    "expunge": VMAction("Expunge", "expunge", lambda caller, uuid, f: vms_service.expunge(caller, uuid),
                        confirm="Expunge {name}? Its root volume is deleted; this cannot be undone.",
                        danger=True, when=_may_expunge, quick=True, api="expungeVirtualMachine"),
    "migrate": VMAction("Migrate", "migrate",
                        lambda caller, uuid, f: vms_service.migrate_from_page(caller, uuid, f.host.data or None),
                        form=MigrateForm, choice="host", admin=True, capability="live_migration",
                        no_choice="its cluster has no other host that is Up and Enabled.",
                        api="migrateVirtualMachine"),
    "change-offering": VMAction("Change offering", "scale",
                                lambda caller, uuid, f: vms_service.change_offering(caller, uuid, f.offering.data),
                                form=OfferingForm, choice="offering", capability="scale_stopped_vm",
                                no_choice="there is no other service offering.",
                                done="VM {name} has a new service offering.", api="changeServiceForVirtualMachine"),
    "attach-iso": VMAction("Attach ISO", "attachiso",
                           lambda caller, uuid, f: vms_service.attach_iso(caller, uuid, f.iso.data),
                           form=IsoForm, choice="iso", capability="iso", no_choice="no ISO is ready in this zone.",
                           when=lambda vm: vm.iso_id is None, api="attachIso"),
    "detach-iso": VMAction("Detach ISO", "detachiso", lambda caller, uuid, f: vms_service.detach_iso(caller, uuid),
                           capability="iso", when=lambda vm: vm.iso_id is not None, api="detachIso"),
    "reset-password": VMAction("Reset password", "resetpassword",
                               lambda caller, uuid, f: vm_admin.reset_password(caller, uuid),
                               confirm="Give {name} a new password? Its router hands it to the guest at its next boot.",
                               when=lambda vm: bool(vm.template and vm.template.password_enabled),
                               api="resetPasswordForVirtualMachine"),
    "restore": VMAction("Restore", "restore", lambda caller, uuid, f: vm_admin.restore(caller, uuid, f.template.data or None),
                        form=RestoreForm, choice="template", danger=True, when=lambda vm: not run_by_extension(vm),
                        confirm="Reinstall the root disk of {name} from the template? Everything on it is lost.",
                        api="restoreVirtualMachine"),
    "reset-ssh-key": VMAction("Reset SSH key", "resetsshkey",
                              lambda caller, uuid, f: vm_admin.reset_ssh_key(caller, uuid, keypair=f.keypair.data),
                              form=KeyForm, choice="keypair", no_choice="the account has no SSH key pair.",
                              capability="config_drive", api="resetSSHKeyForVirtualMachine"),
    "assign": VMAction("Assign to account", "assign",
                       lambda caller, uuid, f: vm_admin.assign(caller, uuid, account=f.account.data),
                       form=AssignForm, choice="account", admin=True, done="VM {name} now belongs to another account.",
                       no_choice="there is no other account.", api="assignVirtualMachine"),
    # Not a button: the Settings card's form (templates/vms/_vm.html)
    "edit": VMAction("Save", "update", _edit, form=EditForm, done="VM {name} is updated.",
                     when=lambda vm: vm.state in (VMState.RUNNING, VMState.STOPPED), api="updateVirtualMachine"),
}


def _caller_may() -> frozenset[str]:
    """The actions the caller's role allows: the same for every VM, so once a request (a list
    page asks for each of its 50 rows)."""
    user_id, may = g.get("vm_actions_allowed", (None, None))
    if may is None or user_id != current_user.id:
        may = frozenset(key for key, a in VM_ACTIONS.items()
                        if (current_user.is_admin or not a.admin) and roles.allowed_name(current_user, a.api))
        g.vm_actions_allowed = (current_user.id, may)
    return may


def offered(vm: VirtualMachine, key: str) -> bool:
    a = VM_ACTIONS[key]
    return (key in _caller_may()
            and vm.state in vms_service.ACTIONS_BY_STATE[a.rule]
            and (a.capability is None or getattr(capabilities(vm), a.capability)) and a.when(vm))


@bp.app_template_global()
def vm_url(uuid: str, action: str | None = None) -> str:
    """url_for("vms.detail", uuid=...) or url_for("vms.act", uuid=..., action=...) without
    building each through the URL map (five a row on the list: ~12 % of the page's CPU): the
    prefix once a request, then the two routes' shape. UUIDs and action keys need no quoting."""
    base = g.get("vm_url_base")
    if base is None:
        base = g.vm_url_base = url_for("vms.index")
    return f"{base}{uuid}" if action is None else f"{base}{uuid}/{action}"


@bp.app_template_global()
def vm_actions(vm: VirtualMachine, quick: bool = False) -> list[tuple[str, VMAction]]:
    """The actions a VM offers now, in order (only the list's quick ones with quick);
    none while it is busy (a second action would be refused as busy)."""
    if busy(vm):
        return []
    return [(key, a) for key, a in VM_ACTIONS.items() if (a.quick or not quick) and offered(vm, key)]


# --- Jobs -----------------------------------------------------------------------

JOB_LABELS = {"deployVirtualMachine": "Deploy", "startVirtualMachine": "Start", "stopVirtualMachine": "Stop",
              "rebootVirtualMachine": "Reboot", "destroyVirtualMachine": "Destroy", "expungeVirtualMachine": "Expunge",
              "migrateVirtualMachine": "Migrate", "scaleVirtualMachine": "Change offering",
              "attachIso": "Attach ISO", "detachIso": "Detach ISO", "restoreVirtualMachine": "Restore",
              "resetSSHKeyForVirtualMachine": "Reset SSH key", "resetPasswordForVirtualMachine": "Reset password",
              "createVMSnapshot": "Take VM snapshot", "revertToVMSnapshot": "Revert to VM snapshot",
              "deleteVMSnapshot": "Delete VM snapshot", "runCustomAction": "Custom action"}


@dataclass(frozen=True)
class JobView:
    """An async job of a VM as the page shows it."""
    job: AsyncJob

    @property
    def label(self) -> str:
        return JOB_LABELS.get(self.job.cmd, self.job.cmd)

    @property
    def state(self) -> str:
        return {JobStatus.PENDING: "pending", JobStatus.SUCCEEDED: "succeeded"}.get(self.job.status, "failed")

    @property
    def pending(self) -> bool:
        return self.job.status == JobStatus.PENDING

    @property
    def error(self) -> str | None:
        if self.state != "failed":
            return None
        return json.loads(self.job.result or "{}").get("errortext") or "The job failed."

    @property
    def password(self) -> str | None:
        """The new password a succeeded job answered (reset password, restore, reset SSH key)."""
        if self.state != "succeeded":
            return None
        result = json.loads(self.job.result or "{}")
        return (result.get("virtualmachine") or {}).get("password") if isinstance(result, dict) else None

    @property
    def custom_result(self) -> dict | None:
        """A custom action's answer (runCustomAction's customactionresult): its name, whether the
        extension succeeded, the action's message and the extension's output (JSON indented)."""
        if self.job.cmd != "runCustomAction" or self.state != "succeeded":
            return None
        out = json.loads(self.job.result or "{}")
        r = out.get("customactionresult") if isinstance(out, dict) else None
        if not isinstance(r, dict):
            return None
        result = r.get("result") if isinstance(r.get("result"), dict) else {"message": r.get("result")}
        output = result.get("details")
        if isinstance(output, str):
            try:  # an extension's JSON answer, indented
                output = json.dumps(json.loads(output), indent=2)
            except ValueError:
                pass
        return {"name": r.get("name") or "The custom action", "success": r.get("success") is not False,
                "message": result.get("message") or "", "output": output}

    def summary(self, name: str) -> str:
        if self.pending:
            return f"{self.label} of VM {name} is under way."
        return self.error or f"{self.label} of VM {name} is done."


def _jobs_of(vm: VirtualMachine, uuid: str | None = None, limit: int = RECENT) -> list[JobView]:
    """The VM's jobs, newest first (users: those of their account, as in queryAsyncJobResult)."""
    q = select(AsyncJob).where(AsyncJob.instance_id == vm.uuid).order_by(AsyncJob.id.desc()).limit(limit)
    from app.services import access
    q = q.where(access.owned(current_user, AsyncJob.account_id))
    if uuid:
        q = q.where(AsyncJob.uuid == uuid)
    return [JobView(j) for j in db.session.scalars(q)]


def _panel_job(vm: VirtualMachine, jobs: list[JobView], uuid: str | None) -> JobView | None:
    """The job the page follows: the one named in the URL, else the VM's running one."""
    if not uuid and vm.active_job_id and vm.active_job_id > 0:  # < 0: a lock not yet given to its job
        uuid = next((j.job.uuid for j in jobs if j.job.id == vm.active_job_id), None)
    if not uuid:
        return None
    return next((j for j in jobs if j.job.uuid == uuid), None) or next(iter(_jobs_of(vm, uuid)), None)


# --- List -----------------------------------------------------------------------

class VMListing(Listing):
    @property
    def custom_pagesize(self) -> int | None:
        return self.pagesize if self.pagesize != PAGESIZE else None

    @property
    def filtered(self) -> bool:
        """The tab (view) is not a filter: an empty Destroyed tab says none are destroyed."""
        return bool(self.q or any(v for k, v in self.filters.items() if k != "view"))

    @property
    def in_transition(self) -> bool:
        return any(busy(vm) for vm in self.rows)


def _fetch(*, keyword, sort, page, view=None, **filters):
    if "pagesize" not in request.args:
        page = (page[0], PAGESIZE)  # listing()'s default is 25; this list shows 50
    return vms_service.list_vms(current_user, keyword=keyword, page=page, sort=sort,
                                destroyed=view == "destroyed", **filters)


# The list's optional columns (Name, State and the actions are always there): (key, label,
# admins only). Which are shown is the viewer's choice, kept in a cookie (vm_columns).
COLUMNS = (("ip", "IP address", False), ("host", "Host", True), ("zone", "Zone", False),
           ("template", "Template", False), ("offering", "Service offering", False),
           ("account", "Account", True), ("created", "Created", False))
DEFAULT_COLUMNS = ("ip", "host", "zone", "template", "offering", "account")
COLUMNS_COOKIE = "vm_columns"


@bp.app_template_global()
def vm_columns() -> list[tuple[str, str, bool]]:
    """(key, label, shown) of the optional columns this viewer may have."""
    chosen = request.cookies.get(COLUMNS_COOKIE)
    keys = set(chosen.split(".")) if chosen is not None else set(DEFAULT_COLUMNS)
    admin = current_user.is_authenticated and current_user.is_admin
    return [(key, label, key in keys) for key, label, admins in COLUMNS if admin or not admins]


@bp.route("/columns")
@login_required
def columns():
    """The column chooser (a GET form: works without JavaScript): remembers the choice in a
    cookie for a year and goes back to the list."""
    known = {key for key, _, _ in COLUMNS}
    chosen = [c for c in request.args.getlist("col") if c in known]
    response = redirect(_back(url_for(".index")))
    response.set_cookie(COLUMNS_COOKIE, ".".join(chosen), max_age=365 * 86400, samesite="Lax", httponly=True,
                        secure=request.is_secure)
    return response


# --- Bulk actions ---------------------------------------------------------------------

BULK = ("start", "stop", "reboot", "destroy")  # the list's bulk buttons (destroy: recoverable)
BULK_MAX = 100  # VMs a bulk action takes at once (a page of the list is 50)


@bp.route("/bulk", methods=["POST"])
@login_required
def bulk():
    """One action on the VMs ticked in the list: each VM its own job (as its own button
    would), refusals flashed; then the progress view of those jobs."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    action = request.form.get("action", "")
    a = VM_ACTIONS.get(action) if action in BULK else None
    if a is None:
        abort(400)
    if not roles.allowed_name(current_user, a.api):
        abort(403)
    uuids = list(dict.fromkeys(request.form.getlist("vm")))
    if not uuids or len(uuids) > BULK_MAX:
        flash("Tick the VMs to act on first." if not uuids else f"At most {BULK_MAX} VMs at once.", "error")
        return redirect(_back(url_for(".index")))
    started = []
    for uuid in uuids:
        try:
            vm = vms_service.get_vm(current_user, uuid)
            out = a.run(current_user, vm.uuid, a.form(formdata=None))
        except NotFound:
            flash("A VM ticked no longer exists.", "error")
            continue
        except ServiceError as e:
            flash(f"{a.label} of VM {vm.name}: {e.message}", "error")
            continue
        if isinstance(out, AsyncJob):
            started.append(out.uuid)
    if not started:
        return redirect(_back(url_for(".index")))
    return redirect(url_for(".bulk_progress", job=started))


@bp.route("/jobs")
@login_required
def bulk_progress():
    """The jobs of a bulk action, each with its VM and outcome; the section reloads
    itself every second while one is still running (then stops)."""
    pairs = vms_service.jobs_with_vms(current_user, request.args.getlist("job")[:BULK_MAX])
    views = [(JobView(job), vm) for job, vm in pairs]
    context = {"views": views, "pending": any(v.pending for v, _ in views),
               "done": sum(v.state == "succeeded" for v, _ in views),
               "failed": sum(v.state == "failed" for v, _ in views)}
    if wants_fragment():
        return render_template("vms/_bulk.html", **context)
    return render_template("vms/bulk.html", **context)


GROUP_CHOICES = 100  # the group filter offers at most this many groups (an admin: of the chosen account)


def _group_select() -> FilterSelect | None:
    """The instance group filter: one page of groups, not every group of every account (an
    admin sees all accounts'); an admin who picked an account gets that account's groups.
    The URL's group stays offered even beyond the page."""
    account = (request.args.get("account") or None) if current_user.is_admin else None
    try:
        groups, total = instance_groups.list_groups(current_user, account=account, page=(1, GROUP_CHOICES))
    except ServiceError:
        return None
    options = [(g.uuid, g.name) for g in groups]
    chosen = request.args.get("group")
    if chosen and chosen not in {uuid for uuid, _ in options}:
        try:
            g = instance_groups.get_group(current_user, chosen, "group")
            options.append((g.uuid, g.name))
        except ServiceError:
            pass
    if not options:
        return None
    label = "Instance group" if total <= GROUP_CHOICES else \
        f"Instance group (first {GROUP_CHOICES} of {total}; choose an account)"
    return FilterSelect("group", label, options)


def _selects() -> list[FilterSelect]:
    gone = request.args.get("view") == "destroyed"  # the Destroyed tab has those states only
    states = [(s.value, s.value) for s in VMState if (s in vms_service.GONE) == gone]
    selects = [FilterSelect("zone", "Zone", zone_options()), FilterSelect("state", "State", states)]
    group = _group_select()
    if group is not None:
        selects.append(group)
    if current_user.is_admin:
        selects += [FilterSelect("host", "Host", hosts_service.host_choices()),
                    FilterSelect("account", "Account", [(n, n) for n in accounts.account_names()])]
    return selects


@bp.route("/")
@login_required
def index():
    filters = {"zone": "zone_uuid", "state": "state", "group": "group_uuid", "view": "view"}
    if current_user.is_admin:
        filters |= {"host": "host_uuid", "account": "account"}
    lst = listing("vms.index", "vms", _fetch, sorts=vms_service.VM_SORT_KEYS, default_sort="-created",
                  filters=filters)
    lst = VMListing(**{f.name: getattr(lst, f.name) for f in fields(lst)})
    if "pagesize" not in request.args:
        lst.pagesize = PAGESIZE
    if wants_fragment():
        # The address bar follows searches and pages, not the list's own reloads.
        push = {} if request.headers.get("HX-Trigger") == REFRESHER else {"HX-Push-Url": lst.url()}
        return render_template("vms/_list.html", lst=lst), push
    return render_template("vms/index.html", lst=lst, selects=_selects())


# --- The VM page ----------------------------------------------------------------

def _forms(vm: VirtualMachine) -> dict[str, FlaskForm | None]:
    """The forms of the actions that take more than a click, with their choices (only
    those offered now: no query for the others); None where there is nothing to choose."""
    forms: dict[str, FlaskForm | None] = {"destroy": DestroyForm(formdata=None)}
    keys = {key for key, _ in vm_actions(vm)}
    if "migrate" in keys:
        f = MigrateForm(formdata=None)
        targets = vms_service.migration_targets(vm)
        f.host.choices = [("", "Let Nubo choose")] + [(h.uuid, f"{h.name} ({h.state})") for h in targets]
        forms["migrate"] = f if targets else None
    if "change-offering" in keys:
        f = OfferingForm(formdata=None)
        f.offering.choices = [(o.uuid, f"{o.name} ({o.cpu_number} vCPU, {o.cpu_speed} MHz, {o.memory} MiB)")
                              for o in offerings.list_offerings(owner=vm.account, zone=vm.zone)[0]
                              if o.id != vm.service_offering_id]
        forms["change-offering"] = f if f.offering.choices else None
    if "restore" in keys:
        f = RestoreForm(formdata=None)
        mine = [(t.uuid, t.name) for t in templates.list_templates(current_user, is_iso=False, zone_uuid=vm.zone.uuid,
                                                                  page=(1, 200))[0]
                if t.hypervisor_type == vm.hypervisor_type and t.id != vm.template_id]
        f.template.choices = ([("", f"Its template ({vm.template.name})")] if vm.template else []) + mine
        forms["restore"] = f if f.template.choices else None
    if "reset-ssh-key" in keys:
        from app.models import SSHKeyPair
        f = KeyForm(formdata=None)
        f.keypair.choices = [(n, n) for n in db.session.scalars(select(SSHKeyPair.name).where(
            SSHKeyPair.account_id == vm.account_id).order_by(SSHKeyPair.name))]
        forms["reset-ssh-key"] = f if f.keypair.choices else None
    if "assign" in keys:
        f = AssignForm(formdata=None)
        f.account.choices = [(n, n) for n in accounts.account_names() if n != vm.account.name]
        forms["assign"] = f if f.account.choices else None
    if "edit" in keys:
        f = EditForm(formdata=None, obj=None)
        f.displayname.data = vm.display_name
        f.group.data = vm.group.name if vm.group else ""
        f.haenable.data = vm.ha_enable
        f.userdata.data = base64.b64decode(vm.userdata).decode("utf-8", "replace") if vm.userdata else ""
        forms["edit"] = f
    if "attach-iso" in keys:
        f = IsoForm(formdata=None)
        f.iso.choices = [(t.uuid, t.name) for t in templates.list_templates(
            current_user, is_iso=True, zone_uuid=vm.zone.uuid, page=(1, 200))[0]]
        forms["attach-iso"] = f if f.iso.choices else None
    return forms


def _static_nat(vm: VirtualMachine) -> dict[int, str]:
    """The VM's public IPs by network id: its Static NAT addresses (CloudStack's publicip)."""
    from app.services.network import rules
    views = rules.list_ip_forwarding_rules(current_user, vm_uuid=vm.uuid, listall=True, page=(1, 100))[0]
    return {v.network.id: v.ip.address for v in views if v.ip is not None}


def _page(vm: VirtualMachine, job_uuid: str | None = None, **context) -> dict:
    jobs = _jobs_of(vm)
    job = _panel_job(vm, jobs, job_uuid)
    from app.web import affinity as affinity_pages
    return dict(vm=vm, caps=capabilities(vm), jobs=jobs, job=job, forms=_forms(vm),
                affinity=affinity_pages.vm_context(vm),
                events=events.list_events(current_user, resource_id=vm.uuid, page=(1, RECENT))[0],
                nics=[n for n in vm.nics if n.removed is None], static_nat=_static_nat(vm), volumes=[v for v in vm.volumes if v.removed is None],
                # Polls: every 1 s while its job runs, every 2 s while the VM is in transition.
                poll="1s" if job and job.pending else ("2s" if busy(vm) else None), **context)


@bp.route("/<uuid>")
@login_required
def detail(uuid: str):
    try:
        vm = vms_service.get_vm(current_user, uuid)
    except NotFound:
        if request.htmx:  # a poller of a VM that was just expunged: back to the list
            flash("That VM no longer exists: it has been expunged.", "info")
            return "", 404, {"HX-Redirect": url_for(".index")}
        abort(404)
    context = _page(vm, request.args.get("job"))
    if wants_fragment():
        return render_template("vms/_vm.html", **context)
    return render_template("vms/detail.html", **context)


@bp.route("/<uuid>/<action>", methods=["POST"])
@login_required
def act(uuid: str, action: str):
    """One action (VM_ACTIONS). The list's quick actions send fragment=list."""
    a = VM_ACTIONS.get(action) or abort(404)
    vm = _vm(uuid)
    if not roles.allowed_name(current_user, a.api):  # the same rule as the API's
        abort(403)
    name = vm.name
    form = a.form()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400)
        return _answer(uuid, name, error="; ".join(e for errors in form.errors.values() for e in errors))
    try:
        out = a.run(current_user, vm.uuid, form)
    except ServiceError as e:
        return _answer(uuid, name, error=e.message)
    if isinstance(out, AsyncJob):
        return _answer(uuid, name, job=JobView(out))
    return _answer(uuid, name, done=a.done.format(name=name))


def _answer(uuid: str, name: str, *, job: JobView | None = None, done: str | None = None,
            error: str | None = None):
    """What an action answers: see the module's docstring. A refusal is a 422 (htmx
    swaps it in: base.html's htmx-config) and changes nothing."""
    status = 422 if error else 200
    if request.form.get("fragment") == "list":
        failed = error or (job and job.error)
        message = error or done or job.summary(name)
        if request.htmx:
            return (render_template("vms/_message.html", category="error" if failed else "success", message=message),
                    status, {} if error else {"HX-Trigger": CHANGED})
        flash(message, "error" if failed else "success")
        return redirect(_back(url_for("vms.index")))
    try:
        vm = vms_service.get_vm(current_user, uuid)
    except NotFound:  # expunged already (destroy with expunge; jobs that ran at once)
        flash(f"VM {name} is expunged.", "success")
        return _redirect(url_for("vms.index"))
    here = url_for("vms.detail", uuid=uuid, job=job.job.uuid if job else None)
    if not request.htmx:
        if error or done:
            flash(error or done, "error" if error else "success")
        return redirect(here)  # a job's outcome is shown by its panel on the page
    return (render_template("vms/_vm.html", **_page(vm, job.job.uuid if job else None, message=done, error=error)),
            status, {"HX-Replace-Url": here} if job else {})

"""Self-service pages: My VMs, the deploy wizard, SSH key pairs, the user's account.

- /portal/ — usage against the account's limits, and the caller's VMs: the VM
  list partial of app/web/vms.py (live state, quick actions), scoped to the
  caller's own account (an admin's too).
- /portal/deploy — the deploy wizard: zone → template or ISO → offering →
  network → SSH key and user data → name → review. Each step is one POST of the
  whole form (earlier choices ride along as hidden fields, so any web process
  serves the next step); every earlier choice is checked again by
  app/services/deploy_options.py, and vms.deploy checks all of it once more. A
  refusal of the deploy goes back to the step of the field it names. Deployed:
  the VM page, following the deploy job until the VM runs.
- /portal/keys — SSH key pairs: create (the private key is shown once, with a
  download), register a public key, delete.
- /portal/account — profile, password, API keys (the secret key shown once).

Pages that show a secret are answered directly (never through a redirect and a
flash, which would put it in the session cookie) and are not cached.
"""
from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, make_response, render_template, request, session, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import (HiddenField, IntegerField, PasswordField, SelectField, SelectMultipleField, StringField,
                     TextAreaField)
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional

from app.services import access, accounts, deploy_options, keypairs, limits, sessions
from app.services import hypervisors as hv
from app.services import vms as vms_service
from app.services.errors import NotFound, ServiceError
from app.services.network import networks, secgroups
from app.web import vms as vm_pages
from app.web.forms import EmptyForm, attach_error
from app.web.infra import _redirect
from app.web.infra_forms import InfraForm, choices
from app.web.listing import wants_fragment

bp = Blueprint("portal", __name__, url_prefix="/portal")
NO_STORE = {"Cache-Control": "no-store"}


# --- Shared by the self-service and account pages ---------------------------------

def delete_page(get: Callable[[], Any], remove: Callable[[Any], str | None], back: str):
    """A list row's Delete (POST, app/templates/_partials/forms.html delete_button): the CSRF
    token checked (400), the object fetched by get() ("not found": 404), remove(obj) does it
    and returns the message to flash (None: nothing to say); a service refusal is flashed as
    an error. Back to the list (HTMX: by its redirect header)."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        obj = get()
    except NotFound:
        abort(404)
    try:
        done = remove(obj)
    except ServiceError as e:
        flash(e.message, "error")
    else:
        if done:
            flash(done, "success")
    return _redirect(back)


def form_page(form_cls: type[InfraForm], save: Callable[[Any], Any], *, template: str = "portal/form.html",
              **context):
    """GET: the form (its fields may be preset from the query string). POST: save(form)
    returns (flash message, next URL), or a response of its own (a secret shown once);
    a service refusal goes beside its field and the form comes back with 422 (the
    form alone for HTMX, which swaps it in place)."""
    action = url_for(request.endpoint, **(request.view_args or {}))
    status = 200
    if request.method == "POST":
        form = form_cls().setup(action)
        if form.validate_on_submit():
            try:
                out = save(form)
            except ServiceError as e:
                attach_error(e, form, aliases=form.aliases)
            else:
                if not isinstance(out, tuple):
                    return out
                flash(out[0], "success")
                return _redirect(out[1])
        status = 422
    else:
        form = form_cls(formdata=request.args or None).setup(action)
    return render_template("infra/_form.html" if wants_fragment() else template, form=form, **context), status


def secret_page(title: str, secrets: list[tuple[str, str]], *, note: str, download: str | None = None,
                back: tuple[str, str], intro: str = ""):
    """A secret shown once: the card alone for HTMX (it replaces the form that asked), else a page."""
    context = dict(title=title, secrets=secrets, note=note, download=download, back=back, intro=intro)
    template = "portal/_secret.html" if wants_fragment() else "portal/secret.html"
    return make_response(render_template(template, **context), 200, NO_STORE)


@bp.app_template_filter("b64")
def b64(value: str) -> str:
    """Base64 of a text, for a data: URL (the download of a secret shown once)."""
    return base64.b64encode(value.encode()).decode()


# --- My VMs ----------------------------------------------------------------------

@bp.route("/")
@login_required
def my_vms():
    """The caller's own VMs in the VM list partial (its poller and pager ask /vms/ for the
    same list: an admin's is kept to the admin's account by the account filter)."""
    project = access.current_project()  # the navigation's project switcher: its VMs and limits
    own = {"account": current_user.account.name} if current_user.is_admin and project is None else {}
    size = vm_pages.PAGESIZE
    rows, total = vms_service.list_vms(current_user, page=(1, size), destroyed=False, **own)
    lst = vm_pages.VMListing(endpoint="vms.index", target="vms-list", table="vms", filters=own,
                             sort="-created", default_sort="-created", pagesize=size, rows=rows, total=total)
    return render_template("portal/my_vms.html", lst=lst, project=project,
                           limits=limits.of_account(project.account if project else current_user.account))


# --- The deploy wizard -----------------------------------------------------------

@dataclass(frozen=True)
class Step:
    key: str
    label: str
    title: str
    fields: tuple[str, ...] = ()


STEPS = (Step("zone", "Zone", "Where should the VM run?", ("zoneid", "owner")),
         Step("image", "Image", "What should it start from?", ("templateid",)),
         Step("offering", "Size", "How big should it be?", ("serviceofferingid", "cpunumber", "memory", "rootdisksize",
                                                             "hypervisor")),
         Step("network", "Network", "Which network?", ("networkid", "securitygroupids")),
         Step("access", "Access", "SSH key and user data", ("keypair", "userdata")),
         Step("name", "Name", "What is it called?", ("name", "displayname")),
         Step("review", "Review", "Review and deploy"))
STEP_OF = {f: i for i, s in enumerate(STEPS) for f in s.fields} | {"networkids": 3, "diskofferingid": 2,
                                                                    "account": 0, "domainid": 0}


class DeployForm(FlaskForm):
    """The wizard's whole state. Choices (radios) are drawn by the template from the step's
    options; deploy_options checks them against what the caller may choose now."""
    step = HiddenField()
    owner = SelectField("Deploy for the account", validate_choice=False,
                        description="administrators: the VM is that account's, within its limits")
    zoneid = HiddenField()
    templateid = HiddenField()
    serviceofferingid = HiddenField()
    cpunumber = IntegerField("vCPUs", validators=[Optional(), NumberRange(1, 256)],
                             description="for a custom-sized offering, within its range")
    memory = IntegerField("Memory (MiB)", validators=[Optional(), NumberRange(32, 16 * 1024 * 1024)],
                          description="for a custom-sized offering, within its range")
    rootdisksize = IntegerField("Root disk size (GiB)", validators=[Optional(), NumberRange(1, 65536)],
                                description="an ISO installs onto an empty disk of this size")
    hypervisor = SelectField("Hypervisor", validate_choice=False,
                             description="the type of host the ISO boots on")
    networkid = HiddenField()
    securitygroupids = SelectMultipleField("Security groups", validate_choice=False,
                                           description="on a network with security groups; none: your default group")
    keypair = SelectField("SSH key pair", validate_choice=False,
                          description="put into the VM by cloud-init (the NoCloud config drive)")
    userdata = TextAreaField("User data", validators=[Optional(), Length(max=1 << 20)],
                             description="optional cloud-init user data, e.g. #cloud-config …")
    name = StringField("Name", validators=[Optional(), Length(max=63)],
                       description="the host name: letters, digits and hyphens; empty: one is made up")
    displayname = StringField("Display name", validators=[Optional(), Length(max=255)])


class Wizard:
    """One step of the wizard for the caller: the choices made so far, checked in order."""

    def __init__(self, form: DeployForm):
        self.form = form
        form.userdata.data = (form.userdata.data or "").replace("\r\n", "\n")  # browsers send CRLF
        self.zone = self.image = self.offering = self.size = None
        self.custom_offered = False  # a customized offering is among the size step's choices
        self.owner = current_user.account  # an admin may choose another account (the zone step)
        self.index = 0

    def check(self, upto: int) -> int:
        """Check the steps before `upto`; the first one refused is where the wizard stays."""
        checks = (self._zone, self._image, self._offering, self._network, self._access, lambda: None)
        for i, check in enumerate(checks[:upto]):
            try:
                check()
            except ServiceError as e:
                attach_error(e, self.form)
                return i
        return upto

    def _zone(self):
        self.owner = deploy_options.owner_of(current_user, self.form.owner.data)
        self.zone = deploy_options.zone_for(current_user, self.form.zoneid.data)

    @property
    def for_other(self) -> bool:
        """An admin deploying in another account's name."""
        return self.owner.id != current_user.account_id

    def _image(self):
        self.image = deploy_options.image_for(current_user, self.zone, self.form.templateid.data)

    def _offering(self):
        f = self.form
        if self.image.is_iso:
            types = deploy_options.iso_types(self.zone)
            if len(types) == 1:
                f.hypervisor.data = types[0]
            if f.hypervisor.data not in types:
                raise NotFound("Choose the hypervisor the ISO boots on", field="hypervisor")
            if not f.rootdisksize.data:
                raise NotFound("A VM from an ISO needs a root disk size", field="rootdisksize")
        self.offering = deploy_options.offering_for(current_user, f.serviceofferingid.data, self.root_bytes,
                                                    self.owner, self.zone)
        self.size = deploy_options.size_for(current_user, self.offering, f.cpunumber.data, f.memory.data,
                                            self.root_bytes, self.owner)

    def _network(self):
        if self.form.networkid.data not in {o.value for o in deploy_options.networks_for(current_user, self.zone,
                                                                                          self.owner)}:
            raise NotFound("Choose one of the networks offered", field="networkid")
        offered = {g.uuid for g in self.groups()}
        if any(u not in offered for u in self.form.securitygroupids.data or []):
            raise NotFound("Choose among your security groups", field="securitygroupids")

    def groups(self) -> list:
        """The caller's security groups, offered on a zone with security-group networks."""
        if not self.sg_zone:
            return []
        if self.for_other:
            return [g for g in secgroups.list_groups(current_user, listall=True, page=(1, 500))[0]
                    if g.account_id == self.owner.id]
        return secgroups.list_groups(current_user, page=(1, 500))[0]

    @property
    def sg_zone(self) -> bool:
        return any(n.security_groups for n in networks.list_networks(current_user, zone_uuid=self.zone.uuid)[0])

    def sg_network(self) -> bool:
        """Does the chosen network (empty: the zone's default) enforce security groups?"""
        chosen = self.form.networkid.data
        return any(n.security_groups and (n.uuid == chosen if chosen else n.is_default)
                   for n in networks.list_networks(current_user, zone_uuid=self.zone.uuid)[0])

    def _access(self):
        if self.form.keypair.data not in {o.value for o in deploy_options.keypairs_for(current_user, self.owner)}:
            raise NotFound("Choose one of your SSH key pairs", field="keypair")

    @property
    def root_bytes(self) -> int:
        return deploy_options.root_bytes(self.image, self.form.rootdisksize.data if self.image.is_iso else None)

    @property
    def step(self) -> Step:
        return STEPS[self.index]

    def options(self) -> list[deploy_options.Option]:
        """The radio choices of this step."""
        key = self.step.key
        if key == "zone":
            if access.is_any_admin(current_user):
                self.form.owner.choices = choices([(o.value, o.title + (f" · {o.detail}" if o.detail else ""))
                                                   for o in deploy_options.owner_options(current_user)])
            return deploy_options.zone_options(current_user)
        if key == "image":
            return deploy_options.image_options(current_user, self.zone)
        if key == "offering":
            types = deploy_options.iso_types(self.zone)
            self.form.hypervisor.choices = choices([(t, hv.display_name(t)) for t in types])
            opts = deploy_options.offerings_for(current_user, self.root_bytes, self.owner, self.zone)
            self.custom_offered = any(o.detail.startswith("custom size") for o in opts)
            return opts
        if key == "network":
            self.form.securitygroupids.choices = choices([(g.uuid, g.name) for g in self.groups()])
            return deploy_options.networks_for(current_user, self.zone, self.owner)
        if key == "access":
            self.form.keypair.choices = choices([(o.value, o.title)
                                                 for o in deploy_options.keypairs_for(current_user, self.owner)])
        return []

    def summary(self) -> list[tuple[Step, str]]:
        f = self.form
        net = next((o.title for o in deploy_options.networks_for(current_user, self.zone, self.owner)
                    if o.value == f.networkid.data), "")
        kind = f"ISO, {f.rootdisksize.data} GiB disk" if self.image.is_iso else "template"
        image = f"{self.image.name} ({kind})"
        size = f"{self.offering.name}: {self.size.cpu_number} vCPU · {self.size.memory} MiB"
        access = ", ".join(filter(None, [f"key {f.keypair.data}" if f.keypair.data else "no SSH key",
                                         f"{len(f.userdata.data.encode())} bytes of user data" if f.userdata.data
                                         else ""]))
        name = f.name.data or "made up by Nubo"
        if self.sg_network():
            chosen = [g.name for g in self.groups() if g.uuid in (f.securitygroupids.data or [])]
            net += " · security groups: " + (", ".join(chosen) or "default")
        where = f"{self.zone.name} · for the account {self.owner.name}" if self.for_other else self.zone.name
        return list(zip(STEPS, [where, image, size, net, access, name]))


def _target(go: str, current: int) -> int:
    if go == "back":
        return max(current - 1, 0)
    if go.startswith("step:"):  # "Change" on the review step
        return min(next((i for i, s in enumerate(STEPS) if s.key == go[5:]), current), current)
    return current + 1 if go == "next" else current


def _deploy(w: Wizard):
    f, iso = w.form, w.image.is_iso
    userdata = base64.b64encode(f.userdata.data.encode()).decode() if f.userdata.data.strip() else None
    try:
        vm, job = vms_service.deploy(
            current_user, zone_uuid=w.zone.uuid, service_offering_uuid=w.offering.uuid,
            template_uuid=None if iso else w.image.uuid, iso_uuid=w.image.uuid if iso else None,
            root_disk_size_gib=f.rootdisksize.data if iso else None, hypervisor=f.hypervisor.data if iso else None,
            network_uuids=[f.networkid.data] if f.networkid.data else None, keypair=f.keypair.data or None,
            security_group_uuids=(f.securitygroupids.data or None) if w.sg_network() else None,
            name=f.name.data, display_name=f.displayname.data or None, userdata=userdata,
            account=w.owner.name if w.for_other else None, domainid=w.owner.domain.uuid if w.for_other else None,
            details={"cpuNumber": w.size.cpu_number, "memory": w.size.memory} if w.offering.is_customized else None)
    except ServiceError as e:
        w.index = STEP_OF.get(e.field or "", w.index)
        attach_error(e, f)
        return None
    if job is None:
        flash(f"VM {vm.name} created.", "success")
    # With a job, the VM page's job panel says it runs and then that it is done (a flash
    # above the page would keep saying "being deployed" after the job ended).
    return _redirect(url_for("vms.detail", uuid=vm.uuid, job=job.uuid if job else None))


@bp.route("/deploy", methods=["GET", "POST"])
@login_required
def deploy():
    form = DeployForm(formdata=request.form if request.method == "POST" else (request.args or None))
    w = Wizard(form)
    status = 200
    if request.method == "POST":
        valid = form.validate()
        if form.csrf_token.errors:
            abort(400)
        current = next((i for i, s in enumerate(STEPS) if s.key == form.step.data), 0)
        go = request.form.get("go", "next")
        w.index = w.check(_target(go, current) if valid else current)
        if go == "deploy" and valid and w.index == len(STEPS) - 1:
            done = _deploy(w)
            if done is not None:
                return done
        if form.form_errors or any(f.errors for f in form):
            status = 422
    else:
        w.index = w.check(0)
    form.step.data = w.step.key
    options = w.options()
    if w.step.key in ("zone", "image", "offering") and not form[w.step.fields[0]].data:
        offered = [o for o in options if o.offered]  # one choice: chosen for the user
        form[w.step.fields[0]].data = offered[0].value if len(offered) == 1 else form[w.step.fields[0]].data
    context = dict(w=w, form=form, steps=STEPS, options=options,
                   summary=w.summary() if w.step.key == "review" else [])
    template = "portal/_deploy.html" if wants_fragment() else "portal/deploy.html"
    return render_template(template, **context), status


# --- SSH key pairs ---------------------------------------------------------------

class CreateKeyForm(InfraForm):
    title = submit = "Create an SSH key pair"
    intro = ("Nubo makes the key pair and shows you its private key once, to save; it keeps only the public key "
             "and puts it into the VMs you deploy with it.")
    dom_id = "key-form"
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    keytype = SelectField("Type", choices=choices(list(keypairs.KEY_TYPES.items())), default="ed25519")


class RegisterKeyForm(InfraForm):
    title = submit = "Register a public key"
    intro = "Use a key pair you already have: paste its public key (the .pub file), never the private one."
    dom_id = "key-form"
    aliases = {"publickey": "publickey"}
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    publickey = TextAreaField("Public key", validators=[DataRequired(), Length(max=16384)],
                              description="ssh-ed25519 AAAA… you@host (or ssh-rsa, ecdsa-sha2-…)",
                              render_kw={"rows": 4, "spellcheck": "false"})


def _crumb(label: str, endpoint: str) -> list[tuple[str, str]]:
    return [(label, url_for(endpoint))]


@bp.route("/keys/", endpoint="keypairs")
@login_required
def key_pairs():
    rows = keypairs.list_keypairs(current_user)[0]
    return render_template("portal/keypairs.html", keys=rows, sha256=keypairs.sha256_fingerprint)


@bp.route("/keys/new", methods=["GET", "POST"])
@login_required
def create_keypair():
    def save(f: CreateKeyForm):
        kp, private = keypairs.create(current_user, f.name.data, key_type=f.keytype.data)
        return secret_page(f"SSH key pair {kp.name}", [("Private key", private)],
                           note="This is the only time the private key is shown: Nubo does not keep it. "
                                "Download it (or copy it) now, and keep it where only you can read it "
                                "(chmod 600).", download=f"{kp.name}.pem",
                           intro=f"Fingerprint {kp.fingerprint}. Choose “{kp.name}” when you deploy a VM.",
                           back=("Back to SSH keys", url_for(".keypairs")))
    return form_page(CreateKeyForm, save, crumbs=_crumb("SSH keys", ".keypairs"))


@bp.route("/keys/register", methods=["GET", "POST"])
@login_required
def register_keypair():
    def save(f: RegisterKeyForm):
        kp = keypairs.register(current_user, f.name.data, f.publickey.data)
        return f"Public key {kp.name} registered ({kp.fingerprint}).", url_for(".keypairs")
    return form_page(RegisterKeyForm, save, crumbs=_crumb("SSH keys", ".keypairs"))


@bp.route("/keys/<uuid>/delete", methods=["POST"])
@login_required
def delete_keypair(uuid: str):
    def remove(kp):
        keypairs.delete_by_uuid(current_user, uuid)
        return f"SSH key pair {kp.name} deleted. VMs made with it keep the key."
    return delete_page(lambda: keypairs.get_keypair(current_user, uuid), remove, url_for(".keypairs"))



# --- The user's own account -------------------------------------------------------

class ProfileForm(InfraForm):
    title, submit, dom_id = "Profile", "Save", "profile-form"
    firstname = StringField("First name", validators=[Optional(), Length(max=255)])
    lastname = StringField("Last name", validators=[Optional(), Length(max=255)])
    email = StringField("Email", validators=[Optional(), Length(max=255)])


class PasswordForm(InfraForm):
    title, submit, dom_id = "Change password", "Change password", "password-form"
    aliases = {"currentpassword": "current", "password": "new"}
    current = PasswordField("Current password", validators=[DataRequired()],
                            render_kw={"autocomplete": "current-password"})
    new = PasswordField("New password", validators=[DataRequired(), Length(max=1024)],
                        render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("New password again", validators=[EqualTo("new", "The two passwords differ")],
                            render_kw={"autocomplete": "new-password"})


def _account_page(**context):
    u = current_user
    profile = ProfileForm(formdata=None, data={"firstname": u.firstname, "lastname": u.lastname, "email": u.email})
    context.setdefault("profile", profile.setup(url_for(".profile")))
    context.setdefault("password", PasswordForm(formdata=None).setup(url_for(".password")))
    return render_template("portal/account.html", keys_form=EmptyForm(), **context)


@bp.route("/account")
@login_required
def account():
    return _account_page()


@bp.route("/account/profile", methods=["POST"])
@login_required
def profile():
    def save(f: ProfileForm):
        accounts.update_user(current_user, current_user, firstname=f.firstname.data, lastname=f.lastname.data,
                             email=f.email.data)
        return "Profile saved.", url_for(".account")
    return form_page(ProfileForm, save, crumbs=_crumb("Your account", ".account"))


@bp.route("/account/password", methods=["POST"])
@login_required
def password():
    def save(f: PasswordForm):
        accounts.update_user(current_user, current_user, password=f.new.data, current_password=f.current.data)
        sessions.begin(session, current_user)  # every other session ended; this one goes on
        return "Your password is changed.", url_for(".account")
    return form_page(PasswordForm, save, crumbs=_crumb("Your account", ".account"))


@bp.route("/account/keys", methods=["POST"])
@login_required
def api_keys():
    if not EmptyForm().validate_on_submit():
        abort(400)
    api_key, secret = accounts.register_keys(current_user)
    return secret_page("Your API keys", [("API key", api_key), ("Secret key", secret)],
                       note="The secret key is shown this once. Keep it with your API client's settings "
                            "(cs, CloudMonkey, Ansible); the keys you had before no longer work.",
                       back=("Back to your account", url_for(".account")))

"""Account and user administration (admins), under /admin/accounts.

- / — accounts with their users and usage against their limits; search.
- /new — create an account with its first user.
- /<uuid> — one account: edit (name, network domain, role), enable/lock/disable (disable
  stops its VMs), delete (a job: its progress shows on the page), usage, limits (an override
  per resource; empty: the max.account.* default), its users with their actions (move to
  another account), add a user.
- /users/<uuid>/password — reset a user's password.
- POST /users/<uuid>/<action> — enable, disable, delete, keys (new API keys, the
  secret shown once).
- /domains — the domain tree; /domains/new, /domains/<uuid>/edit, POST /domains/<uuid>/delete,
  /domains/<uuid>/limits (the domain's limits and what its subtree uses)
  (with clean-up: its accounts go too).
Rules live in app/services/accounts.py and app/services/limits.py.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from flask_wtf import FlaskForm
from sqlalchemy import select

from app.extensions import db
from app.models import Account, Role
from app.services import access, account_deletion, accounts, domains, limits, quotas, roles, settings
from app.services.errors import InvalidParameter, NotFound, ServiceError
from app.web import admin_required
from app.web.forms import EmptyForm
from app.web.infra import _redirect
from app.web.infra_forms import InfraForm, choices
from app.web.listing import listing, wants_fragment
from app.web.portal import form_page, secret_page

bp = Blueprint("accounts_admin", __name__, url_prefix="/admin/accounts")
def _crumbs(acct=None) -> list[tuple[str, str]]:
    out = [("Accounts", url_for(".index"))]
    return out + [(acct.name, url_for(".account", uuid=acct.uuid))] if acct else out


def _found(lookup, uuid: str):
    try:
        return lookup(current_user, uuid)
    except NotFound:
        abort(404)


# --- Accounts ---------------------------------------------------------------------

def _fetch(*, keyword, sort, page):  # noqa: ARG001 - one order: oldest first
    return accounts.list_accounts(current_user, keyword=keyword, page=page)


@bp.route("/")
@admin_required
def index():
    lst = listing("accounts_admin.index", "accounts", _fetch, sorts=(), default_sort="")
    context = dict(lst=lst, usage=limits.of_accounts(lst.rows))
    if wants_fragment():
        return render_template("accounts/_list.html", **context), {"HX-Push-Url": lst.url()}
    return render_template("accounts/index.html", **context)


class UserFields(InfraForm):
    aliases = {"username": "username", "password": "password", "email": "email"}
    username = StringField("User name", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "new-password"})
    email = EmailField("Email", validators=[Optional(), Length(max=255)])
    firstname = StringField("First name", validators=[Optional(), Length(max=255)])
    lastname = StringField("Last name", validators=[Optional(), Length(max=255)])


class AccountForm(UserFields):
    title = submit = "Create an account"
    intro = "An account owns VMs, volumes, templates and key pairs; its first user is made with it."
    dom_id = "account-form"
    layout = ("domain", "account", "role", "roleid", "username", "password", "email", "firstname", "lastname")
    aliases = {**UserFields.aliases, "account": "account", "role": "accounttype", "roleid": "roleid",
               "domain": "domainid"}
    domain = SelectField("Domain", choices=[], validate_choice=False)  # the service checks it (431)
    account = StringField("Account name", validators=[Optional(), Length(max=255)],
                          description="empty: the user name; unique in its domain")
    role = SelectField("Type", choices=choices([(Role.USER, "User account"), (Role.DOMAIN_ADMIN, "Domain admin"),
                                                (Role.ADMIN, "Administrators' account (ROOT only)")]))
    roleid = SelectField("Role", description="empty: the default role of its type", validate_choice=False)

    def prepare(self) -> None:
        self.domain.choices = choices(domain_options())
        self.roleid.choices = choices([("", "—")] + _role_options())


class UserForm(UserFields):
    title = submit = "Add a user"
    dom_id = "user-form"


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def create():
    def save(f: AccountForm):
        name = (f.account.data or f.username.data).strip()
        acct = accounts.create_account_with_user(
            current_user, username=f.username.data, password=f.password.data, account=name,
            accounttype=None if f.roleid.data else {Role.USER: 0, Role.ADMIN: 1, Role.DOMAIN_ADMIN: 2}[f.role.data],
            role_uuid=f.roleid.data or None, domainid=f.domain.data or None, email=f.email.data or None,
            firstname=f.firstname.data or None, lastname=f.lastname.data or None)
        return f"Account {acct.name} created with user {f.username.data}.", url_for(".account", uuid=acct.uuid)
    return form_page(AccountForm, save, crumbs=_crumbs())


class LimitsForm(InfraForm):
    """One field per limited resource (quotas.TYPES); empty: the max.account.* default."""
    title, submit, dom_id = "Limits", "Save limits", "limits-form"


for _resource, (_setting, _what, _number) in quotas.TYPES.items():
    setattr(LimitsForm, _resource, IntegerField(
        f"{limits.LABELS[_resource]}" + (f" ({limits.UNITS[_resource]})" if _resource in limits.UNITS else ""),
        validators=[Optional(), NumberRange(-1, 10**9)]))


def _limits_form(acct, formdata=None) -> LimitsForm:
    current = limits.of_account(acct)
    form = LimitsForm(formdata=formdata, data={lim.resource: lim.max for lim in current if lim.overridden})
    form.setup(url_for(".save_limits", uuid=acct.uuid))
    for lim in current:  # the default shows as the placeholder
        default = settings.get(quotas.TYPES[lim.resource][0])
        form[lim.resource].description = f"-1: no limit; empty: the default ({default})"
    return form


def _save_changed(form: LimitsForm, current, save) -> None:
    """Only the limits the form changed, saved with save(resource, value): one event each."""
    for lim in current:
        value = form[lim.resource].data
        if value != (lim.max if lim.overridden else None):
            save(lim.resource, value)


def _role_options() -> list[tuple[str, str]]:
    rows, _ = roles.list_roles(current_user)
    return [(r.uuid, f"{r.name} ({r.role_type})") for r in rows]


def _account_page(acct, status: int = 200, **context):
    users = [u for u in acct.users if u.removed is None]
    context.setdefault("limits_form", _limits_form(acct))
    others = [n for n in accounts.account_names() if n != acct.name]
    return render_template("accounts/account.html", acct=acct, users=users, usage=limits.of_account(acct),
                           action_form=EmptyForm(), role=roles.role_of(acct), move_to=others,
                           deletion=(job := account_deletion.job_of(acct)),
                           deletion_error=account_deletion.error_of(job), **context), status


@bp.route("/<uuid>")
@admin_required
def account(uuid: str):
    return _account_page(_found(accounts.visible_account, uuid))


STATES = {"enable": "enabled", "disable": "disabled (its running VMs are being stopped)", "lock": "locked",
          "delete": "marked for removal: everything it owns is being deleted"}


@bp.route("/<uuid>/<state>", methods=["POST"])
@admin_required
def set_state(uuid: str, state: str):
    if state not in STATES:
        abort(404)
    acct = _found(accounts.visible_account, uuid)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        if state == "enable":
            accounts.enable_account(current_user, acct)
        elif state == "lock":
            accounts.lock_account(current_user, acct)
        elif state == "disable":
            accounts.disable_account(current_user, acct)
        else:
            account_deletion.start(current_user, acct)
    except ServiceError as e:
        flash(e.message, "error")
    else:
        flash(f"Account {acct.name} {STATES[state]}.", "success")
    db.session.expire_all()
    if db.session.get(Account, acct.id).removed is not None:  # the job ran at once
        return _redirect(url_for(".index"))
    return _redirect(url_for(".account", uuid=uuid))


@bp.route("/<uuid>/deletion")
@admin_required
def deletion(uuid: str):
    """The deletion's progress (polled by the account page); once done, back to the list."""
    acct = db.session.scalar(select(Account).where(Account.uuid == uuid))
    if acct is None or not (acct.cleanup_started or acct.removed):
        abort(404)
    if acct.removed is not None:
        flash(f"Account {acct.name.split('#')[0]} deleted.", "success")
        return "", 200, {"HX-Redirect": url_for(".index")}
    job = account_deletion.job_of(acct)
    return render_template("accounts/_deletion.html", acct=acct, deletion=job,
                           deletion_error=account_deletion.error_of(job))


class EditAccountForm(InfraForm):
    title, submit, dom_id = "Edit the account", "Save", "edit-account-form"
    aliases = {"newname": "name", "networkdomain": "network_domain", "roleid": "roleid"}
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    network_domain = StringField("Network domain", validators=[Optional(), Length(max=190)],
                                 description="the DNS domain of its networks' VMs")
    roleid = SelectField("Role", validate_choice=False)

    def prepare(self) -> None:
        self.roleid.choices = choices(_role_options())


@bp.route("/<uuid>/edit", methods=["GET", "POST"])
@admin_required
def edit(uuid: str):
    acct = _found(accounts.visible_account, uuid)
    if request.method == "GET" and not request.args:  # the form starts from what the account has
        role = roles.role_of(acct)
        return redirect(url_for(".edit", uuid=uuid, name=acct.name, network_domain=acct.network_domain or "",
                                roleid=role.uuid if role else ""))

    def save(f: EditAccountForm):
        role = roles.role_of(acct)
        accounts.update_account(current_user, acct, newname=f.name.data,
                                network_domain=f.network_domain.data or "",
                                role_uuid=f.roleid.data if f.roleid.data and (not role or f.roleid.data != role.uuid)
                                else None)
        return f"Account {acct.name} saved.", url_for(".account", uuid=uuid)
    return form_page(EditAccountForm, save, crumbs=_crumbs(acct), heading=f"Edit {acct.name}")


@bp.route("/<uuid>/limits", methods=["POST"])
@admin_required
def save_limits(uuid: str):
    acct = _found(accounts.visible_account, uuid)
    form = _limits_form(acct, formdata=request.form)
    if form.validate_on_submit():
        try:
            _save_changed(form, limits.of_account(acct),
                          lambda resource, value: limits.set_limit(current_user, acct, resource, value))
        except ServiceError as e:
            form.form_errors.append(e.message)
        else:
            flash(f"Limits of {acct.name} saved.", "success")
            return _redirect(url_for(".account", uuid=uuid))
    if wants_fragment():
        return render_template("infra/_form.html", form=form), 422
    return _account_page(acct, 422, limits_form=form)


@bp.route("/<uuid>/users/new", methods=["GET", "POST"])
@admin_required
def add_user(uuid: str):
    acct = _found(accounts.visible_account, uuid)

    def save(f: UserForm):
        user = accounts.create_user(f.username.data, f.password.data, account=acct.name, email=f.email.data or None,
                                    firstname=f.firstname.data or None, lastname=f.lastname.data or None,
                                    caller=current_user)
        return f"User {user.username} added to {acct.name}.", url_for(".account", uuid=uuid)
    return form_page(UserForm, save, crumbs=_crumbs(acct), heading=f"Add a user to {acct.name}")


# --- Users ------------------------------------------------------------------------

class ResetPasswordForm(InfraForm):
    title = submit = "Reset the password"
    dom_id = "password-form"
    aliases = {"password": "password"}
    password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)],
                             description="tell the user over a safe channel",
                             render_kw={"autocomplete": "new-password"})


@bp.route("/users/<uuid>/password", methods=["GET", "POST"])
@admin_required
def reset_password(uuid: str):
    user = _found(accounts.visible_user, uuid)
    if user.id == current_user.id:  # one's own goes through the account page (it needs the current one)
        return _redirect(url_for("portal.account"))

    def save(f: ResetPasswordForm):
        accounts.update_user(current_user, user, password=f.password.data)
        return f"The password of {user.username} is reset.", url_for(".account", uuid=user.account.uuid)
    return form_page(ResetPasswordForm, save, crumbs=_crumbs(user.account),
                     heading=f"Reset the password of {user.username}")


USER_ACTIONS = {"enable": "enabled", "disable": "disabled", "delete": "deleted", "keys": ""}


class MoveUserForm(FlaskForm):
    account = SelectField("To account", validate_choice=False, validators=[DataRequired()])


@bp.route("/users/<uuid>/move", methods=["POST"])
@admin_required
def move_user(uuid: str):
    """moveUser: the user into another account (its role follows that account's)."""
    user = _found(accounts.visible_user, uuid)
    form = MoveUserForm()
    if not form.validate_on_submit():
        abort(400)
    back = url_for(".account", uuid=user.account.uuid)
    try:
        target = accounts.find_account(current_user, name=form.account.data)
        accounts.move_user(current_user, user, target)
    except ServiceError as e:
        flash(e.message, "error")
    else:
        flash(f"User {user.username} moved to {target.name}.", "success")
    return _redirect(back)


@bp.route("/users/<uuid>/<action>", methods=["POST"])
@admin_required
def user_action(uuid: str, action: str):
    if action not in USER_ACTIONS:
        abort(404)
    user = _found(accounts.visible_user, uuid)
    if not EmptyForm().validate_on_submit():
        abort(400)
    back = url_for(".account", uuid=user.account.uuid)
    try:
        if action == "keys":
            api_key, secret = accounts.register_keys(user, caller=current_user)
            return secret_page(f"API keys of {user.username}", [("API key", api_key), ("Secret key", secret)],
                               note="Give them to the user over a safe channel: the secret key is not shown again. "
                                    "The user's old keys no longer work.", back=(f"Back to {user.account.name}", back))
        if action == "delete":
            accounts.delete_user(current_user, user)
        else:
            if user.id == current_user.id and action == "disable":
                raise InvalidParameter("You cannot disable yourself", field="id")
            accounts.set_user_state(user, enabled=action == "enable", caller=current_user)
    except ServiceError as e:
        flash(e.message, "error")
    else:
        flash(f"User {user.username} {USER_ACTIONS[action]}.", "success")
    return _redirect(back)


# --- Domains ----------------------------------------------------------------------

def domain_options() -> list[tuple[str, str]]:
    """Every domain the admin may see, by path ("ROOT/sales/emea")."""
    rows, _ = domains.list_domains(current_user, listall=True, page=None)
    return [(d.uuid, domains.display_path(d)) for d in rows]


class DomainForm(InfraForm):
    title = submit = "Create a domain"
    intro = "A domain groups accounts; its admins (domain admin accounts) manage it and the domains below it."
    dom_id = "domain-form"
    aliases = {"name": "name", "parent": "parentdomainid", "network_domain": "networkdomain"}
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    parent = SelectField("Parent domain", choices=[])
    network_domain = StringField("Network domain", validators=[Optional(), Length(max=255)],
                                 description="the DNS suffix of the domain's networks (optional)")

    def prepare(self) -> None:
        self.parent.choices = choices(domain_options())


class DomainEditForm(InfraForm):
    title, submit, dom_id = "Edit the domain", "Save", "domain-edit-form"
    aliases = {"name": "name", "network_domain": "networkdomain"}
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    network_domain = StringField("Network domain", validators=[Optional(), Length(max=255)])


class DeleteDomainForm(EmptyForm):
    cleanup = BooleanField("Also delete its sub-domains and accounts (clean-up)")


@bp.route("/domains")
@admin_required
def domains_index():
    rows, _ = domains.list_domains(current_user, listall=True, page=None)
    kids = domains.has_children([d.id for d in rows])
    counts = accounts.accounts_per_domain([d.id for d in rows])
    return render_template("accounts/domains.html", rows=rows, kids=kids, counts=counts,
                           path=domains.display_path, delete_form=DeleteDomainForm())


@bp.route("/domains/new", methods=["GET", "POST"])
@admin_required
def create_domain():
    def save(f: DomainForm):
        d = domains.create_domain(current_user, f.name.data, f.parent.data or None, f.network_domain.data or None)
        return f"Domain {domains.display_path(d)} created.", url_for(".domains_index")
    return form_page(DomainForm, save, crumbs=[("Domains", url_for(".domains_index"))])


@bp.route("/domains/<uuid>/edit", methods=["GET", "POST"])
@admin_required
def edit_domain(uuid: str):
    d = _found(domains.get, uuid)

    def save(f: DomainEditForm):
        domains.update_domain(current_user, d.uuid, name=f.name.data if f.name.data != d.name else None,
                              network_domain=f.network_domain.data or "")
        return f"Domain {f.name.data} saved.", url_for(".domains_index")
    if request.method == "GET" and not request.args:  # the form starts filled with the domain's values
        return _redirect(url_for(".edit_domain", uuid=uuid, name=d.name, network_domain=d.network_domain or ""))
    return form_page(DomainEditForm, save, crumbs=[("Domains", url_for(".domains_index"))],
                     heading=f"Edit {domains.display_path(d)}")


@bp.route("/domains/<uuid>/delete", methods=["POST"])
@admin_required
def delete_domain(uuid: str):
    d = _found(domains.get, uuid)
    form = DeleteDomainForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        domains.delete_domain(current_user, d, bool(form.cleanup.data))
    except ServiceError as e:
        flash(e.message, "error")
    else:
        flash(f"Domain {domains.display_path(d)} deleted.", "success")
    return _redirect(url_for(".domains_index"))


@bp.route("/domains/<uuid>/limits", methods=["GET", "POST"])
@admin_required
def domain_limits(uuid: str):
    """A domain's limits (updateResourceLimit domainid=) and what its subtree's accounts use.
    ROOT is never limited: its page shows the usage only."""
    d = _found(domains.get, uuid)
    current = limits.of_domain(d)
    form, status = None, 200
    if d.parent_id is not None:
        form = LimitsForm(formdata=request.form if request.method == "POST" else None,
                          data={lim.resource: lim.max for lim in current if lim.overridden})
        form.setup(url_for(".domain_limits", uuid=uuid))
        for lim in current:
            form[lim.resource].description = (f"-1: no limit; empty: the parent domain's limit or "
                                              f"{quotas.DOMAIN_SETTINGS[lim.resource][0]}")
    if request.method == "POST":
        if form is None:
            abort(400)
        if form.validate_on_submit():
            try:
                _save_changed(form, current,
                              lambda resource, value: limits.set_domain_limit(current_user, d, resource, value))
            except ServiceError as e:
                form.form_errors.append(e.message)
            else:
                flash(f"Limits of the domain {domains.display_path(d)} saved.", "success")
                return _redirect(url_for(".domain_limits", uuid=uuid))
        status = 422
        if wants_fragment():
            return render_template("infra/_form.html", form=form), status
    return render_template("accounts/domain_limits.html", domain=d, path=domains.display_path(d),
                           usage=limits.of_domain(d), form=form), status

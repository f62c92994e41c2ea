"""Account and user administration (admins), under /admin/accounts.

- / — accounts with their users and usage against their limits; search.
- /new — create an account with its first user.
- /<uuid> — one account: enable/disable, usage, limits (an override per resource;
  empty: the max.account.* default), its users with their actions, add a user.
- /users/<uuid>/password — reset a user's password.
- POST /users/<uuid>/<action> — enable, disable, delete, keys (new API keys, the
  secret shown once).
Rules live in app/services/accounts.py and app/services/limits.py.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, render_template, request, url_for
from flask_login import current_user
from wtforms import EmailField, IntegerField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app.models import Role
from app.services import accounts, limits, quotas, settings
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
    layout = ("account", "role", "username", "password", "email", "firstname", "lastname")
    aliases = {**UserFields.aliases, "account": "account", "role": "role"}
    account = StringField("Account name", validators=[Optional(), Length(max=255)],
                          description="empty: the user name")
    role = SelectField("Type", choices=choices([(Role.USER, "User account"), (Role.ADMIN, "Administrators' account")]))


class UserForm(UserFields):
    title = submit = "Add a user"
    dom_id = "user-form"


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def create():
    def save(f: AccountForm):
        name = (f.account.data or f.username.data).strip()
        if accounts.get_account(name):
            raise InvalidParameter(f"An account named {name} already exists", field="account")
        user = accounts.create_user(f.username.data, f.password.data, role=f.role.data, account=name,
                                    email=f.email.data or None, firstname=f.firstname.data or None,
                                    lastname=f.lastname.data or None)
        return f"Account {user.account.name} created with user {user.username}.", \
            url_for(".account", uuid=user.account.uuid)
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


def _account_page(acct, status: int = 200, **context):
    users = [u for u in acct.users if u.removed is None]
    context.setdefault("limits_form", _limits_form(acct))
    return render_template("accounts/account.html", acct=acct, users=users, usage=limits.of_account(acct),
                           action_form=EmptyForm(), **context), status


@bp.route("/<uuid>")
@admin_required
def account(uuid: str):
    return _account_page(_found(accounts.visible_account, uuid))


@bp.route("/<uuid>/<state>", methods=["POST"])
@admin_required
def set_state(uuid: str, state: str):
    if state not in ("enable", "disable"):
        abort(404)
    acct = _found(accounts.visible_account, uuid)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        accounts.set_account_state(current_user, acct, enabled=state == "enable")
    except ServiceError as e:
        flash(e.message, "error")
    else:
        flash(f"Account {acct.name} {state}d.", "success")
    return _redirect(url_for(".account", uuid=uuid))


@bp.route("/<uuid>/limits", methods=["POST"])
@admin_required
def save_limits(uuid: str):
    acct = _found(accounts.visible_account, uuid)
    form = _limits_form(acct, formdata=request.form)
    if form.validate_on_submit():
        try:
            for lim in limits.of_account(acct):  # only what changed, one event each
                value = form[lim.resource].data
                if value != (lim.max if lim.overridden else None):
                    limits.set_limit(current_user, acct, lim.resource, value)
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
                                    firstname=f.firstname.data or None, lastname=f.lastname.data or None)
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
            api_key, secret = accounts.register_keys(user)
            return secret_page(f"API keys of {user.username}", [("API key", api_key), ("Secret key", secret)],
                               note="Give them to the user over a safe channel: the secret key is not shown again. "
                                    "The user's old keys no longer work.", back=(f"Back to {user.account.name}", back))
        if action == "delete":
            accounts.delete_user(current_user, user)
        else:
            if user.id == current_user.id and action == "disable":
                raise InvalidParameter("You cannot disable yourself", field="id")
            accounts.set_user_state(user, enabled=action == "enable")
    except ServiceError as e:
        flash(e.message, "error")
    else:
        flash(f"User {user.username} {USER_ACTIONS[action]}.", "success")
    return _redirect(back)

"""A template's (or ISO's) edit page: its settings (updateTemplate), who may use it
(updateTemplatePermissions) and copies to other zones (copyTemplate). For its owner and
admins; every form is a plain POST that comes back to the page with the service's refusal
beside the field, or a flash."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from app.services import template_copy, templates
from app.services import zones as zones_service
from app.services.errors import NotFound, PermissionDenied, ServiceError
from app.web.forms import attach_error
from app.web.infra_forms import choices

bp = Blueprint("template_edit", __name__, url_prefix="/templates")


class SettingsForm(FlaskForm):
    form = HiddenField(default="settings")
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    displaytext = StringField("Description", validators=[Optional(), Length(max=4096)])
    ostypeid = SelectField("OS type", validate_choice=False)
    ispublic = BooleanField("Public", description="every account may use it")
    isfeatured = BooleanField("Featured", description="offered first to everyone")


class PermissionsForm(FlaskForm):
    form = HiddenField(default="permissions")
    op = SelectField("Action", choices=choices([("add", "Share with"), ("remove", "Stop sharing with")]))
    accounts = StringField("Accounts", validators=[DataRequired(), Length(max=4096)],
                           description="account names, comma separated (of the owner's domain)")


class CopyForm(FlaskForm):
    form = HiddenField(default="copy")
    destzoneid = SelectField("Copy to zone", validators=[DataRequired(message="Choose a zone")])


def _owned(uuid: str):
    try:
        return templates.get_visible(current_user, uuid, owned=True)
    except NotFound:
        abort(404)
    except PermissionDenied:
        abort(403)


def _forms(t, posted: str | None):
    data = request.form if request.method == "POST" else None
    s = SettingsForm(formdata=data if posted == "settings" else None, name=t.name, displaytext=t.display_text,
                     ostypeid=t.os_type.uuid if t.os_type else "", ispublic=t.is_public, isfeatured=t.featured)
    os_types = sorted(templates.list_os_types()[0], key=lambda o: o.description.lower())
    s.ostypeid.choices = choices([("", "—")] + [(o.uuid, o.description) for o in os_types])
    if not current_user.is_admin:
        del s.ispublic, s.isfeatured
    p = PermissionsForm(formdata=data if posted == "permissions" else None)
    c = CopyForm(formdata=data if posted == "copy" else None)
    present = {row.ref.zone_id for row in templates.get_for_page(current_user, t.uuid).copies
               if row.ref.state in template_copy.READY}
    c.zones = [("", "Choose a zone")] + [(z.uuid, z.name) for z in zones_service.list_zones()[0]
                                         if z.id not in present]
    c.destzoneid.choices = choices(c.zones)
    return s, p, c


def _save(t, posted: str, forms) -> str:
    s, p, c = forms
    kind = "ISO" if t.is_iso else "Template"
    if posted == "settings":
        templates.update_template(current_user, t.uuid, name=s.name.data, display_text=s.displaytext.data or "",
                                  os_type_uuid=s.ostypeid.data or None, is_iso=t.is_iso,
                                  is_public=s.ispublic.data if "ispublic" in s else None,
                                  featured=s.isfeatured.data if "isfeatured" in s else None)
        return f"{kind} {s.name.data.strip()} saved."
    if posted == "permissions":
        names = [n.strip() for n in p.accounts.data.split(",") if n.strip()]
        templates.update_permissions(current_user, t.uuid, is_iso=t.is_iso, accounts=names, op=p.op.data)
        return f"{kind} {t.name} {'shared with' if p.op.data == 'add' else 'no longer shared with'} {', '.join(names)}."
    zone = dict(c.zones).get(c.destzoneid.data, c.destzoneid.data)
    template_copy.copy_template(current_user, t.uuid, dest_zone_uuids=[c.destzoneid.data], is_iso=t.is_iso)
    return f"{kind} {t.name} is being copied to zone {zone}: its copies below follow it."


@bp.route("/<uuid>/edit", methods=["GET", "POST"])
@login_required
def edit(uuid: str):
    t = _owned(uuid)
    posted = request.form.get("form") if request.method == "POST" else None
    if posted not in (None, "settings", "permissions", "copy"):
        abort(400)
    forms = _forms(t, posted)
    status = 200
    if posted:
        form = forms[("settings", "permissions", "copy").index(posted)]
        if form.validate_on_submit():
            try:
                message = _save(t, posted, forms)
            except ServiceError as e:
                attach_error(e, form, aliases={"id": "destzoneid", "sourcezoneid": "destzoneid", "op": "op"})
            else:
                flash(message, "success")
                return redirect(url_for(".edit", uuid=uuid) if posted != "copy" else url_for("images.detail",
                                                                                            uuid=uuid))
        status = 422
    row = templates.get_for_page(current_user, t.uuid)
    shared = templates.list_permissions(current_user, t.uuid, is_iso=t.is_iso)["account"]
    return render_template("images/edit.html", t=t, row=row, shared=shared, settings_form=forms[0],
                           permissions_form=forms[1], copy_form=forms[2], posted=posted), status

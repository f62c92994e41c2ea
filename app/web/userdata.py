"""User data pages (CloudStack 4.18+ registered user data): the caller's user data objects
(admins: every account's), register one, delete one (refused while a VM uses it)."""
from __future__ import annotations

import base64

from flask import Blueprint, render_template, url_for
from flask_login import current_user, login_required
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.services import userdata
from app.web.infra_forms import InfraForm

bp = Blueprint("userdata", __name__, url_prefix="/userdata")


class RegisterForm(InfraForm):
    title = submit = "Register user data"
    intro = ("A named cloud-init user data you can give VMs when you deploy or update them. Declare the variables "
             "its text reads (e.g. role, size): each VM gives their values, which cloud-init's Jinja templates "
             "read as {{ ds.meta_data.role }}.")
    dom_id = "userdata-form"
    name = StringField("Name", validators=[DataRequired(), Length(max=256)])
    userdata = TextAreaField("User data", validators=[DataRequired(), Length(max=1 << 20)],
                             description="#cloud-config … (stored base64-encoded, as CloudStack)",
                             render_kw={"rows": 10, "spellcheck": "false"})
    params = StringField("Variables", validators=[Optional(), Length(max=4096)],
                         description="Comma-separated names, e.g. role,size")


@bp.route("/")
@login_required
def index():
    rows = userdata.list_userdata(current_user)[0]
    decoded = {u.id: base64.b64decode(u.userdata).decode("utf-8", "replace") for u in rows}
    return render_template("userdata/index.html", rows=rows, decoded=decoded)


@bp.route("/new", methods=["GET", "POST"])
@login_required
def register():
    from app.web.portal import form_page

    def save(f: RegisterForm):
        text = (f.userdata.data or "").replace("\r\n", "\n")
        u = userdata.register(current_user, f.name.data, base64.b64encode(text.encode()).decode(),
                              params=f.params.data or None)
        return f"User data {u.name} registered.", url_for(".index")
    return form_page(RegisterForm, save, crumbs=[("User data", url_for(".index"))])


@bp.route("/<uuid>/delete", methods=["POST"])
@login_required
def delete(uuid: str):
    from app.web.portal import delete_page

    def remove(u):
        name = u.name
        userdata.delete(current_user, uuid)
        return f"User data {name} deleted."
    return delete_page(lambda: userdata.get_userdata(current_user, uuid), remove, url_for(".index"))

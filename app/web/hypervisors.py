"""Admin "Hypervisors" page: every registered type, its flags and usage, the
hypervisor.list toggle, Custom's display name, and the support matrix."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from app.hypervisors import registry
from app.services import hypervisors as hv
from app.services.errors import ServiceError
from app.web import admin_required
from app.web.forms import EmptyForm

bp = Blueprint("hypervisors", __name__, url_prefix="/admin/hypervisors")


class CustomNameForm(FlaskForm):
    display_name = StringField("Display name", validators=[DataRequired(), Length(max=64)])


def _summary(name: str) -> hv.TypeSummary:
    for s in hv.summaries():
        if s.type.name == name:
            return s
    abort(404)


def _row(name: str, form: CustomNameForm | None = None, editing: bool = False):
    return render_template("hypervisors/_row.html", s=_summary(name), form=form, editing=editing)


@bp.route("/")
@admin_required
def index():
    return render_template("hypervisors/index.html", summaries=hv.summaries())


@bp.route("/<name>/toggle", methods=["POST"])
@admin_required
def toggle(name: str):
    if registry.get(name) is None or not EmptyForm().validate_on_submit():
        abort(404)
    try:
        hv.set_enabled(name, not hv.is_enabled(name))
    except ServiceError as e:
        if request.htmx:
            return _row(name), 422
        flash(e.message, "error")
    if request.htmx:
        return _row(name)
    return redirect(url_for(".index"))


@bp.route("/Custom/name", methods=["GET", "POST"])
@admin_required
def custom_name():
    form = CustomNameForm(data={"display_name": hv.display_name(hv.CUSTOM)})
    if request.method == "GET":
        # The inline editor (HTMX) or the plain page without JavaScript.
        if request.htmx:
            return _row(hv.CUSTOM, form=form, editing=True)
        return render_template("hypervisors/custom_name.html", form=form)
    form = CustomNameForm()
    if form.validate_on_submit():
        try:
            hv.settings.update(hv.CUSTOM_NAME_SETTING, form.display_name.data)
        except ServiceError as e:
            form.display_name.errors = [*form.display_name.errors, e.message]
        else:
            if request.htmx:
                return _row(hv.CUSTOM)
            flash(f"The Custom type is now shown as {hv.display_name(hv.CUSTOM)}.", "success")
            return redirect(url_for(".index"))
    if request.htmx:
        return _row(hv.CUSTOM, form=form, editing=True), 422
    return render_template("hypervisors/custom_name.html", form=form), 422


@bp.route("/matrix")
@admin_required
def matrix():
    return render_template("hypervisors/matrix.html", summaries=hv.summaries(), rows=hv.MATRIX_ROWS)

"""The Tags card of every taggable object's page (templates/_partials/tags.html): list, add,
remove, as plain form POSTs and from HTMX (the answer is the card itself); and the read-only
list of an object's resource details (templates/_partials/resource_details.html)."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from app.services import resource_details, tags
from app.services.errors import InvalidParameter, ServiceError
from app.web.infra import _back

bp = Blueprint("tags", __name__, url_prefix="/tags")


class TagForm(FlaskForm):
    key = StringField("Key", validators=[DataRequired(), Length(max=tags.MAX_LENGTH)])
    value = StringField("Value", validators=[DataRequired(), Length(max=tags.MAX_LENGTH)])


@bp.app_template_global()
def tag_card(resource_type: str, uuid: str) -> dict:
    """What the partial shows for one object (its page includes it with this)."""
    return dict(card=tags.card(current_user, resource_type, uuid), tag_form=TagForm(formdata=None))


@bp.app_template_global()
def resource_details_of(resource_type: str, uuid: str) -> list:
    """The details of one object the caller may read: [(ResourceDetail, uuid, type)]."""
    try:
        rows, _ = resource_details.list_details(current_user, resource_type, resource_id=uuid)
    except InvalidParameter:  # an object that no longer exists (a removed VM's page): none
        return []
    return rows


def _card(rtype: str, uuid: str) -> tags.Card:
    try:
        return tags.card(current_user, rtype, uuid)
    except InvalidParameter:  # unknown type, or an object the caller may not see: as a missing one
        abort(404)


def _answer(rtype: str, uuid: str, *, form=None, error: str | None = None, done: str | None = None):
    if not request.htmx:
        if error or done:
            flash(error or done, "error" if error else "success")
        return redirect(_back(url_for("portal.my_vms")))
    body = render_template("_partials/tags.html", card=_card(rtype, uuid), tag_form=form or TagForm(formdata=None),
                           error=error, message=done)
    return body, 422 if error else 200


@bp.route("/<rtype>/<resource_uuid>")
@login_required
def card(rtype: str, resource_uuid: str):
    return render_template("_partials/tags.html", card=_card(rtype, resource_uuid), tag_form=TagForm(formdata=None))


@bp.route("/<rtype>/<resource_uuid>", methods=["POST"])
@login_required
def add(rtype: str, resource_uuid: str):
    c = _card(rtype, resource_uuid)
    form = TagForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400)
        return _answer(rtype, resource_uuid, form=form,
                       error="; ".join(e for errors in form.errors.values() for e in errors))
    try:
        tags.create(current_user, [c.uuid], c.type, [{"key": form.key.data, "value": form.value.data}])
    except ServiceError as e:
        return _answer(rtype, resource_uuid, form=form, error=e.message)
    return _answer(rtype, resource_uuid, done=f"Tag {form.key.data.strip()} added")


@bp.route("/<rtype>/<resource_uuid>/<tag_uuid>/delete", methods=["POST"])
@login_required
def remove(rtype: str, resource_uuid: str, tag_uuid: str):
    c = _card(rtype, resource_uuid)
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        tags.remove(current_user, c.type, c.uuid, tag_uuid)
    except InvalidParameter:
        abort(404)
    except ServiceError as e:
        return _answer(rtype, resource_uuid, error=e.message)
    return _answer(rtype, resource_uuid, done="Tag removed")

"""Admin-only control of the Simulator hypervisor: sim hosts down/up, slow
operations, and "the next N operations fail" faults. Every action is a normal
form POST (redirect back) and, from HTMX, answers with the partial the page
itself includes."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import FloatField, IntegerField, SelectMultipleField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from app.hypervisors.simulator import ACTIONS, QUERIES
from app.services import simulator as sim
from app.services.errors import ServiceError
from app.web import admin_required
from app.web.forms import EmptyForm

bp = Blueprint("simulator", __name__, url_prefix="/admin/simulator")
FAULTS_CHANGED = "simFaultsChanged"  # HX-Trigger event: the faults panel reloads itself


class DelayForm(FlaskForm):
    seconds = FloatField("Delay (s)", validators=[InputRequired(), NumberRange(min=0, max=sim.MAX_DELAY)])


class FaultForm(FlaskForm):
    host = StringField("Host", validators=[Optional(), Length(max=128)])
    vm = StringField("VM (instance name)", validators=[Optional(), Length(max=128)])
    count = IntegerField("Next N operations", default=1,
                         validators=[InputRequired(), NumberRange(min=1, max=sim.MAX_FAULT_COUNT)])
    message = StringField("Error message", default=sim.DEFAULT_MESSAGE, validators=[Optional(), Length(max=1024)])
    operations = SelectMultipleField(
        "Only these operations", validators=[Optional()],
        choices=sorted(ACTIONS) + sorted(QUERIES))


def _summary(name: str) -> sim.HostSummary:
    try:
        return sim.host_summary(name)
    except ServiceError:
        abort(404)


def _row(name: str, error: str | None = None, status: int = 200, faults_changed: bool = False):
    headers = {"HX-Trigger": FAULTS_CHANGED} if faults_changed else {}
    return render_template("simulator/_host.html", s=_summary(name), delay_form=DelayForm(formdata=None),
                           error=error), status, headers


def _faults(form: FaultForm | None = None, status: int = 200):
    return render_template("simulator/_faults.html", faults=sim.list_faults(),
                           fault_form=form or FaultForm(formdata=None)), status


@bp.route("/")
@admin_required
def index():
    keyword = request.args.get("q", "").strip()
    hosts, total = sim.list_hosts(keyword)
    ctx = dict(hosts=hosts, total=total, q=keyword, delay_form=DelayForm(formdata=None))
    if request.htmx and request.headers.get("HX-Target") == "sim-hosts":
        return render_template("simulator/_hosts.html", **ctx)
    return render_template("simulator/index.html", faults=sim.list_faults(),
                           fault_form=FaultForm(formdata=None), **ctx)


def _done(name: str | None = None, faults_changed: bool = False):
    if request.htmx:
        return _row(name, faults_changed=faults_changed) if name else _faults()
    return redirect(url_for(".index"))


def _failed(e: ServiceError, name: str | None = None):
    if request.htmx:
        return _row(name, error=e.message, status=422) if name else _faults(status=422)
    flash(e.message, "error")
    return redirect(url_for(".index"))


@bp.route("/hosts/<name>/power", methods=["POST"])
@admin_required
def power(name: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    host = _summary(name).host
    sim.set_host_up(host.name, not host.up, user=current_user)
    if not request.htmx:
        flash(f"Simulator host {host.name} is {'up' if host.up else 'down'}.", "success")
    return _done(host.name)


@bp.route("/hosts/<name>/isolate", methods=["POST"])
@admin_required
def isolate(name: str):
    """Cut the host off from the management network only: it keeps running its guests and
    writing its storage heartbeat (the HA investigation then keeps it Alert, never Down)."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    host = _summary(name).host
    sim.set_host_up(host.name, False, heartbeat=True, user=current_user)
    if not request.htmx:
        flash(f"Simulator host {host.name} is cut off from the management network.", "success")
    return _done(host.name)


@bp.route("/hosts/<name>/delay", methods=["POST"])
@admin_required
def delay(name: str):
    host = _summary(name).host
    form = DelayForm()
    if not form.validate_on_submit():
        message = "; ".join(form.seconds.errors) or "Invalid form (reload the page)"
        if request.htmx:
            return _row(host.name, error=message, status=422)
        flash(message, "error")
        return redirect(url_for(".index"))
    try:
        sim.set_delay(host.name, form.seconds.data, user=current_user)
    except ServiceError as e:
        return _failed(e, host.name)
    return _done(host.name)


@bp.route("/hosts/<name>/fail-next", methods=["POST"])
@admin_required
def fail_next(name: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    host = _summary(name).host
    sim.arm_fault(host=host.name, count=1, user=current_user)
    return _done(host.name, faults_changed=True)


@bp.route("/hosts/<name>/reset", methods=["POST"])
@admin_required
def reset_host(name: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    host = _summary(name).host
    sim.reset(host.name, user=current_user)
    return _done(host.name, faults_changed=True)


@bp.route("/faults")
@admin_required
def faults():
    if not request.htmx:
        return redirect(url_for(".index"))
    return _faults()


@bp.route("/faults", methods=["POST"])
@admin_required
def arm():
    form = FaultForm()
    if form.validate_on_submit():
        try:
            sim.arm_fault(host=form.host.data, vm=form.vm.data, count=form.count.data,
                          message=form.message.data, operations=form.operations.data, user=current_user)
        except ServiceError as e:
            target = getattr(form, e.field, None) if e.field else None
            if target is None:
                target = form.host
            target.errors = [*target.errors, e.message]
        else:
            if request.htmx:
                return _faults()
            flash("Fault armed.", "success")
            return redirect(url_for(".index"))
    if request.htmx:
        return _faults(form, 422)
    hosts, total = sim.list_hosts()
    return render_template("simulator/index.html", hosts=hosts, total=total, q="", faults=sim.list_faults(),
                           delay_form=DelayForm(formdata=None), fault_form=form), 422


@bp.route("/faults/<int:fault_id>/clear", methods=["POST"])
@admin_required
def clear(fault_id: int):
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        sim.clear_fault(fault_id, user=current_user)
    except ServiceError as e:
        return _failed(e)
    return _done()

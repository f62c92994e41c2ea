"""Templates and ISOs for admins and users: the list (two tabs, search, filters,
per-zone download status that polls while a copy is in flight), register by
URL, browser upload, retry and delete. Admins see and manage everything; users
see their own and the public ones and manage their own (the service decides).

The register and upload forms are one form class whose fields follow the kind
(template or ISO), the chosen hypervisor type (its formats, direct download)
and the caller (public/featured for admins). Field names are the API's, so a
service refusal lands beside its field. The upload page first asks this view
for a signed upload URL (templates.upload_params), then static/js/upload.js
POSTs the file straight to it.
"""
from __future__ import annotations

from dataclasses import fields

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from wtforms import BooleanField, HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from app.models import DownloadState
from app.services import hypervisors as hv
from app.services import templates
from app.services.errors import NotFound, ServiceError
from app.services.transfers import extracts
from app.web.forms import EmptyForm, attach_error
from app.web.infra import _back, _redirect
from app.web.infra_forms import InfraForm, choices, hypervisor_options, zone_options
from app.web.listing import FilterSelect, Listing, listing

bp = Blueprint("images", __name__, url_prefix="/templates")
CHANGED = "templatesChanged"  # HX-Trigger event: the list reloads itself
SHOW = [("featured", "Featured"), ("self", "Mine")]


def _kind() -> str:
    return "iso" if request.args.get("kind") == "iso" else "template"


# --- List -------------------------------------------------------------------

class TemplateListing(Listing):
    @property
    def filtered(self) -> bool:
        """The tab (kind) is not a filter: an empty ISO tab says "No ISOs yet"."""
        return bool(self.q or any(v for k, v in self.filters.items() if k != "kind"))

    @property
    def in_flight(self) -> bool:
        return any(c.in_flight for row in self.rows for c in row.copies)

    @property
    def failed(self) -> list:
        """(template, copy) of every failed download on this page, for the list's banner."""
        return [(row.template, c.ref) for row in self.rows for c in row.copies if c.ref.state == DownloadState.ERROR]


def _fetch(*, keyword, sort, page, kind, template_filter, zone_uuid):  # noqa: ARG001 - not sortable
    return templates.list_for_page(current_user, is_iso=kind == "iso", template_filter=template_filter,
                                   keyword=keyword, zone_uuid=zone_uuid, page=page)


@bp.route("/")
@login_required
def index():
    lst = listing("images.index", "templates", _fetch, sorts=(), default_sort="",
                  filters={"kind": "kind", "filter": "template_filter", "zone": "zone_uuid"})
    lst = TemplateListing(**{f.name: getattr(lst, f.name) for f in fields(lst)})  # listing() makes a plain one
    kind = _kind()
    if request.htmx:
        return render_template("images/_list.html", lst=lst, kind=kind)
    selects = [FilterSelect("filter", "Show", SHOW), FilterSelect("zone", "Zone", zone_options())]
    return render_template("images/index.html", lst=lst, kind=kind, selects=selects)


@bp.route("/<uuid>")
@login_required
def detail(uuid: str):
    try:
        row = templates.get_for_page(current_user, uuid)
    except NotFound:
        abort(404)
    return render_template("images/detail.html", row=row, kind="iso" if row.template.is_iso else "template",
                           may_extract=extracts.may_extract_template(current_user, row.template))


# --- Register and upload ----------------------------------------------------

class TemplateForm(InfraForm):
    """registerTemplate / registerIso, and getUploadParamsForTemplate / Iso (no URL)."""
    dom_id = "template-form"
    refresh = ("hypervisor",)
    upload = False
    kind = HiddenField(default="template")
    url = StringField("URL", validators=[DataRequired(), Length(max=2048)],
                      description="http:// or https:// (file:// for administrators)")
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    displaytext = StringField("Description", validators=[Optional(), Length(max=4096)],
                              description="empty: the name")
    zoneid = SelectField("Zone")
    hypervisor = SelectField("Hypervisor")
    # Not checked against its choices here: the service says which formats the type takes.
    format = SelectField("Format", validate_choice=False)
    ostypeid = SelectField("OS type")
    checksum = StringField("Checksum", validators=[Optional(), Length(max=255)],
                           description="{SHA-256}… (or {MD5}, {SHA-1}, {SHA-512}) or a plain MD5; checked "
                                       "before the file is accepted")
    bootable = BooleanField("Bootable", default=True, description="VMs may boot from this ISO")
    directdownload = BooleanField("Direct download", description="not copied to secondary storage: hosts "
                                  "fetch it into primary storage at first use (needs a checksum)")
    ispublic = BooleanField("Public", description="every account may use it")
    isfeatured = BooleanField("Featured", description="offered first to everyone")

    @property
    def is_iso(self) -> bool:
        return self.kind.data == "iso"

    def prepare(self) -> None:
        self.kind.data = "iso" if self.is_iso else "template"
        drop = {"url"} if self.upload else set()
        if self.is_iso:
            drop |= {"hypervisor", "format", "directdownload"}
            self.refresh = ()
        else:
            drop.add("bootable")
            drop |= self._offer_hypervisor()
        if not current_user.is_admin:
            drop |= {"ispublic", "isfeatured"}
        for name in drop:
            del self[name]
        self.offer(self.zoneid, zone_options(), "Choose a zone" if self.upload else "All zones")
        os_types = sorted(templates.list_os_types()[0], key=lambda o: o.description.lower())
        self.offer(self.ostypeid, [(o.uuid, o.description) for o in os_types], "—")

    def _offer_hypervisor(self) -> set[str]:
        """The enabled types; the chosen one's formats; direct download if it can. Returns
        the fields this type does not have."""
        options = hypervisor_options()
        self.hypervisor.choices = choices(options)
        if request.method == "GET" and self.hypervisor.data not in dict(options) and options:
            self.hypervisor.data = options[0][0]
        try:
            caps = hv.resolve(self.hypervisor.data).capabilities
        except ServiceError:
            self.format.choices = choices([("", "Choose a hypervisor first")])
            return {"directdownload"}
        self.format.choices = choices([(f, f) for f in caps.template_formats])
        if request.method == "GET" and self.format.data not in caps.template_formats:
            self.format.data = caps.template_formats[0] if caps.template_formats else ""
        return set() if caps.direct_download else {"directdownload"}

    def value(self, name: str, default=None):
        f = self._fields.get(name)
        return f.data if f is not None else default

    def service_args(self) -> dict:
        """The keyword arguments register() and upload_params() share."""
        return dict(is_iso=self.is_iso, name=self.name.data, display_text=self.displaytext.data or None,
                    hypervisor=self.value("hypervisor"), format=self.value("format"),
                    zone_uuid=self.zoneid.data or None, os_type_uuid=self.ostypeid.data or None,
                    checksum=self.checksum.data or None, is_public=self.value("ispublic", False),
                    featured=self.value("isfeatured", False), bootable=self.value("bootable", True))


class UploadForm(TemplateForm):
    upload = True


def _form(form_cls: type[TemplateForm]) -> TemplateForm:
    """From the POST; or from the query string once the form was sent (a select changed
    or the no-JS "Update the form"); else empty, with ?kind= and ?hypervisor= as defaults."""
    action = url_for(request.endpoint)
    if request.method == "POST":
        return form_cls().setup(action)
    args = request.args
    if "name" in args:
        return form_cls(formdata=args).setup(action)
    return form_cls(formdata=None, kind=args.get("kind"), hypervisor=args.get("hypervisor")).setup(action)


def _render_form(form: TemplateForm, status: int = 200, params: dict | None = None):
    return render_template("images/_form.html" if request.htmx else "images/form.html", form=form,
                           kind=form.kind.data, params=params), status


@bp.route("/register", methods=["GET", "POST"])
@login_required
def register():
    form = _form(TemplateForm)
    if request.method == "GET":
        return _render_form(form)
    if form.validate_on_submit():
        try:
            t = templates.register(current_user, url=form.url.data, **form.service_args(),
                                   direct_download=form.value("directdownload", False))
        except ServiceError as e:
            attach_error(e, form)
        else:
            _flash_outcome(t, f"{'ISO' if t.is_iso else 'Template'} {t.name} registered")
            return _redirect(url_for(".index", kind="iso" if t.is_iso else None))
    return _render_form(form, 422)


def _flash_outcome(t, done: str) -> None:
    """The banner after a registration: what the copies say now, not a promise. A download
    that already failed says so (with why); one still running points to the list, whose
    Status column follows it and whose banner names failed downloads."""
    category, message = _outcome_message(t, done)
    flash(message, category)


def _outcome_message(t, done: str) -> tuple[str, str]:
    if t.direct_download:
        return "success", f"{done}; hosts download it directly when it is first used."
    outcome, failed = templates.download_outcome(t)
    if outcome == "failed":
        why = "; ".join(f"{r.zone.name}: {r.error or 'unknown error'}" for r in failed)
        return "error", f"{done}, but its download failed ({why})."
    if outcome == "ready":
        return "success", f"{done} and ready."
    return "success", f"{done}; its download is under way: the list below shows its progress."


@bp.route("/upload", methods=["GET", "POST"])
@login_required
def upload():
    """POST (from the page's script): a template row waiting for its file and the signed
    URL, which the answer carries in data- attributes for static/js/upload.js."""
    form = _form(UploadForm)
    if request.method == "GET":
        return _render_form(form)
    if form.validate_on_submit():
        try:
            return _render_form(form, params=templates.upload_params(current_user, **form.service_args()))
        except ServiceError as e:
            attach_error(e, form)
    return _render_form(form, 422)


# --- Actions ----------------------------------------------------------------

def _action(uuid: str, run, done, removes: bool = False):
    """Run an action on a template: run(uuid) -> the template. A plain POST returns to
    the page it came from with a flash (to the list if that page is gone: `removes`);
    HTMX gets the message, and the list reloads on success. `done` is the message (with
    {noun} and {name}), or done(template, noun) -> (category, message)."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    back = _back(url_for(".index"))
    try:
        t = run(uuid)
    except NotFound:
        abort(404)
    except ServiceError as e:
        if request.htmx:
            return render_template("images/_message.html", category="error", message=e.message), 422
        flash(e.message, "error")
        return redirect(back)
    noun = "ISO" if t.is_iso else "Template"
    category, message = done(t, noun) if callable(done) else ("success", done.format(noun=noun, name=t.name))
    if request.htmx:
        return render_template("images/_message.html", category=category, message=message), {"HX-Trigger": CHANGED}
    flash(message, category)
    return redirect(url_for(".index", kind="iso" if t.is_iso else None) if removes and uuid in back else back)


@bp.route("/<uuid>/retry", methods=["POST"])
@login_required
def retry(uuid: str):
    return _action(uuid, lambda u: templates.retry(current_user, u),
                   lambda t, noun: _outcome_message(t, f"{noun} {t.name} retried"))


@bp.route("/<uuid>/delete", methods=["POST"])
@login_required
def delete(uuid: str):
    def run(u):
        t = templates.get_visible(current_user, u)  # its kind and name, for the service and the message
        templates.delete_template(current_user, u, is_iso=t.is_iso)
        return t
    return _action(uuid, run, "{noun} {name} deleted.", removes=True)

"""Jobs: every async job the viewer may see (an admin: all; a user: their account's, as
"My jobs"), filtered by status, command, account and resource, paged; the list polls while a
job on it runs. A job's page: who started it, what it acted on (linked), its progress and
steps while it runs, then its result or error."""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for
from flask_login import current_user, login_required

from app.services import async_jobs
from app.services.errors import ServiceError
from app.web.listing import FilterSelect, listing, wants_fragment

bp = Blueprint("jobs_pages", __name__, url_prefix="/jobs")

# A job's resource → (endpoint of its page, admins only?)
RESOURCE_PAGES = {"VirtualMachine": ("vms.detail", False), "Volume": ("volumes.detail", False),
                  "Template": ("images.detail", False), "Iso": ("images.detail", False),
                  "Network": ("network.network_detail", False), "SecurityGroup": ("secgroups.detail", False),
                  "Host": ("infra.host", True), "StoragePool": ("infra.storage_pool", True),
                  "Zone": ("infra.zone", True), "Account": ("accounts_admin.account", True)}


def resource_url(view) -> str | None:
    """The page of the resource a job acted on, if it has one the viewer may open."""
    page = RESOURCE_PAGES.get(view.job.instance_type or "")
    if not page or not view.job.instance_id or view.resource_name is None:
        return None
    endpoint, admin_only = page
    if admin_only and not current_user.is_admin:
        return None
    return url_for(endpoint, uuid=view.job.instance_id)


bp.add_app_template_global(resource_url, "job_resource_url")


def _fetch(*, keyword, sort, page, **filters):
    return async_jobs.list_jobs(current_user, keyword=keyword, sort=sort, page=page, **filters)


@bp.route("/")
@login_required
def index():
    lst = listing("jobs_pages.index", "jobs", _fetch, sorts=async_jobs.JOB_SORTS, default_sort="-id",
                  filters={"status": "status", "cmd": "cmd", "account": "account", "resource": "resource"})
    title = "Jobs" if current_user.is_admin else "My jobs"
    if wants_fragment():  # the poller's reloads leave the address bar and history alone
        return render_template("jobs/_list.html", lst=lst), {} if request.args.get("poll") else \
            {"HX-Push-Url": lst.url()}
    selects = [FilterSelect("status", "Status", [(s, s.capitalize()) for s in async_jobs.STATUSES]),
               FilterSelect("cmd", "Command", [(c, c) for c in async_jobs.commands(current_user)])]
    return render_template("jobs/index.html", lst=lst, title=title, selects=selects)


@bp.route("/<uuid>")
@login_required
def detail(uuid: str):
    try:
        view = async_jobs.get_job(current_user, uuid)
    except ServiceError:
        abort(404)
    if wants_fragment():
        return render_template("jobs/_job.html", v=view)
    return render_template("jobs/job.html", v=view)

"""Projects: createProject, listProjects, updateProject, deleteProject, activateProject,
suspendProject, addAccountToProject, deleteAccountFromProject, listProjectAccounts."""
from __future__ import annotations

from app.api.registry import Param, command
from app.api.serializers import serialize, serializer
from app.jobs import service as jobs
from app.services import limits, projects
from app.services.errors import InvalidParameter

JOB = "org.apache.cloudstack.api.command.user.project."


@serializer("project")
def project(p) -> dict:
    owners = projects.owners(p)
    out = {"id": p.uuid, "name": p.name, "displaytext": p.display_text, "domainid": p.domain.uuid,
           "domain": p.domain.name, "state": p.state, "created": p.created, "tags": [],
           "account": owners[0].account.name if owners else None,
           "owner": [{"account": m.account.name, "accountid": m.account.uuid} for m in owners]}
    out.update(limits.account_totals([p.account])[p.account.id])
    return out


@serializer("projectaccount")
def project_account(m) -> dict:
    a = m.account
    return {"projectid": m.project.uuid, "project": m.project.name, "accountid": a.uuid, "account": a.name,
            "accounttype": a.account_type, "role": m.role, "domainid": a.domain.uuid, "domain": a.domain.name,
            "user": [serialize("user", u) for u in a.users if u.removed is None]}


def _job(ctx, name: str, handler: str, p, params: dict):
    return jobs.submit(JOB + name, ctx.user, handler, params, instance_type="Project", instance_id=p.uuid)


def _caller(job):
    from app.extensions import db
    from app.models import User
    return db.session.get(User, job.user_id)


@command("createProject", "Creates a project", is_async=True, response="project", async_returns_id=True, params=[
    Param("name", "string", "name of the project", required=True, length=255),
    Param("displaytext", "string", "display text of the project", length=255),
    Param("account", "string", "account who will be Admin for the project"),
    Param("domainid", "uuid", "domain ID of the account owning a project")])
def create_project(ctx, p):
    name, owner = projects.check_create(ctx.user, p["name"], p.get("displaytext"), p.get("account"),
                                        p.get("domainid"))
    return jobs.submit(JOB + "CreateProjectCmd", ctx.user, "project.create",
                       {"name": name, "displaytext": p.get("displaytext"), "account": p.get("account"),
                        "domainid": p.get("domainid")}, instance_type="Project")


@jobs.handler("project.create")
def _create_job(job, params):
    p = projects.create_project(_caller(job), params["name"], params.get("displaytext"), params.get("account"),
                                params.get("domainid"))
    job.instance_id = p.uuid
    return {"project": jobs.ObjectResult("project", p)}


@command("listProjects", "Lists projects and provides detailed information for listed projects",
         response="project", list=True, params=[
             Param("name", "string", "list projects by name"),
             Param("displaytext", "string", "list projects by display text"),
             Param("state", "string", "list projects by state"),
             Param("details", "list", "accepted (every detail is returned)"),
             Param("showicon", "boolean", "accepted and ignored")])
def list_projects(ctx, p):
    return projects.list_projects(ctx.user, id=p.get("id"), name=p.get("name"), display_text=p.get("displaytext"),
                                  state=p.get("state"), keyword=p.get("keyword"), account=p.get("account"),
                                  domainid=p.get("domainid"), listall=p.get("listall", False),
                                  isrecursive=p.get("isrecursive", False), page=ctx.page)


@command("updateProject", "Updates a project", is_async=True, response="project", params=[
    Param("id", "uuid", "id of the project to be modified", required=True),
    Param("displaytext", "string", "display text of the project", length=255),
    Param("name", "string", "name of the project", length=255),
    Param("account", "string", "new Admin account for the project"),
    Param("swapowner", "boolean", "accepted (the new Admin replaces the old one as owner)")])
def update_project(ctx, p):
    proj = projects.get(ctx.user, p["id"])
    projects.check_delete(ctx.user, proj)  # the same right: the project's admin
    return _job(ctx, "UpdateProjectCmd", "project.update", proj,
                {"id": proj.uuid, "displaytext": p.get("displaytext"), "name": p.get("name"),
                 "account": p.get("account")})


@jobs.handler("project.update")
def _update_job(job, params):
    caller = _caller(job)
    p = projects.update_project(caller, projects.get(caller, params["id"]), display_text=params.get("displaytext"),
                                name=params.get("name"), account=params.get("account"))
    return {"project": jobs.ObjectResult("project", p)}


@command("deleteProject", "Deletes a project", is_async=True, params=[
    Param("id", "uuid", "id of the project to be deleted", required=True),
    Param("cleanup", "boolean", "true to delete the project's resources too")])
def delete_project(ctx, p):
    proj = projects.get(ctx.user, p["id"])
    projects.check_delete(ctx.user, proj)
    return _job(ctx, "DeleteProjectCmd", "project.delete", proj, {"id": proj.uuid, "cleanup": bool(p.get("cleanup"))})


@jobs.handler("project.delete")
def _delete_job(job, params):
    caller = _caller(job)
    projects.delete_project(caller, projects.get(caller, params["id"]), params.get("cleanup", False))
    return {"success": True}


@command("activateProject", "Activates a project", is_async=True, response="project", params=[
    Param("id", "uuid", "id of the project to be activated", required=True)])
def activate_project(ctx, p):
    proj = projects.get(ctx.user, p["id"])
    projects.check_delete(ctx.user, proj)
    return _job(ctx, "ActivateProjectCmd", "project.activate", proj, {"id": proj.uuid})


@command("suspendProject", "Suspends a project: its running VMs are stopped", is_async=True, response="project",
         params=[Param("id", "uuid", "id of the project to be suspended", required=True)])
def suspend_project(ctx, p):
    proj = projects.get(ctx.user, p["id"])
    projects.check_delete(ctx.user, proj)
    return _job(ctx, "SuspendProjectCmd", "project.suspend", proj, {"id": proj.uuid})


@jobs.handler("project.activate")
def _activate_job(job, params):
    caller = _caller(job)
    return {"project": jobs.ObjectResult("project", projects.set_state(caller, projects.get(caller, params["id"]),
                                                                       "Active"))}


@jobs.handler("project.suspend")
def _suspend_job(job, params):
    caller = _caller(job)
    return {"project": jobs.ObjectResult("project", projects.set_state(caller, projects.get(caller, params["id"]),
                                                                       "Suspended"))}


@command("addAccountToProject", "Adds account to a project", is_async=True, params=[
    Param("projectid", "uuid", "ID of the project to add the account to", required=True),
    Param("account", "string", "name of the account to be added to the project"),
    Param("email", "string", "email to which invitation to the project is going to be sent "
          "(with project.invite.required on)"),
    Param("roletype", "string", "Admin or Regular (default)")])
def add_account(ctx, p):
    proj = projects.get(ctx.user, p["projectid"], "projectid")
    projects.check_delete(ctx.user, proj)
    if not p.get("account") and not p.get("email"):
        raise InvalidParameter("Either accountName or email is required", field="account")
    return _job(ctx, "AddAccountToProjectCmd", "project.account.add", proj,
                {"id": proj.uuid, "account": p.get("account"), "email": p.get("email"),
                 "roletype": p.get("roletype")})


@jobs.handler("project.account.add")
def _add_job(job, params):
    caller = _caller(job)
    projects.add_account(caller, projects.get(caller, params["id"], "projectid"), params.get("account"),
                         params.get("roletype"), email=params.get("email"))
    return {"success": True}


@command("deleteAccountFromProject", "Deletes account from the project", is_async=True, params=[
    Param("projectid", "uuid", "ID of the project to remove the account from", required=True),
    Param("account", "string", "name of the account to be removed from the project", required=True)])
def delete_account(ctx, p):
    proj = projects.get(ctx.user, p["projectid"], "projectid")
    projects.check_delete(ctx.user, proj)
    return _job(ctx, "DeleteAccountFromProjectCmd", "project.account.remove", proj,
                {"id": proj.uuid, "account": p["account"]})


@jobs.handler("project.account.remove")
def _remove_job(job, params):
    caller = _caller(job)
    projects.remove_account(caller, projects.get(caller, params["id"], "projectid"), params["account"])
    return {"success": True}


@command("listProjectAccounts", "Lists project's accounts", response="projectaccount", list=True, params=[
    Param("projectid", "uuid", "ID of the project", required=True),
    Param("role", "string", "list accounts of the project by role (Admin, Regular)")])
def list_project_accounts(ctx, p):
    proj = projects.get(ctx.user, p["projectid"], "projectid")
    return projects.list_members(ctx.user, proj, account=p.get("account"), role=p.get("role"), page=ctx.page)

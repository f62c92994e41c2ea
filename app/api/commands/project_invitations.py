"""Project invitations: listProjectInvitations, updateProjectInvitation (accept or decline),
deleteProjectInvitation. addAccountToProject makes them (app/api/commands/projects.py)."""
from __future__ import annotations

from app.api.commands.projects import JOB, _caller
from app.api.registry import Param, command
from app.api.serializers import serializer
from app.jobs import service as jobs
from app.services import project_invitations as invitations


@serializer("projectinvitation")
def invitation(inv) -> dict:
    return {"id": inv.uuid, "projectid": inv.project.uuid, "project": inv.project.name,
            "domainid": inv.domain.uuid, "domain": inv.domain.name,
            "account": inv.account.name if inv.account is not None else None,
            "email": inv.email, "state": inv.state}


@command("listProjectInvitations", "Lists project invitations and provides detailed information for listed "
         "invitations", response="projectinvitation", list=True, params=[
             Param("projectid", "uuid", "list by project id"),
             Param("activeonly", "boolean", "if true, list only active invitations - having Pending state and "
                   "ones that are not timed out yet"),
             Param("state", "string", "list invitations by state"),
             Param("userid", "uuid", "accepted (Nubo's invitations are per account)")])
def list_invitations(ctx, p):
    return invitations.list_invitations(ctx.user, id=p.get("id"), projectid=p.get("projectid"),
                                        state=p.get("state"), active_only=bool(p.get("activeonly")),
                                        account=p.get("account"), domainid=p.get("domainid"),
                                        listall=bool(p.get("listall")), page=ctx.page)


@command("updateProjectInvitation", "Accepts or declines project invitation", is_async=True, params=[
    Param("projectid", "uuid", "ID of the project to join", required=True),
    Param("account", "string", "Account that is joining the project"),
    Param("token", "string", "the token of an invitation sent by email"),
    Param("accept", "boolean", "If true, accept the invitation, decline if false. True by default"),
    Param("userid", "uuid", "accepted (Nubo's invitations are per account)")])
def update_invitation(ctx, p):
    proj = invitations.project_for_answer(ctx.user, p["projectid"], p.get("token"))
    return jobs.submit(JOB + "UpdateProjectInvitationCmd", ctx.user, "project.invitation.update",
                       {"id": proj.uuid, "account": p.get("account"), "token": p.get("token"),
                        "accept": p.get("accept", True)}, instance_type="Project", instance_id=proj.uuid)


@jobs.handler("project.invitation.update")
def _update_job(job, params):
    caller = _caller(job)
    invitations.answer(caller, invitations.project_for_answer(caller, params["id"], params.get("token")),
                       account=params.get("account"), token=params.get("token"), accept=params.get("accept", True))
    return {"success": True}


@command("deleteProjectInvitation", "Deletes project invitation", is_async=True, params=[
    Param("id", "uuid", "id of the invitation", required=True)])
def delete_invitation(ctx, p):
    inv = invitations.get(ctx.user, p["id"])
    from app.services import projects
    projects.check_delete(ctx.user, inv.project)
    return jobs.submit(JOB + "DeleteProjectInvitationCmd", ctx.user, "project.invitation.delete", {"id": inv.uuid},
                       instance_type="Project", instance_id=inv.project.uuid)


@jobs.handler("project.invitation.delete")
def _delete_job(job, params):
    caller = _caller(job)
    invitations.delete(caller, invitations.get(caller, params["id"]))
    return {"success": True}

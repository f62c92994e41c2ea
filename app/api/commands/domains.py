"""Domains: createDomain, listDomains, listDomainChildren, updateDomain, deleteDomain."""
from __future__ import annotations

from app.api.registry import DOMAIN_ADMIN, Param, command
from app.api.serializers import serializer
from app.jobs import service as jobs
from app.services import domains


@serializer("domain")
def domain(d) -> dict:
    d, has_child = d if isinstance(d, tuple) else (d, None)
    if has_child is None:
        has_child = bool(domains.has_children([d.id]))
    return {"id": d.uuid, "name": d.name, "level": d.level, "path": domains.display_path(d),
            "parentdomainid": d.parent.uuid if d.parent else None,
            "parentdomainname": d.parent.name if d.parent else None,
            "haschild": has_child, "networkdomain": d.network_domain, "state": d.state, "created": d.created}


def _rows(rows):
    kids = domains.has_children([d.id for d in rows])
    return [(d, d.id in kids) for d in rows]


@command("createDomain", "Creates a domain", role=DOMAIN_ADMIN, response="domain", params=[
    Param("name", "string", "creates domain with this name", required=True, length=255),
    Param("parentdomainid", "uuid", "the parent domain (default: ROOT)"),
    Param("networkdomain", "string", "Network domain for networks in the domain"),
    Param("domainid", "uuid", "the new domain's UUID")])
def create_domain(ctx, p):
    return domains.create_domain(ctx.user, p["name"], p.get("parentdomainid"), p.get("networkdomain"),
                                 p.get("domainid"))


@command("listDomains", "Lists domains and provides detailed information for listed domains", response="domain",
         list=True, params=[Param("name", "string", "List domain by domain name."),
                            Param("level", "integer", "List domains by domain level."),
                            Param("details", "list", "min or all (accepted: every detail is returned)"),
                            Param("showicon", "boolean", "accepted and ignored")])
def list_domains(ctx, p):
    rows, total = domains.list_domains(ctx.user, id=p.get("id"), name=p.get("name"), level=p.get("level"),
                                       keyword=p.get("keyword"), listall=p.get("listall", False), page=ctx.page)
    return _rows(rows), total


@command("listDomainChildren", "Lists all children domains belonging to a specified domain", role=DOMAIN_ADMIN,
         response="domain", list=True, params=[
             Param("name", "string", "list children domain by name"),
             Param("isrecursive", "boolean", "to return the entire tree, use the value \"true\"")])
def list_domain_children(ctx, p):
    rows, total = domains.list_children(ctx.user, id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                                        recursive=p.get("isrecursive", False), page=ctx.page)
    return _rows(rows), total


@command("updateDomain", "Updates a domain with a new name", role=DOMAIN_ADMIN, response="domain", params=[
    Param("id", "uuid", "ID of domain to update", required=True),
    Param("name", "string", "updates domain with this name", length=255),
    Param("networkdomain", "string", "Network domain for the domain's networks")])
def update_domain(ctx, p):
    return domains.update_domain(ctx.user, p["id"], name=p.get("name"), network_domain=p.get("networkdomain"))


@command("deleteDomain", "Deletes a specified domain", role=DOMAIN_ADMIN, is_async=True, params=[
    Param("id", "uuid", "ID of domain to delete", required=True),
    Param("cleanup", "boolean", "true to delete every account, resource and sub-domain of the domain")])
def delete_domain(ctx, p):
    d = domains.get(ctx.user, p["id"])
    domains.check_delete(ctx.user, d, bool(p.get("cleanup")))
    return jobs.submit("org.apache.cloudstack.api.command.admin.domain.DeleteDomainCmd", ctx.user,
                       "domain.delete", {"id": d.uuid, "cleanup": bool(p.get("cleanup"))},
                       instance_type="Domain", instance_id=d.uuid)


@jobs.handler("domain.delete")
def _delete_job(job, params):
    from app.extensions import db
    from app.models import User
    caller = db.session.get(User, job.user_id)
    domains.delete_domain(caller, domains.get(caller, params["id"]), params["cleanup"])
    return {"success": True}

"""Resource limits: listResourceLimits, updateResourceLimit (per-account overrides, and per
domain: domainid without account)."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.services import access, limits
from app.services.errors import InvalidParameter

TYPES = Param("resourcetype", "integer", "0 instances, 1 public IPs, 2 volumes, 6 networks, 8 vCPUs, 9 memory (MiB), "
              "10 primary storage (GiB)")


@command("listResourceLimits", "Lists the resource limits of the caller's account (administrators: any account)",
         response="resourcelimit", list=True, params=[
             Param("id", "long", "not used: limits have no ids in Nubo"), TYPES,
             Param("resourcetypename", "string", "user_vm, public_ip, volume, network, cpu, memory or primary_storage")])
def list_limits(ctx, p):
    kind = p.get("resourcetype", p.get("resourcetypename"))
    if p.get("domainid") and not p.get("account") and not p.get("projectid") and access.is_any_admin(ctx.user):
        rows = limits.list_domain_limits(ctx.user, p["domainid"], kind)  # the domain's own limits
        return rows, len(rows)
    rows = limits.list_limits(ctx.user, account=p.get("account"), domainid=p.get("domainid"), resource=kind,
                              listall=p.get("listall", False))
    total = len(rows)
    if ctx.page:
        number, size = ctx.page
        rows = rows[(number - 1) * size:number * size]
    return rows, total  # (account, Limit) pairs: the resourcelimit serializer


@command("updateResourceLimit", "Sets an account's, a project's or a domain's limit of one resource type "
         "(-1: unlimited)", role=ADMIN,
         response="resourcelimit", params=[
             Param("resourcetype", "integer", TYPES.description, required=True),
             Param("max", "long", "the limit; -1 (the default) for none"),
             Param("account", "string", "the account"),
             Param("domainid", "uuid", "the account's domain; without account: the domain's own limit"),
             Param("projectid", "uuid", "the project")])
def update_limit(ctx, p):
    if not p.get("account") and not p.get("projectid"):
        if not p.get("domainid"):
            raise InvalidParameter("AccountId or domainId have to be specified in order to update resource limit",
                                   field="domainid")
        d = access.domain_by_uuid(ctx.user, p["domainid"])
        return d, limits.set_domain_limit(ctx.user, d, limits.resource_of(p["resourcetype"]),
                                          p.get("max", limits.UNLIMITED))
    acct = limits.limited_account(ctx.user, p.get("account"), p.get("domainid"))
    lim = limits.set_limit(ctx.user, acct, limits.resource_of(p["resourcetype"]), p.get("max", limits.UNLIMITED))
    return acct, lim


@command("updateResourceCount", "Recalculates the resource counts of an account (or of every account) from "
         "what it has", role=ADMIN, response="resourcecount", list=True, params=[
             Param("domainid", "uuid", "the domain", required=True),
             Param("account", "string", "the account; without it, every account of the domain"),
             Param("projectid", "uuid", "the project"), TYPES])
def update_count(ctx, p):
    rows = limits.update_counts(ctx.user, account=p.get("account"), domainid=p.get("domainid"),
                                resource=p.get("resourcetype"))
    return rows, len(rows)

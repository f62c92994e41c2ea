"""Security groups: createSecurityGroup, deleteSecurityGroup, listSecurityGroups,
authorize/revoke SecurityGroupIngress/Egress (CloudStack's names; authorize and revoke are
async, as in CloudStack)."""
from __future__ import annotations

from app.api.registry import Param, command
from app.api.serializers import serializer, tags_of
from app.services.network import secgroups


def _described(groups) -> list[dict]:
    """SecurityGroupResponse of each group, with its resource tags (one query for all)."""
    by_id = tags_of("SecurityGroup", [g.id for g in groups])
    out = secgroups.describe(groups)
    for g, d in zip(groups, out, strict=True):
        d["tags"] = by_id.get(g.id, [])
    return out


@serializer("securitygroup")
def securitygroup(g) -> dict:
    if isinstance(g, dict):  # listSecurityGroups answers described rows
        return g
    return _described([g])[0]


@command("createSecurityGroup", "Creates a security group", response="securitygroup", params=[
    Param("name", "string", "name of the security group", required=True),
    Param("description", "string", "the description of the security group"),
    Param("account", "string", "the account of the group (admins)")])
def create(ctx, p):
    return secgroups.create_group(ctx.user, name=p["name"], description=p.get("description"),
                                  account=p.get("account"))


@command("deleteSecurityGroup", "Deletes a security group", params=[
    Param("id", "uuid", "the ID of the security group"), Param("name", "string", "the name of the security group"),
    Param("account", "string", "the account of the group (admins)")])
def delete(ctx, p):
    secgroups.delete_group(ctx.user, uuid=p.get("id"), name=p.get("name"), account=p.get("account"))
    return {"success": True}


@command("listSecurityGroups", "Lists security groups", response="securitygroup", list=True, params=[
    Param("securitygroupname", "string", "lists security groups by name"),
    Param("virtualmachineid", "uuid", "lists security groups by virtual machine id"),
    Param("tags", "map", "List resources by tags (key/value pairs)")])
def list_groups(ctx, p):
    rows, total = secgroups.list_groups(ctx.user, id=p.get("id"), name=p.get("securitygroupname"),
                                        vm_uuid=p.get("virtualmachineid"), account=p.get("account"),
                                        listall=p.get("listall", False), keyword=p.get("keyword"),
                                        tags=p.get("tags"), page=ctx.page)
    return _described(rows), total


RULE_PARAMS = [
    Param("securitygroupid", "uuid", "The ID of the security group. Mutually exclusive with securityGroupName"),
    Param("securitygroupname", "string", "The name of the security group. Mutually exclusive with securityGroupId"),
    Param("protocol", "string", "TCP, UDP, ICMP, ALL (default) or a protocol number"),
    Param("startport", "integer", "start port of the rule"), Param("endport", "integer", "end port of the rule"),
    Param("icmptype", "integer", "type of the icmp message"), Param("icmpcode", "integer", "code of the icmp message"),
    Param("cidrlist", "list", "the cidr list associated (comma-separated)"),
    Param("usersecuritygrouplist", "map", "user to security group mapping (account, group)"),
    Param("account", "string", "the account of the security group (admins)")]


def _authorize(direction):
    def run(ctx, p):
        return secgroups.authorize(ctx.user, direction, group_uuid=p.get("securitygroupid"),
                                   group_name=p.get("securitygroupname"), account=p.get("account"),
                                   protocol=p.get("protocol"), start_port=p.get("startport"),
                                   end_port=p.get("endport"), icmp_type=p.get("icmptype"),
                                   icmp_code=p.get("icmpcode"), cidrs=p.get("cidrlist"),
                                   user_groups=p.get("usersecuritygrouplist"))
    return run


command("authorizeSecurityGroupIngress", "Authorizes a particular ingress rule for this security group",
        is_async=True, response="securitygroup", params=RULE_PARAMS)(_authorize(secgroups.INGRESS))
command("authorizeSecurityGroupEgress", "Authorizes a particular egress rule for this security group",
        is_async=True, response="securitygroup", params=RULE_PARAMS)(_authorize(secgroups.EGRESS))


@command("revokeSecurityGroupIngress", "Deletes a particular ingress rule from this security group",
         is_async=True, params=[Param("id", "uuid", "The ID of the ingress rule", required=True)])
def revoke_ingress(ctx, p):
    return secgroups.revoke(ctx.user, secgroups.INGRESS, p["id"])


@command("revokeSecurityGroupEgress", "Deletes a particular egress rule from this security group",
         is_async=True, params=[Param("id", "uuid", "The ID of the egress rule", required=True)])
def revoke_egress(ctx, p):
    return secgroups.revoke(ctx.user, secgroups.EGRESS, p["id"])

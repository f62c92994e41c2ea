"""Global settings: listConfigurations, updateConfiguration, resetConfiguration, each also in a
scope (zoneid, clusterid, storageid, accountid, domainid) as CloudStack's ListCfgsByCmd,
UpdateCfgCmd and ResetCfgCmd."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.services import settings

_SCOPE_PARAMS = [
    Param("zoneid", "uuid", "the ID of the Zone to update the parameter value for corresponding zone"),
    Param("clusterid", "uuid", "the ID of the Cluster to update the parameter value for corresponding cluster"),
    Param("storageid", "uuid", "the ID of the Storage pool to update the parameter value for corresponding "
          "storage pool"),
    Param("accountid", "uuid", "the ID of the Account to update the parameter value for corresponding account"),
    Param("domainid", "uuid", "the ID of the Domain to update the parameter value for corresponding domain"),
]


@command("listConfigurations", "Lists all configurations.", role=ADMIN, response="configuration", list=True,
         params=[Param("name", "string", "lists configuration by name"),
                 Param("category", "string", "lists configurations by category"), *_SCOPE_PARAMS])
def list_configurations(ctx, p):
    scope, target = settings.find_target(p)
    rows = settings.list_settings(name=p.get("name"), category=p.get("category"), keyword=p.get("keyword"),
                                  scope=scope, target=target)
    total = len(rows)
    if ctx.page:
        number, size = ctx.page
        rows = rows[(number - 1) * size: number * size]
    return rows, total


@command("updateConfiguration", "Updates a configuration.", role=ADMIN,
         response="configuration", params=[
             Param("name", "string", "the name of the configuration", required=True),
             Param("value", "string", "the value of the configuration"), *_SCOPE_PARAMS])
def update_configuration(ctx, p):
    scope, target = settings.find_target(p)
    return settings.update(p["name"], p.get("value", ""), scope=scope, target=target, caller=ctx.user)


@command("resetConfiguration", "Resets a configuration. The configuration will be set to default value for "
         "global setting, and removed from account_details or domain_details for Account/Domain settings",
         role=ADMIN, response="configuration",
         params=[Param("name", "string", "the name of the configuration", required=True), *_SCOPE_PARAMS])
def reset_configuration(ctx, p):
    scope, target = settings.find_target(p)
    return settings.reset(p["name"], scope=scope, target=target, caller=ctx.user)

"""Global settings: listConfigurations, updateConfiguration, resetConfiguration."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.services import settings


@command("listConfigurations", "Lists global settings", role=ADMIN, response="configuration", list=True,
         params=[Param("name", "string", "the setting's name"), Param("category", "string", "the category")])
def list_configurations(ctx, p):
    rows = settings.list_settings(name=p.get("name"), category=p.get("category"), keyword=p.get("keyword"))
    total = len(rows)
    if ctx.page:
        number, size = ctx.page
        rows = rows[(number - 1) * size: number * size]
    return rows, total


@command("updateConfiguration", "Updates a global setting (dynamic settings apply at once)", role=ADMIN,
         response="configuration", params=[
             Param("name", "string", "the setting's name", required=True),
             Param("value", "string", "the new value")])
def update_configuration(ctx, p):
    return settings.update(p["name"], p.get("value", ""))


@command("resetConfiguration", "Resets a configuration. The configuration will be set to default value for "
         "global setting", role=ADMIN, response="configuration",
         params=[Param("name", "string", "the name of the configuration", required=True)])
def reset_configuration(ctx, p):
    return settings.reset(p["name"])

"""Extensions and custom actions (CloudStack 4.21's framework/extensions API commands and
their ExtensionResponse / ExtensionCustomActionResponse fields)."""
from __future__ import annotations


from app.api.registry import ADMIN, Param, command
from app.api.serializers import serializer
from app.services.extensions import actions, details, parameters, paths, registry

DETAILS_MAP = "Details in key/value pairs using format details[i].keyname=keyvalue. Example: details[0].endpoint.url=urlvalue"


@serializer("extension")
def extension_dict(e) -> dict:
    resources = [{"id": c.uuid, "name": c.name, "type": m.resource_type, "created": m.created,
                  "details": details.shown("ExtensionResourceMap", m.id) or None}
                 for m, c in registry.clusters_of(e)]
    return {"id": e.uuid, "name": e.name, "description": e.description, "type": e.type,
            "path": f"{paths.directory(e.name)}/{e.relative_path}", "pathready": bool(e.path_ready),
            "isuserdefined": bool(e.user_defined), "orchestratorrequirespreparevm":
            bool(e.orchestrator_requires_prepare_vm), "state": e.state,
            "details": details.shown("Extension", e.id) or None, "resources": resources or None,
            "created": e.created, "removed": e.removed}


@serializer("extensioncustomaction")
def custom_action_dict(a) -> dict:
    params = [{k: v for k, v in p.items() if v is not None} for p in parameters.loads(a.parameters)]
    return {"id": a.uuid, "name": a.name, "description": a.description, "extensionid": a.extension.uuid,
            "extensionname": a.extension.name, "resourcetype": a.resource_type,
            "allowedroletypes": (a.allowed_role_types or "Admin").split(","), "successmessage": a.success_message,
            "errormessage": a.error_message, "timeout": a.timeout, "enabled": bool(a.enabled),
            "parameters": params or None, "details": details.shown("ExtensionCustomAction", a.id) or None,
            "created": a.created}


@command("createExtension", "Create an extension", role=ADMIN, response="extension", params=[
    Param("name", "string", "Name of the extension", required=True),
    Param("description", "string", "Description of the extension"),
    Param("type", "string", "Type of the extension", required=True),
    Param("path", "string", "Relative path for the extension"),
    Param("orchestratorrequirespreparevm", "boolean", "Only honored when type is Orchestrator. Whether prepare VM "
          "is needed or not"),
    Param("state", "string", "State of the extension"),
    Param("details", "map", DETAILS_MAP)])
def create_extension(ctx, p):
    return registry.create(ctx.user, name=p["name"], type=p["type"], description=p.get("description"),
                           path=p.get("path"), orchestrator_requires_prepare_vm=p.get("orchestratorrequirespreparevm"),
                           state=p.get("state"), details_map=p.get("details"))


@command("listExtensions", "Lists extensions", role=ADMIN, response="extension", list=True, params=[
    Param("name", "string", "Name of the extension"),
    Param("details", "list", "comma separated list of extension details requested, value can be a list of "
          "[all, resources, external, min]")])
def list_extensions(ctx, p):
    return registry.list_extensions(id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"), page=ctx.page)


@command("updateExtension", "Update the extension", role=ADMIN, response="extension", params=[
    Param("id", "uuid", "The ID of the extension", required=True),
    Param("description", "string", "Description of the extension"),
    Param("orchestratorrequirespreparevm", "boolean", "Only honored when type is Orchestrator. Whether prepare VM "
          "is needed or not"),
    Param("state", "string", "State of the extension (Enabled also accepts the executable as it is now)"),
    Param("details", "map", DETAILS_MAP),
    Param("cleanupdetails", "boolean", "Optional boolean field, which indicates if details should be cleaned up "
          "or not (If set to true, details removed for this resource, details field ignored; if false or not set, "
          "no action)")])
def update_extension(ctx, p):
    return registry.update(ctx.user, p["id"], description=p.get("description"),
                           orchestrator_requires_prepare_vm=p.get("orchestratorrequirespreparevm"),
                           state=p.get("state"), details_map=p.get("details"), cleanup_details=p.get("cleanupdetails"))


@command("deleteExtension", "Delete the extensions", role=ADMIN, response="extension", params=[
    Param("id", "uuid", "ID of the extension", required=True),
    Param("cleanup", "boolean", "Whether cleanup entry-point files for the extension")])
def delete_extension(ctx, p):
    registry.delete(ctx.user, p["id"], cleanup=bool(p.get("cleanup")))
    return {"success": True}


@command("registerExtension", "Register an extension with a resource", role=ADMIN, response="extension", params=[
    Param("extensionid", "uuid", "ID of the extension", required=True),
    Param("resourceid", "string", "ID of the resource to register the extension with", required=True),
    Param("resourcetype", "string", "Type of the resource", required=True),
    Param("details", "map", DETAILS_MAP)])
def register_extension(ctx, p):
    return registry.register(ctx.user, extension_uuid=p["extensionid"], resource_id=p["resourceid"],
                             resource_type=p["resourcetype"], details_map=p.get("details"))


@command("unregisterExtension", "Unregister an extension with a resource", role=ADMIN, response="extension",
         params=[Param("extensionid", "uuid", "ID of the extension", required=True),
                 Param("resourceid", "string", "ID of the resource to register the extension with", required=True),
                 Param("resourcetype", "string", "Type of the resource", required=True)])
def unregister_extension(ctx, p):
    return registry.unregister(ctx.user, extension_uuid=p["extensionid"], resource_id=p["resourceid"],
                               resource_type=p["resourcetype"])


ACTION_PARAMS = [
    Param("description", "string", "The description of the command"),
    Param("resourcetype", "string", "Resource type for which the action is available"),
    Param("allowedroletypes", "list", "List of role types allowed for the action"),
    Param("enabled", "boolean", "Whether the action is enabled or not. Default is disabled."),
    Param("parameters", "map", "Parameters mapping for the action using keys - name, type, required. 'name' is "
          "mandatory. If 'type' is not specified then STRING will be used. If 'required' is not specified then false "
          "will be used. Example: parameters[0].name=xxx&parameters[0].type=BOOLEAN&parameters[0].required=true"),
    Param("successmessage", "string", "Success message that will be used on successful execution of the action. "
          "Name of the action, extension, resource can be used as the actionName, extensionName, resourceName. "
          "Example: Successfully complete {{actionName}} for {{resourceName}} with {{extensionName}}"),
    Param("errormessage", "string", "Error message that will be used on failure during execution of the action."),
    Param("timeout", "integer", "Specifies the timeout in seconds to wait for the action to complete before "
          "failing. Default value is 3 seconds"),
    Param("details", "map", "Details in key/value pairs using format details[i].keyname=keyvalue. "
          "Example: details[0].vendor=xxx&&details[0].version=2.0")]


@command("addCustomAction", "Add a custom action for an extension", role=ADMIN, response="extensioncustomaction",
         params=[Param("extensionid", "uuid", "The ID of the extension to associate the action with", required=True),
                 Param("name", "string", "Name of the action", required=True), *ACTION_PARAMS])
def add_custom_action(ctx, p):
    return actions.add(ctx.user, extension_uuid=p["extensionid"], name=p["name"], description=p.get("description"),
                       resource_type=p.get("resourcetype"), allowed_role_types=p.get("allowedroletypes"),
                       enabled=p.get("enabled"), parameters_map=p.get("parameters"),
                       success_message=p.get("successmessage"), error_message=p.get("errormessage"),
                       timeout=p.get("timeout"), details_map=p.get("details"))


@command("listCustomActions", "Lists the custom actions", response="extensioncustomaction", list=True,
         authorized=("Admin", "ResourceAdmin", "DomainAdmin", "User"), params=[
             Param("name", "string", "Name of the action"),
             Param("extensionid", "uuid", "The ID of the extension"),
             Param("resourcetype", "string", "Type of the resource for actions"),
             Param("resourceid", "string", "ID of a resource for actions"),
             Param("enabled", "boolean", "List actions whether they are enabled or not")])
def list_custom_actions(ctx, p):
    return actions.list_actions(ctx.user, id=p.get("id"), name=p.get("name"), extension_uuid=p.get("extensionid"),
                                resource_type=p.get("resourcetype"), resource_id=p.get("resourceid"),
                                enabled=p.get("enabled"), keyword=p.get("keyword"), page=ctx.page)


@command("updateCustomAction", "Update the custom action", role=ADMIN, response="extensioncustomaction", params=[
    Param("id", "uuid", "The ID of the custom action", required=True), *ACTION_PARAMS,
    Param("cleanupparameters", "boolean", "Optional boolean field, which indicates if parameters should be cleaned "
          "up or not"),
    Param("cleanupdetails", "boolean", "Optional boolean field, which indicates if details should be cleaned up or "
          "not")])
def update_custom_action(ctx, p):
    return actions.update(ctx.user, p["id"], description=p.get("description"), resource_type=p.get("resourcetype"),
                          allowed_role_types=p.get("allowedroletypes"), enabled=p.get("enabled"),
                          parameters_map=p.get("parameters"), cleanup_parameters=p.get("cleanupparameters"),
                          success_message=p.get("successmessage"), error_message=p.get("errormessage"),
                          timeout=p.get("timeout"), details_map=p.get("details"),
                          cleanup_details=p.get("cleanupdetails"))


@command("deleteCustomAction", "Delete the custom action", role=ADMIN, params=[
    Param("id", "uuid", "The ID of the custom action", required=True)])
def delete_custom_action(ctx, p):
    actions.delete(ctx.user, p["id"])
    return {"success": True}


@command("runCustomAction", "Run the custom action", is_async=True, response="customactionresult",
         authorized=("Admin", "ResourceAdmin", "DomainAdmin", "User"), params=[
             Param("customactionid", "uuid", "ID of the custom action", required=True),
             Param("resourcetype", "string", "Type of the resource"),
             Param("resourceid", "string", "ID of the instance", required=True),
             Param("parameters", "map", "Parameters in key/value pairs using format parameters[i].keyname=keyvalue. "
                   "Example: parameters[0].endpoint.url=urlvalue")])
def run_custom_action(ctx, p):
    return actions.run(ctx.user, action_uuid=p["customactionid"], resource_id=p["resourceid"],
                       resource_type=p.get("resourcetype"), parameter_map=p.get("parameters"))



"""Templates, ISOs and guest OS types (CloudStack names and fields)."""
from __future__ import annotations

from app.api.registry import Param, command
from app.services import template_copy, templates

COMMON = [Param("name", "string", "the name", required=True),
          Param("displaytext", "string", "the display text"),
          Param("zoneid", "string", "the zone (-1 or omitted: every zone)"),
          Param("ostypeid", "uuid", "the guest OS type"),
          Param("checksum", "string", "{MD5}, {SHA-1}, {SHA-256}, {SHA-512} prefixed digest, or a plain MD5"),
          Param("ispublic", "boolean", "visible to every account (admins)"),
          Param("isfeatured", "boolean", "featured (admins)"),
          Param("passwordenabled", "boolean", "its guests take a password from the router (templates)"),
          Param("projectid", "uuid", "the project that owns it")]


def _register(ctx, p, is_iso: bool):
    t = templates.register(ctx.user, is_iso=is_iso, url=p["url"], name=p["name"],
                              display_text=p.get("displaytext"), hypervisor=p.get("hypervisor"),
                              format=p.get("format"), zone_uuid=p.get("zoneid"), os_type_uuid=p.get("ostypeid"),
                              checksum=p.get("checksum"), is_public=p.get("ispublic", False),
                              featured=p.get("isfeatured", False), bootable=p.get("bootable", True),
                              direct_download=p.get("directdownload", False),
                              password_enabled=p.get("passwordenabled", False),
                              external_details=p.get("externaldetails"))
    return [(t, ref) for ref in templates.refs_of(t)]  # one row per zone, as CloudStack answers


def _rows(caller, is_iso: bool, p, page):
    rows, total = templates.list_templates(
        caller, is_iso=is_iso, template_filter=p.get("templatefilter") or p.get("isofilter") or "executable",
        id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"), zone_uuid=p.get("zoneid"),
        hypervisor=p.get("hypervisor"), tags=p.get("tags"), page=page)
    refs = templates.refs_for([t.id for t in rows])
    zone_id = p.get("zoneid")
    pairs = [(t, r) for t in rows for r in refs[t.id] if not zone_id or r.zone.uuid == zone_id]
    return pairs, total


@command("registerTemplate", "Registers a template from a URL; it downloads into secondary storage",
         response="template", returns_list_of_one=True, params=[
             *COMMON, Param("url", "string", "http(s):// URL of the image", required=True, length=2048),
             Param("hypervisor", "string", "the hypervisor (display name)", required=True),
             Param("format", "string", "the format the hypervisor takes (RAW, QCOW2, VHD, VHDX, TAR, ...)",
                   required=True),
             Param("directdownload", "boolean", "hosts fetch it into primary storage at first use"),
             Param("passwordenabled", "boolean", "its guests take a password from the router at boot "
                   "(resetPasswordForVirtualMachine, getVMPassword)"),
             Param("requireshvm", "boolean", "ignored"),
             Param("externaldetails", "map", "Details in key/value pairs using format externaldetails[i].keyname="
                   "keyvalue (External templates: sent to the extension)")])
def register_template(ctx, p):
    return _register(ctx, p, False)


@command("registerIso", "Registers an ISO from a URL", response="iso", returns_list_of_one=True, params=[
    *COMMON, Param("url", "string", "http(s):// URL of the ISO", required=True, length=2048),
    Param("bootable", "boolean", "VMs may boot from it (default true)")])
def register_iso(ctx, p):
    return _register(ctx, p, True)


@command("getUploadParamsForTemplate", "Returns a signed URL to POST a template file to", response="getuploadparams",
         params=[*COMMON, Param("hypervisor", "string", "the hypervisor", required=True),
                 Param("format", "string", "the format", required=True)])
def get_upload_params(ctx, p):
    out = templates.upload_params(ctx.user, name=p["name"], display_text=p.get("displaytext"),
                                  hypervisor=p["hypervisor"], format=p["format"], zone_uuid=p.get("zoneid"),
                                  os_type_uuid=p.get("ostypeid"), checksum=p.get("checksum"),
                                  is_public=p.get("ispublic", False), featured=p.get("isfeatured", False))
    return out


@command("getUploadParamsForIso", "Returns a signed URL to POST an ISO file to", response="getuploadparams",
         params=[*COMMON, Param("bootable", "boolean", "bootable (default true)")])
def get_upload_params_iso(ctx, p):
    out = templates.upload_params(ctx.user, is_iso=True, name=p["name"], display_text=p.get("displaytext"),
                                  zone_uuid=p.get("zoneid"), os_type_uuid=p.get("ostypeid"),
                                  checksum=p.get("checksum"), is_public=p.get("ispublic", False),
                                  featured=p.get("isfeatured", False), bootable=p.get("bootable", True))
    return out


@command("listTemplates", "Lists templates, one row per template and zone", response="template", list=True,
         params=[Param("templatefilter", "string", "featured, self, selfexecutable, executable, community, all",
                       required=True),
                 Param("name", "string", "the name"), Param("zoneid", "uuid", "the zone"),
                 Param("hypervisor", "string", "the hypervisor"), Param("tags", "map", "List resources by tags (key/value pairs): tags[0].key=...&tags[0].value=...")])
def list_templates(ctx, p):
    return _rows(ctx.user, False, p, ctx.page)


@command("listIsos", "Lists ISOs, one row per ISO and zone", response="iso", list=True,
         params=[Param("isofilter", "string", "featured, self, selfexecutable, executable, community, all"),
                 Param("name", "string", "the name"), Param("zoneid", "uuid", "the zone"),
                 Param("bootable", "boolean", "only bootable ISOs"), Param("tags", "map", "List resources by tags (key/value pairs): tags[0].key=...&tags[0].value=...")])
def list_isos(ctx, p):
    pairs, total = _rows(ctx.user, True, p, ctx.page)
    if p.get("bootable") is not None:
        pairs = [(t, r) for t, r in pairs if t.bootable == p["bootable"]]
    return pairs, total


def _update(ctx, p, is_iso):
    return templates.update_template(ctx.user, p["id"], name=p.get("name"), display_text=p.get("displaytext"),
                                     os_type_uuid=p.get("ostypeid"), bootable=p.get("bootable"),
                                     is_public=p.get("ispublic"), featured=p.get("isfeatured"), is_iso=is_iso,
                                     password_enabled=p.get("passwordenabled"))


UPDATE = [Param("id", "uuid", "the template", required=True), Param("name", "string", "new name"),
          Param("displaytext", "string", "new display text"), Param("ostypeid", "uuid", "new OS type"),
          Param("bootable", "boolean", "bootable"), Param("ispublic", "boolean", "public (admins)"),
          Param("isfeatured", "boolean", "featured (admins)"),
          Param("passwordenabled", "boolean", "its guests take a password from the router (templates)")]


@command("updateTemplate", "Updates a template", response="template", params=UPDATE)
def update_template(ctx, p):
    return _update(ctx, p, False)


@command("updateIso", "Updates an ISO", response="iso", params=UPDATE)
def update_iso(ctx, p):
    return _update(ctx, p, True)


@command("deleteTemplate", "Deletes a template (its copies and files) in one zone or all", is_async=True,
         params=[Param("id", "uuid", "the template", required=True), Param("zoneid", "uuid", "only this zone"),
                 Param("forced", "boolean", "ignored")])
def delete_template(ctx, p):
    return templates.submit_delete(ctx.user, p["id"], is_iso=False, zone_uuid=p.get("zoneid"))


@command("deleteIso", "Deletes an ISO in one zone or all", is_async=True,
         params=[Param("id", "uuid", "the ISO", required=True), Param("zoneid", "uuid", "only this zone")])
def delete_iso(ctx, p):
    return templates.submit_delete(ctx.user, p["id"], is_iso=True, zone_uuid=p.get("zoneid"))


COPY = [Param("id", "uuid", "the template or ISO", required=True),
        Param("destzoneid", "uuid", "the zone to copy it to"),
        Param("destzoneids", "list", "the zones to copy it to", item_type="uuid"),
        Param("sourcezoneid", "uuid", "the zone it is copied from (default: one where it is ready)")]


def _copy(ctx, p, is_iso: bool):
    dests = [*([p["destzoneid"]] if p.get("destzoneid") else []), *(p.get("destzoneids") or [])]
    return template_copy.copy_template(ctx.user, p["id"], dest_zone_uuids=dests,
                                       source_zone_uuid=p.get("sourcezoneid"), is_iso=is_iso)


@command("copyTemplate", "Copies a template from one zone to others", is_async=True, response="template",
         params=COPY)
def copy_template(ctx, p):
    return _copy(ctx, p, False)


@command("copyIso", "Copies an ISO from one zone to others", is_async=True, response="iso", params=COPY)
def copy_iso(ctx, p):
    return _copy(ctx, p, True)


@command("listOsTypes", "Lists guest OS types", response="ostype", list=True,
         params=[Param("oscategoryid", "uuid", "the category"), Param("description", "string", "the description")])
def list_os_types(ctx, p):
    return templates.list_os_types(id=p.get("id"), category_uuid=p.get("oscategoryid"),
                                   description=p.get("description"), keyword=p.get("keyword"), page=ctx.page)


@command("listOsCategories", "Lists guest OS categories", response="oscategory", list=True,
         params=[Param("name", "string", "the name")])
def list_os_categories(ctx, p):
    return templates.list_os_categories(id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                                        page=ctx.page)


PERMS = [Param("id", "uuid", "the template ID", required=True),
         Param("accounts", "list", "a comma delimited list of accounts. If specified, \"op\" parameter has to be "
               "passed in."),
         Param("projectids", "list", "a comma delimited list of projects. If specified, \"op\" parameter has to be "
               "passed in.", item_type="uuid"),
         Param("op", "string", "permission operator (add, remove, reset)"),
         Param("ispublic", "boolean", "true for public template/iso, false for private templates/isos"),
         Param("isfeatured", "boolean", "true for featured template/iso, false otherwise"),
         Param("isextractable", "boolean", "true if the template/iso is extractable, false other wise. Can be set "
               "only by root admin")]


def _update_permissions(ctx, p, is_iso):
    templates.update_permissions(ctx.user, p["id"], is_iso=is_iso, accounts=p.get("accounts"),
                                 project_ids=p.get("projectids"), op=p.get("op"), is_public=p.get("ispublic"),
                                 featured=p.get("isfeatured"), extractable=p.get("isextractable"))
    return {"success": True}


@command("updateTemplatePermissions", "Updates a template visibility permissions. A public template is visible to "
         "all accounts within the same domain. A private template is visible only to the owner of the template. "
         "A privileged template is a private template with account permissions added.", params=PERMS)
def update_template_permissions(ctx, p):
    return _update_permissions(ctx, p, False)


@command("updateIsoPermissions", "Updates ISO permissions", params=PERMS)
def update_iso_permissions(ctx, p):
    return _update_permissions(ctx, p, True)


@command("listTemplatePermissions", "List template visibility and all accounts that have permissions to view this "
         "template.", response="templatepermission", changes_state=False,
         params=[Param("id", "uuid", "the template ID", required=True)])
def list_template_permissions(ctx, p):
    return templates.list_permissions(ctx.user, p["id"], is_iso=False)


@command("listIsoPermissions", "List ISO visibility and all accounts that have permissions to view this ISO.",
         response="templatepermission", changes_state=False,
         params=[Param("id", "uuid", "the template ID", required=True)])
def list_iso_permissions(ctx, p):
    return templates.list_permissions(ctx.user, p["id"], is_iso=True)

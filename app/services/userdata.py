"""User data: CloudStack's checks of a VM's user data (UserDataManagerImpl.validateUserData)
and registered user data objects (4.18+: registerUserData, listUserData, deleteUserData).

A registered user data declares variables (`params`, comma separated); a VM deployed or
updated with its `userdataid` gives their values in `userdatadetails`. As in CloudStack,
Nubo does not substitute them: they reach the guest as meta-data items (the router's
metadata server and the config drive), which cloud-init's Jinja templates read
(`## template: jinja` ... `{{ ds.meta_data.<name> }}`).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import unquote

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Account, UserData, VirtualMachine, new_uuid
from app.services import access, events, settings
from app.services.errors import InvalidParameter, NotFound, ServiceError
from app.services.pagination import page_of

MAX_HTTP_GET_LENGTH = 4096  # characters of base64 a GET request may carry (CloudStack's)
_PARAM = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")  # a meta-data item name too


def validate(value: str | None, http_method: str = "POST", field: str = "userdata") -> str | None:
    """The user data as stored (base64, re-encoded), checked as CloudStack checks it: URL-
    decoded when it has %-escapes, base64, at most 4096 characters on a GET and
    vm.userdata.max.length bytes decoded on a POST, not empty. 431 otherwise."""
    if value is None:
        return None
    if "%" in value:
        value = unquote(value)
    value = value.replace("\\n", "").strip()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter("User data is not base64 encoded", field=field) from None
    method = (http_method or "POST").upper()
    if method == "GET" and len(value) >= MAX_HTTP_GET_LENGTH:
        raise InvalidParameter("User data is too long for an http GET request", field=field)
    if len(raw) > settings.get("vm.userdata.max.length"):
        raise InvalidParameter(f"User data is too long for an http {method} request", field=field)
    if not raw:
        raise InvalidParameter("User data is too short", field=field)
    return base64.b64encode(raw).decode()


def _params(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    names = [p.strip() for p in text.split(",") if p.strip()]
    for n in names:
        if not _PARAM.match(n):
            raise InvalidParameter(f"Invalid userdata parameter name {n}: a letter, then letters, digits, '_' and '-'",
                                   field="params")
    if len(set(names)) != len(names):
        raise InvalidParameter("Userdata parameters are given twice", field="params")
    return ",".join(names)


def get_userdata(caller, uuid: str, field: str = "id") -> UserData:
    """Another account's user data is "not found", exactly like a missing one."""
    u = db.session.scalar(select(UserData).where(UserData.uuid == uuid, access.owned(caller, UserData.account_id)))
    if u is None:
        raise NotFound("Unable to find user data with the specified id", field=field)
    return u


def register(caller, name: str, userdata: str, *, params: str | None = None, account: str | None = None,
             domainid: str | None = None, projectid: str | None = None, http_method: str = "POST") -> UserData:
    name = (name or "").strip()
    if not name or len(name) > 256 or any(ord(c) < 32 for c in name):
        raise InvalidParameter("name is required: 1-256 printable characters", field="name")
    owner = access.owner_for(caller, account, domainid, projectid)
    data = validate(userdata, http_method)
    if data is None:
        raise InvalidParameter("Unable to execute API command registeruserdata due to missing parameter userdata",
                               field="userdata")
    names = _params(params)
    if db.session.scalar(select(UserData.id).where(UserData.account_id == owner.id, UserData.name == name)):
        raise InvalidParameter(f"A userdata with name {name} already exists for this account.", field="name")
    if db.session.scalar(select(UserData.name).where(UserData.account_id == owner.id, UserData.userdata == data)):
        raise InvalidParameter("Userdata with same content already exists for this account.", field="userdata")
    u = UserData(uuid=new_uuid(), name=name, account_id=owner.id, userdata=data, params=names)
    db.session.add(u)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise InvalidParameter(f"A userdata with name {name} already exists for this account.", field="name") \
            from None
    events.record("REGISTER.USER.DATA", f"User data {name} registered", user=caller, resource_type="UserData",
                  resource_id=u.uuid)
    db.session.commit()
    return u


class InUse(ServiceError):
    """CloudStack answers a user data still in use with a CloudRuntimeException: 530 with its text."""
    code, cs_code = 530, 4250
    shown_to_users = True


def delete(caller, uuid: str) -> None:
    """Refused while a VM (not expunged) uses it, as CloudStack refuses it."""
    u = get_userdata(caller, uuid)
    if db.session.scalar(select(VirtualMachine.id).where(VirtualMachine.userdata_id == u.id,
                                                         VirtualMachine.removed.is_(None)).limit(1)):
        raise InUse(f"Userdata {u.name} cannot be removed as it is being used by some VMs")
    from app.models import Template
    if db.session.scalar(select(Template.id).where(Template.userdata_id == u.id, Template.removed.is_(None))
                         .limit(1)):
        raise InUse(f"Userdata {u.name} cannot be removed as it is linked to active template/templates")
    db.session.execute(update(Template).where(Template.userdata_id == u.id).values(userdata_id=None)
                       .execution_options(synchronize_session=False))  # removed templates keep no link
    # Expunged VMs keep no reference to it.
    db.session.execute(update(VirtualMachine).where(VirtualMachine.userdata_id == u.id).values(userdata_id=None)
                       .execution_options(synchronize_session=False))
    events.record("DELETE.USER.DATA", f"User data {u.name} deleted", user=caller, resource_type="UserData",
                  resource_id=u.uuid)
    db.session.delete(u)
    db.session.commit()


def list_userdata(caller, *, id=None, name=None, keyword=None, account=None, domainid=None, page=None):
    return page_of(access.named_rows(caller, UserData, id=id, name=name, keyword=keyword, account=account,
                                     domainid=domainid), page)


# --- A VM's user data --------------------------------------------------------------------

def merge_details(entries) -> dict[str, str]:
    """userdatadetails / details as the API gives them ([{name: value}, ...]) or a dict: one dict."""
    if not entries:
        return {}
    if isinstance(entries, dict):
        return {str(k): str(v) for k, v in entries.items()}
    out: dict[str, str] = {}
    for e in entries:
        out.update({str(k): str(v) for k, v in e.items()})
    return out


def for_vm(caller, account_id: int, *, userdata: str | None, userdata_uuid: str | None, details,
           http_method: str = "POST", template=None) -> tuple[str | None, UserData | None, str | None]:
    """(user data to store, the UserData object, its details as JSON) from a deploy's or an update's
    userdata / userdataid / userdatadetails and the template's linked user data (CloudStack's
    finalizeUserData, see `finalize`). The object must be the VM's owner's; details name only
    the variables it declares."""
    if userdata_uuid and userdata:
        raise InvalidParameter("Both userdata and userdata ID inputs are not allowed, please provide only one",
                               field="userdataid")
    values = merge_details(details)
    obj = None
    if userdata_uuid:
        obj = get_userdata(caller, userdata_uuid, field="userdataid")
        if obj.account_id != account_id:
            raise NotFound("Unable to find user data with the specified id", field="userdataid")
        declared = set((obj.params or "").split(",")) - {""}
        unknown = sorted(set(values) - declared)
        if unknown:
            raise InvalidParameter(f"Userdata details {', '.join(unknown)} are not parameters of userdata "
                                   f"{obj.name}", field="userdatadetails")
        given = obj.userdata
    else:
        if values:
            raise InvalidParameter("userdatadetails need a userdataid", field="userdatadetails")
        given = validate(userdata, http_method)
    return finalize(given, template), obj, json.dumps(values) if values else None


# --- A template's linked user data (linkUserDataToTemplate, CloudStack 4.18+) -----------------

POLICIES = ("ALLOWOVERRIDE", "APPEND", "DENYOVERRIDE")


class UserDataRefused(ServiceError):
    """CloudStack's CloudRuntimeException of finalizeUserData: 530, its text shown to users."""
    shown_to_users = True


def finalize(given: str | None, template) -> str | None:
    """The VM's user data (base64) from what the deploy gave (base64 or None) and the template's
    linked user data, by its policy (UserVmManagerImpl.finalizeUserData): ALLOWOVERRIDE, the
    deploy's wins, else the template's; DENYOVERRIDE, the template's, the deploy may give none;
    APPEND, the template's then the deploy's, as one multipart (cloud-init's provider)."""
    linked = template.linked_userdata if template is not None and template.userdata_id else None
    if template is None or template.userdata_id is None:
        return given
    if linked is None:
        raise UserDataRefused(f"UserData linked to the template {template.name} is not found")
    policy = template.userdata_policy or "ALLOWOVERRIDE"
    if policy == "DENYOVERRIDE" and given:
        raise UserDataRefused(f"UserData input is not allowed here since template {template.name} is configured "
                              "to deny any userdata")
    if policy == "APPEND" and given:
        return append(linked.userdata, given)
    return given or linked.userdata


# cloud-init's part types by the user data's first line (CloudStack's CloudInitUserDataProvider)
_PART_TYPES = (("#cloud-config", "text/cloud-config"), ("#!", "text/x-shellscript"),
               ("#cloud-boothook", "text/cloud-boothook"), ("#include", "text/x-include-url"),
               ("#part-handler", "text/part-handler"), ("## template: jinja", "text/jinja2"))


def _parts(text: str) -> list:
    from email import message_from_string
    from email.mime.text import MIMEText
    if text.lstrip().lower().startswith("content-type: multipart"):
        return list(message_from_string(text).get_payload())
    for prefix, mime in _PART_TYPES:
        if text.startswith(prefix):
            part = MIMEText(text, mime.split("/")[1])  # us-ascii as is (utf-8 text: base64)
            return [part]
    raise InvalidParameter("Userdata format not supported: it must start with #cloud-config, #!, #cloud-boothook, "
                           "#include, #part-handler or ## template: jinja, or be a multipart", field="userdata")


def append(first_b64: str, second_b64: str) -> str:
    """The two user data (base64) as one multipart/mixed message (base64), the first's parts
    first: what cloud-init runs for APPEND (CloudStack's UserDataManager.concatenateUserData)."""
    from email.mime.multipart import MIMEMultipart
    msg = MIMEMultipart()
    for b64 in (first_b64, second_b64):
        for part in _parts(base64.b64decode(b64).decode("utf-8", "replace")):
            msg.attach(part)
    return base64.b64encode(msg.as_string().encode()).decode()


def link_to_template(caller, *, template_uuid: str | None, iso_uuid: str | None, userdata_uuid: str | None,
                     policy: str | None):
    """linkUserDataToTemplate: the template (or ISO) the caller owns gets the user data (one the
    template's owner has) and its policy (ALLOWOVERRIDE by default); without userdataid the link
    goes. CloudStack's checks and words (TemplateManagerImpl.linkUserDataToTemplate)."""
    from app.services import templates
    if template_uuid and iso_uuid:
        raise InvalidParameter("Both template ID and ISO ID are passed, API is applicable only for one ID",
                               field="templateid")
    if not template_uuid and not iso_uuid:
        raise InvalidParameter("Atleast one of template ID or ISO ID needs to be passed", field="templateid")
    value = (policy or "ALLOWOVERRIDE").strip().upper()
    if value not in POLICIES:
        raise InvalidParameter(f"Invalid userdatapolicy {policy}: one of {', '.join(POLICIES)}",
                               field="userdatapolicy")
    t = templates.get_visible(caller, template_uuid or iso_uuid, owned=True, is_iso=bool(iso_uuid))
    obj = None
    if userdata_uuid:
        obj = get_userdata(caller, userdata_uuid, field="userdataid")
        if obj.account_id != t.account_id:
            raise InvalidParameter(f"User data {obj.name} belongs to another account than the template",
                                   field="userdataid")
    t.userdata_id = obj.id if obj else None
    t.userdata_policy = value if obj else None
    events.record("TEMPLATE.USERDATA.LINK" if obj else "TEMPLATE.USERDATA.UNLINK",
                  f"{'ISO' if t.is_iso else 'Template'} {t.name}: user data "
                  f"{obj.name + ' (' + value + ')' if obj else 'unlinked'}", user=caller, account_id=t.account_id,
                  resource_type="Template", resource_id=t.uuid)
    db.session.commit()
    return t


def details_of(vm) -> dict[str, str]:
    """A VM's userdatadetails as a dict (meta-data items for the guest)."""
    try:
        return json.loads(vm.userdata_details) if vm.userdata_details else {}
    except ValueError:
        return {}


def java_map(values: dict[str, str]) -> str | None:
    """CloudStack's userdatadetails in a VM's answer: the Java map's toString, {a=1, b=2}."""
    return "{" + ", ".join(f"{k}={v}" for k, v in values.items()) + "}" if values else None

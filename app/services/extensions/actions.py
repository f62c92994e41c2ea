"""Custom actions (CloudStack's addCustomAction, listCustomActions, updateCustomAction,
deleteCustomAction, runCustomAction): named actions of an extension run on a VM with typed
parameters; the extension is called with the action's name and a payload carrying `action`
and `parameters`. A new action is disabled unless enabled=true; Admin may always run one,
the roles in allowedroletypes too."""
from __future__ import annotations

import json

from sqlalchemy import func, select

from app.extensions import db
from app.jobs import service as jobs
from app.models import AsyncJob, ExtensionCustomAction, ExtensionState, Host, VirtualMachine, VMState, utcnow
from app.services import events
from app.services.errors import InvalidParameter, NotFound
from app.services.extensions import calls, details, parameters, registry

ROLE_TYPES = ("Admin", "ResourceAdmin", "DomainAdmin", "User")
RESOURCE_TYPES = ("VirtualMachine",)
ERROR = "Internal error running action"
# The VM states a custom action may run in (taken with the VM's lock; a VM in a transition
# is busy with another action anyway).
LOCKABLE = (VMState.RUNNING, VMState.STOPPED, VMState.UNKNOWN, VMState.ERROR)


def get(uuid: str, field: str = "id") -> ExtensionCustomAction:
    a = db.session.scalar(select(ExtensionCustomAction).where(ExtensionCustomAction.uuid == uuid,
                                                              ExtensionCustomAction.removed.is_(None)))
    if a is None:
        raise NotFound("Unable to find the custom action with the specified id", field=field)
    return a


def _roles(values) -> str:
    roles = {"Admin"}
    for v in values or []:
        match = next((r for r in ROLE_TYPES if r.lower() == str(v).strip().lower()), None)
        if match is None:
            raise InvalidParameter(f"Invalid role specified - {v}", field="allowedroletypes")
        roles.add(match)
    return ",".join(r for r in ROLE_TYPES if r in roles)


def _resource_type(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    match = next((r for r in RESOURCE_TYPES if r.lower() == value.strip().lower()), None)
    if match is None:
        raise InvalidParameter(f"Invalid resource type specified: {value}. Valid values are: [VirtualMachine]",
                               field="resourcetype")
    return match


def _timeout(value) -> int:
    if value is None:
        return 3  # CloudStack's default
    if not 1 <= int(value) <= 86400:
        raise InvalidParameter("The timeout is 1 to 86400 seconds", field="timeout")
    return int(value)


def add(caller, *, extension_uuid: str, name: str, description: str | None = None, resource_type: str | None = None,
        allowed_role_types=None, enabled: bool | None = None, parameters_map=None, success_message=None,
        error_message=None, timeout=None, details_map=None) -> ExtensionCustomAction:
    e = registry.get(extension_uuid, "extensionid")
    name = (name or "").strip()
    if not name or len(name) > 255 or not all(c.isalnum() or c in "-_." for c in name):
        raise InvalidParameter("The action's name is 1-255 letters, digits, dots, dashes or underscores "
                               "(the extension is called with it)", field="name")
    declared = parameters.declare(parameters_map)
    roles = _roles(allowed_role_types)
    rtype = _resource_type(resource_type) or "VirtualMachine"  # an Orchestrator's actions are on VMs
    t = _timeout(timeout)
    values = details.parse(details_map)
    if db.session.scalar(select(ExtensionCustomAction.id).where(
            ExtensionCustomAction.extension_id == e.id, func.lower(ExtensionCustomAction.name) == name.lower(),
            ExtensionCustomAction.removed.is_(None))):
        raise registry.Refused("Action by name already exists", field="name")
    a = ExtensionCustomAction(extension_id=e.id, name=name, description=description, resource_type=rtype,
                              allowed_role_types=roles, enabled=bool(enabled), parameters=json.dumps(declared),
                              success_message=success_message, error_message=error_message, timeout=t)
    db.session.add(a)
    db.session.flush()
    details.replace("ExtensionCustomAction", a.id, values)
    events.record("EXTENSION.CUSTOM.ACTION.ADD", f"Custom action {name} added to extension {e.name}", user=caller,
                  resource_type="ExtensionCustomAction", resource_id=a.uuid)
    db.session.commit()
    return a


def list_actions(caller, *, id=None, name=None, extension_uuid=None, resource_type=None, resource_id=None,
                 enabled=None, keyword=None, page=None):
    q = select(ExtensionCustomAction).where(ExtensionCustomAction.removed.is_(None))
    rtype = _resource_type(resource_type)
    if extension_uuid:
        q = q.where(ExtensionCustomAction.extension_id == registry.get(extension_uuid, "extensionid").id)
    elif rtype and resource_id:
        vm, host, e = _vm_extension(caller, resource_id)
        if e is None:
            raise InvalidParameter("Internal error listing custom actions with specified resource",
                                   field="resourceid")
        q = q.where(ExtensionCustomAction.extension_id == e.id)
    if id:
        q = q.where(ExtensionCustomAction.uuid == id)
    if name:
        q = q.where(ExtensionCustomAction.name == name)
    if keyword:
        q = q.where(ExtensionCustomAction.name.ilike(f"%{keyword}%"))
    if enabled is not None:
        q = q.where(ExtensionCustomAction.enabled.is_(bool(enabled)))
    if rtype:
        q = q.where(ExtensionCustomAction.resource_type.is_(None) | (ExtensionCustomAction.resource_type == rtype))
    if not caller.is_admin:  # what the caller may run: enabled, its role type allowed
        q = q.where(ExtensionCustomAction.enabled.is_(True))
        rows = [a for a in db.session.scalars(q.order_by(ExtensionCustomAction.id.desc())) if allowed(caller, a)]
        total = len(rows)
        if page is not None:
            rows = rows[page.offset:page.offset + page.limit]
        return rows, total
    total = db.session.scalar(select(func.count()).select_from(q.subquery()))
    q = q.order_by(ExtensionCustomAction.id.desc())
    if page is not None:
        q = q.offset(page.offset).limit(page.limit)
    return list(db.session.scalars(q)), total


def update(caller, uuid: str, *, description=None, resource_type=None, allowed_role_types=None, enabled=None,
           parameters_map=None, cleanup_parameters=None, success_message=None, error_message=None, timeout=None,
           details_map=None, cleanup_details=None) -> ExtensionCustomAction:
    a = get(uuid)
    declared = parameters.declare(parameters_map) if parameters_map and not cleanup_parameters else None
    values = details.parse(details_map) if details_map and not cleanup_details else None
    if description:
        a.description = description
    if resource_type is not None:
        a.resource_type = _resource_type(resource_type)
    if allowed_role_types:
        a.allowed_role_types = _roles(allowed_role_types)
    if success_message is not None:
        a.success_message = success_message
    if error_message is not None:
        a.error_message = error_message
    if timeout is not None:
        a.timeout = _timeout(timeout)
    if enabled is not None:
        a.enabled = bool(enabled)
    if cleanup_parameters:
        a.parameters = "[]"
    elif declared:
        a.parameters = json.dumps(declared)
    if cleanup_details:
        details.replace("ExtensionCustomAction", a.id, {})
    elif values:
        details.replace("ExtensionCustomAction", a.id, values)
    events.record("EXTENSION.CUSTOM.ACTION.UPDATE", f"Custom action {a.name} updated", user=caller,
                  resource_type="ExtensionCustomAction", resource_id=a.uuid)
    db.session.commit()
    return a


def delete(caller, uuid: str) -> None:
    a = get(uuid)
    details.forget("ExtensionCustomAction", [a.id])
    a.removed = utcnow()
    a.name = f"{a.name}-removed-{a.id}"[:255]
    events.record("EXTENSION.CUSTOM.ACTION.DELETE", f"Custom action {a.name} deleted", user=caller,
                  resource_type="ExtensionCustomAction", resource_id=a.uuid)
    db.session.commit()


def allowed(caller, a: ExtensionCustomAction) -> bool:
    return caller.is_admin or caller.role_type in (a.allowed_role_types or "Admin").split(",")


def _vm_extension(caller, vm_uuid: str):
    """(VM, its host, the extension serving it) — the VM as the caller may see it."""
    from app.services import vms as vm_service
    try:
        vm = vm_service.get_vm(caller, vm_uuid)
    except InvalidParameter:
        return None, None, None
    host = vm.host or (db.session.get(Host, vm.last_host_id) if vm.last_host_id else None)
    if host is None or not calls.serves(host):
        return vm, host, None
    return vm, host, registry.extension_of_cluster(host.cluster_id)


def run(caller, *, action_uuid: str, resource_id: str, resource_type: str | None = None,
        parameter_map=None) -> AsyncJob:
    """Check everything, then run the action in a job (its answer: customactionresult) holding
    the VM's lock like every other VM action (a stop and a custom action never run at once).
    The refusals are CloudStack 4.21's runCustomAction: one text, "Internal error running
    action", either as InvalidParameterValueException (431: no such action, a role not allowed,
    the action disabled, a VM not External) or as CloudRuntimeException (530: the extension
    disabled, a bad resource type, no such resource, no extension serving its cluster)."""
    a = db.session.scalar(select(ExtensionCustomAction).where(ExtensionCustomAction.uuid == action_uuid,
                                                              ExtensionCustomAction.removed.is_(None)))
    if a is None or not allowed(caller, a) or not a.enabled:
        raise InvalidParameter(ERROR, field="customactionid")
    if a.extension.state != ExtensionState.ENABLED:
        raise registry.Refused(ERROR)
    if a.resource_type is None and not resource_type:
        raise InvalidParameter("Resource type not specified for the action", field="resourcetype")
    rtype = a.resource_type
    if resource_type:
        rtype = next((r for r in RESOURCE_TYPES if r.lower() == resource_type.strip().lower()), None)
        if rtype is None or (a.resource_type and rtype != a.resource_type):
            raise registry.Refused(ERROR)
    vm, host, e = _vm_extension(caller, resource_id)
    if vm is None:
        raise registry.Refused(ERROR)
    if host is None or not calls.serves(host):
        raise InvalidParameter(ERROR, field="resourceid")  # not an External VM
    if e is None or e.id != a.extension_id:
        raise registry.Refused(ERROR)  # its cluster's extension is not the action's
    supplied = details.parse(parameter_map, "parameters")
    values = parameters.validate(parameters.loads(a.parameters), supplied)
    from app.services import vms as vm_service
    token = vm_service.lock(vm, "customaction", LOCKABLE)
    try:
        job = jobs.submit("runCustomAction", caller, "extension.customaction",
                          {"action": a.uuid, "vm": vm.uuid, "parameters": values, "token": token},
                          instance_type="VirtualMachine", instance_id=vm.uuid)
    except BaseException:
        db.session.rollback()
        vm_service.unlock(vm.id, token)
        raise
    vm_service.hand_lock(vm.id, token, job.id)
    return job


def _message(ok: bool, a: ExtensionCustomAction, vm: VirtualMachine) -> str:
    text = a.success_message if ok else a.error_message
    if text:
        return (text.replace("{{actionName}}", a.name).replace("{{extensionName}}", a.extension.name)
                .replace("{{resourceName}}", vm.name))
    return f"Successfully completed {a.name}" if ok else f"Failed to complete {a.name}"


@jobs.handler("extension.customaction")
def _run(job: AsyncJob, params: dict):
    from app.services import vms as vm_service
    vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == params["vm"]))
    try:
        return _run_locked(job, params, vm)
    finally:
        db.session.rollback()
        vm_service.unlock(vm.id, *[t for t in (params.get("token"), job.id) if t is not None])


def _run_locked(job: AsyncJob, params: dict, vm: VirtualMachine):
    from app.models import User
    a = get(params["action"])
    host = vm.host or (db.session.get(Host, vm.last_host_id) if vm.last_host_id else None)
    caller = db.session.get(User, job.user_id) if job.user_id else None
    m = registry.map_of_cluster(host.cluster_id)
    driver = calls.driver_for(host, [vm], caller=caller, action=a, parameters=params.get("parameters") or None)
    jobs.progress(job, 30, f"Running {a.name} on {vm.name}")
    try:
        res = driver.run(a.name, vm.instance_name, a.timeout)
    finally:
        driver.close()
    output = calls.redacted(res.output if res.ok else res.message, a.extension, m, host, vm, a)
    events.record("EXTENSION.CUSTOM.ACTION", f"Custom action {a.name} on VM {vm.name}: "
                  f"{'succeeded' if res.ok else 'failed'}", level="INFO" if res.ok else "WARN",
                  user=caller, account_id=vm.account_id, resource_type="VirtualMachine", resource_id=vm.uuid)
    db.session.commit()
    return {"customactionresult": {"id": a.uuid, "name": a.name, "success": res.ok,
                                   "result": {"message": _message(res.ok, a, vm), "details": output}}}

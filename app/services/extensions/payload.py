"""The payload file an extension reads (CloudStack 4.21's ExternalPathPayloadProvisioner
loadAccessDetails): `externaldetails` (`extension`, `resourcemap`, `host`, `virtualmachine`
and, for a custom action, `action`), `virtualmachineid`, `virtualmachinename`,
`cloudstack.vm.details` (VirtualMachineTO's field names) and `caller`; a custom action adds
`action` and `parameters`."""
from __future__ import annotations

from app.models import Extension, ExtensionResourceMap, Host, VirtualMachine
from app.services.extensions import details

MIB = 1024 * 1024
DEPLOY_VM = "deployvm"  # VmDetailConstants.DEPLOY_VM: true on the first start (the extension's `create`)


ACCOUNT_TYPES = {0: "NORMAL", 1: "ADMIN", 2: "DOMAIN_ADMIN", 3: "RESOURCE_DOMAIN_ADMIN", 5: "PROJECT"}


def caller_of(user) -> dict | None:
    """The calling account as CloudStack's ExtensionsManagerImpl.getCallerDetails gives it:
    id, name, type; roleid, rolename, roletype."""
    account = getattr(user, "account", None)
    if account is None:
        return None
    out = {"id": account.uuid, "name": account.name, "type": ACCOUNT_TYPES.get(account.account_type, "NORMAL"),
           "roletype": account.role_type}
    if account.role_obj is not None:
        out.update(roleid=account.role_obj.uuid, rolename=account.role_obj.name)
    return out


def _broadcast_uri(nic) -> str | None:
    net = nic.network
    if getattr(net, "broadcast_uri", None):
        return net.broadcast_uri
    vlan = getattr(net, "vlan", None)
    return f"vlan://{vlan}" if vlan else None


def vm_to(vm: VirtualMachine, *, first: bool = False) -> dict:
    """The VM as VirtualMachineTO's JSON (Gson field names)."""
    vm_details = dict(details.values_of("UserVmPrepared", vm.id))
    if first:
        vm_details[DEPLOY_VM] = "true"
    nics = []
    for n in vm.nics:
        if n.removed is not None:
            continue
        net = n.network
        nics.append({"deviceId": n.device_id, "mac": n.mac_address, "uuid": n.uuid, "ip": n.ip_address,
                     "netmask": getattr(net, "netmask", None), "gateway": getattr(net, "gateway", None),
                     "broadcastType": (_broadcast_uri(n) or "native").split(":")[0].capitalize() if _broadcast_uri(n) else "Native",
                     "broadcastUri": _broadcast_uri(n), "type": "Guest", "defaultNic": bool(n.is_default),
                     "networkUuid": getattr(net, "uuid", None)})
    os_type = vm.template.os_type.description if vm.template and vm.template.os_type else None
    return {"id": vm.id, "uuid": vm.uuid, "name": vm.instance_name, "displayName": vm.display_name or vm.name,
            "hostName": vm.name, "type": "User", "cpus": vm.cpu_number, "speed": vm.cpu_speed,
            "minSpeed": vm.cpu_speed, "maxSpeed": vm.cpu_speed,
            "minRam": vm.memory * MIB, "maxRam": vm.memory * MIB, "os": os_type,
            "enableHA": bool(vm.ha_enable), "enableDynamicallyScaleVm": bool(vm.dynamically_scalable),
            "templateUuid": vm.template.uuid if vm.template else None,
            "details": vm_details, "nics": nics, "disks": []}


def vm_external_details(vm: VirtualMachine) -> dict:
    """The template's, then the offering's, then the VM's own external details (later wins)."""
    out: dict = {}
    if vm.template_id:
        out.update(details.values_of("VMTemplate", vm.template_id))
    out.update(details.values_of("ServiceOffering", vm.service_offering_id))
    out.update(details.values_of("UserVm", vm.id))
    return out


def build(extension: Extension, resource_map: ExtensionResourceMap | None, host: Host | None,
          vm: VirtualMachine | None, *, caller=None, first: bool = False, action=None,
          parameters: dict | None = None) -> dict:
    external = {"extension": details.values_of("Extension", extension.id),
                "resourcemap": details.values_of("ExtensionResourceMap", resource_map.id if resource_map else None),
                "host": details.values_of("Host", host.id if host else None)}
    if vm is not None:
        external["virtualmachine"] = vm_external_details(vm)
    if action is not None:
        external["action"] = details.values_of("ExtensionCustomAction", action.id)
    out: dict = {"externaldetails": external}
    if vm is not None:
        out["virtualmachineid"] = vm.uuid
        out["virtualmachinename"] = vm.instance_name
        out["cloudstack.vm.details"] = vm_to(vm, first=first)
    who = caller_of(caller)
    if who is not None:
        out["caller"] = who
    if action is not None:
        out["action"] = action.name
        if parameters:
            out["parameters"] = parameters
    return out


def owners(extension: Extension, resource_map, host, vm, action=None) -> list[tuple[str, int | None]]:
    """Whose secrets may appear in an extension's output (masked before it is shown or logged)."""
    out = [("Extension", extension.id), ("ExtensionResourceMap", resource_map.id if resource_map else None),
           ("Host", host.id if host else None)]
    if vm is not None:
        out += [("UserVm", vm.id), ("VMTemplate", vm.template_id), ("ServiceOffering", vm.service_offering_id)]
    if action is not None:
        out.append(("ExtensionCustomAction", action.id))
    return out

"""updateVirtualMachine, restoreVirtualMachine, resetSSHKeyForVirtualMachine,
resetPasswordForVirtualMachine, getVMPassword, assignVirtualMachine."""
from __future__ import annotations

from flask import request

from app.api.registry import ADMIN, Param, command
from app.services import vm_admin


@command("updateVirtualMachine", "Updates properties of a virtual machine", response="virtualmachine", params=[
    Param("id", "uuid", "The ID of the virtual machine", required=True),
    Param("displayname", "string", "user generated name"),
    Param("name", "string", "new host name of the vm (an RFC 1123 label)"),
    Param("group", "string", "group of the virtual machine (made when the account has none of that name)"),
    Param("haenable", "boolean", "true if high-availability is enabled for the virtual machine"),
    Param("ostypeid", "uuid", "the ID of the OS type that best represents this VM"),
    Param("userdata", "string", "base64 user data: 4 KB by GET, up to vm.userdata.max.length by POST",
          length=1048576),
    Param("userdataid", "uuid", "the ID of the userdata"),
    Param("userdatadetails", "map", "used to specify the parameters values for the variables in userdata"),
    Param("details", "map", "Details in key/value pairs ('extraconfig' is not allowed)"),
    Param("cleanupdetails", "boolean", "optional boolean field, which indicates if details should be cleaned up"),
    Param("isdynamicallyscalable", "boolean", "true if VM contains XS/VMWare tools inorder to support dynamic "
          "scaling of VM cpu/memory"),
    Param("displayvm", "boolean", "an optional field, whether to the display the vm to the end user or not")])
def update(ctx, p):
    return vm_admin.update_vm(
        ctx.user, p["id"], display_name=p.get("displayname"), name=p.get("name"), group=p.get("group"),
        ha_enable=p.get("haenable"), userdata_b64=p.get("userdata"), userdata_uuid=p.get("userdataid"),
        userdata_details=p.get("userdatadetails"), details=p.get("details"),
        cleanup_details=p.get("cleanupdetails", False), os_type_uuid=p.get("ostypeid"),
        dynamically_scalable=p.get("isdynamicallyscalable"), http_method=request.method)


@command("getVirtualMachineUserData", "Returns user data associated with the VM", response="virtualmachineuserdata",
         changes_state=False, params=[Param("virtualmachineid", "uuid", "The ID of the virtual machine", required=True)])
def get_user_data(ctx, p):
    return vm_admin.user_data_of(ctx.user, p["virtualmachineid"])


@command("restoreVirtualMachine", "Restore a VM to original template/ISO or new template/ISO", is_async=True,
         response="virtualmachine", params=[
             Param("virtualmachineid", "uuid", "Virtual Machine ID", required=True),
             Param("templateid", "uuid", "an optional template Id to restore vm from the new template"),
             Param("rootdisksize", "long", "Override root volume's size (in GB)")])
def restore(ctx, p):
    return vm_admin.restore(ctx.user, p["virtualmachineid"], p.get("templateid"), p.get("rootdisksize"))


@command("resetSSHKeyForVirtualMachine", "Resets the SSH Key for virtual machine. The virtual machine must be in a "
         "\"Stopped\" state.", is_async=True, response="virtualmachine", params=[
             Param("id", "uuid", "The ID of the virtual machine", required=True),
             Param("keypair", "string", "name of the ssh key pair used to login to the virtual machine"),
             Param("keypairs", "list", "names of the ssh key pairs (Nubo VMs take one)"),
             Param("account", "string", "an optional account for the ssh key"),
             Param("domainid", "uuid", "an optional domainId for the ssh key"),
             Param("projectid", "uuid", "an optional project for the ssh key")])
def reset_ssh_key(ctx, p):
    return vm_admin.reset_ssh_key(ctx.user, p["id"], keypair=p.get("keypair"), keypairs=p.get("keypairs"))


@command("resetPasswordForVirtualMachine", "Resets the password for virtual machine. The virtual machine must be in "
         "a \"Stopped\" state and the template must already support this feature for this command to take effect.",
         is_async=True, response="virtualmachine", params=[
             Param("id", "uuid", "The ID of the virtual machine", required=True)])
def reset_password(ctx, p):
    return vm_admin.reset_password(ctx.user, p["id"])


@command("getVMPassword", "Returns an encrypted password for the VM", response="password", changes_state=False,
         params=[Param("id", "uuid", "The ID of the virtual machine", required=True)])
def get_password(ctx, p):
    return vm_admin.get_password(ctx.user, p["id"])


@command("assignVirtualMachine", "Change ownership of a VM from one account to another. This API is available for "
         "Basic zones with security groups and Advanced zones with guest networks. A root administrator can reassign "
         "a VM from any account to any other account in any domain.", role=ADMIN, response="virtualmachine",
         params=[Param("virtualmachineid", "uuid", "id of the VM to be moved", required=True),
                 Param("account", "string", "account name of the new VM owner."),
                 Param("domainid", "uuid", "domain id of the new VM owner."),
                 Param("projectid", "uuid", "an optional project for the new VM owner."),
                 Param("networkids", "list", "list of new network ids in which the moved VM will participate",
                       item_type="uuid"),
                 Param("securitygroupids", "list", "list of security group ids to be applied on the virtual "
                       "machine", item_type="uuid")])
def assign(ctx, p):
    return vm_admin.assign(ctx.user, p["virtualmachineid"], account=p.get("account"), domainid=p.get("domainid"),
                           projectid=p.get("projectid"), network_uuids=p.get("networkids"),
                           security_group_uuids=p.get("securitygroupids"))

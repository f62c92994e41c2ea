"""A VM's NICs: listNics, addNicToVirtualMachine, removeNicFromVirtualMachine,
updateDefaultNicForVirtualMachine (the last three async, as in CloudStack)."""
from __future__ import annotations

from app.api.registry import Param, command
from app.api.serializers import serializer
from app.services.network import vm_nics


@serializer("nic")
def nic(n) -> dict:
    return vm_nics.nic_dict(n, n.vm.uuid)


@command("listNics", "Lists the NICs of a VM", response="nic", list=True, params=[
    Param("virtualmachineid", "uuid", "the ID of the vm", required=True),
    Param("nicid", "uuid", "the ID of the nic to list IPs"),
    Param("networkid", "uuid", "list nic of the specific vm's network")])
def list_nics(ctx, p):
    return vm_nics.list_nics(ctx.user, p["virtualmachineid"], nic_uuid=p.get("nicid"),
                             network_uuid=p.get("networkid"), page=ctx.page)


@command("addNicToVirtualMachine", "Adds VM to specified network by creating a NIC", is_async=True,
         response="virtualmachine", params=[
             Param("virtualmachineid", "uuid", "Virtual Machine ID", required=True),
             Param("networkid", "uuid", "Network ID", required=True),
             Param("ipaddress", "string", "IP Address for the new network")])
def add_nic(ctx, p):
    return vm_nics.add_to_vm(ctx.user, p["virtualmachineid"], p["networkid"], p.get("ipaddress"))


@command("removeNicFromVirtualMachine", "Removes VM from specified network by deleting a NIC", is_async=True,
         response="virtualmachine", params=[
             Param("virtualmachineid", "uuid", "Virtual Machine ID", required=True),
             Param("nicid", "uuid", "NIC ID", required=True)])
def remove_nic(ctx, p):
    return vm_nics.remove_from_vm(ctx.user, p["virtualmachineid"], p["nicid"])


@command("updateDefaultNicForVirtualMachine", "Changes the default NIC on a VM", is_async=True,
         response="virtualmachine", params=[
             Param("virtualmachineid", "uuid", "Virtual Machine ID", required=True),
             Param("nicid", "uuid", "NIC ID", required=True)])
def update_default(ctx, p):
    return vm_nics.update_default(ctx.user, p["virtualmachineid"], p["nicid"])

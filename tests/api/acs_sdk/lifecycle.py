"""A VM's life through py-acs-sdk, as a user of the SDK writes it (run by tests/api/test_acs_sdk.py with the
SDK's own Python, 3.12+): list zones, offerings and templates, deploy, stop, start, a data volume created,
attached, detached and deleted, destroy with expunge. Prints what it saw as JSON; exits 1 on an error."""
import json
import sys

from acs_sdk.acs import ApacheCloudStack
from acs_sdk.schemas.config import ApacheCloudStackConfig
from acs_sdk.schemas.request.disk_offering import ListDiskOfferingRequest
from acs_sdk.schemas.request.service_offering import ListServiceOfferingRequest
from acs_sdk.schemas.request.template import ListTemplatesRequest
from acs_sdk.schemas.request.virtual_machine import (DeployVirtualMachineRequest, DestroyVirtualMachineRequest,
                                                     ListVirtualMachinesRequest, StartVirtualMachineRequest,
                                                     StopVirtualMachineRequest)
from acs_sdk.schemas.request.volume import (AttachVolumeRequest, CreateVolumeRequest, DeleteVolumeRequest,
                                            DetachVolumeRequest, ListVolumesRequest)
from acs_sdk.schemas.request.zone import ListZonesRequest

endpoint, key, secret = sys.argv[1:4]
acs = ApacheCloudStack(ApacheCloudStackConfig(api_endpoint=endpoint, api_key=key, api_secret=secret))
seen: dict = {}


def ok(response):
    if not response.is_ok:
        print(json.dumps({"error": str(response.errors), "seen": seen}))
        sys.exit(1)
    return response


def wait(response, what):
    job = ok(response).data["jobid"]
    done = acs.job.poll(job, interval=1, timeout=120, max_attempts=120).data
    if done["status"] != 1:
        print(json.dumps({"error": f"{what}: {done['error']}", "seen": seen}))
        sys.exit(1)
    return done["result"]


zone = ok(acs.zone.list(ListZonesRequest(available=True))).data[0]
offering = ok(acs.serviceoffering.list(ListServiceOfferingRequest())).data[0]
template = ok(acs.template.list(ListTemplatesRequest(templatefilter="executable", zoneid=zone["id"]))).data[0]
disk = ok(acs.diskoffering.list(ListDiskOfferingRequest())).data[0]
seen["zone"] = zone["name"]

vm = wait(acs.vm.deploy_vm(DeployVirtualMachineRequest(
    zoneid=zone["id"], serviceofferingid=offering["id"], templateid=template["id"], name="sdk1")),
    "deploy")["virtualmachine"]
seen["deployed"] = vm["state"]
seen["stopped"] = wait(acs.vm.stop_vm(StopVirtualMachineRequest(id=vm["id"])), "stop")[
    "virtualmachine"]["state"]
seen["started"] = wait(acs.vm.start_vm(StartVirtualMachineRequest(id=vm["id"])), "start")[
    "virtualmachine"]["state"]
listed = ok(acs.vm.list(ListVirtualMachinesRequest(id=vm["id"]))).data
seen["listed"] = [(v["name"], v["state"]) for v in listed]

volume = wait(acs.volume.create_volume(CreateVolumeRequest(name="sdkdata", diskofferingid=disk["id"],
                                                           zoneid=zone["id"])), "createVolume")["volume"]
seen["volume"] = volume["state"]
attached = wait(acs.volume.attach_volume(AttachVolumeRequest(id=volume["id"], virtualmachineid=vm["id"])),
                "attachVolume")["volume"]
seen["attached_to"] = attached.get("virtualmachineid") == vm["id"]
seen["volumes"] = sorted(v["type"] for v in ok(acs.volume.list(ListVolumesRequest(virtualmachineid=vm["id"]))).data)
detached = wait(acs.volume.detach_volume(DetachVolumeRequest(id=volume["id"])), "detachVolume")["volume"]
seen["detached"] = "virtualmachineid" not in detached
seen["deleted"] = ok(acs.volume.delete_volume(DeleteVolumeRequest(id=volume["id"]))).data.get("success")

wait(acs.vm.destroy_vm(DestroyVirtualMachineRequest(id=vm["id"], expunge=True)), "destroy")
seen["after_destroy"] = ok(acs.vm.list(ListVirtualMachinesRequest(id=vm["id"]))).data
print(json.dumps(seen))

"""A zone whose External cluster runs the shipped example extension (extensions/virsh) on
this machine's real libvirtd, made through the API exactly as an admin would (the
extension's files copied into its directory, createExtension, addCluster with extensionid,
addHost and registerTemplate with external details, custom actions with parameters), and
the clean-up of every domain it made. Shared by tests/api/test_virsh_lifecycle_cs.py and
tests/e2e/test_external_vm.py."""
from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from pathlib import Path

import libvirt

from tests.helpers import requires

VIRSH = Path(__file__).resolve().parents[2] / "extensions" / "virsh"
URI = "qemu:///system"
ACTIONS = {"createsnapshot": [{"name": "name", "type": "STRING", "required": "true"},
                              {"name": "description", "type": "STRING"}],
           "setdescription": [{"name": "description", "type": "STRING", "required": "true"}]}


def ready() -> str:
    """libvirtd up (scripts/libvirtd.sh); a prefix for this run's domain names."""
    requires.need("virsh", "qemu-img", why="scripts/sysdeps.sh test installs libvirt-clients and qemu-utils")
    subprocess.run([str(VIRSH.parents[1] / "scripts" / "libvirtd.sh")], check=True)
    return f"xv{secrets.token_hex(3)}-"


def build(api, instance_path: str, tmp: Path, prefix: str, zone_name: str = "virsh") -> dict:
    shutil.copytree(VIRSH, Path(instance_path) / "extensions" / "virsh")
    e = api.createExtension(name="virsh", type="Orchestrator", path="virsh.py", orchestratorrequirespreparevm=True,
                            details={"domain_prefix": prefix, "uri": URI})["extension"]
    z = api.createZone(name=zone_name, networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2",
                       guestcidraddress="10.31.0.0/24")["zone"]
    pod = api.createPod(zoneid=z["id"], name="p", gateway="192.168.8.1", netmask="255.255.255.0",
                        startip="192.168.8.10", endip="192.168.8.99")["pod"]
    cl = api.addCluster(zoneid=z["id"], podid=pod["id"], clustername="virsh", hypervisor="External",
                        clustertype="CloudManaged", extensionid=e["id"])["cluster"][0]
    images = tmp / "images"
    api.addHost(zoneid=z["id"], podid=pod["id"], clusterid=cl["id"], url="localhost", hypervisor="External",
                externaldetails={"image_dir": str(images), "stop_grace_seconds": "0"})
    template = tmp / "base.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(template), "64M"], check=True)
    t = api.registerTemplate(name="empty", url="file:///empty", zoneid=z["id"], hypervisor="External",
                             format="RAW", ispublic="true",
                             externaldetails={"template_path": str(template)})["template"][0]
    so = api.createServiceOffering(name="tiny", displaytext="1 vCPU 128 MiB", cpunumber=1, cpuspeed=500,
                                   memory=128)["serviceoffering"]
    for name, parameters in ACTIONS.items():
        api.addCustomAction(extensionid=e["id"], name=name, enabled=True, allowedroletypes="User", timeout=60,
                            parameters=parameters)
    actions = {a["name"]: a["id"] for a in api.listCustomActions(extensionid=e["id"])["extensioncustomaction"]}
    return {"extension": e, "zone": z["id"], "template": t["id"], "template_path": template,
            "offering": so["id"], "images": images, "actions": actions}


def clean_up(prefix: str) -> None:
    """Every domain of this run that is still on the libvirtd: destroyed and undefined."""
    conn = libvirt.open(URI)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(prefix):
                with contextlib.suppress(libvirt.libvirtError):
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    finally:
        conn.close()

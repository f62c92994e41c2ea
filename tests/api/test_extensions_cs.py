"""Extensions and custom actions through the real `cs` client: CloudStack 4.21's commands,
parameter names, map formats, response objects and error codes; bad input changes nothing;
secrets in details are never shown back."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.hypervisors import registry as hv_registry
from app.hypervisors.external.types import EXTERNAL
from tests.api.test_vms_cs import err

pytestmark = pytest.mark.xdist_group("live-api")
RECORDING = Path(__file__).resolve().parents[1] / "extensions" / "recording_ext.py"
hv_registry.register(EXTERNAL)  # an installed checkout has it from its entry point already


def install(live, name: str, filename: str = "rec.py") -> Path:
    d = Path(live.flask_app.instance_path) / "extensions" / name
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(RECORDING, d / filename)
    return d / filename


def test_extension_commands(live, tmp_path):
    api, alice = live.client(), live.client("alice")
    state = tmp_path / "state"
    state.mkdir()
    install(live, "rec")
    e = api.createExtension(name="rec", type="Orchestrator", path="rec.py", orchestratorrequirespreparevm=True,
                            details={"statedir": str(state), "api.password": "s3cret-pw"})["extension"]
    assert (e["name"], e["type"], e["state"], e["pathready"], e["isuserdefined"]) == \
        ("rec", "Orchestrator", "Enabled", True, True)
    assert e["orchestratorrequirespreparevm"] is True
    assert e["path"] == os.path.join(live.flask_app.instance_path, "extensions", "rec", "rec.py")
    assert e["details"] == {"statedir": str(state)}  # the secret is never shown back
    assert "s3cret-pw" not in repr(api.listExtensions(id=e["id"]))
    # CloudStack's checks and codes; nothing made
    assert err(lambda: api.createExtension(name="rec", type="Orchestrator"))["errorcode"] == 431  # name taken
    assert err(lambda: api.createExtension(name="x", type="Bogus"))["errorcode"] == 431
    assert err(lambda: api.createExtension(name="y", type="Orchestrator", path="../../etc/passwd"))["errorcode"] == 431
    assert err(lambda: alice.createExtension(name="z", type="Orchestrator"))["errorcode"] == 432
    assert [x["name"] for x in api.listExtensions()["extension"]] == ["rec"]
    # A missing or non-executable path: created, Not Ready
    missing = api.createExtension(name="missing", type="Orchestrator")["extension"]
    assert missing["pathready"] is False and missing["path"].endswith("/missing/missing.sh")
    p = install(live, "noexec", "noexec.sh")
    p.chmod(0o644)
    assert api.createExtension(name="noexec", type="Orchestrator", path="noexec.sh")["extension"]["pathready"] is False
    p.chmod(0o755)
    assert api.listExtensions(name="noexec")["extension"][0]["pathready"] is True  # rechecked
    # The executable changed: Not Ready until it matches again, or is accepted
    rec = Path(live.flask_app.instance_path) / "extensions" / "rec" / "rec.py"
    original = rec.read_bytes()
    rec.write_bytes(original + b"\n# changed\n")
    assert api.listExtensions(id=e["id"])["extension"][0]["pathready"] is False
    rec.write_bytes(original)
    assert api.listExtensions(id=e["id"])["extension"][0]["pathready"] is True
    rec.write_bytes(original + b"\n# changed\n")
    assert api.updateExtension(id=e["id"], state="Enabled")["extension"]["pathready"] is True  # accepted
    u = api.updateExtension(id=e["id"], description="recorder", details=[{"statedir": str(state)},
                                                                       {"token": "t0ken-value"}])["extension"]
    assert u["description"] == "recorder" and u["details"] == {"statedir": str(state)}
    assert err(lambda: api.updateExtension(id=e["id"], state="Sleeping"))["errorcode"] == 431

    # Clusters: addCluster extensionid=..., registerExtension, unregisterExtension
    z = api.createZone(name="EZ", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2",
                       guestcidraddress="10.20.0.0/24")["zone"]
    pod = api.createPod(zoneid=z["id"], name="P", gateway="192.168.6.1", netmask="255.255.255.0",
                        startip="192.168.6.10", endip="192.168.6.99")["pod"]
    c = api.addCluster(zoneid=z["id"], podid=pod["id"], clustername="ext", hypervisor="External",
                       clustertype="CloudManaged", extensionid=e["id"])["cluster"][0]
    assert c["hypervisortype"] == "External"
    got = api.listExtensions(id=e["id"])["extension"][0]
    assert got["resources"] == [{"id": c["id"], "name": "ext", "type": "Cluster", "created": got["resources"][0]["created"]}]
    assert err(lambda: api.registerExtension(extensionid=e["id"], resourceid=c["id"],
                                             resourcetype="Cluster"))["errorcode"] == 431  # already
    assert err(lambda: api.deleteExtension(id=e["id"]))["errorcode"] == 536  # serves a cluster
    c2 = api.addCluster(zoneid=z["id"], podid=pod["id"], clustername="ext2", hypervisor="External",
                        clustertype="CloudManaged")["cluster"][0]
    r = api.registerExtension(extensionid=e["id"], resourceid=c2["id"], resourcetype="Cluster",
                              details={"node": "pve1", "secret": "map-secret"})["extension"]
    assert {x["name"]: x.get("details") for x in r["resources"]} == {"ext": None, "ext2": {"node": "pve1"}}
    assert err(lambda: api.registerExtension(extensionid=e["id"], resourceid=c2["id"],
                                             resourcetype="Host"))["errorcode"] == 431
    api.unregisterExtension(extensionid=e["id"], resourceid=c2["id"], resourcetype="Cluster")
    assert [x["name"] for x in api.listExtensions(id=e["id"])["extension"][0]["resources"]] == ["ext"]

    # Custom actions: created disabled unless enabled=true; parameters declared and shown
    a = api.addCustomAction(extensionid=e["id"], name="snapshot", description="take one",
                            parameters=[{"name": "label", "type": "STRING", "required": "true"},
                                        {"name": "keep", "type": "NUMBER", "valueoptions": "1,2,3"},
                                        {"name": "quiesce", "type": "BOOLEAN"}],
                            allowedroletypes="User", successmessage="{{actionName}} done on {{resourceName}}",
                            details={"vendor": "rec"})["extensioncustomaction"]
    assert (a["name"], a["enabled"], a["extensionid"], a["extensionname"], a["resourcetype"], a["timeout"]) == \
        ("snapshot", False, e["id"], "rec", "VirtualMachine", 3)
    assert sorted(a["allowedroletypes"]) == ["Admin", "User"] and a["details"] == {"vendor": "rec"}
    assert a["parameters"] == [{"name": "label", "type": "STRING", "validationformat": "NONE", "required": True},
                               {"name": "keep", "type": "NUMBER", "validationformat": "NONE", "valueoptions": [1, 2, 3],
                                "required": False},
                               {"name": "quiesce", "type": "BOOLEAN", "validationformat": "NONE", "required": False}]
    assert err(lambda: api.addCustomAction(extensionid=e["id"], name="snapshot"))["errorcode"] == 431
    assert err(lambda: api.addCustomAction(extensionid=e["id"], name="bad", parameters=[
        {"name": "x", "type": "COLOUR"}]))["errorcode"] == 431
    assert err(lambda: api.addCustomAction(extensionid=e["id"], name="bad", parameters=[
        {"name": "x", "type": "BOOLEAN", "valueoptions": "true"}]))["errorcode"] == 431
    assert err(lambda: api.addCustomAction(extensionid=e["id"], name="bad", allowedroletypes="Wizard"))["errorcode"] == 431
    assert [x["name"] for x in api.listCustomActions(extensionid=e["id"])["extensioncustomaction"]] == ["snapshot"]
    assert alice.listCustomActions() == {}  # disabled: not hers to see
    a2 = api.updateCustomAction(id=a["id"], enabled=True, timeout=10)["extensioncustomaction"]
    assert (a2["enabled"], a2["timeout"]) == (True, 10)
    assert [x["name"] for x in alice.listCustomActions()["extensioncustomaction"]] == ["snapshot"]
    assert err(lambda: alice.updateCustomAction(id=a["id"], enabled=False))["errorcode"] == 432
    api.deleteCustomAction(id=a["id"])
    assert api.listCustomActions(extensionid=e["id"]) == {}
    api.deleteExtension(id=missing["id"])
    assert {x["name"] for x in api.listExtensions()["extension"]} == {"rec", "noexec"}

"""One VM, one answer: listVirtualMachines (a page of plain rows, serialised with what the
page shares built once) shows each VM exactly as its own answer does (updateVirtualMachine's,
made from the ORM row as a job's answer is), for its owner and for an admin, with every
optional part present: group, key pair, user data, details, tags, affinity group, a project."""
import base64

import pytest

from tests.integration.test_vm_commands import _rsa_pair, call, deploy, job, world  # noqa: F401 (fixture)

pytestmark = pytest.mark.db


def _no_none(value) -> bool:
    """No None anywhere in an answer (CloudStack leaves a null field out)."""
    if isinstance(value, dict):
        return all(v is not None and _no_none(v) for v in value.values())
    if isinstance(value, list):
        return all(v is not None and _no_none(v) for v in value)
    return True


def _listed(client, world, user, vm_id, **extra) -> dict:
    code, lst = call(client, world, user, "listVirtualMachines", listall="true", pagesize="50", page="1", **extra)
    assert code == 200, lst
    assert _no_none(lst)
    return {v["id"]: v for v in lst["virtualmachine"]}[vm_id]


def _own(client, world, user, vm_id) -> dict:
    """The VM's answer from its ORM row: updateVirtualMachine with nothing to change."""
    code, up = call(client, world, user, "updateVirtualMachine", id=vm_id)
    assert code == 200, up
    assert _no_none(up)
    return up["virtualmachine"]


def test_a_listed_vm_is_its_own_answer(app, client, world):
    _, pub = _rsa_pair()
    assert call(client, world, "alice", "registerSSHKeyPair", name="k1", publickey=pub)[0] == 200
    code, ag = call(client, world, "alice", "createAffinityGroup", name="spread", type="host anti-affinity")
    assert code == 200, ag
    ud = base64.b64encode(b"#cloud-config\nruncmd: [echo hi]\n").decode()
    rich = deploy(client, world, name="rich", displayname="Rich one", group="web", keypair="k1", userdata=ud,
                  affinitygroupnames="spread", templateid=world["pw"])
    plain = deploy(client, world, name="plain")
    code, _ = call(client, world, "alice", "updateVirtualMachine", id=rich["id"], **{"details[0].keyboard": "fr"})
    assert code == 200
    res = job(client, world, "alice", "createTags", resourcetype="UserVm", resourceids=rich["id"],
              **{"tags[0].key": "env", "tags[0].value": "prod"})
    assert res["jobstatus"] == 1, res
    proj = job(client, world, "admin", "createProject", name="p1", displaytext="p1")
    assert proj["jobstatus"] == 1, proj
    project_id = proj["jobresult"]["project"]["id"]
    in_project = job(client, world, "admin", "deployVirtualMachine", zoneid=world["zone"],
                     serviceofferingid=world["so"], templateid=world["t"], name="pvm", projectid=project_id)
    assert in_project["jobstatus"] == 1, in_project
    in_project = in_project["jobresult"]["virtualmachine"]

    mine = _own(client, world, "alice", rich["id"])
    assert mine["tags"][0]["key"] == "env" and mine["details"] == {"keyboard": "fr"} and mine["keypair"] == "k1"
    assert mine["affinitygroup"][0]["name"] == "spread" and mine["group"] == "web" and mine["displayname"] == "Rich one"
    assert mine["nic"][0]["ipaddress"] == mine["ipaddress"] and mine["passwordenabled"] is True
    assert "hostid" not in mine  # a user's answer: which host runs it is the admins' business
    for vm in (rich, plain):
        assert _listed(client, world, "alice", vm["id"]) == _own(client, world, "alice", vm["id"])
        assert _listed(client, world, "admin", vm["id"]) == _own(client, world, "admin", vm["id"])
    assert _own(client, world, "admin", rich["id"])["hostid"]
    assert _listed(client, world, "admin", in_project["id"], projectid=project_id) == \
        _own(client, world, "admin", in_project["id"])
    assert _own(client, world, "admin", in_project["id"])["project"] == "p1"
    # details=min: the VM's own fields and its owner, nothing it points at
    minimal = _listed(client, world, "alice", rich["id"], details="min")
    full = _listed(client, world, "alice", rich["id"])
    assert minimal == {k: full[k] for k in minimal} and "nic" not in minimal and "zoneid" not in minimal
    assert set(minimal) >= {"id", "name", "displayname", "state", "account", "domainid", "created", "memory"}

"""Wire details real clients tripped on: /client/api/ with a slash, X-Description on every
error, login's 531, createConsoleEndpoint's `success`, listVolumes' VM fields and `attached`,
listNetworks' offering, CloudStack's hypervisor names, destroy expunge=true on a Destroyed VM."""
from __future__ import annotations

import requests
from cs import CloudStack

from app.api.signing import sign
from tests.api.test_templates_cs import files, wait_status  # noqa: F401  (fixture)
from tests.api.test_vms_cs import deploy, err, simulator_zone

import pytest

pytestmark = pytest.mark.xdist_group("live-api")


def signed(live, user="admin", **params):
    key, secret = live.keys(user)
    params = {"apiKey": key, "response": "json", **params}
    params["signature"] = sign(params, secret)
    return params


def test_trailing_slash_answers_like_the_plain_path(live):
    key, secret = live.keys("admin")
    slash = CloudStack(endpoint=live.url + "/", key=key, secret=secret)
    assert slash.listUsers()["count"] == live.client().listUsers()["count"] == 2
    for method in ("GET", "POST"):
        kw = {"params" if method == "GET" else "data": signed(live, command="listUsers")}
        resp = requests.request(method, live.url + "/", timeout=10, allow_redirects=False, **kw)
        assert resp.status_code == 200 and resp.json()["listusersresponse"]["count"] == 2
    login = requests.post(live.url + "/", data={"command": "login", "username": "alice", "password": "alicepass",
                                                "response": "json"}, timeout=10)
    assert login.status_code == 200 and login.json()["loginresponse"]["sessionkey"]


def test_every_error_carries_x_description(live):
    cases = [
        ("GET", signed(live, command="updateConfiguration", name="no.such.setting", value="1"), 431),
        ("GET", signed(live, command="doesNotExist"), 401),  # unknown command
        ("GET", {**signed(live, command="listUsers"), "signature": "bad"}, 401),
        ("GET", signed(live, "alice", command="updateConfiguration", name="x", value="1"), 432),  # admin only
        ("PUT", signed(live, command="listUsers"), 405),
        ("GET", signed(live, command="disableUser", id="not-a-uuid"), 431),
    ]
    for method, params, code in cases:
        resp = requests.request(method, live.url, params=params, timeout=10)
        body = next(iter(resp.json().values()))
        assert resp.status_code == code == body["errorcode"], (params, resp.text)
        assert resp.headers["X-Description"] == body["errortext"] and body["errortext"], params
    # A message with a line break and characters beyond Latin-1 still makes one valid header line.
    resp = requests.get(live.url, params=signed(live, command="updateConfiguration",
                                                name="bad\r\nX-Injected: 1 ✓", value="1"), timeout=10)
    assert resp.status_code == 431 and "X-Injected" not in resp.headers
    assert "\n" not in resp.headers["X-Description"] and resp.headers["X-Description"]


def test_login_with_a_wrong_password_answers_531(live):
    resp = requests.post(live.url, data={"command": "login", "username": "alice", "password": "s3cret-guess",
                                         "response": "json"}, timeout=10)
    body = resp.json()["loginresponse"]
    assert resp.status_code == 531 and body["errorcode"] == 531
    assert body["errortext"] == "Failed to authenticate user alice in domain 1; please provide valid credentials"
    assert resp.headers["X-Description"] == body["errortext"]
    assert "s3cret-guess" not in resp.text and "s3cret-guess" not in str(resp.headers)
    # A signed call with a wrong secret is still 401 (the signature, not the login, failed).
    bad = CloudStack(endpoint=live.url, key=live.keys("alice")[0], secret="wrong")
    with pytest.raises(Exception) as e:
        bad.listUsers()
    assert e.value.error["errorcode"] == 401


def test_vm_fields_on_volumes_and_networks(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    vm = deploy(alice, z, t, so, name="web1", displayname="Web one")
    root = alice.listVolumes(virtualmachineid=vm["id"])["volume"][0]
    assert (root["virtualmachineid"], root["vmname"], root["vmdisplayname"], root["vmstate"], root["vmtype"],
            root["deviceid"], root["hypervisor"]) == (vm["id"], "web1", "Web one", "Running", "User", 0, "Simulator")
    assert root["attached"] and root["storagetype"] == "shared"

    offering = api.createDiskOffering(name="small", displaytext="1 GiB", disksize=1)["diskoffering"]
    data = alice.createVolume(name="d1", zoneid=z["id"], diskofferingid=offering["id"], fetch_result=True)["volume"]
    listed = alice.listVolumes(id=data["id"])["volume"][0]
    assert not {"attached", "virtualmachineid", "vmname", "deviceid"} & set(listed)  # detached: no VM fields
    alice.attachVolume(id=data["id"], virtualmachineid=vm["id"], fetch_result=True)
    listed = alice.listVolumes(id=data["id"])["volume"][0]
    assert listed["attached"] and listed["virtualmachineid"] == vm["id"] and listed["deviceid"] == 1
    assert listed["vmdisplayname"] == "Web one"
    alice.detachVolume(id=data["id"], fetch_result=True)
    assert "attached" not in alice.listVolumes(id=data["id"])["volume"][0]

    net = alice.listNetworks(zoneid=z["id"])["network"][0]
    assert net["networkofferingname"] == "DefaultSharedNetworkOffering" and net["networkofferingid"]
    assert net["networkofferingdisplaytext"] and net["networkofferingavailability"] == "Optional"
    assert net["type"] == "Shared" and net["acltype"] == "Domain"
    # createConsoleEndpoint's `success`: tests/integration/test_console_tokens.py (Simulator VMs have no console).


def test_hypervisor_names_on_the_wire_are_cloudstacks(live, files, tmp_path):  # noqa: F811
    api = live.client()
    names = [h["name"] for h in api.listHypervisors()["hypervisor"]]
    assert "Hyperv" in names and "Hyper-V" not in names
    z = api.createZone(name="HVZ", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2",
                       hypervisor="Hyperv")["zone"]
    p = api.createPod(zoneid=z["id"], name="P", gateway="192.168.6.1", netmask="255.255.255.0",
                      startip="192.168.6.10", endip="192.168.6.99")["pod"]
    for typed in ("Hyperv", "Hyper-V"):  # both still accepted on the way in
        c = api.addCluster(zoneid=z["id"], podid=p["id"], clustername=f"HV-{typed}", hypervisor=typed,
                           clustertype="CloudManaged")["cluster"][0]
        assert c["hypervisortype"] == "Hyperv"
    assert {c["hypervisortype"] for c in api.listClusters(zoneid=z["id"])["cluster"]} == {"Hyperv"}
    assert api.listZones(id=z["id"])["zone"][0]["hypervisor"] == "Hyperv"
    assert [h["name"] for h in api.listHypervisors(zoneid=z["id"])["hypervisor"]] == ["Hyperv"]
    caps = api.listHypervisorCapabilities(hypervisor="Hyperv")["hypervisorCapabilities"][0]
    assert caps["hypervisor"] == "Hyperv"
    api.addImageStore(provider="Local", url=f"file://{tmp_path}/sec", zoneid=z["id"], name="sec")
    t = api.registerTemplate(name="win", url=f"{files.url}/disk.raw", zoneid=z["id"], hypervisor="Hyperv",
                             format="VHD", ispublic="true")["template"][0]
    assert t["hypervisor"] == "Hyperv"
    assert api.listTemplates(templatefilter="all", id=t["id"])["template"][0]["hypervisor"] == "Hyperv"
    # Custom goes by its configured name, as in CloudStack.
    api.updateConfiguration(name="hypervisor.custom.display.name", value="Firecracker")
    api.updateConfiguration(name="hypervisor.list", value="KVM,Hyperv,Simulator,Firecracker")
    assert [h["name"] for h in api.listHypervisors()["hypervisor"]] == ["KVM", "Hyperv", "Simulator", "Firecracker"]


def test_destroy_with_expunge_on_a_destroyed_vm(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    keep = deploy(alice, z, t, so, name="keep")
    vm = deploy(alice, z, t, so, name="gone")
    before_mem = sum(h["memoryallocated"] for h in api.listHosts()["host"])
    destroyed = alice.destroyVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    assert destroyed["state"] == "Destroyed"
    # Destroy again without expunge: CloudStack answers with the VM, unchanged.
    again = alice.destroyVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    assert again["state"] == "Destroyed" and alice.listVirtualMachines(id=vm["id"])["count"] == 1
    events = [e for e in api.listEvents(pagesize=500, page=1).get("event", []) if e["type"] == "VM.DESTROY"]
    assert len(events) == 1  # no second destroy happened
    # Ansible's `state: expunged` after `absent`: destroy expunge=true on the Destroyed VM.
    alice.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
    assert alice.listVirtualMachines(id=vm["id"]) == {}
    assert [v["vmname"] for v in alice.listVolumes()["volume"]] == ["keep"]  # its root volume went
    assert sum(h["memoryallocated"] for h in api.listHosts()["host"]) == before_mem - 1024 * (1 << 20)
    assert alice.listVirtualMachines()["count"] == 1
    # expungeVirtualMachine on a Destroyed VM (the other path) and nothing left busy.
    alice.destroyVirtualMachine(id=keep["id"], fetch_result=True)
    alice.expungeVirtualMachine(id=keep["id"], fetch_result=True)
    assert alice.listVirtualMachines() == {} and alice.listVolumes() == {}
    assert sum(h["memoryallocated"] for h in api.listHosts()["host"]) == 0
    # A VM that no longer exists is a clear error, not a crash.
    assert err(lambda: alice.destroyVirtualMachine(id=vm["id"], expunge="true"))["errorcode"] == 431

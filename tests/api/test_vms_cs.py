"""The VM lifecycle with the real `cs` client on Simulator hosts: deploy, every
action with its state rules, migration, destroy/recover/expunge giving back
capacity, IPs and volumes; concurrent deploys never overbook; busy VMs say so."""
from __future__ import annotations

import concurrent.futures
import time

import pytest
from cs import CloudStackApiException

from tests.api.test_templates_cs import files, wait_status  # noqa: F401  (fixture)

pytestmark = pytest.mark.xdist_group("live-api")
MIB = 1 << 20


def err(call):
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def simulator_zone(api, files, tmp_path, hosts=2, memory=4096):
    z = api.createZone(name="VMZ", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2",
                       guestcidraddress="10.10.0.0/24")["zone"]
    p = api.createPod(zoneid=z["id"], name="P", gateway="192.168.5.1", netmask="255.255.255.0",
                      startip="192.168.5.10", endip="192.168.5.99")["pod"]
    c = api.addCluster(zoneid=z["id"], podid=p["id"], clustername="C", hypervisor="Simulator",
                       clustertype="CloudManaged")["cluster"][0]
    hs = [api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"],
                      url=f"simulator://vm-h{i}?cpus=4&cpuspeed=2000&memory={memory}&localstorage=100")["host"][0]
          for i in range(hosts)]
    api.createStoragePool(zoneid=z["id"], clusterid=c["id"], name="nfs", url="nfs://filer/export/vms")
    api.addImageStore(provider="Local", url=f"file://{tmp_path}/sec", zoneid=z["id"], name="sec")
    t = api.registerTemplate(name="tiny", url=f"{files.url}/disk.raw", zoneid=z["id"], hypervisor="Simulator",
                             format="RAW", ispublic="true")["template"][0]
    assert wait_status(api, t["id"])["isready"]
    so = api.createServiceOffering(name="s1", displaytext="1 vCPU 1 GiB", cpunumber=1, cpuspeed=1000,
                                   memory=1024)["serviceoffering"]
    return z, hs, t, so


def deploy(api, z, t, so, **kw):
    return api.deployVirtualMachine(zoneid=z["id"], templateid=t["id"], serviceofferingid=so["id"],
                                    fetch_result=True, **kw)["virtualmachine"]


def test_lifecycle_on_the_simulator(live, files, tmp_path):
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    vm = deploy(alice, z, t, so, name="web1")
    assert vm["state"] == "Running" and vm["nic"][0]["ipaddress"].startswith("10.10.0.")
    assert vm["nic"][0]["macaddress"].startswith("02:00:") and "hostid" not in vm  # hosts: admins only
    assert api.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["hostid"] in {h["id"] for h in hs}
    assert err(lambda: deploy(alice, z, t, so, name="web1"))["errorcode"] == 431  # name taken
    assert err(lambda: alice.startVirtualMachine(id=vm["id"]))["errorcode"] == 431  # already running
    root = alice.listVolumes(virtualmachineid=vm["id"])["volume"][0]
    assert root["type"] == "ROOT" and root["state"] == "Ready"

    vm = alice.stopVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    assert vm["state"] == "Stopped" and "hostid" not in vm
    assert sum(h["memoryallocated"] for h in api.listHosts()["host"]) == 0  # capacity back
    vm = alice.startVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    assert vm["state"] == "Running"
    alice.rebootVirtualMachine(id=vm["id"], fetch_result=True)
    host_now = api.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["hostid"]
    other = next(h for h in hs if h["id"] != host_now)
    assert err(lambda: alice.migrateVirtualMachine(virtualmachineid=vm["id"]))["errorcode"] == 432  # admin only
    moved = api.migrateVirtualMachine(virtualmachineid=vm["id"], hostid=other["id"],
                                      fetch_result=True)["virtualmachine"]
    assert moved["hostid"] == other["id"] and moved["state"] == "Running"
    mem = {h["id"]: h["memoryallocated"] for h in api.listHosts()["host"]}
    assert mem[other["id"]] == 1024 * MIB and sum(mem.values()) == 1024 * MIB
    # migrateVirtualMachineWithVolume: CloudStack's checks; the Simulator moves no storage (the lab's
    # real hosts do: tests/lab/test_migration.py). Nothing changes.
    e = err(lambda: api.migrateVirtualMachineWithVolume(virtualmachineid=vm["id"]))
    assert e["errorcode"] == 431 and "Either hostid or migrateto must be passed" in e["errortext"]
    e = err(lambda: api.migrateVirtualMachineWithVolume(virtualmachineid=vm["id"], hostid=host_now))
    assert "Simulator VMs cannot be migrated with their storage" in e["errortext"]
    assert api.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["hostid"] == other["id"]

    vm = alice.destroyVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    assert vm["state"] == "Destroyed"
    assert alice.recoverVirtualMachine(id=vm["id"])["virtualmachine"]["state"] == "Stopped"
    alice.destroyVirtualMachine(id=vm["id"], fetch_result=True)
    alice.expungeVirtualMachine(id=vm["id"], fetch_result=True)
    assert alice.listVirtualMachines() == {}
    assert alice.listVolumes() == {}
    assert sum(h["memoryallocated"] for h in api.listHosts()["host"]) == 0
    # The IP is free again, but not handed out at once (CloudStack picks a random free one):
    # the next VM gets the network's next address; the freed one comes back when the range wraps.
    again = deploy(alice, z, t, so, name="web2")
    freed = moved["nic"][0]["ipaddress"]
    assert again["nic"][0]["ipaddress"] == f"{freed.rsplit('.', 1)[0]}.{int(freed.rsplit('.', 1)[1]) + 1}"
    events = {e["type"] for e in alice.listEvents()["event"]}
    assert {"VM.CREATE", "VM.START", "VM.STOP", "VM.MIGRATE", "VM.DESTROY", "VM.EXPUNGE"} <= events
    assert [v["name"] for v in api.listVirtualMachines(listall="true", details="min")["virtualmachine"]] == ["web2"]


def test_the_list_shows_each_vm_as_its_jobs_answer_it(live, files, tmp_path):
    """listVirtualMachines reads plain rows (services/vm_views.py), the jobs' answers
    read the model: both go through one serializer and must agree, field for field."""
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)

    def listed(client, vm, **kw):
        row = client.listVirtualMachines(id=vm["id"], listall="true", **kw)["virtualmachine"][0]
        return {k: v for k, v in row.items() if k != "cpuused"}  # the monitor may sample in between

    vm = deploy(alice, z, t, so, name="same1")
    vm.pop("cpuused", None)
    assert listed(alice, vm) == vm and "hostid" not in vm
    stopped = api.stopVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    assert listed(api, vm) == stopped and "hostid" not in stopped
    started = api.startVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    started.pop("cpuused", None)
    assert listed(api, vm) == started and started["hostid"] in {h["id"] for h in hs}
    minimal = listed(api, vm, details="min")
    assert minimal == {k: started[k] for k in minimal} and "nic" not in minimal and "zoneid" not in minimal


def test_concurrent_deploys_never_overbook(live, files, tmp_path):
    api = live.client()
    z, hs, t, so = simulator_zone(api, files, tmp_path, hosts=2, memory=5120)  # 5 x 1 GiB per host = 10
    def one(i):
        try:
            return deploy(api, z, t, so, name=f"c{i}")["state"]
        except CloudStackApiException as e:
            return e.error["errorcode"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    assert results.count("Running") == 10 and results.count(533) == 10, results
    for h in api.listHosts()["host"]:
        assert h["memoryallocated"] <= h["memorytotal"]
    failed = [v for v in api.listVirtualMachines(listall="true")["virtualmachine"] if v["state"] == "Error"]
    assert all("nic" not in v or not v["nic"] for v in failed)  # their IPs went back


def test_a_busy_vm_says_so_and_bad_requests_change_nothing(live, files, tmp_path):
    api = live.client()
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    vm = deploy(api, z, t, so, name="slow")
    api.updateConfiguration(name="vm.stop.timeout", value="5")
    from app.services import simulator as sim
    with live.flask_app.app_context():
        sim.set_delay(hs[0]["name"] if vm["hostid"] == hs[0]["id"] else hs[1]["name"], 2)
    first = api.stopVirtualMachine(id=vm["id"])
    e = err(lambda: api.rebootVirtualMachine(id=vm["id"]))
    assert e["errorcode"] == 536 and "busy" in e["errortext"]
    deadline = time.monotonic() + 30
    while api.queryAsyncJobResult(jobid=first["jobid"])["jobstatus"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert api.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["state"] == "Stopped"
    e = err(lambda: api.deployVirtualMachine(zoneid=z["id"], templateid=t["id"],
                                             serviceofferingid="00000000-0000-0000-0000-000000000000"))
    assert e["errorcode"] == 431 and "service offering" in e["errortext"]
    assert api.listVirtualMachines()["count"] == 1
    stopped = deploy(api, z, t, so, name="later", startvm="false")  # a job answers either way, as in CloudStack
    assert stopped["state"] == "Stopped" and "hostid" not in stopped


def test_maintenance_moves_vms_to_the_other_hosts(live, files, tmp_path):
    api = live.client()
    z, hs, t, so = simulator_zone(api, files, tmp_path, hosts=3)
    first = hs[0]
    vms_on_first = [deploy(api, z, t, so, name=f"m{i}", hostid=first["id"]) for i in range(3)]
    assert {v["hostid"] for v in vms_on_first} == {first["id"]}
    host = api.prepareHostForMaintenance(id=first["id"], fetch_result=True)["host"]
    assert host["resourcestate"] == "Maintenance"
    after = api.listVirtualMachines(listall="true")["virtualmachine"]
    assert all(v["state"] == "Running" and v["hostid"] != first["id"] for v in after)
    mem = {h["id"]: h["memoryallocated"] for h in api.listHosts()["host"]}
    assert mem[first["id"]] == 0 and sum(mem.values()) == 3 * 1024 * MIB
    # The planner places nothing on a host in maintenance; cancel brings it back.
    assert deploy(api, z, t, so, name="after")["hostid"] != first["id"]
    assert api.cancelHostMaintenance(id=first["id"])["host"]["resourcestate"] == "Enabled"


def test_guest_networks(live, files, tmp_path):
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    default = api.listNetworks(zoneid=z["id"])["network"]
    assert [n["cidr"] for n in default] == ["10.10.0.0/24"] and default[0]["isdefault"] is True
    net = api.createNetwork(zoneid=z["id"], name="backend", cidr="10.20.0.0/28")["network"]
    assert net["gateway"] == "10.20.0.1" and net["startip"] == "10.20.0.2" and net["endip"] == "10.20.0.14"
    assert err(lambda: api.createNetwork(zoneid=z["id"], name="x", cidr="10.30.0.0/30"))["errorcode"] == 431
    vm = deploy(alice, z, t, so, name="two", networkids=f"{default[0]['id']},{net['id']}")
    assert sorted(n["ipaddress"] for n in vm["nic"]) == ["10.10.0.2", "10.20.0.2"]
    e = err(lambda: api.deleteNetwork(id=net["id"], fetch_result=True))  # async, as CloudStack's
    assert e["errorcode"] == 536 and "VMs on it" in e["errortext"]
    alice.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
    api.deleteNetwork(id=net["id"], fetch_result=True)
    assert [n["name"] for n in api.listNetworks(zoneid=z["id"])["network"]] == [default[0]["name"]]

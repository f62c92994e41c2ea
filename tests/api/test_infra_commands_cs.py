"""Infrastructure commands clients call, through the real `cs` client against a live server with a real job
consumer: listStorageProviders, updateStoragePool, enableStorageMaintenance/cancelStorageMaintenance (async,
a user's running VM stopped and started again), listRegions, listGuestOsMapping, resetConfiguration; bad
input gets CloudStack's codes, users get 432 for admin commands (the role check), and nothing changes."""
from __future__ import annotations

import pytest

from tests.api.test_templates_cs import files  # noqa: F401  (fixture)
from tests.api.test_vms_cs import deploy, err, simulator_zone

pytestmark = pytest.mark.xdist_group("live-api")


def test_storage_pool_update_and_maintenance(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    assert api.listStorageProviders(type="primary")["dataStoreProvider"] == [{"name": "DefaultPrimary",
                                                                               "type": "PRIMARY"}]
    assert {p["name"] for p in api.listStorageProviders(type="image")["dataStoreProvider"]} == {"NFS", "SMB", "Local"}
    assert err(lambda: api.listStorageProviders(type="cache"))["errorcode"] == 431
    assert err(lambda: alice.listStorageProviders(type="primary"))["errorcode"] == 432

    z, hs, t, so = simulator_zone(api, files, tmp_path, hosts=1)
    pool = api.listStoragePools(zoneid=z["id"])["storagepool"][0]
    assert (pool["state"], pool["provider"], pool["hypervisor"], pool["scope"]) == \
        ("Up", "DefaultPrimary", "Simulator", "CLUSTER")
    p = api.updateStoragePool(id=pool["id"], name="fast", tags="ssd,fast", capacityiops=3000)["storagepool"]
    assert (p["name"], p["tags"], p["capacityiops"]) == ("fast", "ssd,fast", 3000)
    assert err(lambda: api.updateStoragePool(id=pool["id"], enabled="true"))["errorcode"] == 431  # Up already
    assert err(lambda: alice.updateStoragePool(id=pool["id"], name="x"))["errorcode"] == 432
    assert api.listStoragePools(id=pool["id"])["storagepool"][0]["name"] == "fast"  # refusals changed nothing

    vm = deploy(alice, z, t, so, name="m1")
    assert err(lambda: api.updateStoragePool(id=pool["id"], capacitybytes=1))["errorcode"] == 431  # < its volumes
    job = api.enableStorageMaintenance(id=pool["id"], fetch_result=True)
    assert job["storagepool"]["state"] == "Maintenance"
    assert alice.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["state"] == "Stopped"
    assert err(lambda: alice.startVirtualMachine(id=vm["id"]))["errorcode"] == 534  # its storage is unavailable
    assert err(lambda: api.enableStorageMaintenance(id=pool["id"]))["errorcode"] == 431
    job = api.cancelStorageMaintenance(id=pool["id"], fetch_result=True)
    assert job["storagepool"]["state"] == "Up"
    assert alice.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["state"] == "Running"
    assert err(lambda: api.cancelStorageMaintenance(id=pool["id"]))["errorcode"] == 431


def test_regions_guest_os_mappings_and_reset_configuration(live):
    api, alice = live.client(), live.client("alice")
    regions = alice.listRegions()["region"]
    assert regions == [{"id": 1, "name": "Local", "endpoint": live.url[:-len("api")],
                        "gslbserviceenabled": False, "portableipserviceenabled": False}]
    assert alice.listRegions(id=2) == {}  # CloudStack's empty list
    kvm = api.listGuestOsMapping(hypervisor="KVM", osdisplayname="Debian")["guestosmapping"]
    assert kvm and all(m["hypervisor"] == "KVM" and m["osnameforhypervisor"] == m["osdisplayname"] for m in kvm)
    one = api.listGuestOsMapping(id=kvm[0]["id"])["guestosmapping"]
    assert one == [kvm[0]]
    assert err(lambda: api.listGuestOsMapping(hypervisor="VMware"))["errorcode"] == 431
    assert err(lambda: alice.listGuestOsMapping())["errorcode"] == 432

    name = "vm.allocation.algorithm"
    default = api.listConfigurations(name=name)["configuration"][0]["value"]
    api.updateConfiguration(name=name, value="random")
    assert api.resetConfiguration(name=name)["configuration"]["value"] == default
    assert api.listConfigurations(name=name)["configuration"][0]["value"] == default
    assert err(lambda: api.resetConfiguration(name="no.such.setting"))["errorcode"] == 431
    assert err(lambda: alice.resetConfiguration(name=name))["errorcode"] == 432

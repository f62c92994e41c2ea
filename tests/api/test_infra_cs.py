"""Building a zone through the API with the real `cs` client, and the rules."""
import pytest
from cs import CloudStackApiException

pytestmark = pytest.mark.xdist_group("live-api")


def build(api, hv="Simulator", zone="Z1"):
    z = api.createZone(name=zone, networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2",
                       guestcidraddress="10.1.1.0/24", localstorageenabled="true")["zone"]
    p = api.createPod(zoneid=z["id"], name="P1", gateway="192.168.10.1", netmask="255.255.255.0",
                      startip="192.168.10.10", endip="192.168.10.99")["pod"]
    c = api.addCluster(zoneid=z["id"], podid=p["id"], clustername="C1", hypervisor=hv,
                       clustertype="CloudManaged")["cluster"][0]
    return z, p, c


def err(call):
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def test_build_zone_with_simulator_hosts(live):
    api = live.client()
    z, p, c = build(api)
    assert z["allocationstate"] == "Enabled" and c["hypervisortype"] == "Simulator"
    host = api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"],
                       url="simulator://sim-1?cpus=8&cpuspeed=2000&memory=16384&localstorage=100")["host"][0]
    assert host["state"] == "Up" and host["cpunumber"] == 8 and host["memorytotal"] == 16384 << 20
    assert host["hypervisor"] == "Simulator" and host["islocalstorageactive"] is True
    assert api.listHosts(clusterid=c["id"])["count"] == 1
    assert [h["name"] for h in api.listHypervisors(zoneid=z["id"])["hypervisor"]] == ["Simulator"]
    # Duplicate host: refused, nothing added.
    e = err(lambda: api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"], url="simulator://sim-1"))
    assert e["errorcode"] == 431 and "already added" in e["errortext"]
    assert api.listHosts()["count"] == 1
    # Maintenance on an empty host, then back.
    assert api.prepareHostForMaintenance(id=host["id"], fetch_result=True)["host"]["resourcestate"] == "Maintenance"
    assert api.cancelHostMaintenance(id=host["id"])["host"]["resourcestate"] == "Enabled"
    # A zone with clusters cannot be deleted.
    e = err(lambda: api.deleteZone(id=z["id"]))
    assert e["errorcode"] == 536 and "cluster" in e["errortext"]
    assert api.listZones(id=z["id"])["count"] == 1
    # Tear down in order works.
    api.deleteHost(id=host["id"])
    api.deleteCluster(id=c["id"])
    api.deletePod(id=p["id"])
    api.deleteZone(id=z["id"])
    assert api.listZones() == {}


def test_rules_each_refused_and_nothing_changes(live):
    api = live.client()
    z, p, c = build(api)
    # Mixed types: a KVM host into a Simulator cluster.
    e = err(lambda: api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"], url="qemu:///system",
                                hypervisor="KVM"))
    assert e["errorcode"] == 431 and "never mix" in e["errortext"]
    # Hyper-V cluster in a non-Hyper-V zone.
    e = err(lambda: api.addCluster(zoneid=z["id"], podid=p["id"], clustername="HV", hypervisor="Hyper-V",
                                   clustertype="CloudManaged"))
    assert e["errorcode"] == 431 and "pure Hyper-V" in e["errortext"]
    # Bad input.
    assert err(lambda: api.createZone(name="Z2", networktype="Advanced", dns1="8.8.8", internaldns1="10.0.0.2"))[
        "errorcode"] == 431
    assert err(lambda: api.createPod(zoneid=z["id"], name="P2", gateway="192.168.10.1", netmask="255.255.255.0",
                                     startip="10.9.9.9"))["errorcode"] == 431
    assert err(lambda: api.createZone(name="Z1", networktype="Advanced", dns1="8.8.8.8",
                                      internaldns1="10.0.0.2"))["errorcode"] == 431
    assert api.listClusters()["count"] == 1 and api.listZones()["count"] == 1 and api.listPods()["count"] == 1
    assert api.listHosts() == {}
    # A user cannot build infrastructure.
    assert err(lambda: live.client("alice").createZone(name="U", networktype="Basic", dns1="1.1.1.1",
                                                        internaldns1="1.1.1.1"))["errorcode"] == 432


def test_real_kvm_host_on_local_libvirtd(live):
    api = live.client()
    z, p, c = build(api, hv="KVM", zone="ZK")
    host = api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"], url="qemu:///system")["host"][0]
    assert host["state"] == "Up" and host["hypervisor"] == "KVM" and host["cpunumber"] >= 1
    # The same libvirtd is not a Xen host.
    zx, px, cx = build(api, hv="Xen", zone="ZX")
    e = err(lambda: api.addHost(zoneid=zx["id"], podid=px["id"], clusterid=cx["id"], url="xen:///system"))
    assert e["errorcode"] in (431, 534, 530)
    assert api.listHosts(clusterid=cx["id"]) == {}


def test_primary_and_secondary_storage_and_capacity(live, tmp_path):
    api = live.client()
    z, p, c = build(api)
    api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"],
                url="simulator://st-1?cpus=4&cpuspeed=2000&memory=8192&localstorage=50")
    pool = api.createStoragePool(zoneid=z["id"], podid=p["id"], clusterid=c["id"], name="nfs1",
                                 url="nfs://filer.example/export/primary")["storagepool"]
    assert pool["scope"] == "CLUSTER" and pool["type"] == "NetworkFilesystem" and pool["disksizetotal"] > 0
    scopes = sorted(x["scope"] for x in api.listStoragePools(zoneid=z["id"])["storagepool"])
    assert scopes == ["CLUSTER", "HOST"]  # the host's local pool came with discovery
    e = err(lambda: api.createStoragePool(zoneid=z["id"], clusterid=c["id"], name="bad", url="ftp://x/y"))
    assert e["errorcode"] == 431
    e = err(lambda: api.createStoragePool(zoneid=z["id"], clusterid=c["id"], name="smb", url="smb://filer/share"))
    assert e["errorcode"] == 431 and "SMB" in e["errortext"]  # Simulator hosts take NFS or directories
    store = api.addImageStore(provider="Local", url=f"file://{tmp_path}/secondary", zoneid=z["id"],
                              name="sec1")["imagestore"]
    assert store["providername"] == "Local" and store["disksizetotal"] > 0
    assert err(lambda: api.addImageStore(provider="NFS", url="file:///tmp/x"))["errorcode"] == 431
    caps = {x["type"]: x for x in api.listCapacity(zoneid=z["id"])["capacity"]}
    assert caps[0]["capacitytotal"] == 8192 << 20 and caps[1]["capacitytotal"] == 8000
    api.deleteImageStore(id=store["id"])
    api.deleteStoragePool(id=pool["id"])
    assert api.listImageStores() == {}

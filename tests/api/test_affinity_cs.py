"""Affinity groups, host/storage tags and offering updates through real clients against a live
Nubo on a Simulator zone: the `cs` client (every command, CloudStack's errors and answers) and
Apache Libcloud's affinity methods (ex_list_affinity_group_types, ex_create_affinity_group,
ex_list_affinity_groups, create_node with ex_affinity_groups, ex_update_node_affinity_group,
ex_delete_affinity_group)."""
from __future__ import annotations

import pytest

from tests.api.test_templates_cs import files, wait_status  # noqa: F401  (fixture)
from tests.api.test_vms_cs import deploy, err, simulator_zone

import libcloud  # noqa: E402  (requirements-test.txt pins apache-libcloud: a missing one is a failure, not a skip)
from libcloud.compute.providers import Provider, get_driver  # noqa: E402
from libcloud.compute.types import NodeState  # noqa: E402

pytestmark = pytest.mark.xdist_group("live-api")


def test_affinity_groups_tags_and_offerings_with_cs(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path, hosts=3)
    types = alice.listAffinityGroupTypes()
    assert types["count"] == 2 and [x["type"] for x in types["affinityGroupType"]] == \
        ["host affinity", "host anti-affinity"]
    # createAffinityGroup is async (with the new group's id at once), its job answers the group
    made = alice.createAffinityGroup(name="web", type="host anti-affinity", description="spread the web tier")
    assert made["id"] and made["jobid"]
    g = alice.createAffinityGroup(name="web2", type="host affinity", fetch_result=True)["affinitygroup"]
    assert (g["name"], g["type"], g["account"], g["domain"]) == ("web2", "host affinity", "alice", "ROOT")
    listed = alice.listAffinityGroups(name="web")["affinitygroup"][0]
    assert (listed["id"], listed["description"], listed["type"]) == (made["id"], "spread the web tier",
                                                                     "host anti-affinity")
    assert "virtualmachineIds" not in listed  # no VMs yet (empty lists are left out)
    # errors: 431 for a bad type, a taken name, a bad id; nothing made
    assert err(lambda: alice.createAffinityGroup(name="x", type="dedicated", fetch_result=True))["errorcode"] == 431
    assert err(lambda: alice.createAffinityGroup(name="web", type="host affinity"))["errorcode"] == 431
    assert err(lambda: alice.deleteAffinityGroup(id="6ee3b1b6-6a6a-4a4a-8b8b-000000000000"))["errorcode"] == 431
    assert err(lambda: alice.createAffinityGroup(name="x", type="host affinity", account="admin"))["errorcode"] == 531
    assert alice.listAffinityGroups()["count"] == 2

    # Deploy into the anti-affinity group by name: three hosts, three VMs, three hosts used; a 4th: 533.
    vms = [deploy(alice, z, t, so, name=f"w{i}", affinitygroupnames="web") for i in range(3)]
    assert all(v["affinitygroup"][0]["id"] == made["id"] for v in vms)
    on = {api.listVirtualMachines(id=v["id"])["virtualmachine"][0]["hostid"] for v in vms}
    assert len(on) == 3
    listed = alice.listAffinityGroups(id=made["id"])["affinitygroup"][0]
    assert sorted(listed["virtualmachineIds"]) == sorted(v["id"] for v in vms)
    assert alice.listAffinityGroups(virtualmachineid=vms[0]["id"])["affinitygroup"][0]["name"] == "web"
    e = err(lambda: deploy(alice, z, t, so, name="w3", affinitygroupids=made["id"]))
    assert e["errorcode"] == 533 and "host anti-affinity group web" in e["errortext"]
    assert alice.listVirtualMachines(name="w0")["virtualmachine"][0]["affinitygroup"][0]["name"] == "web"

    # updateVMAffinityGroup: 431 while Running, then Stopped → moved to the affinity group
    assert err(lambda: alice.updateVMAffinityGroup(id=vms[0]["id"], affinitygroupids=g["id"]))["errorcode"] == 431
    alice.stopVirtualMachine(id=vms[0]["id"], fetch_result=True)
    updated = alice.updateVMAffinityGroup(id=vms[0]["id"], affinitygroupids=g["id"], fetch_result=True)
    assert [x["name"] for x in updated["virtualmachine"]["affinitygroup"]] == ["web2"]
    # An empty affinitygroupids clears them (CloudStack's empty list); then back in web2.
    cleared = alice.updateVMAffinityGroup(id=vms[0]["id"], affinitygroupids="", fetch_result=True)
    assert cleared["virtualmachine"].get("affinitygroup", []) == []
    alice.updateVMAffinityGroup(id=vms[0]["id"], affinitygroupids=g["id"], fetch_result=True)
    assert sorted(alice.listAffinityGroups(name="web")["affinitygroup"][0]["virtualmachineIds"]) == \
        sorted(v["id"] for v in vms[1:])

    # deleteAffinityGroup (async, by name): memberships go, the VMs stay
    assert alice.deleteAffinityGroup(name="web", fetch_result=True)["success"] is True
    assert alice.listAffinityGroups(name="web").get("count", 0) == 0
    assert alice.listVirtualMachines(id=vms[1]["id"])["virtualmachine"][0].get("affinitygroup", []) == []

    # Tags: host tags on addHost/updateHost, offerings' host and storage tags, updateServiceOffering
    host = api.updateHost(id=hs[1]["id"], hosttags="ssd,gpu")["host"]
    assert host["hosttags"] == "ssd,gpu"
    gpu = api.createServiceOffering(name="gpu", displaytext="g", cpunumber=1, cpuspeed=500, memory=256,
                                    hosttags="gpu", tags="fast")["serviceoffering"]
    assert (gpu["hosttags"], gpu["storagetags"]) == ("gpu", "fast")
    e = err(lambda: deploy(alice, z, t, gpu, name="g0"))
    assert e["errorcode"] == 533 and "storage tags fast" in e["errortext"]
    upd = api.updateServiceOffering(id=gpu["id"], name="gpu-1", displaytext="one GPU host", sortkey=-5,
                                    storagetags="")["serviceoffering"]
    assert (upd["name"], upd["displaytext"], upd["hosttags"]) == ("gpu-1", "one GPU host", "gpu")
    assert api.listServiceOfferings()["serviceoffering"][0]["id"] == gpu["id"]  # sort key first
    api.updateServiceOffering(id=gpu["id"], storagetags="fast")
    pool = api.createStoragePool(zoneid=z["id"], clusterid=hs[0]["clusterid"], name="fast",
                                 url="nfs://filer/export/fast", tags="fast")["storagepool"]
    assert pool["tags"] == "fast"
    vm = deploy(alice, z, t, gpu, name="g1")
    assert api.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["hostid"] == hs[1]["id"]
    assert api.listVolumes(virtualmachineid=vm["id"])["volume"][0]["storageid"] == pool["id"]
    # admins only, and bad ids: 432 for users (the role check refuses it), 431 for a missing offering
    assert err(lambda: alice.updateServiceOffering(id=gpu["id"], name="x"))["errorcode"] == 432
    assert err(lambda: api.updateServiceOffering(id=t["id"], name="x"))["errorcode"] == 431
    do = api.createDiskOffering(name="d", displaytext="d", disksize=1, tags="fast")["diskoffering"]
    assert do["tags"] == "fast"
    do = api.updateDiskOffering(id=do["id"], name="d2", displaytext="two", tags="fast,ssd")["diskoffering"]
    assert (do["name"], do["displaytext"], do["tags"]) == ("d2", "two", "fast,ssd")


def test_libcloud_affinity_groups(live, files, tmp_path):  # noqa: F811
    api = live.client()
    z, hs, t, so = simulator_zone(api, files, tmp_path, hosts=2)
    api.updateTemplate(id=t["id"], ostypeid=api.listOsTypes(keyword="Debian")["ostype"][0]["id"])  # list_images reads it
    key, secret = live.keys("alice")
    drv = get_driver(Provider.CLOUDSTACK)(key, secret, secure=False, url=live.url)
    kinds = drv.ex_list_affinity_group_types()
    assert [k.type for k in kinds] == ["host affinity", "host anti-affinity"]
    assert drv.ex_list_affinity_groups() == []
    anti = drv.ex_create_affinity_group("spread", kinds[1])
    pack = drv.ex_create_affinity_group("pack", kinds[0])
    assert (anti.name, anti.type.type) == ("spread", "host anti-affinity")
    assert {a.id for a in drv.ex_list_affinity_groups()} == {anti.id, pack.id}
    loc = [x for x in drv.list_locations() if x.id == z["id"]][0]
    size = [s for s in drv.list_sizes() if s.id == so["id"]][0]
    image = [i for i in drv.list_images(loc) if i.id == t["id"]][0]
    nodes = [drv.create_node(name=f"n{i}", size=size, image=image, location=loc, ex_affinity_groups=[anti],
                             ex_start_vm=True)
             for i in range(2)]
    assert [(n.state, n.extra["affinity_group"]) for n in nodes] == [(NodeState.RUNNING, [anti.id])] * 2
    hosts = {api.listVirtualMachines(id=n.id)["virtualmachine"][0]["hostid"] for n in nodes}
    assert len(hosts) == 2
    listed = [a for a in drv.ex_list_affinity_groups() if a.id == anti.id][0]
    assert sorted(listed.virtualmachine_ids) == sorted(n.id for n in nodes)
    drv.ex_stop(nodes[0])
    node = drv.ex_update_node_affinity_group(nodes[0], [pack])
    assert node.extra["affinity_group"] == [pack.id]
    assert drv.ex_delete_affinity_group(anti) is True
    assert [a.id for a in drv.ex_list_affinity_groups()] == [pack.id]

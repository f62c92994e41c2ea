"""Zone networking through the API with the real `cs` client: physical networks, traffic types,
providers, the virtual router element, network offerings and VLAN IP ranges."""
import pytest
from cs import CloudStackApiException

pytestmark = pytest.mark.xdist_group("live-api")


def err(call):
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def zone(api, name="NZ"):
    return api.createZone(name=name, networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2")["zone"]


def test_physical_network_traffic_types_and_providers(live):
    api = live.client()
    z = zone(api)
    pn = api.createPhysicalNetwork(zoneid=z["id"], name="PN1", isolationmethods="VXLAN", vlan="5000-5099",
                                   fetch_result=True)["physicalnetwork"]
    assert pn["isolationmethods"] == "VXLAN" and pn["vlan"] == "5000-5099" and pn["zoneid"] == z["id"]
    assert pn["broadcastdomainrange"] == "ZONE" and pn["state"] == "Enabled"
    assert api.listPhysicalNetworks(zoneid=z["id"])["physicalnetwork"][0]["id"] == pn["id"]
    # Bad isolation method / range: 431, nothing made.
    e = err(lambda: api.createPhysicalNetwork(zoneid=z["id"], name="PN2", isolationmethods="GRE"))
    assert e["errorcode"] == 431
    e = err(lambda: api.createPhysicalNetwork(zoneid=z["id"], name="PN2", vlan="5050-5200",
                                              isolationmethods="VXLAN"))
    assert e["errorcode"] == 431 and "overlaps" in e["errortext"]
    assert api.listPhysicalNetworks(zoneid=z["id"])["count"] == 1
    # Providers start Disabled; VirtualRouter needs its element enabled first.
    nsps = {p["name"]: p for p in api.listNetworkServiceProviders(physicalnetworkid=pn["id"])
            ["networkserviceprovider"]}
    assert set(nsps) == {"VirtualRouter", "SecurityGroupProvider"}
    assert all(p["state"] == "Disabled" for p in nsps.values())
    assert "SourceNat" in nsps["VirtualRouter"]["servicelist"]
    assert nsps["SecurityGroupProvider"]["servicelist"] == ["SecurityGroup"]
    e = err(lambda: api.updateNetworkServiceProvider(id=nsps["VirtualRouter"]["id"], state="Enabled",
                                                     fetch_result=True))
    assert e["errorcode"] == 431 and "configure the provider first" in e["errortext"]
    el = api.listVirtualRouterElements(nspid=nsps["VirtualRouter"]["id"])["virtualrouterelement"][0]
    assert el["enabled"] is False
    el = api.configureVirtualRouterElement(id=el["id"], enabled="true", fetch_result=True)["virtualrouterelement"]
    assert el["enabled"] is True
    nsp = api.updateNetworkServiceProvider(id=nsps["VirtualRouter"]["id"], state="Enabled",
                                           fetch_result=True)["networkserviceprovider"]
    assert nsp["state"] == "Enabled"
    # Traffic types with labels.
    g = api.addTrafficType(physicalnetworkid=pn["id"], traffictype="Guest", kvmnetworklabel="cloudbr0",
                           simulatornetworklabel="simbr0", fetch_result=True)["traffictype"]
    assert g["kvmnetworklabel"] == "cloudbr0" and g["traffictype"] == "Guest"
    p = api.addTrafficType(physicalnetworkid=pn["id"], traffictype="Public", kvmnetworklabel="cloudbr1",
                           fetch_result=True)["traffictype"]
    e = err(lambda: api.addTrafficType(physicalnetworkid=pn["id"], traffictype="Public", fetch_result=True))
    assert e["errorcode"] == 431 and "already supports" in e["errortext"]
    e = err(lambda: api.addTrafficType(physicalnetworkid=pn["id"], traffictype="Guest",
                                       kvmnetworklabel="bad label!", fetch_result=True))
    assert e["errorcode"] == 431
    p = api.updateTrafficType(id=p["id"], kvmnetworklabel="cloudbr9", fetch_result=True)["traffictype"]
    assert p["kvmnetworklabel"] == "cloudbr9"
    types = {t["traffictype"] for t in api.listTrafficTypes(physicalnetworkid=pn["id"])["traffictype"]}
    assert types == {"Guest", "Public"}
    api.deleteTrafficType(id=p["id"], fetch_result=True)
    assert api.listTrafficTypes(physicalnetworkid=pn["id"])["count"] == 1
    # VLAN range: grows; state changes.
    pn = api.updatePhysicalNetwork(id=pn["id"], vlan="5000-5199", state="Disabled",
                                   fetch_result=True)["physicalnetwork"]
    assert pn["vlan"] == "5000-5199" and pn["state"] == "Disabled"
    api.deletePhysicalNetwork(id=pn["id"], fetch_result=True)
    assert api.listPhysicalNetworks(zoneid=z["id"]) == {}
    # Users do not see these commands.
    e = err(lambda: live.client("alice").listPhysicalNetworks())
    assert e["errorcode"] == 432


def test_network_offerings(live):
    api = live.client()
    offs = {o["name"]: o for o in api.listNetworkOfferings()["networkoffering"]}
    for name in ("DefaultSharedNetworkOffering", "DefaultSharedNetworkOfferingWithSGService",
                 "DefaultIsolatedNetworkOfferingWithSourceNatService", "DefaultIsolatedNetworkOffering",
                 "DefaultL2NetworkOffering"):
        assert offs[name]["isdefault"] is True and offs[name]["state"] == "Enabled"
    assert offs["DefaultSharedNetworkOffering"]["id"] == "00000000-0000-0000-0000-00000000000a"
    assert offs["DefaultIsolatedNetworkOffering"]["id"] == "00000000-0000-0000-0000-00000000000b"
    snat = offs["DefaultIsolatedNetworkOfferingWithSourceNatService"]
    assert snat["guestiptype"] == "Isolated" and snat["availability"] == "Required" and snat["specifyvlan"] is False
    svc = {s["name"]: s for s in snat["service"]}
    assert set(svc) == {"Dhcp", "Dns", "UserData", "SourceNat", "StaticNat", "PortForwarding", "Firewall"}
    assert svc["SourceNat"]["provider"] == [{"name": "VirtualRouter"}]
    sg = {s["name"]: s for s in offs["DefaultSharedNetworkOfferingWithSGService"]["service"]}
    assert sg["SecurityGroup"]["provider"][0]["name"] == "SecurityGroupProvider"
    # Filters.
    assert {o["name"] for o in api.listNetworkOfferings(guestiptype="Shared")["networkoffering"]} == {
        "DefaultSharedNetworkOffering", "DefaultSharedNetworkOfferingWithSGService"}
    assert [o["name"] for o in api.listNetworkOfferings(sourcenatsupported="true")["networkoffering"]] == [
        "DefaultIsolatedNetworkOfferingWithSourceNatService"]
    assert api.listNetworkOfferings(forvpc="true") == {}
    assert {o["name"] for o in api.listNetworkOfferings(supportedservices="SecurityGroup")["networkoffering"]} == {
        "DefaultSharedNetworkOfferingWithSGService"}
    # Create (Disabled), with a provider map; enable; delete.
    o = api.createNetworkOffering(name="Iso2", displaytext="Isolated 2", guestiptype="Isolated",
                                  traffictype="GUEST", supportedservices="Dhcp,Dns,SourceNat,Firewall",
                                  **{"serviceproviderlist[0].service": "Dhcp",
                                     "serviceproviderlist[0].provider": "VirtualRouter"})["networkoffering"]
    assert o["state"] == "Disabled" and o["egressdefaultpolicy"] is True and o["isdefault"] is False
    assert {s["name"] for s in o["service"]} == {"Dhcp", "Dns", "SourceNat", "Firewall"}
    o = api.updateNetworkOffering(id=o["id"], state="Enabled", displaytext="Iso two")["networkoffering"]
    assert o["state"] == "Enabled" and o["displaytext"] == "Iso two"
    # Rules: unknown service, SourceNat on Shared, SG on Isolated, wrong provider, duplicate name.
    for kw, text in (
            (dict(guestiptype="Isolated", supportedservices="Dhcp,Teleport"), "Invalid service"),
            (dict(guestiptype="Isolated", supportedservices="Lb"), "not supported"),
            (dict(guestiptype="Shared", supportedservices="Dhcp,SourceNat", specifyvlan="true"), "Isolated"),
            (dict(guestiptype="Isolated", supportedservices="Dhcp,SecurityGroup"), "Shared"),
            (dict(guestiptype="Isolated", supportedservices="Dhcp",
                  **{"serviceproviderlist[0].service": "Dhcp",
                     "serviceproviderlist[0].provider": "SecurityGroupProvider"}), "doesn't support"),
            (dict(guestiptype="Isolated", supportedservices="Dhcp", name="Iso2"), "already exists")):
        kw.setdefault("name", "Bad")
        e = err(lambda: api.createNetworkOffering(displaytext="x", traffictype="Guest", **kw))
        assert e["errorcode"] == 431 and text in e["errortext"], (kw, e)
    e = err(lambda: api.deleteNetworkOffering(id=snat["id"]))
    assert e["errorcode"] == 431 and "Default network offering can't be deleted" in e["errortext"]
    api.deleteNetworkOffering(id=o["id"])
    assert api.listNetworkOfferings(name="Iso2") == {}
    assert live.client("alice").listNetworkOfferings(name="DefaultL2NetworkOffering")["count"] == 1


def test_vlan_ip_ranges(live):
    api = live.client()
    z = zone(api, "RZ")
    pn = api.createPhysicalNetwork(zoneid=z["id"], name="PN", vlan="100-199", fetch_result=True)["physicalnetwork"]
    api.addTrafficType(physicalnetworkid=pn["id"], traffictype="Public", fetch_result=True)
    r = api.createVlanIpRange(zoneid=z["id"], vlan="vlan://untagged", gateway="198.18.0.1",
                              netmask="255.255.255.0", startip="198.18.0.10", endip="198.18.0.19",
                              forvirtualnetwork="true")["vlan"]
    assert r["forvirtualnetwork"] is True and r["vlan"] == "vlan://untagged" and r["physicalnetworkid"] == pn["id"]
    assert r["startip"] == "198.18.0.10" and r["endip"] == "198.18.0.19" and r["zoneid"] == z["id"]
    assert api.listVlanIpRanges(zoneid=z["id"])["vlaniprange"][0]["id"] == r["id"]
    for kw, text in ((dict(startip="198.18.0.15", endip="198.18.0.30"), "overlap"),
                     (dict(startip="198.18.1.10", endip="198.18.1.20"), "same subnet"),
                     (dict(startip="198.18.0.40", endip="198.18.0.30"), "valid IP range"),
                     (dict(startip="198.18.0.1", endip="198.18.0.5", gateway="198.18.0.3"), "gateway"),
                     (dict(startip="198.18.2.10", endip="198.18.2.20", gateway="198.18.2.1", vlan="150"),
                      "dynamic vlan allocation")):
        args = dict(zoneid=z["id"], gateway="198.18.0.1", netmask="255.255.255.0", forvirtualnetwork="true")
        args.update(kw)
        e = err(lambda: api.createVlanIpRange(**args))
        assert e["errorcode"] == 431 and text in e["errortext"], (kw, e)
    assert api.listVlanIpRanges(zoneid=z["id"])["count"] == 1
    r2 = api.createVlanIpRange(zoneid=z["id"], vlan="300", gateway="198.18.1.1", netmask="255.255.255.0",
                               startip="198.18.1.10", endip="198.18.1.12")["vlan"]
    assert r2["vlan"] == "vlan://300" and r2["forvirtualnetwork"] is True
    api.deleteVlanIpRange(id=r2["id"])
    api.deleteVlanIpRange(id=r["id"])
    assert api.listVlanIpRanges(zoneid=z["id"]) == {}

"""The config drive's cloud-init network-config (version 2): one ethernet per NIC with an
address, matched by MAC; a static address/prefix; gateway4 only on the default NIC; DNS
servers given; nothing for NICs without an address (L2)."""
from __future__ import annotations

import json

import yaml

from app.services.config_drive import NicConfig, render_network_config


def test_two_nics_default_route_on_the_default_one_only():
    text = render_network_config([
        NicConfig(mac="02:00:AA:BB:CC:01", ip="10.1.1.5", netmask="255.255.255.0", gateway="10.1.1.1", default=True,
                  nameservers=("10.1.1.1",), device_id=0, domain="cs1cloud.internal"),
        NicConfig(mac="02:00:aa:bb:cc:02", ip="172.16.4.20", netmask="255.255.252.0", gateway="172.16.4.1",
                  default=False, nameservers=("8.8.8.8", "8.8.4.4"), device_id=1)])
    doc = yaml.safe_load(text)
    assert doc == json.loads(text)  # JSON, read the same as YAML
    assert doc["version"] == 2
    assert doc["ethernets"] == {
        "eth0": {"match": {"macaddress": "02:00:aa:bb:cc:01"}, "addresses": ["10.1.1.5/24"], "gateway4": "10.1.1.1",
                 "nameservers": {"addresses": ["10.1.1.1"], "search": ["cs1cloud.internal"]}},
        "eth1": {"match": {"macaddress": "02:00:aa:bb:cc:02"}, "addresses": ["172.16.4.20/22"],
                 "nameservers": {"addresses": ["8.8.8.8", "8.8.4.4"]}}}


def test_nics_without_an_address_are_left_out():
    l2 = NicConfig(mac="02:00:00:00:00:09", ip=None, netmask=None, gateway=None, default=True)
    assert render_network_config([l2]) is None
    assert render_network_config([]) is None
    text = render_network_config([l2, NicConfig(mac="02:00:00:00:00:0a", ip="10.9.0.3", netmask="255.255.255.240",
                                                gateway="10.9.0.1", default=False, device_id=1)])
    doc = yaml.safe_load(text)
    assert list(doc["ethernets"]) == ["eth1"]
    assert doc["ethernets"]["eth1"]["addresses"] == ["10.9.0.3/28"]
    assert "gateway4" not in doc["ethernets"]["eth1"]  # not the default NIC

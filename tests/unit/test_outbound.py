"""app.net.outbound as plain functions: which addresses count as public (never by
fetching one), which URLs have more than one reading, and the allow-list."""
from __future__ import annotations

import ipaddress

import pytest

from app.net.outbound import FetchPolicy, FetchRefused, check, is_public, parse, parse_networks
from tests.helpers.dns import fake_dns


@pytest.mark.parametrize("address", [
    "100.64.0.1", "100.127.255.254",  # shared address space (carrier-grade NAT)
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",  # loopback, private, metadata
    "0.0.0.0", "255.255.255.255", "192.0.0.1", "192.0.2.1", "198.18.0.1", "198.51.100.1", "203.0.113.1",
    "240.0.0.1", "224.0.0.1", "233.252.0.1", "239.255.255.250",  # reserved, multicast
    "192.88.99.1",  # 6to4 relay anycast
    "::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "2001:db8::1", "ff02::1", "ff0e::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1",  # IPv4-mapped
    "2002:7f00:1::1", "2002:a00:1::1",  # 6to4 embedding loopback / private
    "64:ff9b::a00:1", "64:ff9b::7f00:1",  # NAT64 embedding private / loopback
    "2001::1",  # Teredo
])
def test_special_addresses_are_not_public(address):
    assert is_public(address) is False
    assert FetchPolicy().permits(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8",
                                     "2002:808:808::1", "64:ff9b::808:808"])
def test_public_addresses(address):
    assert is_public(address) is True


def test_allow_list_opens_only_its_networks():
    policy = FetchPolicy(allowed_sites=parse_networks(["127.0.0.2/32", " 10.1.0.0/16 ", "", "fd00::/8"]))
    ok = ["127.0.0.2", "10.1.200.3", "fd00::5", "::ffff:127.0.0.2"]
    refused = ["127.0.0.3", "10.2.0.1", "100.64.0.1", "fc00::1"]
    assert all(policy.permits(ipaddress.ip_address(a)) for a in ok)
    assert not any(policy.permits(ipaddress.ip_address(a)) for a in refused)
    assert FetchPolicy(allow_internal=True).permits(ipaddress.ip_address("127.0.0.3"))
    with pytest.raises(ValueError, match="not-a-cidr is not a CIDR"):
        parse_networks(["10.0.0.0/8", "not-a-cidr"])


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.3:8080\\@127.0.0.2/../metrics", "backslash"),
    ("http://127.0.0.3:8080\\.127.0.0.2/", "backslash"),
    ("http://user:pw@127.0.0.2/x", "user name or password"),
    ("http://127.0.0.3@127.0.0.2/x", "user name or password"),
    ("http://127.0.0.2/a/../metrics", ". or .. segments"),
    ("http://127.0.0.2/a/%2e%2E/metrics", ". or .. segments"),
    ("http://127.0.0.2/./x", ". or .. segments"),
    ("http://127.0.0.2/x y", "spaces, control"),
    ("http://127.0.0.2/x\ty", "spaces, control"),
    ("http://127.0.0.2\r\n/x", "spaces, control"),
    (" http://127.0.0.2/x", "spaces, control"),
    ("http://127.0.0.2/caf\u00e9", "non-ASCII"),
    ("http://127.1/x", "a.b.c.d form"),
    ("http://0x7f.0.0.1/x", "a.b.c.d form"),
    ("http://2130706433/x", "a.b.c.d form"),
    ("http://0177.0.0.1/x", "a.b.c.d form"),
    ("http://%31%32%37.0.0.1/x", "percent-encoded"),
    ("http://[fe80::1%25eth0]/x", "percent-encoded"),
    ("http://[::1/x", "IPv6"),
    ("http://exa_mple..com/x", "valid host name"),
    ("http://127.0.0.2:0/x", "port"),
    ("http://127.0.0.2:65536/x", "port"),
    ("http://127.0.0.2:/x", "port"),
    ("gopher://127.0.0.2/x", "http:// or https://"),
    ("http:///x", "no host"),
    ("", "No URL"),
])
def test_urls_with_more_than_one_reading_are_refused(url, reason):
    with pytest.raises(FetchRefused, match=reason):
        parse(url)


def test_a_plain_url_keeps_its_name_for_the_host_header():
    t = parse("HTTPS://Images.Example.org:8443/a/b.qcow2?x=1#frag")
    assert (t.scheme, t.host, t.port, t.path) == ("https", "images.example.org", 8443, "/a/b.qcow2?x=1")
    assert t.host_header == "images.example.org:8443"
    assert parse("http://[::1]/x").host_header == "[::1]" and parse("http://h.example/").port == 80


def test_unresolvable_hosts_are_refused_not_let_through(monkeypatch):
    fake_dns(monkeypatch, {"mixed.test": ["127.0.0.2", "127.0.0.3"]})
    with pytest.raises(FetchRefused, match="Cannot resolve nowhere.invalid"):
        check("http://nowhere.invalid/x.raw", FetchPolicy())
    # Every address a name resolves to must pass, not just one of them.
    policy = FetchPolicy(allowed_sites=parse_networks(["127.0.0.2/32"]))
    with pytest.raises(FetchRefused, match="internal address"):
        check("http://mixed.test/x.raw", policy)
    assert check("http://mixed.test/x.raw", FetchPolicy(allowed_sites=parse_networks(["127.0.0.0/30"])))

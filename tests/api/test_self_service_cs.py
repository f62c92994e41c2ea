"""Self-service API with the real `cs` client against a live server (a real huey
consumer): SSH key pairs (fingerprints checked against OpenSSH's ssh-keygen), resource
limits and their enforcement, listAccounts' usage figures, updateUser, the ROOT domain."""
from __future__ import annotations

import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cs import CloudStackApiException

from tests.api.test_templates_cs import files  # noqa: F401  (fixture)
from tests.api.test_vms_cs import deploy, err, simulator_zone

pytestmark = pytest.mark.xdist_group("live-api")
ROOT = "00000000-0000-0000-0000-000000000001"


def ssh_keygen_md5(tmp_path, public_key: str) -> str:
    path = tmp_path / "key.pub"
    path.write_text(public_key + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1].removeprefix("MD5:")


def test_ssh_key_pairs(live, tmp_path):
    api, alice = live.client(), live.client("alice")
    made = alice.createSSHKeyPair(name="made")["keypair"]
    assert made["privatekey"].startswith("-----BEGIN RSA PRIVATE KEY-----")  # as CloudStack answers
    assert made["account"] == "alice" and made["domainid"] == ROOT and made["domain"] == "ROOT"
    private = serialization.load_pem_private_key(made["privatekey"].encode(), None)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
    assert made["fingerprint"] == ssh_keygen_md5(tmp_path, public)
    # A key made by OpenSSH itself, registered.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f",
                    str(tmp_path / "id")], check=True)
    pub = (tmp_path / "id.pub").read_text().strip()
    reg = alice.registerSSHKeyPair(name="laptop", publickey=pub, domainid=ROOT)["keypair"]
    assert reg["fingerprint"] == ssh_keygen_md5(tmp_path, pub) and "privatekey" not in reg
    listed = alice.listSSHKeyPairs()
    assert listed["count"] == 2 and {k["name"] for k in listed["sshkeypair"]} == {"made", "laptop"}
    assert alice.listSSHKeyPairs(fingerprint=reg["fingerprint"])["sshkeypair"][0]["name"] == "laptop"
    assert "privatekey" not in str(listed)
    # Refusals, each changing nothing.
    assert err(lambda: alice.registerSSHKeyPair(name="x", publickey="ssh-rsa AAAA"))["errorcode"] == 431
    assert "already exists" in err(lambda: alice.createSSHKeyPair(name="made"))["errortext"]
    assert "already registered as laptop" in err(lambda: alice.registerSSHKeyPair(name="y", publickey=pub))[
        "errortext"]
    assert err(lambda: alice.listSSHKeyPairs(domainid="00000000-0000-0000-0000-000000000002"))["errorcode"] == 431
    assert err(lambda: alice.createSSHKeyPair(name="z", account="admin"))["errorcode"] == 531
    assert alice.listSSHKeyPairs()["count"] == 2
    # Admins: their own by default, an account's with account=, everyone's with listall.
    api.createSSHKeyPair(name="admins")
    assert [k["name"] for k in api.listSSHKeyPairs()["sshkeypair"]] == ["admins"]
    assert api.listSSHKeyPairs(account="alice")["count"] == 2
    assert api.listSSHKeyPairs(listall="true")["count"] == 3
    api.deleteSSHKeyPair(name="made", account="alice")
    assert err(lambda: alice.deleteSSHKeyPair(name="made"))["errorcode"] == 431
    assert alice.deleteSSHKeyPair(name="laptop")["success"] in (True, "true")
    assert alice.listSSHKeyPairs() == {}


def test_limits_are_listed_updated_and_enforced(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    limits = alice.listResourceLimits()["resourcelimit"]
    assert {(r["resourcetype"], r["resourcetypename"]) for r in limits} == {
        ("0", "user_vm"), ("1", "public_ip"), ("2", "volume"), ("6", "network"), ("8", "cpu"), ("9", "memory"),
        ("10", "primary_storage"), ("3", "snapshot"), ("11", "secondary_storage")}
    assert all(r["account"] == "alice" and r["domainid"] == ROOT for r in limits)
    assert alice.listResourceLimits(resourcetype=0)["resourcelimit"][0]["max"] == 20  # the setting
    assert err(lambda: alice.updateResourceLimit(account="alice", resourcetype=0, max=100))["errorcode"] == 432
    assert err(lambda: api.updateResourceLimit(account="alice", resourcetype=7, max=1))["errorcode"] == 431
    assert err(lambda: api.updateResourceLimit(account="alice", resourcetype=0, max=-2))["errorcode"] == 431
    assert err(lambda: api.updateResourceLimit(resourcetype=0, max=1))["errorcode"] == 431  # which account?
    assert err(lambda: api.updateResourceLimit(account="admin", resourcetype=0, max=1))["errorcode"] == 431
    updated = api.updateResourceLimit(account="alice", resourcetype=0, max=1)["resourcelimit"]
    assert updated == {**updated, "account": "alice", "resourcetype": "0", "max": 1}
    assert api.listResourceLimits(account="alice", resourcetype=0)["resourcelimit"][0]["max"] == 1

    deploy(alice, z, t, so, name="one")
    e = err(lambda: deploy(alice, z, t, so, name="two"))
    assert e["errorcode"] == 532 and "limit of 1 instances" in e["errortext"]
    acct = alice.listAccounts()["account"][0]
    assert (acct["vmtotal"], acct["vmlimit"], acct["vmavailable"], acct["vmrunning"]) == (1, "1", "0", 1)
    assert (acct["cputotal"], acct["memorytotal"], acct["volumetotal"]) == (1, 1024, 1)
    assert acct["primarystoragetotal"] == 1 and acct["cpulimit"] == "40"
    admin = next(a for a in api.listAccounts()["account"] if a["name"] == "admin")
    assert admin["vmlimit"] == "Unlimited" and admin["vmavailable"] == "Unlimited"
    # -1: no limit (CloudStack's default when max is left out).
    assert api.updateResourceLimit(account="alice", resourcetype=0)["resourcelimit"]["max"] == -1
    assert deploy(alice, z, t, so, name="two")["state"] == "Running"
    assert alice.listAccounts()["account"][0]["vmlimit"] == "Unlimited"
    # Other limits, each refused with its own message.
    api.updateResourceLimit(account="alice", resourcetype=9, max=1500)
    e = err(lambda: deploy(alice, z, t, so, name="three"))
    assert e["errorcode"] == 532 and "MiB of memory" in e["errortext"]


def test_update_user_and_domains(live):
    api, alice = live.client(), live.client("alice")
    me = alice.listUsers()["user"][0]
    assert alice.updateUser(id=me["id"], email="alice@example.org", firstname="Alice")["user"]["email"] == \
        "alice@example.org"
    e = err(lambda: alice.updateUser(id=me["id"], password="new-orchard-pass-41"))
    assert e["errorcode"] == 431 and "current password" in e["errortext"]
    alice.updateUser(id=me["id"], password="new-orchard-pass-41", currentpassword="alicepass")
    assert err(lambda: alice.updateUser(id=me["id"], username="alicia"))["errorcode"] == 531
    admin_id = api.listUsers(username="admin")["user"][0]["id"]
    assert err(lambda: alice.updateUser(id=admin_id, email="x@y"))["errorcode"] == 431  # not found for her
    assert api.updateUser(id=me["id"], username="alicia")["user"]["username"] == "alicia"
    assert api.updateUser(id=me["id"], password="set-by-the-admin-77")["user"]["username"] == "alicia"  # no current needed
    with live.flask_app.app_context():
        from app.services import accounts
        assert accounts.authenticate("alicia", "set-by-the-admin-77") is not None
    domains = alice.listDomains()
    assert [{k: v for k, v in d.items() if k != "created"} for d in domains["domain"]] == [
        {"id": ROOT, "name": "ROOT", "level": 0, "path": "ROOT", "haschild": False, "state": "Active"}]
    assert api.listDomains(id="00000000-0000-0000-0000-000000000002") == {}
    with pytest.raises(CloudStackApiException):
        api.createAccount(username="x", password="unused-domain-pass-5", email="x@y", firstname="x", lastname="y",
                          domainid="00000000-0000-0000-0000-000000000002")

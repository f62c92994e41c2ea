"""VM commands with real clients against a live Nubo (real huey consumer) on a Simulator zone:
the `cs` client (instance groups, user data objects, updateVirtualMachine by GET and POST,
resetSSHKeyForVirtualMachine, resetPasswordForVirtualMachine, getVMPassword, restoreVirtualMachine,
assignVirtualMachine, the metrics lists) and Apache Libcloud (create_node's password from a
password-enabled template, ex_restore)."""
from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cs import CloudStackApiException

from tests.api.test_libcloud_network import driver, network_zone, one
from tests.api.test_templates_cs import files, wait_status  # noqa: F401  (fixture)

import libcloud  # noqa: E402  (requirements-test.txt pins apache-libcloud: a missing one is a failure, not a skip)

pytestmark = pytest.mark.xdist_group("live-api")


def code_of(call) -> int:
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error["errorcode"]


def test_vm_commands_with_cs_and_libcloud(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, t, so = network_zone(api, files, tmp_path)
    pw = api.registerTemplate(name="pw", displaytext="password enabled", url=f"{files.url}/disk.raw",
                              zoneid=z["id"], hypervisor="Simulator", format="RAW", ispublic="true",
                              ostypeid=t["ostypeid"], passwordenabled="true")["template"][0]
    assert pw["passwordenabled"] is True and wait_status(api, pw["id"])["isready"]
    net = alice.createNetwork(zoneid=z["id"], name="n1", displaytext="n1", networkofferingid=one_offering(alice),
                              gateway="10.1.2.1", netmask="255.255.255.0")["network"]

    # Instance groups and user data objects.
    g = alice.createInstanceGroup(name="web")["instancegroup"]
    assert alice.listInstanceGroups(name="web")["instancegroup"][0]["id"] == g["id"]
    jinja = base64.b64encode(b"## template: jinja\n#cloud-config\nhostname: {{ ds.meta_data.role }}\n").decode()
    ud = alice.registerUserData(name="tpl", userdata=jinja, params="role")["userdata"]
    assert alice.listUserData(id=ud["id"])["userdata"][0]["params"] == "role"

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    alice.registerSSHKeyPair(name="k1", publickey=pub)
    vm = alice.deployVirtualMachine(zoneid=z["id"], serviceofferingid=so["id"], templateid=pw["id"],
                                    networkids=net["id"], name="web1", group="web", keypair="k1",
                                    userdataid=ud["id"], userdatadetails=[{"role": "frontend"}],
                                    fetch_result=True)["virtualmachine"]
    assert vm["groupid"] == g["id"] and vm["userdataid"] == ud["id"] and vm["userdatadetails"] == "{role=frontend}"
    enc = alice.getVMPassword(id=vm["id"])["password"]["encryptedpassword"]
    assert key.decrypt(base64.b64decode(enc), padding.PKCS1v15()).decode() == vm["password"]
    assert code_of(lambda: alice.deleteUserData(id=ud["id"])) == 530  # in use, as CloudStack refuses it

    # updateVirtualMachine: GET and POST (a larger user data only by POST).
    big = base64.b64encode(b"#cloud-config\n" + b"#" * 5000 + b"\n").decode()
    assert code_of(lambda: alice.updateVirtualMachine(id=vm["id"], userdata=big)) == 431
    post = live.client("alice", method="post")
    up = post.updateVirtualMachine(id=vm["id"], userdata=big, displayname="Web One", haenable="false")
    assert up["virtualmachine"]["displayname"] == "Web One" and "userdataid" not in up["virtualmachine"]
    assert alice.listVirtualMachines(groupid=g["id"])["virtualmachine"][0]["id"] == vm["id"]
    metrics = alice.listVirtualMachinesMetrics(id=vm["id"])["virtualmachine"][0]
    assert metrics["cputotal"] == "1.0 Ghz" and metrics["memorytotal"] == "1.00 GiB"
    hm = api.listHostsMetrics()["host"]
    assert sum(int(h["instances"].split(" / ")[0]) for h in hm) >= 1
    assert alice.listVolumesMetrics(virtualmachineid=vm["id"])["volume"][0]["sizegb"]

    # Passwords and keys.
    new = alice.resetPasswordForVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]["password"]
    enc = alice.getVMPassword(id=vm["id"])["password"]["encryptedpassword"]
    assert key.decrypt(base64.b64decode(enc), padding.PKCS1v15()).decode() == new != vm["password"]
    assert code_of(lambda: alice.resetSSHKeyForVirtualMachine(id=vm["id"], keypair="k1")) == 431  # running
    alice.stopVirtualMachine(id=vm["id"], fetch_result=True)
    out = alice.resetSSHKeyForVirtualMachine(id=vm["id"], keypair="k1", fetch_result=True)["virtualmachine"]
    assert out["keypairs"] == "k1" and out["password"]

    # Restore (stopped: it stays stopped), then assign to another account (admins only).
    out = alice.restoreVirtualMachine(virtualmachineid=vm["id"], templateid=t["id"], fetch_result=True)
    assert out["virtualmachine"]["templateid"] == t["id"] and out["virtualmachine"]["state"] == "Stopped"
    assert code_of(lambda: alice.assignVirtualMachine(virtualmachineid=vm["id"], account="admin")) == 432
    moved = api.assignVirtualMachine(virtualmachineid=vm["id"], account="admin", networkids=admin_net(api, z))
    assert moved["virtualmachine"]["account"] == "admin"
    assert alice.listVirtualMachines(id=vm["id"]) == {}
    alice.deleteUserData(id=ud["id"])  # no VM of alice's uses it any more
    alice.deleteInstanceGroup(id=g["id"])
    assert alice.listInstanceGroups() == {} and alice.listUserData() == {}

    # Libcloud: the deploy's password (password-enabled template), ex_restore.
    drv = driver(live, "alice")
    loc = one(drv.list_locations(), id=z["id"])
    node = drv.create_node(name="lc1", size=one(drv.list_sizes(), id=so["id"]),
                           image=one(drv.list_images(loc), id=pw["id"]), location=loc,
                           networks=[one(drv.ex_list_networks(), id=net["id"])])
    assert node.extra["password"] and node.extra["password_enabled"] == "True"
    image = one(drv.list_images(loc), id=t["id"])
    assert drv.ex_restore(node, image) == t["id"]
    assert one(drv.list_nodes(), id=node.id).extra["image_id"] == t["id"]


def one_offering(client) -> str:
    return client.listNetworkOfferings(name="DefaultIsolatedNetworkOfferingWithSourceNatService",
                                       )["networkoffering"][0]["id"]


def admin_net(api, z) -> str:
    return api.createNetwork(zoneid=z["id"], name="adm", displaytext="adm", networkofferingid=one_offering(api),
                             gateway="10.1.3.1", netmask="255.255.255.0")["network"]["id"]

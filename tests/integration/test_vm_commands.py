"""VM commands on a Simulator zone through /client/api: updateVirtualMachine, instance groups,
restoreVirtualMachine, resetSSHKeyForVirtualMachine, resetPasswordForVirtualMachine and
getVMPassword, assignVirtualMachine, the metrics lists; bad input gets CloudStack's codes
and changes nothing."""
import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import func, select

from app.api.signing import sign
from app.extensions import db
from app.models import InstanceGroup, ResourceCount, Template, VirtualMachine, Volume, new_uuid
from app.services import accounts, quotas
from tests.helpers.sim_zone import simulator_zone

pytestmark = pytest.mark.db


@pytest.fixture
def world(app, users, tmp_path):
    with app.app_context():
        admin = accounts.get_user("admin")
        w = simulator_zone(admin, tmp_path, name="vz", guest_cidr="10.7.0.0/24",
                           host_urls=["simulator://v1?cpus=8&memory=16384"])
        keys = {u: accounts.ensure_keys(accounts.get_user(u)) for u in ("admin", "alice", "bob")}
        pw = Template(name="pw", format="RAW", hypervisor_type="Simulator", account_id=admin.account_id,
                      is_public=True, size=2 << 30, password_enabled=True)
        db.session.add(pw)
        db.session.flush()
        from app.models import DownloadState, TemplateStoreRef
        ref = db.session.scalar(select(TemplateStoreRef).where(TemplateStoreRef.template_id == w.template.id))
        db.session.add(TemplateStoreRef(template_id=pw.id, zone_id=w.zone.id, image_store_id=ref.image_store_id,
                                        state=DownloadState.DOWNLOADED, install_path="t.raw", size=2 << 30))
        db.session.commit()
        return dict(zone=w.zone.uuid, t=w.template.uuid, pw=pw.uuid, so=w.offering.uuid, keys=keys)


def call(client, world, user, command, method="GET", **params):
    key, secret = world["keys"][user]
    params = {"apiKey": key, "response": "json", "command": command, **params}
    params["signature"] = sign(params, secret)
    resp = client.post("/client/api", data=params) if method == "POST" else client.get("/client/api", query_string=params)
    body = json.loads(resp.data)[f"{command.lower()}response"]
    return resp.status_code, body


def job(client, world, user, command, **params):
    code, body = call(client, world, user, command, **params)
    assert code == 200, body
    code, res = call(client, world, user, "queryAsyncJobResult", jobid=body["jobid"])
    return res


def deploy(client, world, user="alice", **extra):
    res = job(client, world, user, "deployVirtualMachine", zoneid=world["zone"], serviceofferingid=world["so"],
              templateid=extra.pop("templateid", world["t"]), **extra)
    assert res["jobstatus"] == 1, res
    return res["jobresult"]["virtualmachine"]


def snapshot(app):
    """Rows and counts a refused command must leave as they were."""
    with app.app_context():
        vms = db.session.execute(select(VirtualMachine.id, VirtualMachine.display_name, VirtualMachine.name,
                                        VirtualMachine.group_id, VirtualMachine.ha_enable, VirtualMachine.userdata,
                                        VirtualMachine.account_id, VirtualMachine.keypair_id,
                                        VirtualMachine.state)).all()
        counts = db.session.execute(select(ResourceCount.account_id, ResourceCount.resource_type,
                                           ResourceCount.count).where(ResourceCount.count != 0)).all()
        return (sorted(vms), sorted(counts), db.session.scalar(select(func.count()).select_from(InstanceGroup)),
                db.session.scalar(select(func.count()).select_from(Volume)))


def test_update_and_instance_groups(app, client, world):
    vm = deploy(client, world, name="u1", group="web")
    assert vm["group"] == "web" and vm["groupid"] and vm["haenable"] is False
    code, groups = call(client, world, "alice", "listInstanceGroups")
    assert groups["count"] == 1 and groups["instancegroup"][0]["name"] == "web"
    assert groups["instancegroup"][0]["account"] == "alice"
    # bob sees none of it; alice's group is "not found" to him, like a missing one
    code, b = call(client, world, "bob", "listInstanceGroups")
    assert b == {}
    code, err = call(client, world, "bob", "deleteInstanceGroup", id=vm["groupid"])
    assert code == 431
    code, err = call(client, world, "alice", "createInstanceGroup", name="web")
    assert code == 431 and "already exists" in err["errortext"]
    code, g = call(client, world, "alice", "createInstanceGroup", name="db")
    assert code == 200 and g["instancegroup"]["name"] == "db"

    before = snapshot(app)
    ud = base64.b64encode(b"#cloud-config\nruncmd: [echo hi]\n").decode()
    for bad in ({"haenable": "true"}, {"userdata": "not base64!"}, {"name": "9bad"},
                {"details[0].extraconfig": "x"}, {"ostypeid": "00000000-0000-0000-0000-0000000000ff"},
                {"userdata": ud, "userdataid": "00000000-0000-0000-0000-0000000000ff"},
                {"isdynamicallyscalable": "true"}):
        code, err = call(client, world, "alice", "updateVirtualMachine", id=vm["id"], group="zz", **bad)
        assert code == 431, (bad, err)
    code, err = call(client, world, "bob", "updateVirtualMachine", id=vm["id"], displayname="mine")
    assert code == 431
    # a GET carries at most 4096 characters of base64 (CloudStack's limit); a POST more
    big = base64.b64encode(b"x" * 4000).decode()
    code, err = call(client, world, "alice", "updateVirtualMachine", id=vm["id"], userdata=big)
    assert code == 431 and "too long for an http GET" in err["errortext"]
    assert snapshot(app) == before

    code, up = call(client, world, "alice", "updateVirtualMachine", "POST", id=vm["id"], displayname="Ü web 1",
                    group="db", userdata=big, **{"details[0].keyboard": "fr"})
    assert code == 200, up
    up = up["virtualmachine"]
    assert up["displayname"] == "Ü web 1" and up["group"] == "db" and up["details"] == {"keyboard": "fr"}
    code, lst = call(client, world, "alice", "listVirtualMachines", groupid=g["instancegroup"]["id"])
    assert lst["count"] == 1 and lst["virtualmachine"][0]["id"] == vm["id"]
    code, lst = call(client, world, "alice", "listVirtualMachinesMetrics", id=vm["id"])
    m = lst["virtualmachine"][0]
    assert m["cputotal"] == "1.0 Ghz" and m["memorytotal"] == "1.00 GiB" and m["group"] == "db"
    # deleting the group leaves the VM in none
    code, _ = call(client, world, "alice", "deleteInstanceGroup", id=g["instancegroup"]["id"])
    assert code == 200
    code, lst = call(client, world, "alice", "listVirtualMachines", id=vm["id"])
    assert "group" not in lst["virtualmachine"][0]
    code, r = call(client, world, "alice", "updateInstanceGroup", id=vm["groupid"], name="front")
    assert code == 200 and r["instancegroup"]["name"] == "front"


def _rsa_pair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return key, pub


def test_passwords_and_ssh_keys(app, client, world):
    key, pub = _rsa_pair()
    code, _ = call(client, world, "alice", "registerSSHKeyPair", name="k1", publickey=pub)
    assert code == 200
    vm = deploy(client, world, name="p1", templateid=world["pw"], keypair="k1")
    assert vm["passwordenabled"] is True and vm["keypairs"] == "k1"
    password = vm["password"]
    code, got = call(client, world, "alice", "getVMPassword", id=vm["id"])
    assert code == 200, got
    clear = key.decrypt(base64.b64decode(got["password"]["encryptedpassword"]), padding.PKCS1v15()).decode()
    assert clear == password and len(password) == 6
    code, _ = call(client, world, "bob", "getVMPassword", id=vm["id"])
    assert code == 431
    res = job(client, world, "alice", "resetPasswordForVirtualMachine", id=vm["id"])
    assert res["jobstatus"] == 1 and res["jobresult"]["virtualmachine"]["password"] != password
    code, got = call(client, world, "alice", "getVMPassword", id=vm["id"])
    assert key.decrypt(base64.b64decode(got["password"]["encryptedpassword"]), padding.PKCS1v15()).decode() == \
        res["jobresult"]["virtualmachine"]["password"]
    # not a password-enabled template: refused
    plain = deploy(client, world, name="p2")
    code, err = call(client, world, "alice", "resetPasswordForVirtualMachine", id=plain["id"])
    assert code == 431 and "not password enabled" in err["errortext"]
    code, err = call(client, world, "alice", "getVMPassword", id=plain["id"])
    assert code == 431 and "No password" in err["errortext"]

    # resetSSHKey: the VM must be stopped; the key must be the owner's
    key2, pub2 = _rsa_pair()
    call(client, world, "alice", "registerSSHKeyPair", name="k2", publickey=pub2)
    code, err = call(client, world, "alice", "resetSSHKeyForVirtualMachine", id=vm["id"], keypair="k2")
    assert code == 431 and "should be stopped" in err["errortext"]
    assert job(client, world, "alice", "stopVirtualMachine", id=vm["id"])["jobstatus"] == 1
    code, err = call(client, world, "alice", "resetSSHKeyForVirtualMachine", id=vm["id"], keypair="nope")
    assert code == 431 and "does not exist" in err["errortext"]
    res = job(client, world, "alice", "resetSSHKeyForVirtualMachine", id=vm["id"], keypair="k2")
    assert res["jobstatus"] == 1, res
    out = res["jobresult"]["virtualmachine"]
    assert out["keypairs"] == "k2" and out["password"]
    code, got = call(client, world, "alice", "getVMPassword", id=vm["id"])
    assert key2.decrypt(base64.b64decode(got["password"]["encryptedpassword"]), padding.PKCS1v15()).decode() == \
        out["password"]


def test_restore(app, client, world):
    vm = deploy(client, world, name="r1")
    with app.app_context():
        old_root = db.session.scalar(select(Volume.id).where(Volume.vm_id == db.session.scalar(
            select(VirtualMachine.id).where(VirtualMachine.uuid == vm["id"])), Volume.removed.is_(None)))
        acct = accounts.get_user("alice").account_id
        used = quotas.usage(acct)
    res = job(client, world, "alice", "restoreVirtualMachine", virtualmachineid=vm["id"], templateid=world["pw"])
    assert res["jobstatus"] == 1, res
    out = res["jobresult"]["virtualmachine"]
    assert out["state"] == "Running" and out["templateid"] == world["pw"] and out["password"]
    with app.app_context():
        vm_id = db.session.scalar(select(VirtualMachine.id).where(VirtualMachine.uuid == vm["id"]))
        roots = db.session.scalars(select(Volume).where(Volume.vm_id == vm_id, Volume.removed.is_(None))).all()
        assert len(roots) == 1 and roots[0].id != old_root and roots[0].state == "Ready"
        assert db.session.get(Volume, old_root).removed is not None
        now = quotas.usage(acct)
        assert now["volume"] == used["volume"] and now["primary_storage"] == used["primary_storage"] + 1
    # not found for another account; a stopped VM stays stopped
    code, _ = call(client, world, "bob", "restoreVirtualMachine", virtualmachineid=vm["id"])
    assert code == 431
    job(client, world, "alice", "stopVirtualMachine", id=vm["id"])
    res = job(client, world, "alice", "restoreVirtualMachine", virtualmachineid=vm["id"])
    assert res["jobstatus"] == 1 and res["jobresult"]["virtualmachine"]["state"] == "Stopped"
    assert res["jobresult"]["virtualmachine"]["templateid"] == world["pw"]


def test_assign(app, client, world):
    vm = deploy(client, world, name="a1", group="g")
    code, err = call(client, world, "alice", "assignVirtualMachine", virtualmachineid=vm["id"], account="bob")
    assert code == 432  # an admin command: not available to users (the role check)
    before = snapshot(app)
    code, err = call(client, world, "admin", "assignVirtualMachine", virtualmachineid=vm["id"], account="bob")
    assert code == 431 and "not Stopped" in err["errortext"]
    job(client, world, "alice", "stopVirtualMachine", id=vm["id"])
    with app.app_context():
        bob = accounts.get_user("bob").account_id
        alice = accounts.get_user("alice").account_id
        a_before, b_before = quotas.usage(alice), quotas.usage(bob)
        from app.models import ResourceLimit
        db.session.add(ResourceLimit(account_id=bob, resource_type="user_vm", max=0))
        db.session.commit()
    before = snapshot(app)
    code, err = call(client, world, "admin", "assignVirtualMachine", virtualmachineid=vm["id"], account="bob")
    assert code == 532, err
    assert snapshot(app) == before
    with app.app_context():
        db.session.execute(ResourceLimit.__table__.delete())
        db.session.commit()
    code, out = call(client, world, "admin", "assignVirtualMachine", virtualmachineid=vm["id"], account="bob")
    assert code == 200, out
    assert out["virtualmachine"]["account"] == "bob" and "group" not in out["virtualmachine"]
    with app.app_context():
        a_after, b_after = quotas.usage(alice), quotas.usage(bob)
        for r in ("user_vm", "cpu", "memory", "volume", "primary_storage"):
            assert a_before[r] - a_after[r] == b_after[r] - b_before[r] > 0, r
        assert all(v.account_id == bob for v in db.session.scalars(select(Volume).where(
            Volume.vm_id == db.session.scalar(select(VirtualMachine.id).where(VirtualMachine.uuid == vm["id"])))))
    code, lst = call(client, world, "alice", "listVirtualMachines", id=vm["id"])
    assert lst == {}
    code, lst = call(client, world, "bob", "listVolumes", virtualmachineid=vm["id"])
    assert lst["count"] == 1


def test_metrics(app, client, world):
    vm = deploy(client, world, name="m1")
    code, hm = call(client, world, "admin", "listHostsMetrics")
    h = hm["host"][0]
    assert code == 200 and h["instances"] == "1 / 1" and h["cputotalghz"] == f"{8 * h['cpuspeed'] / 1000:.2f} Ghz"
    assert h["memorytotalgb"] == "16.00 GB" and h["memoryallocatedgb"] == "1.00 GB"
    code, _ = call(client, world, "alice", "listHostsMetrics")
    assert code == 432  # a User role has no listHostsMetrics rule: CloudStack answers 432
    code, vm_ = call(client, world, "alice", "listVolumesMetrics", virtualmachineid=vm["id"])
    assert vm_["count"] == 1 and vm_["volume"][0]["sizegb"] == "1.00 GB"
    code, b = call(client, world, "bob", "listVirtualMachinesMetrics")
    assert b == {}


def test_pages(app, client, world, auth):
    """The VM page's Settings card, Restore and Reset SSH key; the list's group filter; the
    User data page (register, list, delete)."""
    vm = deploy(client, world, name="w1", group="blue")
    call(client, world, "alice", "registerSSHKeyPair", name="k1", publickey=_rsa_pair()[1])
    auth.login("alice")
    page = client.get(f"/vms/{vm['id']}").get_data(as_text=True)
    assert "Settings" in page and "Restore" in page and ">blue<" in page
    token = auth.csrf(f"/vms/{vm['id']}")
    r = client.post(f"/vms/{vm['id']}/edit", data={"csrf_token": token, "displayname": "Blue one", "group": "green",
                                                 "userdata": "#cloud-config\n{}\n"})
    assert r.status_code == 302
    code, lst = call(client, world, "alice", "listVirtualMachines", id=vm["id"])
    v = lst["virtualmachine"][0]
    assert v["displayname"] == "Blue one" and v["group"] == "green"
    listing = client.get(f"/vms/?group={v['groupid']}").get_data(as_text=True)
    assert "w1" in listing and "Instance group" in listing
    r = client.post(f"/vms/{vm['id']}/restore", data={"csrf_token": token, "template": ""})
    assert r.status_code == 302
    code, lst = call(client, world, "alice", "listVirtualMachines", id=vm["id"])
    assert lst["virtualmachine"][0]["state"] == "Running"
    # user data page
    r = client.post("/userdata/new", data={"csrf_token": auth.csrf("/userdata/new"), "name": "web",
                                           "userdata": "#cloud-config\nruncmd: [echo]\n", "params": "role"})
    assert r.status_code == 302, r.get_data(as_text=True)
    page = client.get("/userdata/").get_data(as_text=True)
    assert "web" in page and "runcmd" in page and "role" in page
    code, lst = call(client, world, "alice", "listUserData")
    uid = lst["userdata"][0]["id"]
    auth.logout()
    auth.login("bob")
    assert "runcmd" not in client.get("/userdata/").get_data(as_text=True)
    assert client.post(f"/userdata/{uid}/delete", data={"csrf_token": auth.csrf("/userdata/")}).status_code == 404
    assert client.get(f"/vms/{vm['id']}").status_code == 404
    auth.logout()
    auth.login("alice")
    assert client.post(f"/userdata/{uid}/delete", data={"csrf_token": auth.csrf("/userdata/")}).status_code == 302
    code, lst = call(client, world, "alice", "listUserData")
    assert lst == {}


def _nics(app, vm_uuid) -> list[tuple[str, str | None, bool]]:
    """The VM's live NICs: (network name, address, default), default first."""
    from app.models import Network, Nic
    with app.app_context():
        rows = db.session.execute(select(Network.name, Nic.ip_address, Nic.is_default).join(Network)
                                  .where(Nic.vm_id == select(VirtualMachine.id).where(
                                      VirtualMachine.uuid == vm_uuid).scalar_subquery(), Nic.removed.is_(None))
                                  .order_by(Nic.device_id)).all()
        return [tuple(r) for r in rows]


def test_assign_moves_the_nics_to_the_new_owners_networks(app, client, world):
    """Advanced zone without security groups (UserVmManagerImpl.moveVMToUser): no networkids keeps
    the default NIC's shared network and its address; networkids puts the NICs on the new owner's
    networks; another account's network and securitygroupids are refused, nothing changed."""
    from app.models import Network, NetworkOffering
    vm = deploy(client, world, name="mv1")
    job(client, world, "alice", "stopVirtualMachine", id=vm["id"])
    (shared, address, _), = _nics(app, vm["id"])
    with app.app_context():
        zone = db.session.scalar(select(Network.zone_id).where(Network.name == shared))
        off = db.session.scalar(select(NetworkOffering.id).limit(1))
        for owner, name, cidr in (("bob", "bob-net", "10.8.1"), ("alice", "alice-net", "10.8.2")):
            db.session.add(Network(uuid=new_uuid(), name=name, zone_id=zone, network_offering_id=off,
                                   guest_type="Isolated", account_id=accounts.get_user(owner).account_id,
                                   cidr=f"{cidr}.0/24", gateway=f"{cidr}.1", netmask="255.255.255.0",
                                   start_ip=f"{cidr}.2", end_ip=f"{cidr}.254", state="Implemented"))
        db.session.commit()
        bob_net, alice_net = (db.session.scalar(select(Network.uuid).where(Network.name == n))
                              for n in ("bob-net", "alice-net"))
    before = snapshot(app)
    for params, code, text in (
            ({"securitygroupids": new_uuid()}, 431, "security group feature is not enabled in this zone"),
            ({"networkids": alice_net}, 431, "belongs to another account"),
            ({"networkids": f"{bob_net},{bob_net}"}, 431, "given twice")):
        got, err = call(client, world, "admin", "assignVirtualMachine", virtualmachineid=vm["id"], account="bob",
                        **params)
        assert (got, text in err["errortext"]) == (code, True), err
    assert snapshot(app) == before and _nics(app, vm["id"]) == [(shared, address, True)]
    # No networkids: the shared network and its address stay.
    code, out = call(client, world, "admin", "assignVirtualMachine", virtualmachineid=vm["id"], account="bob")
    assert code == 200, out
    assert _nics(app, vm["id"]) == [(shared, address, True)]
    assert [(n["networkname"], n["ipaddress"]) for n in out["virtualmachine"]["nic"]] == [(shared, address)]
    # Back to alice, on her own network and the shared one (NIC order as given, the first the default).
    code, out = call(client, world, "admin", "assignVirtualMachine", virtualmachineid=vm["id"], account="alice",
                     networkids=f"{alice_net},{db_uuid(app, shared)}")
    assert code == 200, out
    nics = _nics(app, vm["id"])
    assert [(n, d) for n, _a, d in nics] == [("alice-net", True), (shared, False)]
    assert nics[0][1].startswith("10.8.2.") and nics[1][1] == address


def db_uuid(app, network_name: str) -> str:
    from app.models import Network
    with app.app_context():
        return db.session.scalar(select(Network.uuid).where(Network.name == network_name))


def test_assign_with_security_groups_and_in_a_basic_zone(app, client, world):
    """A zone with security groups: securitygroupids (the new owner's) plus its default group
    replace the VM's groups; another account's group is refused, nothing changed. A Basic zone
    refuses networkids and puts the VM on the zone's network."""
    from app.models import Network, SecurityGroup, VmSecurityGroup, Zone
    with app.app_context():
        zone = db.session.scalar(select(Zone).where(Zone.uuid == world["zone"]))
        db.session.add(Network(uuid=new_uuid(), name="sg-shared", zone_id=zone.id, guest_type="Shared",
                               account_id=None, cidr="10.51.0.0/24", gateway="10.51.0.1", netmask="255.255.255.0",
                               start_ip="10.51.0.10", end_ip="10.51.0.200", security_groups=True,
                               state="Implemented"))
        db.session.commit()
    sg_net = db_uuid(app, "sg-shared")
    vm = deploy(client, world, name="sg1", networkids=sg_net)
    job(client, world, "alice", "stopVirtualMachine", id=vm["id"])
    code, web = call(client, world, "bob", "createSecurityGroup", name="web")
    assert code == 200, web
    code, mine = call(client, world, "alice", "createSecurityGroup", name="mine")

    def groups():
        with app.app_context():
            return sorted(db.session.execute(
                select(Account.name, SecurityGroup.name).join(VmSecurityGroup).join(Account).where(
                    VmSecurityGroup.vm_id == select(VirtualMachine.id).where(
                        VirtualMachine.uuid == vm["id"]).scalar_subquery())).all())

    from app.models import Account
    assert groups() == [("alice", "default")]
    before = snapshot(app)
    code, err = call(client, world, "admin", "assignVirtualMachine", virtualmachineid=vm["id"], account="bob",
                     securitygroupids=mine["securitygroup"]["id"])
    assert code == 531 and "another account" in err["errortext"], err
    assert snapshot(app) == before and groups() == [("alice", "default")]
    code, out = call(client, world, "admin", "assignVirtualMachine", virtualmachineid=vm["id"], account="bob",
                     securitygroupids=web["securitygroup"]["id"])
    assert code == 200, out
    assert groups() == [("bob", "default"), ("bob", "web")]
    assert sorted(g["name"] for g in out["virtualmachine"]["securitygroup"]) == ["default", "web"]
    (net, address, default), = _nics(app, vm["id"])
    assert net == "sg-shared" and default and address.startswith("10.51.0.")

    # A Basic zone: networkids refused; the VM goes onto the zone's network.
    with app.app_context():
        db.session.execute(db.update(Zone).where(Zone.uuid == world["zone"]).values(network_type="Basic"))
        db.session.commit()
    code, err = call(client, world, "admin", "assignVirtualMachine", virtualmachineid=vm["id"], account="alice",
                     networkids=sg_net)
    assert code == 431 and "this is a basic zone VM" in err["errortext"], err
    code, out = call(client, world, "admin", "assignVirtualMachine", virtualmachineid=vm["id"], account="alice")
    assert code == 200, out
    assert [(n, d) for n, _a, d in _nics(app, vm["id"])] == [("vz-guest", True)]
    assert groups() == []  # the zone's network has no security groups

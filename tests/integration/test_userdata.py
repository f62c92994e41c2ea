"""User data objects (CloudStack 4.18+) on a Simulator zone through /client/api: register,
list, delete (refused while a VM uses it), deploy and update with userdataid and
userdatadetails; the values reach the guest as meta-data (config drive)."""
import base64
import json

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import UserData, VirtualMachine
from app.services import config_drive
from tests.integration.test_vm_commands import call, deploy, job, world  # noqa: F401  (fixture)

pytestmark = pytest.mark.db

JINJA = base64.b64encode(b"## template: jinja\n#cloud-config\nruncmd:\n - echo {{ ds.meta_data.role }}\n").decode()


def _count(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(UserData))


def test_register_list_delete(app, client, world):
    code, r = call(client, world, "alice", "registerUserData", name="web", userdata=JINJA, params="role, size")
    assert code == 200, r
    u = r["userdata"]
    assert u["name"] == "web" and u["params"] == "role,size" and u["userdata"] == JINJA and u["account"] == "alice"
    for bad, why in (({"name": "web", "userdata": base64.b64encode(b"other").decode()}, "already exists"),
                     ({"name": "dup", "userdata": JINJA}, "same content"),
                     ({"name": "x", "userdata": "%%%not-base64"}, "not base64"),
                     ({"name": "y", "userdata": base64.b64encode(b"z").decode(), "params": "1bad"}, "parameter"),
                     ({"name": "big", "userdata": base64.b64encode(b"x" * 4000).decode()}, "too long")):
        code, err = call(client, world, "alice", "registerUserData", **bad)
        assert code == 431 and why in err["errortext"], (bad, err)
    assert _count(app) == 1
    code, lst = call(client, world, "alice", "listUserData")
    assert lst["count"] == 1 and lst["userdata"][0]["id"] == u["id"]
    code, lst = call(client, world, "bob", "listUserData")
    assert lst == {}
    code, err = call(client, world, "bob", "deleteUserData", id=u["id"])
    assert code == 431 and _count(app) == 1
    code, lst = call(client, world, "admin", "listUserData", listall="true")
    assert lst["count"] == 1
    code, ok = call(client, world, "alice", "deleteUserData", id=u["id"])
    assert code == 200 and ok["success"] is True and _count(app) == 0


def test_deploy_and_update_with_userdata_object(app, client, world, tmp_path):
    code, r = call(client, world, "alice", "registerUserData", name="web", userdata=JINJA, params="role")
    uid = r["userdata"]["id"]
    code, err = call(client, world, "alice", "deployVirtualMachine", zoneid=world["zone"],
                     serviceofferingid=world["so"], templateid=world["t"], userdataid=uid,
                     **{"userdatadetails[0].colour": "red"})
    assert code == 431 and "colour" in err["errortext"]
    code, err = call(client, world, "alice", "deployVirtualMachine", zoneid=world["zone"],
                     serviceofferingid=world["so"], templateid=world["t"], userdataid=uid, userdata=JINJA)
    assert code == 431 and "Both userdata and userdata ID" in err["errortext"]
    code, err = call(client, world, "bob", "deployVirtualMachine", zoneid=world["zone"],
                     serviceofferingid=world["so"], templateid=world["t"], userdataid=uid)
    assert code == 431  # alice's object is not found for bob
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(VirtualMachine)) == 0
    vm = deploy(client, world, name="ud1", userdataid=uid, **{"userdatadetails[0].role": "web"})
    assert vm["userdataid"] == uid and vm["userdataname"] == "web" and vm["userdatadetails"] == "{role=web}"
    with app.app_context():
        row = db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == vm["id"]))
        assert row.userdata == JINJA
        config_drive.build(row, tmp_path)
        meta = json.loads((tmp_path / "cidata" / "meta-data").read_text())
        assert meta["role"] == "web"
        assert "ds.meta_data.role" in (tmp_path / "cidata" / "user-data").read_text()
    code, err = call(client, world, "alice", "deleteUserData", id=uid)
    assert code == 530 and "being used by some VMs" in err["errortext"]
    assert _count(app) == 1
    # update: plain user data replaces the object
    plain = base64.b64encode(b"#cloud-config\n{}\n").decode()
    code, up = call(client, world, "alice", "updateVirtualMachine", id=vm["id"], userdata=plain)
    assert code == 200 and "userdataid" not in up["virtualmachine"]
    code, ok = call(client, world, "alice", "deleteUserData", id=uid)
    assert code == 200

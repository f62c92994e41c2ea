"""linkUserDataToTemplate (CloudStack 4.18+) and deploy by the template's policy, as
UserVmManagerImpl.finalizeUserData: ALLOWOVERRIDE (the deploy's user data wins, else the
template's), DENYOVERRIDE (the template's only; a deploy giving its own gets 530 and CloudStack's
text), APPEND (one multipart: the template's part, then the deploy's). The links shown in
listTemplates; a linked user data cannot be deleted; unlinking; bad input refused."""
from __future__ import annotations

import base64

from tests.integration.test_vm_commands import call, deploy, job, world  # noqa: F401  (fixture)

B = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
BASE, MINE = "#cloud-config\nhostname: base\n", "#!/bin/sh\necho mine\n"


def _userdata_of(client, world, vm_id) -> str:
    code, out = call(client, world, "alice", "getVirtualMachineUserData", virtualmachineid=vm_id)
    assert code == 200, out
    return base64.b64decode(out["virtualmachineuserdata"].get("userdata") or "").decode()


def _link(client, world, **params):
    return call(client, world, "admin", "linkUserDataToTemplate", templateid=world["t"], **params)


def test_link_userdata_to_template_and_deploy_by_its_policy(app, client, world):
    code, ud = call(client, world, "admin", "registerUserData", name="base", userdata=B(BASE))
    assert code == 200, ud
    ud = ud["userdata"]
    # Bad input: 431, nothing linked.
    for params, text in (({"isoid": world["t"]}, "API is applicable only for one ID"),
                         ({"userdataid": ud["id"], "userdatapolicy": "SOMETIMES"}, "Invalid userdatapolicy")):
        code, err = _link(client, world, **params)
        assert code == 431 and text in err["errortext"], err
    code, err = call(client, world, "admin", "linkUserDataToTemplate", userdataid=ud["id"])
    assert code == 431 and "Atleast one of template ID or ISO ID" in err["errortext"]
    code, err = call(client, world, "alice", "linkUserDataToTemplate", templateid=world["t"], userdataid=ud["id"])
    assert code == 531, err  # not hers (CloudStack's checkAccess ModifyEntry)
    code, out = _link(client, world, userdataid=ud["id"])
    assert code == 200, out
    t = out["template"]
    assert (t["userdataid"], t["userdataname"], t["userdatapolicy"]) == (ud["id"], "base", "ALLOWOVERRIDE")
    code, listed = call(client, world, "alice", "listTemplates", templatefilter="executable", id=world["t"])
    assert listed["template"][0]["userdatapolicy"] == "ALLOWOVERRIDE"

    # ALLOWOVERRIDE: none given, the template's; given, the deploy's.
    assert _userdata_of(client, world, deploy(client, world, name="a1")["id"]) == BASE
    assert _userdata_of(client, world, deploy(client, world, name="a2", userdata=B(MINE))["id"]) == MINE
    # DENYOVERRIDE: the template's only.
    assert _link(client, world, userdataid=ud["id"], userdatapolicy="denyoverride")[0] == 200
    code, err = call(client, world, "alice", "deployVirtualMachine", zoneid=world["zone"],
                     serviceofferingid=world["so"], templateid=world["t"], name="d1", userdata=B(MINE))
    assert code == 530 and err["errortext"] == ("UserData input is not allowed here since template t is "
                                                "configured to deny any userdata"), err
    assert _userdata_of(client, world, deploy(client, world, name="d2")["id"]) == BASE
    # APPEND: one multipart, the template's part first.
    assert _link(client, world, userdataid=ud["id"], userdatapolicy="APPEND")[0] == 200
    both = _userdata_of(client, world, deploy(client, world, name="p1", userdata=B(MINE))["id"])
    assert "multipart/mixed" in both and both.index("hostname: base") < both.index("echo mine")
    assert "text/cloud-config" in both and "text/x-shellscript" in both
    assert _userdata_of(client, world, deploy(client, world, name="p2")["id"]) == BASE

    # Linked: it cannot be deleted. Unlinked: it can.
    code, err = call(client, world, "admin", "deleteUserData", id=ud["id"])
    assert code == 530 and "linked to active template" in err["errortext"], err
    code, out = _link(client, world)
    assert code == 200 and "userdataid" not in out["template"], out
    assert _userdata_of(client, world, deploy(client, world, name="n1")["id"]) == ""
    assert call(client, world, "admin", "deleteUserData", id=ud["id"])[0] == 200

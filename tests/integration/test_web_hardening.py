"""Hardening of the web surface: settings typed on every write path (API, CLI,
service) with CloudStack's error, no control characters in any value, the Hyper-V
.rdp file that no value can add a line to, download names in any script, VM names
as CloudStack takes them, and the login's `next`."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from app.extensions import db
from app.hypervisors.base import ConsoleKind, ConsoleTarget
from app.hypervisors.hyperv.driver import rdp_file
from app.models import Event, Setting, VirtualMachine
from app.services import accounts, consoles, settings
from app.services.errors import InvalidParameter
from tests.conftest import csrf_token
from tests.console_support import make_vm
from tests.integration.test_api import body, keys, signed  # noqa: F401  (fixture)
from tests.integration.test_vm_pages import world  # noqa: F401  (fixture)

GUID = "0C5F3A2B-1111-2222-3333-444455556666"

# (setting, bad value): each must be refused on every write path and change nothing.
BAD = [
    ("console.token.ttl", "1_0"),       # Python's int() takes it; Java's parseInt does not
    ("console.token.ttl", "\u0663\u0660"),  # Arabic-Indic "30"
    ("console.token.ttl", "10.5"),
    ("console.token.ttl", "ten"),
    ("console.token.ttl", "4"),         # below min
    ("console.token.ttl", "61"),        # above max
    ("console.token.ttl", ""),
    ("console.token.ttl", "30\n"),
    ("cpu.overprovisioning.factor", "nan"),  # NaN passes every < and > check
    ("cpu.overprovisioning.factor", "inf"),
    ("cpu.overprovisioning.factor", "1e400"),
    ("cpu.overprovisioning.factor", "0.5"),
    ("console.hyperv.grant.access", "yes"),
    ("console.hyperv.user.domain", "CORP\r\nfull address:s:evil.example"),
    ("console.hyperv.user.domain", "CORP\nusername:s:Administrator"),
    ("console.hyperv.user.domain", "CORP\x00"),
    ("console.hyperv.user.domain", "CORP\u2028x"),
    ("console.hyperv.user.domain", "CORP\\admin"),
    ("hypervisor.list", "KVM\r\n"),
]


def stored(app, name):
    with app.app_context():
        return db.session.get(Setting, name).value


@pytest.mark.parametrize("name,value", BAD)
def test_bad_setting_refused_by_api_cli_and_service(app, client, keys, runner, name, value):  # noqa: F811
    before = stored(app, name)
    r = client.post("/client/api", data=signed(keys, "admin", command="updateConfiguration", name=name, value=value))
    answer = body(r)["updateconfigurationresponse"]
    assert r.status_code == 431 and answer["errorcode"] == 431, answer
    assert name in answer["errortext"] or "domain" in answer["errortext"]
    result = runner.invoke(args=["setting", "set", name, value])
    assert result.exit_code != 0 and "Error" in result.output
    with app.app_context():
        with pytest.raises(InvalidParameter):
            settings.update(name, value)
        if "\\" not in value:  # hooks' set_raw checks type and characters, not the domain rule
            with pytest.raises(InvalidParameter):
                settings.set_raw(name, value)
        db.session.rollback()
    assert stored(app, name) == before


def test_cloudstack_words_for_bad_values(app):
    with app.app_context():
        cases = {("console.token.ttl", "ten"): "There was an error trying to parse the integer value for: "
                                                "console.token.ttl",
                 ("cpu.overprovisioning.factor", "nan"): "There was an error trying to parse the float value for",
                 ("console.hyperv.grant.access", "yes"): "Please enter either 'true' or 'false'",
                 ("console.token.ttl", "61"): "Please enter an integer in the range: [5-60]"}
        for (name, value), words in cases.items():
            with pytest.raises(InvalidParameter, match=None) as e:
                settings.validate(name, value)
            assert words in e.value.message, e.value.message


def test_good_values_still_accepted_everywhere(app, client, keys, runner):  # noqa: F811
    r = client.post("/client/api", data=signed(keys, "admin", command="updateConfiguration",
                                               name="console.token.ttl", value=" 30 "))
    assert r.status_code == 200 and body(r)["updateconfigurationresponse"]["configuration"]["value"] == "30"
    assert runner.invoke(args=["setting", "set", "console.hyperv.user.domain", "corp.example"]).exit_code == 0
    assert runner.invoke(args=["setting", "get", "console.hyperv.user.domain"]).output.strip() == "corp.example"
    assert runner.invoke(args=["setting", "set", "console.hyperv.grant.access", "TRUE"]).exit_code == 0
    assert stored(app, "console.hyperv.grant.access") == "true"
    assert runner.invoke(args=["setting", "set", "cpu.overprovisioning.factor", "2.5"]).exit_code == 0


def test_hand_edited_row_with_a_line_break_is_not_used(app):
    with app.app_context():
        db.session.get(Setting, "console.hyperv.user.domain").value = "CORP\r\nfull address:s:evil"
        db.session.commit()
        settings.clear_cache()
        assert settings.get("console.hyperv.user.domain") == ""


# --- the .rdp file ----------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["host", "username", "guid"])
def test_rdp_file_refuses_a_value_that_would_add_a_line(field):
    values = {"host": "hv1.example", "username": "alice", "guid": GUID}
    values[field] += "\r\nfull address:s:evil.example"
    target = ConsoleTarget(kind=ConsoleKind.RDP, host=values["host"], port=2179, vm_guid=values["guid"])
    with pytest.raises(ValueError, match="line breaks"):
        rdp_file(target, values["username"])


def test_rdp_of_a_vm_with_a_bad_recorded_host_grants_and_records_nothing(app, users):
    with app.app_context():
        settings.update("console.hyperv.grant.access", "true")  # would call the host: it must not
        vm = make_vm("alice", host="hv1.example\r\nusername:s:Administrator", port=2179, hypervisor="Hyperv",
                     hypervisor_vm_id=GUID)
        before = db.session.scalar(select(db.func.count()).select_from(Event))
        with pytest.raises(InvalidParameter, match="No .rdp file"):
            consoles.rdp(accounts.get_user("alice"), vm.uuid)
        assert db.session.scalar(select(db.func.count()).select_from(Event)) == before


@pytest.mark.parametrize("name,disposition", [
    ("plain-vm", 'attachment; filename="plain-vm.rdp"'),
    ("caf\u00e9-\u30c6\u30b9\u30c8", "attachment; filename=\"caf_-___.rdp\"; "
                                     "filename*=UTF-8''caf%C3%A9-%E3%83%86%E3%82%B9%E3%83%88.rdp"),
    ('a"b\\c', "attachment; filename=\"a_b_c.rdp\"; filename*=UTF-8''a%22b%5Cc.rdp"),
])
def test_rdp_download_name_in_any_script(app, client, auth, name, disposition):
    """A VM made before names were ASCII-only (or renamed on the host): the download
    still answers 200 with an RFC 6266 filename*, never a 500."""
    with app.app_context():
        vm = make_vm("alice", host="hv1.example", port=2179, hypervisor="Hyperv", hypervisor_vm_id=GUID, name=name)
        uuid = vm.uuid
    auth.login("alice")
    r = client.post(f"/vms/{uuid}/console", data={"csrf_token": auth.csrf()})
    assert r.status_code == 200 and r.headers["Content-Disposition"] == disposition
    assert r.get_data(as_text=True).count("\r\n") == 5


@pytest.mark.parametrize("name", ["caf\u00e9", "\u30c6\u30b9\u30c8", "vm\u0663", "web-"])
def test_vm_names_are_ascii_host_names_as_in_cloudstack(app, world, name):  # noqa: F811
    """Refused as CloudStack's checkNameForRFCCompliance refuses them; nothing made or reserved."""
    from app.models import ResourceCount
    from app.services import vms

    def snapshot():
        return (db.session.scalar(select(db.func.count()).select_from(VirtualMachine)),
                sorted((c.resource_type, c.count) for c in db.session.scalars(select(ResourceCount))))
    with app.app_context():
        before = snapshot()
        with pytest.raises(InvalidParameter, match="Vm name can contain ASCII letters") as e:
            vms.deploy(accounts.get_user("alice"), zone_uuid=world.zone, service_offering_uuid=world.small,
                       template_uuid=world.template, name=name)
        assert e.value.field == "name"
        assert snapshot() == before
        vm = vms.deploy(accounts.get_user("alice"), zone_uuid=world.zone, service_offering_uuid=world.small,
                        template_uuid=world.template, name="web-1", display_name="Caf\u00e9 \u30c6\u30b9\u30c8")[0]
        assert vm.display_name == "Caf\u00e9 \u30c6\u30b9\u30c8"  # display names may be unicode


# --- login `next` -----------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "/portal/%0d%0aSet-Cookie:%20evil=1", "/portal/%0aLocation:%20https://evil.example/",
    "//evil.example/", "/\\evil.example/", "/%09/evil.example/", "https://evil.example/",
    "javascript:alert(1)", "%2F%2Fevil.example", "/%00x", "\\\\evil.example",
])
def test_login_next_refused_cleanly(client, users, target):
    r = client.post(f"/login?next={target}", data={"username": "alice", "password": "alicepass",
                                                   "csrf_token": csrf_token(client)})
    assert r.status_code == 302 and r.headers["Location"] == "/portal/"


def test_login_next_same_site_path_kept(client, users):
    r = client.post("/login?" + urlencode({"next": "/vms/?state=Running"}),
                    data={"username": "alice", "password": "alicepass", "csrf_token": csrf_token(client)})
    assert r.status_code == 302 and r.headers["Location"] == "/vms/?state=Running"


@pytest.mark.parametrize("value", ["Fire\r\ncracker", "Fire\x00cracker", "Fire\u2028cracker"])
def test_admin_page_write_path_refuses_control_characters(app, hx, value):
    """The admin page that writes a setting (the Custom type's display name, which is
    also written into hypervisor.list) goes through the same check: 422, nothing changed."""
    hx._auth.login("admin")
    before = (stored(app, "hypervisor.custom.display.name"), stored(app, "hypervisor.list"))
    r = hx.post("/admin/hypervisors/Custom/name", data={"display_name": value})
    assert r.status_code == 422 and "control characters" in r.get_data(as_text=True)
    assert (stored(app, "hypervisor.custom.display.name"), stored(app, "hypervisor.list")) == before

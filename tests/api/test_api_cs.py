"""The API driven by the real `cs` client (what Ansible's CloudStack modules use)."""
import pytest
from cs import CloudStackApiException

pytestmark = pytest.mark.xdist_group("live-api")


def test_signature_get_and_post_with_and_without_expiry(live):
    for kw in ({}, {"method": "post"}, {"expiration": -1}, {"method": "post", "expiration": -1}):
        api = live.client(**kw)
        users = api.listUsers()
        assert users["count"] == 2
        assert {u["username"] for u in users["user"]} == {"admin", "alice"}


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("value", ["has spaces", "ünïcödé ☁", "star*", "slash/plus+equals=amp&", "tilde~",
                                   "a+b c"])
def test_awkward_values_are_signed_and_read_back(live, value, method):
    api = live.client(method=method)
    api.updateConfiguration(name="hypervisor.custom.display.name", value=f"X{value}".replace(",", ""))
    got = api.listConfigurations(name="hypervisor.custom.display.name")["configuration"][0]["value"]
    assert got == f"X{value}"
    caps = api.listCapabilities()["capability"]
    assert caps["customhypervisordisplayname"] == f"X{value}"


SETTING = "hypervisor.custom.display.name"


def hand_made_get(live, params: dict, *, query=None, sign_as=None):
    """A GET built by hand (as a shell script or another language's client would):
    signed over `sign_as` (default: the params), sent as `query` (default: the params
    with spaces as %20)."""
    import requests
    from urllib.parse import quote, urlencode

    from app.api.signing import sign
    key, secret = live.keys("admin")
    params = {"apiKey": key, "response": "json", **params}
    signature = sign({**params, **(sign_as or {})}, secret)
    qs = query(params) if query else urlencode(params, quote_via=quote)
    return requests.get(f"{live.url}?{qs}&signature={quote(signature, safe='')}", timeout=30)


def setting(live) -> str:
    return live.client().listConfigurations(name=SETTING)["configuration"][0]["value"]


@pytest.mark.parametrize("encoding", ["%20", "+ (form style)"])
def test_hand_made_get_with_plus_space_and_unicode(live, encoding):
    from urllib.parse import urlencode
    value = "Ä+b c/☁*~"
    query = (lambda p: urlencode(p)) if encoding.startswith("+") else None  # quote_plus: ' '->'+', '+'->'%2B'
    resp = hand_made_get(live, {"command": "updateConfiguration", "name": SETTING, "value": value}, query=query)
    assert resp.status_code == 200, resp.text
    assert setting(live) == value


def test_a_plus_read_as_a_space_is_not_the_signed_value(live):
    """Signed over "a+b", sent with a bare '+' (which a query string reads as a space): refused, unchanged."""
    before = setting(live)
    resp = hand_made_get(live, {"command": "updateConfiguration", "name": SETTING, "value": "a b"},
                         sign_as={"value": "a+b"}, query=lambda p: "&".join(
                             f"{k}={'a+b' if k == 'value' else v}" for k, v in p.items()))
    assert resp.status_code == 401 and resp.json()["updateconfigurationresponse"]["errorcode"] == 401
    assert setting(live) == before
    # Unicode: signed as NFC "é", sent as NFD "é" (another byte sequence): refused too.
    resp = hand_made_get(live, {"command": "updateConfiguration", "name": SETTING, "value": "e\u0301"},
                         sign_as={"value": "\u00e9"})
    assert resp.status_code == 401 and setting(live) == before


@pytest.fixture
def echo_command():
    """A throw-away command with list and map parameters (none of this issue's commands has both)."""
    from app.api.registry import COMMANDS, Param, command

    @command("nuboEchoParams", "test only", params=[Param("ids", "list", "a list", item_type="uuid"),
                                                     Param("tags", "map", "a map"), Param("n", "long", "a long")])
    def echo(ctx, p):
        return {"success": True, "ids": p.get("ids"), "tags": p.get("tags"), "n": p.get("n")}
    yield
    COMMANDS.pop("nuboechoparams")


def test_list_and_map_parameters_are_signed_and_parsed(live, echo_command):
    api = live.client(method="post")
    ids = ["0b6f3f0c-1111-4222-8333-444455556666", "1c7a4e1d-2222-4333-8444-555566667777"]
    got = api.nuboEchoParams(ids=",".join(ids), n=2**40,
                             tags=[{"key": "env", "value": "prod/eu"}, {"key": "a b", "value": "*"}])
    assert got["ids"] == ids and got["n"] == 2**40
    assert got["tags"] == [{"key": "env", "value": "prod/eu"}, {"key": "a b", "value": "*"}]
    with pytest.raises(CloudStackApiException) as e:
        api.nuboEchoParams(ids="not-a-uuid")
    assert e.value.error["errorcode"] == 431 and "ids" in e.value.error["errortext"]


def test_list_apis_shape(live):
    api = live.client()
    # list parameter (comma-joined by cs) and a map parameter name[0].key=value both parse
    res = api.listApis(name="listUsers")
    assert res["api"][0]["name"] == "listUsers"
    params = {p["name"] for p in res["api"][0]["params"]}
    assert {"id", "keyword", "page", "pagesize", "listall", "username"} <= params


def test_async_command_polled_to_completion(live):
    api = live.client(fetch_result=True)
    alice = api.listUsers(username="alice")["user"][0]
    result = api.disableUser(id=alice["id"])
    assert result["user"]["state"] == "disabled"
    jobs = api.listAsyncJobs()["asyncjobs"]
    assert jobs[0]["jobstatus"] == 1 and jobs[0]["jobresultcode"] == 0
    # the disabled user's keys no longer work
    with pytest.raises(CloudStackApiException) as e:
        live.client("alice").listUsers()
    assert e.value.error["errorcode"] == 401


def test_paging_with_count(live):
    api = live.client()
    for i in range(7):
        api.createUser(username=f"u{i}", password="paging-user-pass-77", account="alice", email="a@b.c",
                       firstname="A", lastname="B")
    page = api.listUsers(page=2, pagesize=3)
    assert page["count"] == 9 and len(page["user"]) == 3
    assert len(api.listUsers(fetch_list=True)) == 9


def test_errors_have_cloudstack_codes(live):
    api = live.client()
    with pytest.raises(CloudStackApiException) as e:
        api.updateConfiguration(name="no.such.setting", value="1")
    assert e.value.error["errorcode"] == 431
    with pytest.raises(CloudStackApiException) as e:
        api.updateConfiguration(name="api.throttling.max", value="abc")
    assert e.value.error["errorcode"] == 431 and "integer" in e.value.error["errortext"]
    with pytest.raises(CloudStackApiException) as e:
        api.disableUser()
    assert e.value.error["errorcode"] == 431 and "id" in e.value.error["errortext"]
    with pytest.raises(CloudStackApiException) as e:
        api.disableUser(id="not-a-uuid")
    assert e.value.error["errorcode"] == 431


def test_user_cannot_call_admin_commands_and_nothing_changes(live):
    api = live.client("alice")
    with pytest.raises(CloudStackApiException) as e:
        api.updateConfiguration(name="api.throttling.max", value="3")
    # CloudStack's dynamic role check: 432, "The API [x] does not exist or is not available ..."
    assert e.value.error["errorcode"] == 432
    assert e.value.error["errortext"] == ("The API [updateConfiguration] does not exist or is not available "
                                          "for the account alice.")
    admin = live.client()
    assert admin.listConfigurations(name="api.throttling.max")["configuration"][0]["value"] == "25"
    assert api.listUsers()["count"] == 1  # a user sees only their account's users


def test_wrong_secret_and_expired_and_unknown_command(live):
    from cs import CloudStack
    key, _ = live.keys("admin")
    bad = CloudStack(endpoint=live.url, key=key, secret="wrong")
    with pytest.raises(CloudStackApiException) as e:
        bad.listUsers()
    assert e.value.error["errorcode"] == 401
    with pytest.raises(CloudStackApiException) as e:
        live.client().doesNotExist()
    assert e.value.error["errorcode"] == 401
    with pytest.raises(CloudStackApiException) as e:
        live.client().listUsers(expires="2020-01-01T00:00:00+0000", signatureVersion="3")
    assert e.value.error["errorcode"] == 401
    with pytest.raises(CloudStackApiException) as e:  # no apiKey at all
        CloudStack(endpoint=live.url, key="", secret="x").listUsers()
    assert e.value.error["errorcode"] == 401


def test_hypervisor_commands(live):
    api = live.client()
    names = [h["name"] for h in api.listHypervisors()["hypervisor"]]
    assert names[:2] == ["KVM", "Xen"] and "Simulator" in names
    caps = api.listHypervisorCapabilities(hypervisor="Simulator")["hypervisorCapabilities"][0]
    assert caps["hypervisor"] == "Simulator" and "RAW" in caps["templateformats"]
    updated = api.updateHypervisorCapabilities(id=caps["id"], maxguestslimit=42)
    assert updated["hypervisorCapabilities"]["maxguestslimit"] == 42

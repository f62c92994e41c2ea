"""The /client/api endpoint through the Flask test client: sessions, CloudMonkey-shaped
requests, enforcement, rate limit, jobs and the reaper."""
import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest

from app.api import ratelimit
from app.api.signing import go_encode, sign
from app.extensions import db
from app.models import AsyncJob, JobStatus, utcnow
from app.services import accounts, settings

# On every database (@pytest.mark.db): API sessions and the jobs' reaper; signing, enforcement,
# the rate limit (kept in memory) and the command list on SQLite.


def body(resp):
    return json.loads(resp.data)


@pytest.fixture
def keys(app, users):
    with app.app_context():
        return {u: accounts.ensure_keys(accounts.get_user(u)) for u in ("admin", "alice")}


def signed(keys, user, encode=None, **params):
    key, secret = keys[user]
    params = {"apiKey": key, "response": "json", **params}
    params["signature"] = sign(params, secret, encode) if encode else sign(params, secret)
    return params


def test_cloudmonkey_shaped_get(client, keys):
    # No signatureVersion/expires, Go-style encoding, GET.
    q = signed(keys, "admin", go_encode, command="listUsers", keyword="al*")
    resp = client.get("/client/api?" + urlencode(q))
    assert resp.status_code == 200, resp.data
    assert resp.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert body(resp)["listusersresponse"] == {}  # no match: CloudStack's empty list


@pytest.mark.db
def test_session_login_needs_sessionkey(client, users):
    resp = client.post("/client/api", data={"command": "login", "username": "alice",
                                            "password": "alicepass", "response": "json"})
    key = body(resp)["loginresponse"]["sessionkey"]
    # The cookie alone does not authorise (no CSRF hole)...
    assert client.get("/client/api?command=listUsers&response=json").status_code == 401
    # ...the cookie plus the sessionkey does.
    ok = client.get(f"/client/api?command=listUsers&response=json&sessionkey={key}")
    assert body(ok)["listusersresponse"]["count"] == 1
    client.get(f"/client/api?command=logout&response=json&sessionkey={key}")
    assert client.get(f"/client/api?command=listUsers&response=json&sessionkey={key}").status_code == 401


def test_web_login_does_not_authorise_api(client, auth):
    auth.login("admin")
    assert client.get("/client/api?command=listUsers&response=json").status_code == 401


def test_login_wrong_password_and_get(client, users):
    assert client.post("/client/api", data={"command": "login", "username": "alice",
                                            "password": "nope", "response": "json"}).status_code == 531
    assert client.get("/client/api?command=login&username=alice&password=alicepass").status_code == 405


def test_enforce_post_and_timestamps(client, keys, app):
    with app.app_context():
        settings.update("enforce.post.requests.and.timestamps", "true")
    # Without expiry: refused.
    assert client.get("/client/api?" + urlencode(signed(keys, "admin", command="listUsers"))).status_code == 401
    future = (utcnow() + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    far = (utcnow() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    ok = signed(keys, "admin", command="listUsers", signatureVersion="3", expires=future)
    assert client.get("/client/api?" + urlencode(ok)).status_code == 200
    too_far = signed(keys, "admin", command="listUsers", signatureVersion="3", expires=far)
    assert client.get("/client/api?" + urlencode(too_far)).status_code == 401
    change = signed(keys, "admin", command="updateConfiguration", name="api.throttling.max", value="9",
                    signatureVersion="3", expires=future)
    assert client.get("/client/api?" + urlencode(change)).status_code == 405
    assert client.post("/client/api", data=change).status_code == 200


def test_rate_limit_answers_429(client, keys, app):
    with app.app_context():
        settings.update("api.throttling.enabled", "true")
        settings.update("api.throttling.max", "3")
        settings.update("api.throttling.interval", "60")
    ratelimit.reset()
    codes = [client.get("/client/api?" + urlencode(signed(keys, "alice", command="listUsers"))).status_code
             for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    ratelimit.reset()


def test_disabled_user_refused(client, keys, app):
    with app.app_context():
        accounts.set_user_state(accounts.get_user("alice"), enabled=False)
    assert client.get("/client/api?" + urlencode(signed(keys, "alice", command="listUsers"))).status_code == 401


def test_list_apis_lists_every_command_with_params(client, keys):
    from app.api.registry import all_commands
    data = body(client.get("/client/api?" + urlencode(signed(keys, "admin", command="listApis"))))
    apis = {a["name"]: a for a in data["listapisresponse"]["api"]}
    assert set(apis) == {c.name for c in all_commands()}
    assert apis["disableUser"]["isasync"] is True
    user_view = body(client.get("/client/api?" + urlencode(signed(keys, "alice", command="listApis"))))
    assert "updateConfiguration" not in {a["name"] for a in user_view["listapisresponse"]["api"]}


def test_reference_page_matches_registry(client, auth):
    from app.api.registry import all_commands
    auth.login("admin")
    html = client.get("/api-docs/").get_data(as_text=True)
    for c in all_commands():
        assert f'id="{c.name}"' in html
    frag = client.get("/api-docs/?q=async", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "queryAsyncJobResult" in frag and "<html" not in frag


@pytest.mark.db
def test_async_job_failure_and_reaper(app, users):
    from app.jobs import service as jobs
    from app.services.errors import InsufficientCapacity

    @jobs.handler("test.fail")
    def fail(job, params):
        raise InsufficientCapacity("no host fits")

    with app.app_context():
        admin = accounts.get_user("admin")
        job = jobs.submit("test", admin, "test.fail")
        db.session.refresh(job)
        assert job.status == JobStatus.FAILED and job.result_code == 533
        assert json.loads(job.result)["errortext"] == "no host fits"
        # A job whose worker died: started, no heartbeat for longer than the timeout.
        stuck = AsyncJob(cmd="stuck", status=JobStatus.PENDING, started=utcnow() - timedelta(minutes=5),
                         heartbeat=utcnow() - timedelta(minutes=5))
        db.session.add(stuck)
        db.session.commit()
        assert jobs.reap() == 1
        db.session.refresh(stuck)
        assert stuck.status == JobStatus.FAILED and "stopped" in json.loads(stuck.result)["errortext"]

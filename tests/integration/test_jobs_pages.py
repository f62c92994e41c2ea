"""The jobs pages: every job for an admin, a user's own as "My jobs" (never another account's,
on the list or by id), filters by status, command, account and resource, paging, who started
it, the resource named and linked, a running job's progress and poller, the result or error."""
from __future__ import annotations

import json
from datetime import timedelta

from app.extensions import db
from app.models import AsyncJob, JobStatus, utcnow
from app.services import accounts


def _job(user, cmd, status=JobStatus.SUCCEEDED, *, result=None, progress=0, message=None, itype=None, iid=None,
         steps=None):
    u = accounts.get_user(user) if user else None
    now = utcnow()
    j = AsyncJob(cmd=cmd, user_id=u.id if u else None, account_id=u.account_id if u else None, status=status,
                 progress=progress, progress_message=message, instance_type=itype, instance_id=iid,
                 result=json.dumps(result) if result is not None else None, created=now - timedelta(seconds=90),
                 started=now - timedelta(seconds=90), steps=json.dumps(steps) if steps else None,
                 completed=None if status == JobStatus.PENDING else now)
    db.session.add(j)
    db.session.commit()
    return j.uuid


def world(app):
    with app.app_context():
        acct = accounts.get_account("alice")
        return {
            "a_ok": _job("alice", "deployVirtualMachine", result={"virtualmachine": {"id": "x"}},
                         itype="Account", iid=acct.uuid),
            "a_fail": _job("alice", "createVolume", JobStatus.FAILED,
                           result={"errorcode": 533, "errortext": "Primary storage is full"}),
            "a_run": _job("alice", "startVirtualMachine", JobStatus.PENDING, progress=40, message="Starting on h1",
                          steps=[{"label": "Plan", "state": "done"}, {"label": "Boot", "state": "running"}]),
            "b_ok": _job("bob", "destroyVirtualMachine", result={"virtualmachine": {"id": "y"}}),
            "sys": _job(None, "expungeVirtualMachine"),
        }


def test_admin_sees_every_job_and_filters(app, client, auth, hx):
    ids = world(app)
    auth.login("admin")
    html = client.get("/jobs/").get_data(as_text=True)
    for uuid in ids.values():
        assert f'id="job-{uuid}"' in html
    assert "Primary storage is full" in html and "40 %" in html and "Starting on h1" in html
    assert "system" in html and "done in 1 min 30 s" in html
    assert 'hx-trigger="every 2s"' in html  # a job runs: the list polls
    r = hx.get("/jobs/?status=failed")
    assert r.headers["HX-Push-Url"] == "/jobs/?status=failed"
    html = r.get_data(as_text=True)
    assert ids["a_fail"] in html and ids["a_ok"] not in html and 'every 2s' not in html
    html = client.get("/jobs/?cmd=destroyVirtualMachine").get_data(as_text=True)
    assert ids["b_ok"] in html and ids["a_ok"] not in html
    html = client.get("/jobs/?account=alice").get_data(as_text=True)
    assert ids["a_ok"] in html and ids["b_ok"] not in html and ids["sys"] not in html
    with app.app_context():
        alice_uuid = accounts.get_account("alice").uuid
    html = client.get(f"/jobs/?resource={alice_uuid}").get_data(as_text=True)
    assert ids["a_ok"] in html and ids["a_fail"] not in html
    assert f'href="/admin/accounts/{alice_uuid}"' in html  # the resource, linked for an admin
    html = client.get("/jobs/?pagesize=2").get_data(as_text=True)
    assert html.count('<tr id="job-') == 2 and "1–2 of 5" in html
    assert hx.get("/jobs/?poll=1").headers.get("HX-Push-Url") is None
    assert "Unknown job status" in client.get("/jobs/?status=nope").get_data(as_text=True)


def test_job_page(app, client, auth, hx):
    ids = world(app)
    auth.login("admin")
    html = client.get(f"/jobs/{ids['a_run']}").get_data(as_text=True)
    assert "Starting on h1" in html and "Boot" in html and 'hx-trigger="every 1s"' in html
    html = hx.get(f"/jobs/{ids['a_fail']}").get_data(as_text=True)
    assert "Primary storage is full" in html and "every 1s" not in html and "<html" not in html
    html = client.get(f"/jobs/{ids['a_ok']}").get_data(as_text=True)
    assert "&#34;virtualmachine&#34;" in html or '"virtualmachine"' in html
    assert "alice" in html
    assert client.get("/jobs/no-such-job").status_code == 404


def test_users_see_their_own_jobs_only(app, client, auth):
    ids = world(app)
    auth.login("alice")
    html = client.get("/jobs/").get_data(as_text=True)
    assert "My jobs" in html
    assert ids["a_ok"] in html and ids["a_fail"] in html
    assert ids["b_ok"] not in html and ids["sys"] not in html
    assert 'name="account"' not in html  # no account filter for a user
    with app.app_context():
        alice_uuid = accounts.get_account("alice").uuid
    assert f'href="/admin/accounts/{alice_uuid}"' not in html  # an admin page: not linked
    assert client.get(f"/jobs/{ids['b_ok']}").status_code == 404
    assert client.get(f"/jobs/{ids['sys']}").status_code == 404
    assert client.get(f"/jobs/{ids['a_fail']}").status_code == 200
    html = client.get("/jobs/?account=bob").get_data(as_text=True)
    assert ids["b_ok"] not in html
    assert "destroyVirtualMachine" not in html  # not even among the command filter's choices

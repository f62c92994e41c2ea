"""Project invitations through the API (signed calls, jobs run inline), as CloudStack's
ProjectManagerImpl has them: with project.invite.required on, addAccountToProject invites
(Pending) instead of adding; the invitee lists, accepts (Completed: a member) or declines
(Declined); by email a token goes out by SMTP and whoever gives it back joins; a project's
admin deletes pending invitations; project.invite.timeout expires them (Expired)."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.extensions import db
from app.models import ProjectInvitation, utcnow
from tests.helpers.smtp import SmtpServer
from tests.integration.test_domains import job, ok
from tests.integration.test_quotas import api


@pytest.fixture
def invites(app, client, users):
    ok(api(app, client, "admin", command="updateConfiguration", name="project.invite.required", value="true"))
    status, result = job(app, client, "alice", command="createProject", name="web")
    assert status == 1, result
    return result["project"]


def members(app, client, p):
    return {m["account"]: m["role"] for m in
            ok(api(app, client, "alice", command="listProjectAccounts", projectid=p["id"]))["projectaccount"]}


def invitations(app, client, user, **kw):
    return ok(api(app, client, user, command="listProjectInvitations", **kw)).get("projectinvitation", [])


def test_invite_accept_decline_delete(app, client, invites):
    p = invites
    assert job(app, client, "alice", command="addAccountToProject", projectid=p["id"], account="bob",
               roletype="Admin") == (1, {"success": True})
    assert members(app, client, p) == {"alice": "Admin"}  # invited, not added
    mine = invitations(app, client, "bob")
    assert [(i["project"], i["account"], i["state"]) for i in mine] == [("web", "bob", "Pending")]
    assert mine[0]["projectid"] == p["id"] and mine[0]["domain"] == "ROOT"
    # The project's admin sees its invitations with projectid; the admin account has none of its own.
    assert [i["id"] for i in invitations(app, client, "alice", projectid=p["id"])] == [mine[0]["id"]]
    assert invitations(app, client, "admin") == []
    # A second invitation while one is pending: refused, nothing changes.
    status, result = job(app, client, "alice", command="addAccountToProject", projectid=p["id"], account="bob")
    assert status == 2 and result["errorcode"] == 431 and "pending invitation" in result["errortext"]
    # Neither account nor email: 431 at once.
    assert api(app, client, "alice", command="addAccountToProject", projectid=p["id"])[0] == 431
    # bob is no member yet: the project's objects stay out of reach.
    assert api(app, client, "bob", command="listVirtualMachines", projectid=p["id"])[0] == 431
    # The invitee may not delete it (only the project's admins do).
    status, body = api(app, client, "bob", command="deleteProjectInvitation", id=mine[0]["id"])
    assert status == 531, body
    # bob accepts: a member with the invited role; the invitation is Completed.
    assert job(app, client, "bob", command="updateProjectInvitation", projectid=p["id"]) == (1, {"success": True})
    assert members(app, client, p) == {"alice": "Admin", "bob": "Admin"}
    assert [i["state"] for i in invitations(app, client, "bob")] == ["Completed"]
    assert invitations(app, client, "bob", activeonly="true") == []
    # Answering again: no pending invitation.
    status, result = job(app, client, "bob", command="updateProjectInvitation", projectid=p["id"])
    assert status == 2 and result["errorcode"] == 431

    # Declined: no membership; then a new invitation may be made, and the admin deletes it.
    assert job(app, client, "alice", command="deleteAccountFromProject", projectid=p["id"], account="bob")[0] == 1
    assert job(app, client, "alice", command="addAccountToProject", projectid=p["id"], account="bob")[0] == 1
    assert job(app, client, "bob", command="updateProjectInvitation", projectid=p["id"], accept="false")[0] == 1
    assert members(app, client, p) == {"alice": "Admin"}
    states = sorted(i["state"] for i in invitations(app, client, "alice", projectid=p["id"]))
    assert states == ["Completed", "Declined"]
    assert job(app, client, "alice", command="addAccountToProject", projectid=p["id"], account="bob")[0] == 1
    pending = invitations(app, client, "bob", state="Pending")
    assert len(pending) == 1
    assert job(app, client, "alice", command="deleteProjectInvitation", id=pending[0]["id"]) == (1, {"success": True})
    assert invitations(app, client, "bob", state="Pending") == []
    status, result = job(app, client, "bob", command="updateProjectInvitation", projectid=p["id"])
    assert status == 2 and "Unable to find invitation" in result["errortext"]


def test_acting_for_another_account_and_unknown_ids(app, client, invites):
    p = invites
    assert job(app, client, "alice", command="addAccountToProject", projectid=p["id"], account="bob")[0] == 1
    # alice may not answer for bob (531); the root admin may.
    status, result = job(app, client, "alice", command="updateProjectInvitation", projectid=p["id"], account="bob")
    assert status == 2 and result["errorcode"] == 531
    assert job(app, client, "admin", command="updateProjectInvitation", projectid=p["id"], account="bob")[0] == 1
    assert "bob" in members(app, client, p)
    assert api(app, client, "bob", command="deleteProjectInvitation", id="00000000-0000-0000-0000-00000000dead")[0] \
        == 431
    assert api(app, client, "bob", command="updateProjectInvitation",
               projectid="00000000-0000-0000-0000-00000000dead")[0] == 431


def test_expired_invitations(app, client, invites):
    p = invites
    assert job(app, client, "alice", command="addAccountToProject", projectid=p["id"], account="bob")[0] == 1
    with app.app_context():  # the invitation was made two days ago (the timeout is one day)
        db.session.execute(update(ProjectInvitation).values(created=utcnow() - timedelta(days=2)))
        db.session.commit()
    status, result = job(app, client, "bob", command="updateProjectInvitation", projectid=p["id"])
    assert status == 2 and "expired" in result["errortext"]
    assert [i["state"] for i in invitations(app, client, "bob")] == ["Expired"]
    assert "bob" not in members(app, client, p)
    # An expired invitation does not block a new one.
    assert job(app, client, "alice", command="addAccountToProject", projectid=p["id"], account="bob")[0] == 1
    assert job(app, client, "bob", command="updateProjectInvitation", projectid=p["id"])[0] == 1
    assert "bob" in members(app, client, p)


def test_invitation_by_email_with_a_token(app, client, invites):
    p = invites
    # Without an SMTP server: refused, nothing made.
    status, result = job(app, client, "alice", command="addAccountToProject", projectid=p["id"], email="bob@x.y")
    assert status == 2 and "project.smtp.host" in result["errortext"]
    smtp = SmtpServer()
    try:
        for name, value in (("project.smtp.host", "127.0.0.1"), ("project.smtp.port", smtp.port)):
            ok(api(app, client, "admin", command="updateConfiguration", name=name, value=value))
        assert job(app, client, "alice", command="addAccountToProject", projectid=p["id"], email="bob@x.y")[0] == 1
    finally:
        smtp.close()
    assert len(smtp.messages) == 1 and "To: bob@x.y" in smtp.messages[0]
    token = re.search(r"token \[([0-9A-Z]{10})\]", smtp.messages[0]).group(1)
    listed = invitations(app, client, "alice", projectid=p["id"])
    assert [(i["email"], i["state"]) for i in listed] == [("bob@x.y", "Pending")] and "account" not in listed[0]
    # A wrong token: the project is "not found" for bob (no member, no invitation of his); the
    # right one makes the caller a member.
    status, body = api(app, client, "bob", command="updateProjectInvitation", projectid=p["id"], token="WRONG00000")
    assert status == 431 and body["errortext"] == "Unable to find project by the specified id"
    assert job(app, client, "bob", command="updateProjectInvitation", projectid=p["id"], token=token)[0] == 1
    assert members(app, client, p) == {"alice": "Admin", "bob": "Regular"}
    assert invitations(app, client, "alice", projectid=p["id"])[0]["state"] == "Completed"

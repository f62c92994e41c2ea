"""A domain admin's account commands (CloudStack's DomainChecker and AccountManagerImpl rules):
inside their subtree createAccount, updateAccount, disable/enable/lockAccount, createUser,
disable/enable/lock/deleteUser, moveUser and deleteAccount work; outside it each is refused
with 531 and CloudStack's "does not have permission to operate within domain" text; an account
of the same role type (another domain admin) or a higher one (a root admin) is refused too,
and nothing changes. The Domain Admin default role allows these commands."""
from __future__ import annotations

from sqlalchemy import select

from app.api.registry import lookup
from app.extensions import db
from app.models import Account, AccountRole, RolePermission, User
from app.services import accounts, roles
from tests.integration.test_domains import PASSWORD, job, make_account, ok, tree  # noqa: F401  (fixture)
from tests.integration.test_quotas import api

COMMANDS = ("createAccount", "updateAccount", "disableAccount", "enableAccount", "lockAccount", "deleteAccount",
            "createUser", "disableUser", "enableUser", "lockUser", "deleteUser", "updateUser", "moveUser")


def _state(app):
    with app.app_context():
        return sorted(db.session.execute(select(Account.name, Account.state, Account.removed.is_(None))).all()), \
            sorted(db.session.execute(select(User.username, User.state, User.account_id)).all())


def test_domain_admin_account_commands_in_and_outside_the_subtree(app, client, tree):
    sales, ops = tree["sales"], tree["ops"]
    with app.app_context():
        sam = accounts.get_user("sam")
        for name in COMMANDS:
            assert roles.allowed(sam, lookup(name)), name
        default = roles.default_role("DomainAdmin")
        rules = set(db.session.scalars(select(RolePermission.rule).where(RolePermission.role_id == default.id)))
        assert set(COMMANDS) <= rules
        assert db.session.scalar(select(AccountRole.name).where(AccountRole.id == sam.account.role_id)) \
            == "Domain Admin"
        olga_user = accounts.get_user("olga")
        olga_id, olga_user = olga_user.account.uuid, olga_user.uuid
        admin_id = accounts.get_account("admin").uuid
    sam2_id = make_account(app, client, "sam2", sales["id"], accounttype=2)["id"]

    # Outside the subtree (ops, ROOT): 531 with CloudStack's text, nothing changed.
    before = _state(app)
    refused = [
        {"command": "updateAccount", "id": olga_id, "newname": "x"},
        {"command": "updateAccount", "account": "olga", "domainid": ops["id"], "newname": "x"},
        {"command": "disableAccount", "id": olga_id, "lock": "false"},
        {"command": "enableAccount", "id": olga_id},
        {"command": "lockAccount", "account": "olga", "domainid": ops["id"]},
        {"command": "deleteAccount", "id": olga_id},
        {"command": "createUser", "username": "o2", "password": PASSWORD, "account": "olga", "email": "o@x.y",
         "firstname": "o", "lastname": "o", "domainid": ops["id"]},
        {"command": "createAccount", "username": "o3", "password": PASSWORD, "email": "o@x.y", "firstname": "o",
         "lastname": "o", "domainid": ops["id"]},
        {"command": "disableUser", "id": olga_user},
        {"command": "lockUser", "id": olga_user},
        {"command": "deleteUser", "id": olga_user},
        {"command": "updateUser", "id": olga_user, "firstname": "x"},
        {"command": "moveUser", "id": olga_user, "account": "carol"},
        {"command": "deleteAccount", "id": admin_id},
    ]
    for params in refused:
        status, body = api(app, client, "sam", **params)
        assert status == 531 and "does not have permission to operate within domain id=" in body["errortext"], \
            (params, body)
    # Another domain admin of the same domain: same role type, refused.
    status, body = api(app, client, "sam", command="disableAccount", id=sam2_id, lock="true")
    assert status == 531 and "same role type" in body["errortext"], body
    assert _state(app) == before

    # Inside: each works.
    carol = ok(api(app, client, "sam", command="updateAccount", account="carol", domainid=sales["id"],
                   newname="carola"))["account"]
    assert carol["name"] == "carola"
    assert job(app, client, "sam", command="disableAccount", id=carol["id"], lock="true")[1]["account"]["state"] \
        == "locked"
    assert ok(api(app, client, "sam", command="enableAccount", id=carol["id"]))["account"]["state"] == "enabled"
    assert ok(api(app, client, "sam", command="lockAccount", account="carola", domainid=sales["id"])
              )["account"]["state"] == "locked"
    ok(api(app, client, "sam", command="enableAccount", id=carol["id"]))
    carl = make_account(app, client, "carl", sales["id"], user="sam")
    c2 = ok(api(app, client, "sam", command="createUser", username="c2", password=PASSWORD, account="carola",
                email="c@x.y", firstname="c", lastname="c", domainid=sales["id"]))["user"]
    assert job(app, client, "sam", command="disableUser", id=c2["id"])[0] == 1
    ok(api(app, client, "sam", command="enableUser", id=c2["id"]))
    ok(api(app, client, "sam", command="lockUser", id=c2["id"]))
    ok(api(app, client, "sam", command="moveUser", id=c2["id"], account="carl"))
    with app.app_context():
        assert accounts.user_by_uuid(c2["id"]).account.name == "carl"
    ok(api(app, client, "sam", command="deleteUser", id=c2["id"]))
    assert job(app, client, "sam", command="deleteAccount", id=carl["id"])[0] == 1
    with app.app_context():
        assert db.session.scalar(select(Account.removed).where(Account.uuid == carl["id"])) is not None

"""The CLI commands other tooling depends on."""
import json

import pytest

from app.services import accounts, crypto

pytestmark = pytest.mark.db


def test_user_create_and_keys(runner, app):
    result = runner.invoke(args=["user", "create", "carol", "--password", "quiet-harbor-lamp-27"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["user", "keys", "carol"])
    assert result.exit_code == 0
    line = result.output.strip().splitlines()
    assert len(line) == 1
    keys = json.loads(line[0])
    assert set(keys) == {"apikey", "secretkey"} and len(keys["secretkey"]) >= 40
    # Same keys the second time; the secret is stored encrypted, not in clear.
    again = json.loads(runner.invoke(args=["user", "keys", "carol"]).output)
    assert again == keys
    with app.app_context():
        user = accounts.get_user("carol")
        assert keys["secretkey"] not in user.secret_key_enc
        assert crypto.decrypt(user.secret_key_enc) == keys["secretkey"]


def test_user_create_admin_in_account(runner, app):
    result = runner.invoke(args=["user", "create", "root2", "--password", "amber-kettle-sings-4",
                                 "--role", "admin", "--account", "ops"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = accounts.get_user("root2")
        assert user.is_admin and user.account.name == "ops" and user.account.is_admin


def test_user_create_refuses_bad_input(runner, app):
    assert runner.invoke(args=["user", "create", "dave", "--password", "violet-stone-river-9"]).exit_code == 0
    dup = runner.invoke(args=["user", "create", "dave", "--password", "violet-stone-river-9"])
    assert dup.exit_code != 0 and "already exists" in dup.output
    short = runner.invoke(args=["user", "create", "erin", "--password", "x"])
    assert short.exit_code != 0 and "at least 12" in short.output
    bad = runner.invoke(args=["user", "create", "bad name", "--password", "copper-meadow-fox-12"])
    assert bad.exit_code != 0
    mismatch = runner.invoke(args=["user", "create", "frank", "--password", "silent-orchid-mile-3",
                                   "--role", "admin", "--account", "dave"])
    assert mismatch.exit_code != 0 and "cannot add" in mismatch.output
    with app.app_context():
        assert accounts.get_user("erin") is None and accounts.get_user("frank") is None


def test_user_keys_unknown_user(runner, app):
    result = runner.invoke(args=["user", "keys", "nobody"])
    assert result.exit_code != 0 and "No user named nobody" in result.output


def test_bootstrap_creates_admin_once(runner, app):
    first = runner.invoke(args=["bootstrap"])
    assert first.exit_code == 0 and "password:" in first.output
    second = runner.invoke(args=["bootstrap"])
    assert second.exit_code == 0 and "password:" not in second.output


def test_bootstrap_uses_admin_password(tmp_path):
    from app import create_app
    from app.extensions import db
    app = create_app({"INSTANCE_PATH": str(tmp_path / "i2"), "ADMIN_PASSWORD": "chosen-secret-pass-42"})
    with app.app_context():
        db.create_all()
    result = app.test_cli_runner().invoke(args=["bootstrap"])
    assert result.exit_code == 0 and "password:" not in result.output
    with app.app_context():
        assert accounts.authenticate("admin", "chosen-secret-pass-42") is not None

"""Flask CLI commands: `flask --app wsgi <command>`.

The names and output of `user create` and `user keys` are an interface: other
tooling (tests, scripts) depends on them.
"""
from __future__ import annotations

import json
import sys
import time

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from app.services import accounts, bootstrap
from app.services.errors import ServiceError

user_cli = AppGroup("user", help="Manage users.")


@user_cli.command("create")
@click.argument("name")
@click.option("--password", required=True, help="The user's password (at least 12 characters, not a common one).")
@click.option("--role", type=click.Choice(["admin", "user"]), default=None,
              help="Role of a new account (default user); must match an existing account's.")
@click.option("--account", default=None, help="Account to join (created if missing; default NAME).")
def user_create(name, password, role, account):
    """Create user NAME."""
    try:
        user = accounts.create_user(name, password, role=role, account=account)
    except ServiceError as e:
        raise click.ClickException(e.message) from None
    click.echo(f"Created user {user.username} (role {user.role}) in account {user.account.name}")


@user_cli.command("keys")
@click.argument("name")
def user_keys(name):
    """Print NAME's API keys as one JSON line, creating them if the user has none."""
    user = accounts.get_user(name)
    if user is None:
        raise click.ClickException(f"No user named {name}")
    api_key, secret = accounts.ensure_keys(user)
    click.echo(json.dumps({"apikey": api_key, "secretkey": secret}))


@click.command("bootstrap")
@with_appcontext
def bootstrap_command():
    """First-start set-up (idempotent): settings, guest OS types, the admin user,
    and the demo infrastructure when NUBO_SEED_DEMO=1."""
    generated = bootstrap.run(current_app.config)
    if generated:
        # Printed once: the only time this password is shown.
        click.echo("=" * 64)
        click.echo(f"  Admin user created.  username: admin   password: {generated}")
        click.echo("  (set NUBO_ADMIN_PASSWORD to choose it; it is not shown again)")
        click.echo("=" * 64)


@click.command("monitor")
@with_appcontext
@click.option("--once", is_flag=True, help="Run one reconcile sweep and exit.")
def monitor_command(once):
    """Keep Nubo's records in step with the hypervisors."""
    from app.monitor import run
    run(once=once)


setting_cli = AppGroup("setting", help="Read and change global settings (as updateConfiguration does).")


@setting_cli.command("get")
@click.argument("name")
def setting_get(name):
    """Print the value of setting NAME."""
    from app.services import settings
    if name not in settings.DEFINITIONS:
        raise click.ClickException(f"Unknown configuration setting: {name}")
    rows = settings.list_settings(name=name)
    click.echo(rows[0].value if rows else settings.DEFINITIONS[name].default)


@setting_cli.command("set")
@click.argument("name")
@click.argument("value")
def setting_set(name, value):
    """Set setting NAME to VALUE: checked by its type and range like every other write."""
    from app.services import settings
    try:
        row = settings.update(name, value)
    except ServiceError as e:
        raise click.ClickException(e.message) from None
    click.echo(f"{row.name} = {row.value}")


def register_cli(app: Flask) -> None:
    app.cli.add_command(setting_cli)
    app.cli.add_command(user_cli)
    app.cli.add_command(bootstrap_command)
    app.cli.add_command(monitor_command)

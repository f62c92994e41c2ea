"""Lists and queries through the API write nothing, and on PostgreSQL they run without a
transaction (app/engine.py read_only: no BEGIN and no COMMIT, two round trips of a list call's
six); a write on such a request fails under tests instead of committing on its own, and on
MariaDB and SQLite (where a list keeps its transaction) it is never committed."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.api.registry import lookup
from app.api.signing import sign
from app.extensions import db
from tests.integration.test_statement_budget import Counter, call, run_queued, world  # noqa: F401  (fixture)

pytestmark = pytest.mark.db


class Isolation(Counter):
    """The isolation level each statement ran under (None: the engine's default) and its verb."""

    def _listen(self, conn, cursor, statement, *args):
        self.seen.append((conn.get_execution_options().get("isolation_level"), statement.split()[0].upper()))


def test_lists_and_queries_run_without_a_transaction_on_postgresql(app, client, world, db_url):  # noqa: F811
    body = call(client, world, "deployVirtualMachine", zoneid=world["zone"], serviceofferingid=world["so"],
                templateid=world["t"], name="ro1")
    run_queued(app, world)
    expected = "AUTOCOMMIT" if db_url.startswith("postgresql") else None
    for command, params in (("listVirtualMachines", {"pagesize": 20, "page": 1}),
                            ("queryAsyncJobResult", {"jobid": body["jobid"]}), ("listZones", {})):
        assert lookup(command).reads_only
        with Isolation(world["engine"]) as seen:
            call(client, world, command, **params)
        assert seen.seen and {level for level, _ in seen.seen} == {expected}, (command, seen.seen)
    vm_id = call(client, world, "queryAsyncJobResult", jobid=body["jobid"])["jobresult"]["virtualmachine"]["id"]
    assert not lookup("stopVirtualMachine").reads_only
    with Isolation(world["engine"]) as seen:  # a command that writes keeps its transaction
        call(client, world, "stopVirtualMachine", id=vm_id)
    assert seen.seen and {level for level, _ in seen.seen} == {None}


def test_a_write_on_a_request_that_only_reads_never_stays(app, client, world, db_url, monkeypatch):  # noqa: F811
    from app.api.commands import vms as vm_commands
    from app.models import Zone
    real = vm_commands.vm_views.list_vms

    def writes(*args, **kwargs):
        db.session.execute(sa.update(Zone).values(description="written by a list"))
        return real(*args, **kwargs)
    monkeypatch.setattr(vm_commands.vm_views, "list_vms", writes)
    key, secret = world["keys"]["alice"]
    params = {"apiKey": key, "response": "json", "command": "listVirtualMachines"}
    params["signature"] = sign(params, secret)
    resp = client.get("/client/api", query_string=params)
    if db_url.startswith("postgresql"):  # in autocommit: refused before it commits on its own
        assert resp.status_code == 530
        assert json.loads(resp.data)["listvirtualmachinesresponse"]["errorcode"] == 530
    else:  # engine.read_only is PostgreSQL's alone: the list keeps its transaction, never committed
        assert resp.status_code == 200, resp.data
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Zone).where(
            Zone.description == "written by a list")) == 0

"""The migration history, run from an empty database, gives exactly the models' schema."""
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app import create_app
from app.extensions import db
from app.models.vms import in_schema_comparison
from tests.conftest import SERVER_URLS, fresh_server_database

URLS = ["sqlite"] + SERVER_URLS


def _fresh_database(url: str, tmp_path) -> str:
    if url == "sqlite":
        return f"sqlite:///{tmp_path / 'mig.db'}"
    return fresh_server_database(url, "mig")


@pytest.mark.parametrize("url", URLS, ids=lambda u: u.split("+")[0].split(":")[0])
def test_migrations_from_empty_match_models(url, tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": _fresh_database(url, tmp_path)})
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": in_schema_comparison})
            diff = compare_metadata(context, db.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        if url.startswith("postgresql"):  # triggers are not compared: the change stream's NOTIFY
            with db.engine.connect() as conn:
                assert conn.scalar(sa.text("SELECT count(*) FROM pg_trigger WHERE tgname = 'changes_notify'")) == 1
        downgrade(revision="base")
        remaining = set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert remaining == set()
        db.engine.dispose()


@pytest.mark.parametrize("url", SERVER_URLS, ids=lambda u: u.split("+")[0].split(":")[0])
def test_several_processes_migrating_at_once(url, tmp_path):
    """Three `flask db upgrade` started together on an empty server database: one migrates
    (under the server-wide migration lock), the others wait and find nothing to do."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    db_url = fresh_server_database(url, "migpar")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "NUBO_DATABASE_URL": db_url, "NUBO_INSTANCE_PATH": str(tmp_path)}
    flask = str(Path(sys.executable).parent / "flask")
    procs = [subprocess.Popen([flask, "--app", "wsgi", "db", "upgrade"], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert sum("Running upgrade  -> 0001" in o for o in outs) == 1  # exactly one ran the history
    engine = sa.create_engine(db_url)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


# --- The data through the upgrades: quota counts --------------------------------------

GIB = 1 << 30


def _insert(conn, table: str, **values) -> int:
    """A row as the schema stands at this revision: the given values, filler for the rest."""
    import datetime
    import uuid
    t = sa.Table(table, sa.MetaData(), autoload_with=conn)
    row = {}
    for c in t.columns:
        if c.name in values or c.primary_key or c.nullable or c.server_default is not None:
            continue
        try:
            kind = c.type.python_type
        except NotImplementedError:
            kind = str
        if kind is bool:
            row[c.name] = False
        elif kind is int:
            row[c.name] = 0
        elif kind is float:
            row[c.name] = 0.0
        elif kind is datetime.datetime:
            row[c.name] = datetime.datetime(2026, 11, 1)
        else:
            row[c.name] = uuid.uuid4().hex[:min(32, getattr(c.type, "length", None) or 32)]
    row.update(values)
    return conn.execute(t.insert().values(**row)).inserted_primary_key[0]


def _vm(conn, w, account: str, name: str, *, cpus=1, memory=512, root_gib=1.0, state="Running", removed=False,
        **extra) -> int:
    import datetime
    when = datetime.datetime(2026, 11, 2) if removed else None
    vm = _insert(conn, "vm_instances", name=name, instance_name=f"i-{name}", state=state, account_id=w[account],
                 user_id=w[f"{account}_user"], zone_id=w["zone"], service_offering_id=w["so"],
                 hypervisor_type="Simulator", cpu_number=cpus, cpu_speed=1000, memory=memory, removed=when,
                 uuid=f"vm-{name}", **extra)
    _insert(conn, "volumes", name=f"ROOT-{name}", account_id=w[account], zone_id=w["zone"], vm_id=vm,
            volume_type="ROOT", size=int(root_gib * GIB), format="QCOW2",
            state="Expunged" if removed or state == "Error" else "Ready",
            removed=when or (datetime.datetime(2026, 11, 2) if state == "Error" else None), uuid=f"root-{name}")
    return vm


def _data(conn, w, account: str, name: str, gib: int, *, vm=None, removed=False, **extra) -> int:
    import datetime
    return _insert(conn, "volumes", name=name, account_id=w[account], zone_id=w["zone"], vm_id=vm,
                   volume_type="DATADISK", size=gib * GIB, format="QCOW2", state="Ready", uuid=f"data-{name}",
                   removed=datetime.datetime(2026, 11, 2) if removed else None, **extra)


def _counts(conn) -> dict:
    rows = conn.execute(sa.text("SELECT a.name, rc.resource_type, rc.count FROM resource_counts rc "
                                "JOIN accounts a ON a.id = rc.account_id")).all()
    out: dict = {}
    for account, resource, n in rows:
        out.setdefault(account, {})[resource] = int(n)
    return out


def _set_counts(conn, w, account: str, **counts) -> None:
    for resource, n in counts.items():
        _insert(conn, "resource_counts", account_id=w[account], resource_type=resource, count=n)


@pytest.mark.parametrize("url", URLS, ids=lambda u: u.split("+")[0].split(":")[0])
def test_quota_counts_through_every_upgrade(url, tmp_path):
    """Rows seeded at each revision (as that version of Nubo wrote them), the upgrade run one
    step at a time from 0001 to the head, the counts checked after each step. 0003 counts
    nothing it found (the bug: an upgraded install stopped counting its VMs, and the old
    code's ROOT resize left an account at -1,963 GiB); 0007 rebuilds every count from the
    rows, ROOT volumes included, and from then on the database refuses a negative count."""
    from sqlalchemy.exc import DBAPIError
    app = create_app({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": _fresh_database(url, tmp_path)})
    with app.app_context():
        upgrade(revision="0001")
        w: dict = {}
        with db.engine.begin() as conn:
            for account in ("alice", "bob"):
                w[account] = _insert(conn, "accounts", name=account, role="user", state="enabled",
                                     uuid=f"acct-{account}")
                w[f"{account}_user"] = _insert(conn, "users", username=account, account_id=w[account], role="user",
                                               state="enabled", uuid=f"user-{account}")
            w["zone"] = _insert(conn, "zones", name="z", uuid="zone-1")
            w["so"] = _insert(conn, "service_offerings", name="so", cpu_number=1, cpu_speed=1000, memory=512,
                              uuid="so-1")
            running = _vm(conn, w, "alice", "old-running", cpus=2, memory=1024, root_gib=2.5)
            _data(conn, w, "alice", "old-data", 5, vm=running)
            _vm(conn, w, "alice", "old-expunged", cpus=4, memory=4096, root_gib=20, state="Expunging", removed=True)
            _vm(conn, w, "alice", "old-failed", cpus=8, memory=8192, state="Error")
            _vm(conn, w, "bob", "bob-stopped", state="Stopped")
            _data(conn, w, "bob", "bob-deleted", 3, removed=True)
        upgrade(revision="0002")
        with db.engine.begin() as conn:
            _data(conn, w, "alice", "at-0002", 1)
            assert "resource_counts" not in sa.inspect(conn).get_table_names()
        upgrade(revision="0003")
        with db.engine.begin() as conn:
            assert _counts(conn) == {}  # 0003 counted nothing it found
            assert conn.execute(sa.text("SELECT count(*) FROM vm_instances WHERE quota_counted = :t"),
                                {"t": True}).scalar() == 0
            # What the code of 0003..0005 wrote: a new VM counted through its row (its ROOT volume
            # through the VM's), and bob at -1,963 GiB after a ROOT resize and an expunge.
            _vm(conn, w, "alice", "new-vm", quota_counted=True)
            _set_counts(conn, w, "alice", user_vm=1, cpu=1, memory=512, volume=1, primary_storage=1)
            _set_counts(conn, w, "bob", primary_storage=-1963)
            seeded = _counts(conn)
        upgrade(revision="0004")
        with db.engine.begin() as conn:
            assert _counts(conn) == seeded
            _vm(conn, w, "bob", "bob-0004", root_gib=1, quota_counted=True)
            conn.execute(sa.text("UPDATE resource_counts SET count = count + 1 WHERE account_id = :a"),
                         {"a": w["bob"]})  # what that deploy took (bob's other counts had no rows)
            seeded = _counts(conn)
        for revision in ("0005", "0006"):
            upgrade(revision=revision)
            with db.engine.begin() as conn:
                assert _counts(conn) == seeded
        upgrade(revision="0007")
        expected = {"alice": {"user_vm": 2, "cpu": 3, "memory": 1536, "volume": 4, "primary_storage": 10},
                    "bob": {"user_vm": 2, "cpu": 2, "memory": 1024, "volume": 2, "primary_storage": 2}}
        with db.engine.begin() as conn:
            assert _counts(conn) == expected
            counted = dict(conn.execute(sa.text("SELECT uuid, counted_gib FROM volumes WHERE quota_counted = :t"),
                                        {"t": True}).all())
            assert counted == {"root-old-running": 3, "data-old-data": 5, "data-at-0002": 1, "root-new-vm": 1,
                               "root-bob-stopped": 1, "root-bob-0004": 1}
            vms_counted = set(conn.execute(sa.text("SELECT name FROM vm_instances WHERE quota_counted = :t"),
                                           {"t": True}).scalars())
            assert vms_counted == {"old-running", "new-vm", "bob-stopped", "bob-0004"}
        # The database refuses a negative count.
        db.session.remove()  # no transaction left open: it would hold up the ALTERs below
        with pytest.raises(DBAPIError), db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE resource_counts SET count = -1 WHERE account_id = :a"), {"a": w["bob"]})
        # Down and up again: the counts come out the same (0007 is safe to run twice).
        downgrade(revision="0006")
        upgrade()
        with db.engine.begin() as conn:
            assert _counts(conn) == expected
        # The running code (at head: it also counts public IPs, networks, snapshots and secondary
        # storage) agrees with the migration.
        from app.services import quotas
        none = {"public_ip": 0, "network": 0, "snapshot": 0, "secondary_storage": 0}
        assert quotas.counted_from_rows() == {w["alice"]: {**expected["alice"], **none},
                                              w["bob"]: {**expected["bob"], **none}}
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("url", URLS, ids=lambda u: u.split("+")[0].split(":")[0])
def test_vm_details_move_into_resource_details(url, tmp_path):
    """0022: a VM's JSON details column becomes its UserVm resource_details rows (displayed)."""
    import json
    import uuid
    from datetime import datetime
    app = create_app({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": _fresh_database(url, tmp_path)})
    with app.app_context():
        upgrade(revision="0021")
        meta = sa.MetaData()
        meta.reflect(db.engine)
        filler = {sa.Integer: 1, sa.String: "x", sa.Text: "x", sa.DateTime: datetime(2026, 1, 1), sa.Boolean: False}
        with db.engine.begin() as conn:
            # the rows a VM points at, with only their required columns (no FK checks needed then)
            def row(table, **values):
                t = meta.tables[table]
                for c in t.columns:
                    if c.name not in values and not c.nullable and c.server_default is None and not c.primary_key:
                        value = next(v for k, v in filler.items() if isinstance(c.type, k))
                        values[c.name] = str(uuid.uuid4())[:8] if value == "x" else value  # unique names, uuids
                return conn.execute(t.insert().values(**values)).inserted_primary_key[0]
            fk_values = {}
            for c in meta.tables["vm_instances"].columns:
                if c.foreign_keys and not c.nullable:
                    target = next(iter(c.foreign_keys)).column.table.name
                    fk_values[c.name] = row(target)
            vm = row("vm_instances", details=json.dumps({"cpu": "fast", "rack": "r1"}), **fk_values)
            row("vm_instances", details=None, **fk_values)
        upgrade()
        with db.engine.connect() as conn:
            got = set(conn.execute(sa.text("SELECT resource_type, resource_id, name, value, display "
                                           "FROM resource_details")))
        assert got == {("UserVm", vm, "cpu", "fast", True), ("UserVm", vm, "rack", "r1", True)}
        assert "details" not in {c["name"] for c in sa.inspect(db.engine).get_columns("vm_instances")}
        db.engine.dispose()

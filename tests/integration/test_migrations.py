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

"""The migration history, run from an empty database, gives exactly the models' schema."""
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app import create_app
from app.extensions import db
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
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        downgrade(revision="base")
        remaining = set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert remaining == set()
        db.engine.dispose()

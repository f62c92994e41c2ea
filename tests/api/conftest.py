"""A live Nubo (werkzeug server thread + a real huey consumer) for the real `cs` client."""
from __future__ import annotations

import json
import shutil
import threading

import pytest
from libcloud.common.cloudstack import CloudStackConnection
from werkzeug.serving import make_server

from app import create_app
from app.extensions import db
from app.services import accounts, bootstrap, settings
from tests.helpers.users import existing_user


# Libcloud polls an async job every second (CloudStackConnection.poll_interval, which a user may
# set on driver.connection too); a Simulator job ends in well under that.
CloudStackConnection.poll_interval = 0.2


@pytest.fixture
def live(tmp_path, sqlite_template):
    instance = tmp_path / "instance"
    instance.mkdir()
    shutil.copyfile(sqlite_template, instance / "nubo.db")  # the schema, made once (tests/conftest.py)
    app = create_app({"INSTANCE_PATH": str(instance), "TESTING": True, "SEED_DEMO": False,
                      "JOBS_URL": f"sqlite:///{instance}/jobs.db", "JOBS_IMMEDIATE": False})
    with app.app_context():
        db.create_all()
        settings.clear_cache()
        bootstrap.seed_reference_data()
        settings.sync_definitions()
        existing_user("admin", "adminpass", role="admin", account="admin")
        existing_user("alice", "alicepass")
        keys = {name: accounts.ensure_keys(accounts.get_user(name)) for name in ("admin", "alice")}
    from huey.consumer import Consumer

    from app.jobs import huey, transfers, worker
    worker.set_app(app)  # the embedded consumers run jobs in this app
    # An idle huey consumer on SQLite backs off to polling every 10 s; a job then waits that long.
    consumer = Consumer(huey, workers=2, worker_type="thread", periodic=False, check_worker_health=False,
                        max_delay=0.1)
    consumer.start()
    transfer_consumer = Consumer(transfers, workers=2, worker_type="thread", periodic=False,
                                 check_worker_health=False, max_delay=0.1)  # downloads: their own queue and pool
    transfer_consumer.start()
    server = make_server("127.0.0.1", 0, app, threaded=True)  # port 0: bound here, no race
    port = server.port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    class Live:
        url = f"http://127.0.0.1:{port}/client/api"
        flask_app = app

        def client(self, user="admin", **kw):
            from cs import CloudStack
            key, secret = keys[user]
            # cs polls an async job every 2 s by default (cloudstack.ini's poll_interval); a
            # Simulator job ends in well under a second, so the tests poll faster.
            kw.setdefault("poll_interval", 0.2)
            return CloudStack(endpoint=self.url, key=key, secret=secret, **kw)

        def keys(self, user):
            return keys[user]

    yield Live()
    server.shutdown()
    consumer.stop(graceful=True)
    transfer_consumer.stop(graceful=True)
    worker.set_app(None)
    with app.app_context():
        db.engine.dispose()
    settings.clear_cache()

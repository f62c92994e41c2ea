"""The check made before every extension call (app/services/extensions/calls.py) runs inside
its caller's transaction: it must not commit the caller's pending work, and it records nothing
itself; a changed executable is refused at once and recorded by the monitor's check_paths."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Event, Extension
from app.services.extensions import calls, paths, registry

RECORDING = Path(__file__).resolve().parents[1] / "extensions" / "recording_ext.py"


@pytest.mark.db
def test_the_check_before_a_call_commits_nothing_of_the_caller(app):
    with app.app_context():
        e = registry.create(None, name="rec", type="Orchestrator", path="rec.py")
        exe = Path(paths.directory("rec")) / "rec.py"
        shutil.copy(RECORDING, exe)
        registry.list_extensions()  # the first good file's checksum recorded
        assert (e.path_ready, e.checksum) == (True, paths.sha256(str(exe)))
        warned = db.session.scalar(select(func.count()).where(Event.type == "EXTENSION.PATH"))  # at create

        e.description = "pending, never committed"  # the caller's unfinished work
        path, why = calls._usable(e)
        assert (path, why) == (str(exe), None)
        exe.write_bytes(exe.read_bytes() + b"\n# changed\n")
        path, why = calls._usable(e)
        assert path is None and "changed" in why
        db.session.rollback()  # the caller gives up: nothing of its work may have been committed
        db.session.expire_all()
        e = db.session.get(Extension, e.id)
        assert e.description is None
        assert e.path_ready is True  # the check recorded nothing
        assert db.session.scalar(select(func.count()).where(Event.type == "EXTENSION.PATH")) == warned

        assert registry.check_paths() == 1  # the monitor records it, with its event
        e = db.session.get(Extension, e.id)
        assert e.path_ready is False and "changed" in e.path_reason
        assert db.session.scalar(select(func.count()).where(Event.type == "EXTENSION.PATH")) == warned + 1
        assert registry.check_paths() == 0

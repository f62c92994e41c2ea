"""Durations as people read them (issue 18's audit: "24 h", not "86400 s")."""
from __future__ import annotations

import pytest

from app.services.units import duration


@pytest.mark.parametrize("seconds, text", [
    (None, "—"), (0, "0 s"), (0.5, "0.5 s"), (59, "59 s"), (60, "1 min"), (90, "1 min 30 s"),
    (3599, "59 min 59 s"), (3600, "1 h"), (5400, "1 h 30 min"), (86400, "24 h"), (88200, "24 h 30 min"),
    (172800, "48 h"), (176400, "2 d 1 h"), (259200, "3 d"), (7 * 86400, "7 d"),
])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_the_pages_have_the_filter(tmp_path):
    from app import create_app
    app = create_app({"INSTANCE_PATH": str(tmp_path), "TESTING": True, "SEED_DEMO": False})
    assert app.jinja_env.from_string("{{ 86400|duration }}").render() == "24 h"

"""Tests that need a system tool: skipped on a developer's machine that lacks it, a FAILURE
under CI (CI=true), where `make test` installs every tool (scripts/sysdeps.sh test) and a
missing one means the set-up is broken, not that the test may be left out.

    @pytest.fixture(autouse=True)
    def _tools():
        requires.need("nft", "ping", why="scripts/sysdeps.sh test installs nftables and iputils-ping")
"""
from __future__ import annotations

import os
import shutil

import pytest


def missing(*tools: str) -> list[str]:
    """The named tools (commands on PATH, or absolute paths) that are not here."""
    return [t for t in tools if not (os.path.exists(t) if t.startswith("/") else shutil.which(t))]


def need(*tools: str, why: str) -> None:
    gone = missing(*tools)
    if gone:
        unavailable(f"missing {', '.join(gone)} ({why})")


def unavailable(message: str) -> None:
    """Something a test needs is not installed: skip here, fail under CI."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)

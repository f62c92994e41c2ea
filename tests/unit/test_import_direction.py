"""Imports flow downwards (docs/DESIGN.md): nothing under app/services, app/jobs, app/models
or app/hypervisors imports the API or the web layer (the role checks get the command list
handed down by app/api/commands at start, roles.set_commands)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "app"
LOWER = ("services", "jobs", "models", "hypervisors")
UPPER = ("app.api", "app.web")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_lower_layers_never_import_the_api_or_the_web():
    bad = [f"{p.relative_to(ROOT.parent)}: {m}" for d in LOWER for p in sorted((ROOT / d).rglob("*.py"))
           for m in _imports(p) if m == "app.api" or m == "app.web" or m.startswith(tuple(u + "." for u in UPPER))]
    assert not bad, bad

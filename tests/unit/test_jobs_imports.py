"""DESIGN.md "Imports flow one way": the job runner sits below app/api and app/web."""
import ast
from pathlib import Path

JOBS = Path(__file__).resolve().parents[2] / "app" / "jobs"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_jobs_never_import_api_or_web():
    bad = {f"{p.name}: {m}" for p in JOBS.glob("*.py") for m in _imports(p)
           if m.split(".")[:2] in (["app", "api"], ["app", "web"])}
    assert not bad, sorted(bad)

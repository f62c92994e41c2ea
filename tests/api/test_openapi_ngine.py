"""cloudstack-openapi-ngine, unchanged, against a live Nubo: its `cloudstack-openapi` command reads Nubo's
listApis (as the admin, probing every read-only list command for its payload key, and as a user) and writes
an OpenAPI 3.2 document; openapi-spec-validator (3.2-aware) finds it valid, and the document has an
operation for every command the caller may call."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import requires

pytestmark = pytest.mark.xdist_group("live-api")

CLI = Path(sys.executable).parent / "cloudstack-openapi"


@pytest.mark.parametrize("user", ["admin", "alice"])
def test_the_document_generated_from_list_apis_validates(live, tmp_path, user):
    if not CLI.exists():
        requires.unavailable("cloudstack-openapi is not installed (requirements-test.txt pins cloudstack-openapi-ngine)")
    from openapi_spec_validator import validate
    key, secret = live.keys(user)
    env = {**os.environ, "CLOUDSTACK_ENDPOINT": live.url, "CLOUDSTACK_KEY": key, "CLOUDSTACK_SECRET": secret,
           "HOME": str(tmp_path)}  # no ~/.cloudstack.ini of the machine's
    out = tmp_path / "nubo-openapi.json"
    probe = ["--probe-response-keys"] if user == "admin" else []  # calls every list command: once is enough
    run = subprocess.run([str(CLI), *probe, "--server-url", live.url, "-o", str(out)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    document = json.loads(out.read_text())
    assert document["openapi"].startswith("3.2")
    validate(document)  # raises with the first error
    apis = live.client(user).listApis()["api"]
    text = json.dumps(document["paths"])
    assert all(a["name"] in text for a in apis)
    assert ("listStorageProviders" in text) == (user == "admin")  # a user's document has no admin command

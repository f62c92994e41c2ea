"""py-acs-sdk, unchanged, drives a VM's whole life on a Simulator zone (tests/api/acs_sdk/lifecycle.py):
zones, offerings and templates listed, deploy, stop, start, a data volume created, attached, detached and
deleted, destroy with expunge, each async job polled through the SDK. The SDK needs Python 3.12+, so it runs
in a venv of its own (.venv-acs-sdk, made once from requirements-acs-sdk.txt with the machine's Python 3.12
or newer); without such a Python the test is skipped and says so."""
from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api.test_templates_cs import files  # noqa: F401  (fixture)
from tests.api.test_vms_cs import simulator_zone
from tests.helpers import requires

pytestmark = [pytest.mark.xdist_group("live-api"), pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-acs-sdk"
REQUIREMENTS = ROOT / "requirements-acs-sdk.txt"


def _python312() -> str | None:
    """A Python 3.12 or newer: NUBO_ACS_SDK_PYTHON, else one on PATH, else pyenv's."""
    candidates = [os.environ.get("NUBO_ACS_SDK_PYTHON"), shutil.which("python3.13"), shutil.which("python3.12"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")), reverse=True)]
    for c in filter(None, candidates):
        out = subprocess.run([c, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip() == "True":
            return c
    return None


@pytest.fixture(scope="session")
def sdk_python() -> str:
    """The venv's Python with py-acs-sdk installed (made once; a lock keeps parallel workers from racing)."""
    python = VENV / "bin" / "python"
    with open(ROOT / ".venv-acs-sdk.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = VENV / "installed.txt"
        if not marker.exists() or marker.read_text() != REQUIREMENTS.read_text():
            base = _python312()
            if base is None:
                requires.unavailable("py-acs-sdk needs Python 3.12+ and none was found (set NUBO_ACS_SDK_PYTHON)")
            subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True,
                           timeout=600)
            marker.write_text(REQUIREMENTS.read_text())
    return str(python)


def test_a_vm_life_cycle_through_py_acs_sdk(live, files, tmp_path, sdk_python):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path, hosts=1)
    api.createDiskOffering(name="d5", displaytext="5 GiB", disksize=5)
    key, secret = live.keys("alice")
    run = subprocess.run([sdk_python, str(ROOT / "tests" / "api" / "acs_sdk" / "lifecycle.py"), live.url, key,
                          secret], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen == {"zone": z["name"], "deployed": "Running", "stopped": "Stopped", "started": "Running",
                    "listed": [["sdk1", "Running"]], "volume": "Allocated", "attached_to": True,
                    "volumes": ["DATADISK", "ROOT"], "detached": True, "deleted": True, "after_destroy": None}
    # What the SDK did, as Nubo lists it: no VM left, no volume left, the account's usage back to nothing.
    assert alice.listVirtualMachines() == {} and alice.listVolumes() == {}

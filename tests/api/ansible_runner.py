"""Runs the Ansible collection ngine_io.cloudstack's playbooks (tests/api/ansible/) against a live
Nubo: shared by tests/api/test_ansible_network.py and tests/api/test_ansible_breadth.py."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import requires

PLAYBOOKS = Path(__file__).parent / "ansible"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def recap(output: str) -> dict[str, int]:
    m = re.search(r"^localhost\s*:\s*(.*)$", output, re.M)
    assert m, output
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def require_ansible() -> None:
    if not ANSIBLE_PLAYBOOK.exists():
        requires.unavailable("ansible-playbook is not installed (requirements-test.txt pins `ansible`)")


class Playbooks:
    """ansible-playbook against the live server: admin credentials in CLOUDSTACK_*, the user's
    keys (user_key, user_secret), the zone's, template's and offering's names and whatever `extra`
    adds in extra vars; the collection's modules run with this venv's Python (ansible/python)."""

    def __init__(self, live, z, t, so, tmp_path, **extra):
        admin_key, admin_secret = live.keys("admin")
        user_key, user_secret = live.keys("alice")
        home = tmp_path / "ansible-home"
        self.env = {**os.environ, "CLOUDSTACK_ENDPOINT": live.url, "CLOUDSTACK_KEY": admin_key,
                    "CLOUDSTACK_SECRET": admin_secret, "CLOUDSTACK_TIMEOUT": "60", "ANSIBLE_HOME": str(home),
                    "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_DEPRECATION_WARNINGS": "0",
                    "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
                    "NUBO_ANSIBLE_PYTHON": sys.executable}
        # The modules run with this venv's Python through ansible/python, which caps the
        # collection's fixed 2 s job polling at 0.2 s (ansible/fastpoll/sitecustomize.py).
        self.extra = {"ansible_python_interpreter": str(PLAYBOOKS / "python"), "zone": z["name"], "template": t["name"],
                      "service_offering": so["name"], "user_key": user_key, "user_secret": user_secret, **extra}

    def run(self, playbook: str) -> dict[str, int]:
        cmd = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(PLAYBOOKS / playbook)]
        for k, v in self.extra.items():
            cmd += ["-e", f"{k}={v}"]
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=600)
        print(out.stdout[-20000:], out.stderr[-5000:])  # shown when the test fails
        stats = recap(out.stdout)
        assert out.returncode == 0 and stats["failed"] == 0, out.stdout[-8000:]
        return stats

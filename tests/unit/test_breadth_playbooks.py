"""Every area's Ansible task file (tests/api/ansible/breadth/*.yml) is valid YAML and a list of named
tasks, checked in a second rather than by the two-minute playbook run (one unparsable file fails the
whole breadth run for every area)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

BREADTH = Path(__file__).resolve().parents[2] / "tests" / "api" / "ansible" / "breadth"


@pytest.mark.parametrize("path", sorted(BREADTH.glob("*.yml")), ids=lambda p: p.name)
def test_a_task_file_is_a_list_of_named_tasks(path):
    tasks = yaml.safe_load(path.read_text())
    assert isinstance(tasks, list) and tasks, f"{path.name}: not a list of tasks"
    for task in tasks:
        assert isinstance(task, dict) and task.get("name"), f"{path.name}: a task without a name: {task}"

"""Every area's Ansible tasks (tests/api/ansible/breadth/*.yml, included by breadth.yml) through
the collection ngine_io.cloudstack against a live Nubo with a Simulator zone ready for guest
networks: the first run changes things and fails nothing, the second changes nothing (each module
compares what it wants with what Nubo lists). What each area checks is in its task file
(ansible.builtin.assert tasks)."""
from __future__ import annotations

import pytest

from tests.api.ansible_runner import Playbooks, require_ansible
from tests.api.test_libcloud_network import network_zone
from tests.api.test_templates_cs import files  # noqa: F401  (fixture)

pytestmark = [pytest.mark.xdist_group("live-api"), pytest.mark.timeout(900)]


def test_breadth_playbook_runs_twice_and_the_second_run_changes_nothing(live, files, tmp_path):  # noqa: F811
    require_ansible()
    z, t, so = network_zone(live.client(), files, tmp_path)
    pb = Playbooks(live, z, t, so, tmp_path, pod="P", cluster="C", files_url=files.url, work_dir=tmp_path)
    first = pb.run("breadth.yml")
    assert first["changed"] > 0, first
    second = pb.run("breadth.yml")
    assert second["changed"] == 0, second

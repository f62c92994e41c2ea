"""docs/api-coverage.md is what scripts/api_coverage.py makes from the installed clients and Nubo's command
registry today: after adding a command, run `.venv/bin/python scripts/api_coverage.py`."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "api_coverage.py"


@pytest.fixture(scope="module")
def coverage():
    spec = importlib.util.spec_from_file_location("api_coverage", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_the_report_is_up_to_date(coverage):
    assert coverage.REPORT.read_text() == coverage.build(), \
        "docs/api-coverage.md is out of date: run .venv/bin/python scripts/api_coverage.py"


def test_the_clients_commands_are_read_from_their_source(coverage):
    libcloud = coverage.libcloud_commands()
    assert {"deployVirtualMachine", "listTemplates", "queryAsyncJobResult"} <= libcloud
    ansible, _ = coverage.ansible_commands()
    # Held in a variable (cs_loadbalancer_rule_member) and passed through a helper's parameter (inventory).
    assert {"listStorageProviders", "assignToLoadBalancerRule", "removeFromLoadBalancerRule", "listVPCs"} <= ansible
    assert {"deployVirtualMachine", "enableStorageMaintenance"} <= coverage.terraform_commands()
    assert [coverage.area_of(c) for c in ("createNetwork", "listVPCs", "createTags", "listStoragePools")] == \
        ["networking", "VPC", "tags", "infrastructure"]

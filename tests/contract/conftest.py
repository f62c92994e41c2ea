"""Plugs every driver module of tests/contract/drivers/ into the `env` fixture."""
from __future__ import annotations

import importlib
import os
import pkgutil

import pytest

import tests.contract.drivers as drivers_pkg

MODULES = [importlib.import_module(f"{drivers_pkg.__name__}.{m.name}")
           for m in pkgutil.iter_modules(drivers_pkg.__path__)]


def pytest_generate_tests(metafunc):
    if "env" in metafunc.fixturenames:
        metafunc.parametrize("driver_module", MODULES, ids=[m.NAME for m in MODULES], indirect=False)


@pytest.fixture
def env(driver_module, tmp_path):
    reason = driver_module.available()
    if reason:
        # In CI every component the suite needs is installed by `make test`;
        # a missing one is a failure there, not a skip.
        if os.environ.get("CI"):
            pytest.fail(f"{driver_module.NAME} cannot run: {reason}")
        pytest.skip(f"{driver_module.NAME}: {reason}")
    with driver_module.environment(tmp_path) as e:
        yield e

"""A third-party package registers a type through the entry point: no core change."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.hypervisors import registry
from app.services import hypervisors as hv
from app.services import settings

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "nubo-test-hypervisor"


@pytest.fixture(scope="module")
def plugin_installed(tmp_path_factory):
    """pip-install the plugin into a private directory and put it on sys.path."""
    target = tmp_path_factory.mktemp("plugin")
    source = tmp_path_factory.mktemp("plugin-src") / "src"
    shutil.copytree(PLUGIN, source)  # the build leaves files behind: not in the repo
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(source)], check=True, capture_output=True)
    sys.path.insert(0, str(target))
    registry.load_plugins(force=True)
    yield
    sys.path.remove(str(target))
    registry._types.pop("Bhyve", None)


def test_plugin_type_appears_everywhere(plugin_installed, app, client, auth):
    assert registry.get("Bhyve") is not None
    with app.app_context():
        assert "bhyve" not in hv.list_hypervisors()
    auth.login("admin")
    page = client.get("/admin/hypervisors/").get_data(as_text=True)
    assert "bhyve" in page and "FreeBSD" in page
    with app.app_context():
        settings.update("hypervisor.list", "KVM,bhyve")
        assert hv.list_hypervisors() == ["KVM", "bhyve"]
        assert hv.resolve("BHYVE").name == "Bhyve"

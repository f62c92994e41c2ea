"""Hypervisor types as users see them: hypervisor.list, Custom's display name,
the Hypervisors page and the support matrix."""
import pytest

from app.hypervisors import registry
from app.services import hypervisors as hv
from app.services import settings
from app.services.errors import InvalidParameter

# On SQLite only, but for the tests marked `db` below (their queries list, filter, sort or count):
# the rest is forms, pages and access rules, the same on every database.

BUILTINS = ("KVM", "Xen", "LXC", "OpenVZ", "Hyperv", "Simulator", "Custom", "External")


def test_builtins_registered_through_entry_points():
    registry.load_plugins()
    names = [t.name for t in registry.all_types()]
    for name in BUILTINS:
        assert name in names


def test_default_list_and_resolution(app):
    with app.app_context():
        default = ["KVM", "Xen", "LXC", "OpenVZ", "Hyperv", "Simulator", "External"]  # External: CloudStack 4.21's
        assert settings.get("hypervisor.list") == default
        assert [t.name for t in hv.enabled_types()] == default
        hv.set_enabled("External", False)  # the admin's toggle: the wizards no longer offer it
        assert "External" not in [t.name for t in hv.enabled_types()]
        assert hv.resolve("kvm").name == "KVM"
        assert hv.resolve("Hyper-V").name == "Hyperv" and hv.resolve("Hyperv").name == "Hyperv"
        with pytest.raises(InvalidParameter):
            hv.resolve("VMware")


def test_unknown_entries_refused(app):
    with app.app_context():
        with pytest.raises(InvalidParameter, match="Unknown hypervisor type"):
            settings.update("hypervisor.list", "KVM,VMware")
        with pytest.raises(InvalidParameter, match="twice"):
            settings.update("hypervisor.list", "KVM,kvm")
        assert settings.get("hypervisor.list")[0] == "KVM"  # unchanged


def test_custom_rename_replaces_whole_entries_only(app):
    with app.app_context():
        settings.update("hypervisor.list", "KVM,Custom,Simulator")
        settings.update("hypervisor.custom.display.name", "VM")
        assert settings.get("hypervisor.list") == ["KVM", "VM", "Simulator"]
        # CloudStack's substring replace would also have turned "KVM" into "KFirecracker".
        settings.update("hypervisor.custom.display.name", "Firecracker")
        assert settings.get("hypervisor.list") == ["KVM", "Firecracker", "Simulator"]
        assert hv.display_name("Custom") == "Firecracker"
        assert hv.resolve("firecracker").name == "Custom"
        assert hv.list_hypervisors() == ["KVM", "Firecracker", "Simulator"]


def test_custom_name_cannot_take_another_types_name(app):
    with app.app_context():
        for bad in ("KVM", "simulator", "", "a,b"):
            with pytest.raises(InvalidParameter):
                settings.update("hypervisor.custom.display.name", bad)
        assert hv.display_name("Custom") == "Custom"


def test_custom_rename_when_not_in_list_leaves_list(app):
    with app.app_context():
        settings.update("hypervisor.custom.display.name", "Firecracker")
        assert "Firecracker" not in settings.get("hypervisor.list")
        assert settings.get("hypervisor.list") == ["KVM", "Xen", "LXC", "OpenVZ", "Hyperv", "Simulator", "External"]


@pytest.mark.db
def test_limits_rows_and_update(app):
    with app.app_context():
        kvm = hv.limits("KVM")
        assert kvm.max_guests_limit == registry.get("KVM").capabilities.max_guests_per_host
        hv.update_capabilities(kvm.uuid, max_guests_limit=7)
        assert hv.limits("KVM").max_guests_limit == 7
        with pytest.raises(InvalidParameter):
            hv.update_capabilities(kvm.uuid, max_hosts_per_cluster=0)


def test_page_lists_every_type_with_flags(client, auth):
    auth.login("admin")
    html = client.get("/admin/hypervisors/").get_data(as_text=True)
    for name in ("KVM", "Xen", "LXC", "OpenVZ", "Hyper-V", "Simulator", "Custom"):
        assert name in html
    assert "RAW" in html and "Direct download" in html and "Live migration" in html
    matrix = client.get("/admin/hypervisors/matrix").get_data(as_text=True)
    assert "Template formats" in matrix and "Console" in matrix


def test_page_toggle_and_rename(client, auth, hx, app):
    auth.login("admin")
    resp = hx.post("/admin/hypervisors/Custom/toggle")
    assert resp.status_code == 200 and "In list" in resp.get_data(as_text=True)
    resp = hx.post("/admin/hypervisors/Custom/name", data={"display_name": "Firecracker"})
    assert resp.status_code == 200 and "Firecracker" in resp.get_data(as_text=True)
    with app.app_context():
        assert settings.get("hypervisor.list")[-1] == "Firecracker"
    bad = hx.post("/admin/hypervisors/Custom/name", data={"display_name": "KVM"})
    assert bad.status_code == 422 and "already the name" in bad.get_data(as_text=True)
    page = client.get("/admin/hypervisors/").get_data(as_text=True)
    assert "Firecracker" in page


def test_page_is_admin_only(client, auth):
    auth.login("alice")
    assert client.get("/admin/hypervisors/").status_code == 403
    assert client.post("/admin/hypervisors/KVM/toggle", data={"csrf_token": auth.csrf()}).status_code == 403

"""Admin infrastructure pages of issue 18: enabling and disabling zones, pods and clusters
(CloudStack's allocationstate), the pod page, and the host page's VMs."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Event, Pod
from app.services import planner, zones
from app.services.errors import InsufficientCapacity
from tests.integration.test_infra_pages import build  # noqa: F401 - the same zone builder
from tests.integration.test_infra_pages import _engines  # noqa: F401 - autouse: the Simulator's engines


def _state(app, kind: str, uuid: str) -> str:
    with app.app_context():
        return getattr(zones, f"get_{kind}")(uuid).allocation_state


@pytest.mark.parametrize("kind", ["zone", "pod", "cluster"])
def test_disable_and_enable_from_the_page(app, client, auth, kind):
    ids = build(app, 1)
    uuid = getattr(ids, kind)
    auth.login("admin")
    page = client.get(f"/admin/{kind}s/{uuid}").get_data(as_text=True)
    assert f'action="/admin/{kind}s/{uuid}/disable"' in page and "data-confirm=" in page
    resp = client.post(f"/admin/{kind}s/{uuid}/disable", data={"csrf_token": auth.csrf()},
                       headers={"Referer": f"http://localhost/admin/{kind}s/{uuid}"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/admin/{kind}s/{uuid}")
    assert _state(app, kind, uuid) == "Disabled"
    page = client.get(f"/admin/{kind}s/{uuid}").get_data(as_text=True)
    assert "no new VMs are placed in it" in page and f'action="/admin/{kind}s/{uuid}/enable"' in page
    with app.app_context():
        ev = db.session.scalars(select(Event).where(Event.resource_id == uuid).order_by(Event.id.desc())).first()
        assert ev.type == f"{kind.upper()}.EDIT" and "Disabled" in ev.description and ev.user_id is not None
        if kind != "zone":  # a disabled zone is the users' affair (deployVirtualMachine refuses them)
            with pytest.raises(InsufficientCapacity):
                planner.plan_and_reserve(zones.get_zone(ids.zone), "Simulator", planner.Need.of(1, 500, 512))
    client.post(f"/admin/{kind}s/{uuid}/enable", data={"csrf_token": auth.csrf()})
    assert _state(app, kind, uuid) == "Enabled"


def test_enable_disable_is_admin_only_and_needs_csrf(app, client, auth):
    ids = build(app, 1)
    auth.login("admin")
    assert client.post(f"/admin/pods/{ids.pod}/disable").status_code == 400
    assert client.post("/admin/pods/no-such-pod/disable", data={"csrf_token": auth.csrf()}).status_code == 404
    auth.logout()
    auth.login("alice")
    assert client.post(f"/admin/clusters/{ids.cluster}/disable", data={"csrf_token": auth.csrf()}).status_code == 403
    assert _state(app, "pod", ids.pod) == "Enabled" and _state(app, "cluster", ids.cluster) == "Enabled"


def test_pod_page(app, client, auth):
    ids = build(app, 2)
    auth.login("admin")
    html = client.get(f"/admin/pods/{ids.pod}").get_data(as_text=True)
    assert "Pod P1" in html and "192.168.10.10 – 192.168.10.99" in html and "90 addresses" in html
    assert "C1" in html and "z1-h000" in html and "z1-h001" in html and "2 of 2" in html
    assert "0 / 32000 MHz" in html  # capacity: 2 hosts × 8 cores × 2000 MHz
    assert f'href="/admin/pods/{ids.pod}"' in client.get("/admin/pods").get_data(as_text=True)
    assert client.get("/admin/pods/nope").status_code == 404
    auth.logout()
    auth.login("alice")
    assert client.get(f"/admin/pods/{ids.pod}").status_code == 403


def test_host_page_lists_its_vms_a_page_at_a_time(app, client, auth, users, monkeypatch):
    from app.models import ServiceOffering, VirtualMachine, new_uuid
    from app.web import infra
    ids = build(app, 2)
    with app.app_context():
        from app.services import hosts
        h, other = hosts.get_host(ids.hosts[0]), hosts.get_host(ids.hosts[1])
        from app.services import accounts
        alice = accounts.get_user("alice")
        so = ServiceOffering(uuid=new_uuid(), name="s", cpu_number=1, cpu_speed=1000, memory=512)
        db.session.add(so)
        db.session.flush()
        for i, host in enumerate([h] * 5 + [other]):
            db.session.add(VirtualMachine(uuid=new_uuid(), name=f"vm-{i}", instance_name=f"i-2-{i}-VM", state="Running",
                                          account_id=alice.account_id, user_id=alice.id, zone_id=host.zone_id,
                                          host_id=host.id, last_host_id=host.id, service_offering_id=so.id,
                                          hypervisor_type="Simulator", cpu_number=1, cpu_speed=1000, memory=512))
        db.session.commit()
    monkeypatch.setattr(infra, "HOST_VMS_PAGE", 2)
    auth.login("admin")
    html = client.get(f"/admin/hosts/{ids.hosts[0]}").get_data(as_text=True)
    assert "page 1 of 3" in html and 'href="/vms/' in html and "vm-5" not in html
    first = {n for n in ("vm-0", "vm-1", "vm-2", "vm-3", "vm-4") if f">{n}<" in html}
    html = client.get(f"/admin/hosts/{ids.hosts[0]}?vmpage=3").get_data(as_text=True)
    last = {n for n in ("vm-0", "vm-1", "vm-2", "vm-3", "vm-4") if f">{n}<" in html}
    assert len(first) == 2 and len(last) == 1 and not first & last and "alice" in html

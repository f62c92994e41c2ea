"""Adding an External host from the add-host page: its external details typed as name=value
lines, kept (a secret encrypted, never shown back on the host's page)."""
from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.hypervisors import registry as hv_registry
from app.hypervisors.external.types import EXTERNAL
from app.models import ExternalDetail, Host
from app.services import zones
from app.services.extensions import details, registry

hv_registry.register(EXTERNAL)  # an installed checkout has it from its entry point already


def test_add_external_host_with_details(app, client, auth):
    with app.app_context():
        z = zones.create_zone(None, name="XW", dns1="8.8.8.8", internal_dns1="10.0.0.2")
        p = zones.create_pod(None, zone_uuid=z.uuid, name="P1", gateway="192.168.11.1", netmask="255.255.255.0",
                             start_ip="192.168.11.10", end_ip="192.168.11.99")
        e = registry.create(None, name="webext", type="Orchestrator")
        c = zones.add_cluster(None, pod_uuid=p.uuid, name="X1", hypervisor="External", extension_uuid=e.uuid)
        where = {"zone": z.uuid, "pod": p.uuid, "cluster": c.uuid}
    auth.login("admin")
    html = client.get(f"/admin/hosts/add?zone={where['zone']}&pod={where['pod']}&cluster={where['cluster']}") \
        .get_data(as_text=True)
    assert 'name="externaldetails"' in html
    bad = client.post("/admin/hosts/add", data={"csrf_token": auth.csrf(), **where, "url": "node-a",
                                                "externaldetails": "no equals sign"})
    assert bad.status_code == 422 and "name=value" in bad.get_data(as_text=True)
    resp = client.post("/admin/hosts/add", data={"csrf_token": auth.csrf(), **where, "url": "node-a",
                                                 "externaldetails": "node=pve-a\npassword=w3b-secret\n"})
    assert resp.status_code == 302
    with app.app_context():
        host = db.session.scalar(select(Host).where(Host.name == "node-a"))
        assert details.values_of("Host", host.id) == {"node": "pve-a", "password": "w3b-secret"}
        stored = {r.name: r for r in db.session.scalars(select(ExternalDetail).where(
            ExternalDetail.owner_type == "Host", ExternalDetail.owner_id == host.id))}
        assert stored["password"].secret and stored["password"].value != "w3b-secret"  # encrypted at rest
        assert "externaldetails" not in (host.details or "")
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "w3b-secret" not in page

"""The demo seed: a Simulator zone ready to deploy into, created once."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app import create_app
from app.extensions import db
from app.hypervisors.simulator import dispose_engines
from app.models import (
    Cluster, Host, ImageStore, Network, PhysicalNetwork, Pod, ServiceOffering, SimHost, SimPool, StoragePool,
    Template, TemplateStoreRef, Zone,
)
from app.services import bootstrap, demo
from app.services import hypervisors as hv

pytestmark = pytest.mark.db
SEEDED = (Zone, PhysicalNetwork, Pod, Cluster, Host, StoragePool, ImageStore, Network, Template,
          TemplateStoreRef, ServiceOffering)


@pytest.fixture(autouse=True)
def _engines():
    yield
    dispose_engines()


def counts():
    return {m.__name__: db.session.scalar(select(func.count()).select_from(m)) for m in SEEDED}


def test_seed_creates_a_ready_demo_zone(app):
    with app.app_context():
        bootstrap.run({**app.config, "SEED_DEMO": True})
        zone = db.session.scalar(select(Zone))
        assert (zone.name, zone.network_type, zone.allocation_state) == ("Demo", "Advanced", "Enabled")
        assert zone.local_storage_enabled and zone.hypervisor_type == "Simulator"
        pn = db.session.scalar(select(PhysicalNetwork))
        assert json.loads(pn.traffic_labels) == {"Simulator": "simbr0"}
        cluster = db.session.scalar(select(Cluster))
        assert cluster.hypervisor_type == "Simulator" and cluster.pod.zone_id == zone.id
        hosts = db.session.scalars(select(Host).order_by(Host.name)).all()
        assert [h.name for h in hosts] == ["demo-host-1", "demo-host-2", "demo-host-3"]
        for h in hosts:
            assert h.url.startswith(f"simulator://{h.name}?") and h.state == "Up"
            assert (h.cpu_number, h.cpu_speed, h.memory_total) == (16, 2400, 65536 << 20)
            assert h.local_storage_total == 2048 << 30 and h.cluster_id == cluster.id
        # The facts came from the driver: the simulated hosts exist and answer.
        assert sorted(db.session.scalars(select(SimHost.name))) == [h.name for h in hosts]
        drv = hv.driver_for("Simulator", hv.registry.get("Simulator").connection(hosts[0].url, {}))
        assert drv.list_vms() == []
        pools = db.session.scalars(select(StoragePool)).all()
        assert sorted(p.scope for p in pools) == ["HOST", "HOST", "HOST", "ZONE"]
        assert {p.host_id for p in pools if p.scope == "HOST"} == {h.id for h in hosts}
        assert all(p.capacity_bytes > 0 for p in pools)
        assert {p.uuid for p in pools} == set(db.session.scalars(select(SimPool.uuid)))
        assert db.session.scalar(select(ImageStore)).zone_id == zone.id
        net = db.session.scalar(select(Network))
        assert (net.cidr, net.gateway, net.is_default) == ("10.1.1.0/24", "10.1.1.1", True)
        assert net.start_ip == "10.1.1.10" and net.account_id is None
        tmpl = db.session.scalar(select(Template))
        assert (tmpl.name, tmpl.format, tmpl.hypervisor_type) == ("Demo Linux (RAW)", "RAW", "Simulator")
        ref = db.session.scalar(select(TemplateStoreRef))
        assert (ref.state, ref.zone_id, ref.download_pct) == ("DOWNLOADED", zone.id, 100)
        offerings = {o.name: (o.cpu_number, o.cpu_speed, o.memory) for o in db.session.scalars(select(ServiceOffering))}
        assert offerings == {"Small Instance": (1, 500, 512), "Medium Instance": (2, 1000, 2048)}


def test_seed_is_idempotent(app):
    with app.app_context():
        bootstrap.run({**app.config, "SEED_DEMO": True})
        first = counts()
        bootstrap.run({**app.config, "SEED_DEMO": True})
        assert demo.seed_demo() is None
        assert counts() == first and first["Host"] == 3


def test_seed_is_all_or_nothing(app, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("disk full")
    with app.app_context():
        monkeypatch.setattr(demo, "ServiceOffering", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            bootstrap.run({**app.config, "SEED_DEMO": True})
        assert all(n == 0 for n in counts().values())
        assert db.session.scalar(select(func.count()).select_from(SimPool)) == 0
        monkeypatch.undo()
        bootstrap.run({**app.config, "SEED_DEMO": True})  # the next start seeds it cleanly
        assert counts()["Host"] == 3


def test_seed_skipped_without_flag(app):
    with app.app_context():
        bootstrap.run({**app.config, "SEED_DEMO": False})
        assert all(n == 0 for n in counts().values())


def test_nubo_seed_demo_env(tmp_path, monkeypatch):
    """NUBO_SEED_DEMO=0 turns the seed off for `flask bootstrap`; the default seeds."""
    for value, zones in (("0", 0), ("1", 1)):
        monkeypatch.setenv("NUBO_SEED_DEMO", value)
        app = create_app({"INSTANCE_PATH": str(tmp_path / f"i{value}"), "ADMIN_PASSWORD": "demo-secret-pass-42"})
        with app.app_context():
            db.create_all()
        result = app.test_cli_runner().invoke(args=["bootstrap"])
        assert result.exit_code == 0, result.output
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Zone)) == zones
            db.engine.dispose()

"""/healthz, /readyz and /metrics (Prometheus text format, protected by address or token)."""
import pytest

pytestmark = pytest.mark.db


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {"database": "ok", "queue": "ok"}


def test_metrics_for_allowed_addresses_or_the_token(app, client, auth):
    auth.login("admin")
    client.get("/admin/")
    body = client.get("/metrics").get_data(as_text=True)
    assert "nubo_request_seconds_bucket" in body and 'endpoint="admin.dashboard"' in body
    for name in ("nubo_hosts", "nubo_vms", "nubo_console_sessions", "nubo_jobs_pending", "nubo_queue_depth"):
        assert f"# TYPE {name} gauge" in body
    far = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=far).status_code == 403
    with app.app_context():
        from app.services import settings
        settings.update("metrics.token", "s3cret-token")
    assert client.get("/metrics", environ_base=far, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get("/metrics", environ_base=far,
                      headers={"Authorization": "Bearer s3cret-token"}).status_code == 200

"""Layout, error pages and HTMX conventions."""


def test_html_varies_on_hx_request(client, auth):
    auth.login("admin")
    resp = client.get("/admin/")
    assert "HX-Request" in resp.headers.get("Vary", "")


def test_csrf_token_sent_with_every_htmx_request(client, auth):
    auth.login("alice")
    html = client.get("/portal/").get_data(as_text=True)
    assert "hx-headers='{\"X-CSRFToken\":" in html
    assert "/static/vendor/htmx/htmx.min.js" in html


def test_404_page(client):
    resp = client.get("/no/such/page")
    assert resp.status_code == 404 and b"There is nothing here" in resp.data


def test_500_page_hides_details(app, client):
    @app.route("/boom")
    def boom():
        raise RuntimeError("secret internals")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    resp = client.get("/boom")
    assert resp.status_code == 500
    assert b"secret internals" not in resp.data and b"went wrong" in resp.data


def test_dashboard_counts(client, auth):
    auth.login("admin")
    html = client.get("/admin/").get_data(as_text=True)
    assert "Zones" in html and "Capacity by zone" in html

"""The zone wizard through the Flask test client: each step refuses one wrong
entry with its message and keeps nothing, Back keeps what was typed, launch
builds the zone, and a launch that fails half-way leaves nothing behind."""
import json
import re
from html import unescape

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import (AsyncJob, Cluster, Host, ImageStore, JobStatus, Network, NetworkServiceProvider,
                        PhysicalNetwork, PhysicalNetworkTrafficType, Pod, PublicIpAddress, SimPool, StoragePool,
                        VlanIpRange, WizardDraft, Zone)
from app.services import simulator as sim
from tests.helpers.users import existing_user

# On every database (@pytest.mark.db): launches (what they build, what a failure leaves, the reaper)
# and drafts (stored, resumed, expired); a step's validation and who may use a draft on SQLite.

ZONE = {"name": "wz-1", "description": "wizard zone", "networktype": "Advanced", "hypervisor": "Simulator",
        "dns1": "8.8.8.8", "internaldns1": "10.0.0.2", "guestcidraddress": "10.1.1.0/24",
        "localstorageenabled": "y"}
NETWORK = {"vlan": "100-199", "trafficlabel": "cloudbr0"}
PUBLIC = {"gateway": "198.18.0.1", "netmask": "255.255.255.0", "vlan": "untagged", "startip": "198.18.0.10",
          "endip": "198.18.0.29"}
POD = {"name": "pod-1", "gateway": "192.168.10.1", "netmask": "255.255.255.0", "startip": "192.168.10.10",
       "endip": "192.168.10.99"}
CLUSTER = {"clustername": "cluster-1"}
HOST = {"url": "simulator://wz-host-1?cpus=8&cpuspeed=2000&memory=16384&localstorage=100"}
PRIMARY = {"kind": "nfs", "name": "primary-1", "server": "filer.example", "path": "/export/primary",
           "scope": "cluster"}

# (step, one wrong entry, the message it gets)
WRONG = [
    ("zone", {"dns1": "8.8.8"}, "DNS 1 must be an IPv4 address"),
    ("network", {"vlan": "100-5000"}, "not a VLAN range within 1-4094"),
    ("public", {"vlan": "150"}, "is in the guest VLAN range 100-199"),
    ("pod", {"startip": "10.9.9.9"}, "is not in the subnet 192.168.10.0/24"),
    ("cluster", {"clustername": ""}, "Cluster name is required"),
    ("host", {"url": "simulator://"}, "A Simulator host name is 1-128 letters, digits, '.', '_' or '-' (got '')"),
    ("primary", {"kind": "smb", "share": "vm", "user": "u", "password": "p"}, "Simulator hosts take NFS, Filesystem"),
    ("secondary", {"provider": "NFS", "server": "", "path": "/x"}, "needs a server and a path"),
]


START = "/admin/zones/wizard/"


class Wizard:
    """Opens the wizard (a GET that stores nothing); the first good POST of the zone
    step stores the draft, whose address (`base`) the later steps use."""

    def __init__(self, client, auth, stored=True):
        auth.login("admin")
        self.client, self.auth = client, auth
        r = client.get(START)
        assert r.status_code == 200 and 'action="/admin/zones/wizard/"' in r.get_data(as_text=True)
        self.base = None
        if stored:
            self.next("zone", ZONE)

    def post(self, step, data, action="next", hx=False):
        headers = {"HX-Request": "true"} if hx else {}
        url = f"{self.base}/{step}" if self.base else START
        r = self.client.post(url, headers=headers,
                             data={**data, "action": action, "csrf_token": self.auth.csrf(url)})
        if self.base is None and r.status_code == 302:
            self.base = r.headers["Location"].rsplit("/", 1)[0]
        return r

    def next(self, step, data):
        r = self.post(step, data)
        assert r.status_code == 302, (step, error_text(r))
        return r

    def through(self, secondary_dir, until="review"):
        steps = [("zone", ZONE), ("network", NETWORK), ("public", PUBLIC), ("pod", POD), ("cluster", CLUSTER), ("host", HOST),
                 ("primary", PRIMARY), ("secondary", {"provider": "Local", "name": "sec-1", "path": secondary_dir})]
        for step, data in steps:
            if step == "zone" and self.base:
                continue
            if step == until:
                return
            self.next(step, data)

    def launch(self):
        return self.client.post(f"{self.base}/launch", data={"csrf_token": self.auth.csrf(f"{self.base}/review")})


def error_text(r) -> str:
    html = r.get_data(as_text=True)
    return unescape(" ".join(re.findall(r'class="error"[^>]*>([^<]*)<', html) + re.findall(r'<div class="form-errors"[^>]*><p>([^<]*)', html)))


NET_MODELS = (Network, NetworkServiceProvider, PhysicalNetworkTrafficType, VlanIpRange, PublicIpAddress)


def counts(networking=False):
    return {m.__name__: db.session.scalar(select(func.count()).select_from(m))
            for m in (Zone, PhysicalNetwork, Pod, Cluster, Host, StoragePool, ImageStore)
            + (NET_MODELS if networking else ())}


def test_relative_nfs_paths_are_refused(app, client, auth):
    """"export/primary" is refused beside the path, not quietly made "/export/primary"."""
    w = Wizard(client, auth)
    for step, data in (("network", NETWORK), ("public", PUBLIC), ("pod", POD), ("cluster", CLUSTER), ("host", HOST)):
        w.next(step, data)
    r = w.post("primary", {**PRIMARY, "path": "export/primary"})
    assert r.status_code == 422 and "Give an absolute path (starting with /)" in error_text(r)
    w.next("primary", PRIMARY)
    r = w.post("secondary", {"provider": "NFS", "name": "sec", "server": "filer", "path": "export/secondary"})
    assert r.status_code == 422 and "Give an absolute path (starting with /)" in error_text(r)
    r = w.post("secondary", {"provider": "NFS", "name": "sec", "server": "filer/export", "path": "/secondary"})
    assert r.status_code == 422 and "without a path" in error_text(r)


@pytest.mark.db
def test_walk_refuse_one_wrong_entry_per_step_then_launch(app, client, auth, tmp_path):
    w = Wizard(client, auth, stored=False)
    good = {"zone": ZONE, "network": NETWORK, "public": PUBLIC, "pod": POD, "cluster": CLUSTER, "host": HOST, "primary": PRIMARY,
            "secondary": {"provider": "Local", "name": "sec-1", "path": str(tmp_path / "secondary")}}
    for step, bad, message in WRONG:
        assert message, step  # an empty expected message would match any page
        r = w.post(step, {**good[step], **bad})
        assert r.status_code == 422, step
        assert message in error_text(r), (step, error_text(r))
        with app.app_context():
            draft = db.session.scalar(select(WizardDraft))
            if step == "zone":
                assert draft is None  # a refused first step stores no draft
            else:
                assert draft.step == step  # the wrong entry moved nothing forward
        w.next(step, good[step])
    r = w.launch()
    assert r.status_code == 302 and "/admin/zones/wizard/launch/" in r.headers["Location"]
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Zone wz-1 is ready and Enabled" in page and 'hx-trigger="every 1s"' not in page  # done: no poller (the nav's alert badge has its own)
    with app.app_context():
        zone = db.session.scalar(select(Zone))
        assert zone.allocation_state == "Enabled" and zone.hypervisor_type == "Simulator"
        assert counts() == {"Zone": 1, "PhysicalNetwork": 1, "Pod": 1, "Cluster": 1, "Host": 1,
                            "StoragePool": 2, "ImageStore": 1}  # NFS pool + the host's local pool
        net = db.session.scalar(select(PhysicalNetwork))
        assert net.vlan_range == "100-199" and json.loads(net.traffic_labels) == {"Simulator": "cloudbr0"}
        assert net.isolation_method == "VLAN"
        types = {t.traffic_type: json.loads(t.labels) for t in db.session.scalars(select(PhysicalNetworkTrafficType))}
        assert types == {"Guest": {"Simulator": "cloudbr0"}, "Management": {"Simulator": "cloudbr0"},
                         "Public": {"Simulator": "cloudbr0"}}
        assert {(p.name, p.state) for p in db.session.scalars(select(NetworkServiceProvider))} == {
            ("VirtualRouter", "Enabled"), ("SecurityGroupProvider", "Enabled")}
        r = db.session.scalar(select(VlanIpRange))
        assert (r.start_ip, r.end_ip, r.vlan, r.for_virtual_network) == ("198.18.0.10", "198.18.0.29", "untagged", True)
        assert db.session.scalar(select(func.count()).select_from(PublicIpAddress).where(
            PublicIpAddress.state == "Free")) == 20
        assert db.session.scalar(select(func.count()).select_from(WizardDraft)) == 0  # secrets gone with it


@pytest.mark.db
def test_back_keeps_what_was_typed_and_htmx_swaps_in_place(app, client, auth, tmp_path):
    w = Wizard(client, auth)
    r = w.post("network", {"vlan": "300-310", "trafficlabel": "br-guest"}, action="back")
    assert r.status_code == 302 and r.headers["Location"].endswith("/zone")
    html = client.get(f"{w.base}/zone").get_data(as_text=True)
    assert 'value="wz-1"' in html
    assert 'value="300-310"' in client.get(f"{w.base}/network").get_data(as_text=True)
    r = w.post("network", NETWORK, hx=True)
    assert r.status_code == 200 and r.headers["HX-Push-Url"].endswith("/public")
    w.next("public", PUBLIC)
    assert "HX-Request" in r.headers["Vary"] and "<html" not in r.get_data(as_text=True)
    r = w.post("pod", {**POD, "gateway": "nope"}, hx=True)
    assert r.status_code == 422 and "Gateway must be an IPv4 address" in error_text(r)
    # A later step cannot be opened before the earlier ones are done.
    assert client.get(f"{w.base}/review").headers["Location"].endswith("/pod")


def test_host_test_connection_shows_facts_or_the_error(app, client, auth):
    w = Wizard(client, auth)
    for step, data in (("network", NETWORK), ("public", PUBLIC), ("pod", POD), ("cluster", CLUSTER)):
        w.next(step, data)
    token = auth.csrf(f"{w.base}/host")
    r = client.post(f"{w.base}/host/test", headers={"HX-Request": "true"}, data={**HOST, "csrf_token": token})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "16.0 GiB" in html and "8" in html
    with app.app_context():
        sim.set_host_up("wz-host-1", False)
    r = client.post(f"{w.base}/host/test", headers={"HX-Request": "true"}, data={**HOST, "csrf_token": token})
    assert "Cannot reach the host" in r.get_data(as_text=True)
    with app.app_context():
        assert counts()["Host"] == 0


@pytest.mark.db
def test_launch_whose_host_step_fails_leaves_nothing(app, client, auth, tmp_path):
    w = Wizard(client, auth)
    w.through(str(tmp_path / "secondary"))
    with app.app_context():
        sim.set_host_up("wz-host-1", False)  # passed at its step, gone at launch
    r = w.launch()
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Add the host failed" in page and "Back to the wizard" in page
    with app.app_context():
        assert set(counts(networking=True).values()) == {0}
        job = db.session.scalar(select(AsyncJob).where(AsyncJob.cmd == "launchZone"))
        assert job.status == JobStatus.FAILED
        states = [s["state"] for s in json.loads(job.steps)]
        assert states == ["undone", "undone", "undone", "undone", "undone", "failed", "pending", "pending", "pending"]
        assert db.session.scalar(select(WizardDraft)).job_uuid == job.uuid  # kept: fix and launch again
        sim.set_host_up("wz-host-1", True)
    r = w.launch()
    assert "is ready and Enabled" in client.get(r.headers["Location"]).get_data(as_text=True)


@pytest.mark.db
def test_launch_failing_after_storage_removes_the_pool_from_hosts(app, client, auth, tmp_path):
    secondary = tmp_path / "secondary"
    w = Wizard(client, auth)
    w.through(str(secondary))
    secondary.rmdir()
    secondary.write_text("a file where the directory was")
    r = w.launch()
    assert "Add secondary storage failed" in client.get(r.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert set(counts(networking=True).values()) == {0}
        assert db.session.scalar(select(func.count()).select_from(SimPool)) == 0  # undone on the host too


@pytest.mark.db
def test_reaper_undoes_a_launch_whose_worker_died(app):
    from datetime import timedelta

    from app.jobs import service as jobs
    from app.models import utcnow
    from app.services import zones
    with app.app_context():
        zone = zones.create_zone(None, name="half", dns1="8.8.8.8", internal_dns1="10.0.0.2",
                                 allocation_state="Disabled")
        steps = [{"key": "zone", "label": "Create the zone", "state": "done", "detail": "", "created": zone.uuid},
                 {"key": "network", "label": "Create the physical network", "state": "running", "detail": "",
                  "created": None}]
        job = AsyncJob(cmd="launchZone", params=json.dumps({"handler": "zone.launch", "params": {}}),
                       steps=json.dumps(steps), started=utcnow() - timedelta(hours=1),
                       heartbeat=utcnow() - timedelta(hours=1))
        db.session.add(job)
        db.session.commit()
        assert jobs.reap() == 1
        assert db.session.scalar(select(func.count()).select_from(Zone)) == 0


def test_users_and_other_admins_cannot_use_a_draft(app, client, auth):
    w = Wizard(client, auth)
    auth.logout()
    auth.login("alice")
    assert client.get(f"{w.base}/zone").status_code == 403
    assert client.get("/admin/zones/wizard/").status_code == 403
    auth.logout()
    with app.app_context():
        from app.services import accounts
        existing_user("root2", "root2pass", role="admin", account="admin")
    token = auth.csrf("/login")
    client.post("/login", data={"username": "root2", "password": "root2pass", "csrf_token": token})
    assert client.get(f"{w.base}/zone").status_code == 404


def test_missing_csrf_is_refused(app, client, auth):
    w = Wizard(client, auth)
    r = client.post(f"{w.base}/zone", data={**ZONE, "action": "next"})
    assert r.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(WizardDraft)).step == "network"
    r = client.post(START, data={**ZONE, "action": "next"})
    assert r.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WizardDraft)) == 1


def drafts(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(WizardDraft))


@pytest.mark.db
def test_get_makes_no_draft_first_post_does_and_it_can_be_resumed(app, client, auth):
    """GET /admin/zones/wizard/ (a crawler, a prefetch, a reload) stores nothing; the
    first valid POST stores one draft; every step link of it works; it can be resumed."""
    w = Wizard(client, auth, stored=False)
    for _ in range(3):
        r = client.get(START)
        assert r.status_code == 200 and "Zone name" in r.get_data(as_text=True)
    assert client.get(START, headers={"HX-Request": "true"}).status_code == 200
    assert drafts(app) == 0
    assert w.post("zone", {**ZONE, "dns1": "8.8.8"}).status_code == 422  # refused: still nothing stored
    assert drafts(app) == 0
    r = w.post("zone", ZONE, hx=True)  # htmx: the next step in place, its own address pushed
    assert r.status_code == 200 and r.headers["HX-Push-Url"].endswith("/network")
    assert drafts(app) == 1
    w.base = r.headers["HX-Push-Url"].rsplit("/", 1)[0]
    for step, data in (("network", NETWORK), ("public", PUBLIC), ("pod", POD)):
        w.next(step, data)
    html = client.get(f"{w.base}/cluster").get_data(as_text=True)
    links = re.findall(r'href="(/admin/zones/wizard/[^"]+)"', html)
    assert sorted(links) == sorted(f"{w.base}/{s}" for s in ("zone", "network", "public", "pod"))
    for link in links:
        assert client.get(link).status_code == 200
    # Resumed later (a new login): the draft's address opens where it was left.
    auth.logout()
    auth.login("admin")
    assert 'value="wz-1"' in client.get(f"{w.base}/zone").get_data(as_text=True)
    assert client.get(f"{w.base}/review").headers["Location"].endswith("/cluster")
    assert drafts(app) == 1


def test_a_step_shows_every_error_at_once(app, client, auth):
    """All the wrong fields of a step are named together, each beside its field (not one per Next)."""
    w = Wizard(client, auth, stored=False)
    r = w.post("zone", {**ZONE, "dns1": "8.8.8", "internaldns1": "nope", "guestcidraddress": "10.1.1.0/99"})
    assert r.status_code == 422
    text = error_text(r)
    assert "DNS 1 must be an IPv4 address" in text and "nope" in text and "Guest CIDR must be a CIDR" in text, text
    w.next("zone", ZONE)
    w.next("network", NETWORK)
    w.next("public", PUBLIC)
    r = w.post("pod", {**POD, "gateway": "192.168.10", "startip": "10.9.9", "endip": "x"})
    assert r.status_code == 422
    text = error_text(r)
    assert all(v in text for v in ("192.168.10", "10.9.9", "x")), text


def test_a_passing_connection_test_clears_the_error_of_an_earlier_next(app, client, auth):
    """A red error of a refused Next must not stay beside a green "Connected"."""
    w = Wizard(client, auth)
    for step, data in (("network", NETWORK), ("public", PUBLIC), ("pod", POD), ("cluster", CLUSTER)):
        w.next(step, data)
    r = w.post("host", {"url": "simulator://"})
    assert r.status_code == 422 and "A Simulator host name is" in error_text(r)
    for hx in (True, False):
        headers = {"HX-Request": "true"} if hx else {}
        r = client.post(f"{w.base}/host/test", headers=headers,
                        data={**HOST, "csrf_token": auth.csrf(f"{w.base}/host")})
        html = r.get_data(as_text=True)
        assert "✓ Connected" in html and "A Simulator host name is" not in html and error_text(r) == ""
        assert 'id="wizard"' in html  # the whole card: nothing of the earlier answer stays
    r = client.post(f"{w.base}/host/test", headers={"HX-Request": "true"},
                    data={"url": "simulator://", "csrf_token": auth.csrf(f"{w.base}/host")})
    assert "✗ Connection test failed" in r.get_data(as_text=True) or "A Simulator host name is" in error_text(r)


@pytest.mark.db
def test_drafts_are_listed_to_resume_or_delete_and_expired_ones_are_reaped(app, client, auth, users):
    """An unfinished wizard is listed on the wizard's start page with Resume and Delete; the
    monitor's reconcile_records deletes drafts untouched for two days; nobody else sees one."""
    from datetime import timedelta

    from app.models import utcnow
    from app.services import zone_wizard
    w = Wizard(client, auth)
    w.next("network", NETWORK)
    html = client.get(START).get_data(as_text=True)
    assert "Unfinished zones" in html and "wz-1" in html and "Public traffic" in html
    assert f'href="{w.base}/public"' in html  # Resume: the furthest step reached
    assert client.get(f"{w.base}/public").status_code == 200

    # Another admin neither sees nor deletes it.
    with app.app_context():
        from app.services import accounts
        from app.services.errors import NotFound
        from tests.helpers.users import existing_user
        existing_user("admin2", "admin2pass", role="admin", account="admin")
        other = accounts.get_user("admin2")
        assert zone_wizard.list_drafts(other) == []
        with pytest.raises(NotFound):
            zone_wizard.delete_draft(other, w.base.rsplit("/", 1)[1])
    # Deleted by its user (plain POST; HTMX gets HX-Redirect).
    r = client.post(f"{w.base}/delete", data={"csrf_token": auth.csrf(START)})
    assert r.status_code == 302 and r.headers["Location"] == START
    html = client.get(START).get_data(as_text=True)
    assert "Unfinished zones" not in html and "The unfinished zone was deleted." in html
    assert client.get(f"{w.base}/network").status_code == 404
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WizardDraft)) == 0
    # An expired one: not resumable, and the reaper deletes it.
    r = client.post(START, data={**ZONE, "action": "next", "csrf_token": auth.csrf(START)})
    base2 = r.headers["Location"].rsplit("/", 1)[0]
    with app.app_context():
        db.session.execute(update(WizardDraft).values(updated=utcnow() - zone_wizard.DRAFT_TTL - timedelta(minutes=1)))
        db.session.commit()
    assert "Unfinished zones" not in client.get(START).get_data(as_text=True)
    assert client.get(f"{base2}/network").status_code == 404
    with app.app_context():
        from app.monitor import reconcile_records
        reconcile_records()
        assert db.session.scalar(select(func.count()).select_from(WizardDraft)) == 0



def test_network_and_storage_steps_show_every_error_at_once(app, client, auth):
    w = Wizard(client, auth)
    r = w.post("network", {"vlan": "100-5000", "trafficlabel": "no spaces allowed"})
    text = error_text(r)
    assert r.status_code == 422 and "not a VLAN range within 1-4094" in text and "is not a valid bridge" in text, text
    for step, data in (("network", NETWORK), ("public", PUBLIC), ("pod", POD), ("cluster", CLUSTER), ("host", HOST)):
        w.next(step, data)
    r = w.post("primary", {**PRIMARY, "name": "", "path": "export/primary"})
    text = error_text(r)
    assert r.status_code == 422 and "absolute path" in text and "name" in text.lower().replace("absolute", ""), text

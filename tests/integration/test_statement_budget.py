"""The SQL statement budget of the hot paths (issue 21): a deploy (the API call and its job
apart), a VM stop and start, listVirtualMachines (pagesize 20), queryAsyncJobResult, and the
main pages (dashboard, VM list), on a Simulator zone holding a few VMs.

Each figure is pinned exactly: a change that adds statements must change its pin, in the
same commit, visibly; one that removes statements lowers it. Run on every database, with the
same pins on each (PostgreSQL's live-update NOTIFYs come from a trigger on the changes table,
not from statements of their own), but for MariaDB's job claims (MARIADB_MORE). bench/RESULTS.md
has what the statements cost."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.api.signing import sign
from app.extensions import db
from app.jobs import service as jobs, tasks
from app.services import accounts, settings
from tests.helpers.sim_zone import simulator_zone

# The pins. Lower them when a change removes statements; raise them only with a reason.
PINS = {
    # deployVirtualMachine, the API call alone: caller, params, quota, VM/volume/NIC/IP rows, job row.
    # 54 while the quota read the account's limit once per resource type (now one query: 50) and
    # every commit expired what the call had loaded: caller, zone, template, offering, networks,
    # the new VM and NIC re-read after each of its commits; vms.deploy now runs without expiry on
    # commit (jobs.not_expiring), its reads after a commit reviewed. 34 before the VM was made
    # locked for its job (no lock UPDATE, its change row and commit), the offering's domains and
    # zones were read in one query, and jobs.submit stopped re-reading the job it had just written;
    # 29 before the lock's hand-over to the job published its change from the VM in hand
    # (changes.update_row); 27 since a NIC is written with its address and the address's claim
    # in one transaction (no UPDATE of the NIC after the claim; one commit, not three); 23 since
    # the quota's five count rows go up in one executemany (quotas._add_all); 22 since a
    # transaction's changes are written in one INSERT at its commit (the job's row and the VM's
    # hand-over to it were two). 23 since a signed call reads its caller as one row
    # (app/services/callers.py), not as a User with its account: a create call reads the owning
    # Account apart (one statement more here, one less on every call that needs no account)
    "deploy.api": 23,
    # the deploy job: claim, plan, volume, start on the Simulator, events, result. 82 while
    # every commit expired the VM (re-read 11 times); 66 when its session no longer expired on
    # commit; 52 since the job is claimed then read (not read, claimed, read again), its answer is
    # serialised from the VM in hand (its row read again, not its zone, host, template, offering,
    # NICs and networks after a rollback that expired them all), its end and the finish hook's
    # alert clear take what is in hand (no re-read of the job; the clearing UPDATE only when an
    # alert is open); 38 since its start reads nothing again on networks without an offering (the
    # NIC/router step's expiry of everything skipped, the security-group and config-drive reads
    # skipped when no network has them), writes no "Finding a host" progress nor the Starting state
    # it already has, and takes the planner's hold in hand instead of re-reading the VM; 35 since
    # the hold and the unlock publish their change from the VM in hand (changes.update_row: no
    # read of the row first) and the NICs' bridge label is one query (physical.explicit_label); 31
    # since its answer asks in one statement which of the VM's tags, details, affinity groups,
    # security groups and public IPs exist, and reads only those (vm_views.extras_of; most VMs have
    # none: five queries were one); 30 since the planner's candidates statement reads the type's
    # guest limit itself (a subquery, not a query of its own); 29 since its end's two changes (the
    # VM unlocked, the job done) are one INSERT (changes: one per transaction, at its commit); 28
    # since the job is claimed and read in one UPDATE … RETURNING (jobs._claim; MariaDB: below);
    # 27 since its 40 % progress step is written with the planner's hold, in its transaction
    # (jobs.progress_with: the two changes one INSERT, and no transaction of its own)
    "deploy.job": 27,
    # stopVirtualMachine / startVirtualMachine: the API call, then its job (the calls 15 and 17
    # while jobs.submit re-read the job it had just written, 14 and 16 while the lock and its
    # hand-over read the VM's row before publishing its change; 12 and 14 while the lock was handed
    # to the job after the job's commit, which expired the VM and the job: both were read again;
    # 10 and 12 before the job's and the VM's changes were one INSERT, as the deploy's; 9 and 11
    # while the lock's commit expired the VM and the caller, which the job's submission read again:
    # vms._submit and these commands run without expiry, as the deploy)
    "stop.api": 7,
    # 45 expiring on commit, 38 before the answer in hand (as the deploy job's), 28 before the
    # security-group read skipped on networks without them, 27 before the unlock in hand, 26 before
    # the answer's extras were asked in one statement (as the deploy job's), 22 before its end's
    # changes were one INSERT (as the deploy job's), 21 before its claim returned the job
    "stop.job": 20,
    "start.api": 9,
    # 70 expiring on commit, 61 before the answer in hand, 48 before the start's changes (as the
    # deploy job's; the preferred host's tags not read when the offering asks for none), 34
    # before the hold, the unlock and the bridge label, 31 before the answer's extras in one
    # statement (as the deploy job's), 27 before its end's changes were one INSERT, 26 before its
    # claim returned the job, 25 before its progress step went with the hold (as the deploy job's)
    "start.job": 24,
    # listVirtualMachines pagesize=20 (rows, not ORM objects: app/services/vm_views.py): caller,
    # page ids, VMs, NICs. 9 while the security groups, public IPs, tags, details and affinity
    # groups were each queried for every page; now only when a VM on the page has one
    "listVirtualMachines": 4,
    # queryAsyncJobResult of a finished deploy (its result stored as JSON)
    "queryAsyncJobResult": 2,
    # the admin dashboard and the VM list page (10 while a list read whole, as the page's zone
    # filter reads the zones, was counted too: its rows are its total)
    "page /admin/": 19,
    "page /vms/": 9,
}
# MariaDB has no UPDATE … RETURNING: a job's claim is its UPDATE, then a SELECT of the job.
MARIADB_MORE = {"deploy.job": 1, "stop.job": 1, "start.job": 1}


class Counter:
    def __init__(self, engine):
        self.engine, self.seen = engine, []

    def _listen(self, conn, cursor, statement, *args):
        self.seen.append(statement)

    def __enter__(self):
        self.seen = []
        sa.event.listen(self.engine, "before_cursor_execute", self._listen)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self._listen)

    @property
    def n(self) -> int:
        return len(self.seen)


@pytest.fixture
def world(app, users, tmp_path, monkeypatch, auth):
    # The settings cache does not expire during the test (its refresh would land in one count).
    monkeypatch.setattr(settings, "CACHE_SECONDS", 3600.0)
    with app.app_context():
        admin = accounts.get_user("admin")
        w = simulator_zone(admin, tmp_path, name="bz", guest_cidr="10.9.0.0/24",
                           host_urls=["simulator://b1?cpus=32&memory=65536"])
        keys = {u: accounts.ensure_keys(accounts.get_user(u)) for u in ("admin", "alice")}
        engine = db.engine
        ids = dict(zone=w.zone.uuid, t=w.template.uuid, so=w.offering.uuid)
    # Jobs are queued, not run inside the API call, so the call and the job are counted apart.
    queued: list[int] = []
    monkeypatch.setattr(tasks, "run_job", queued.append)
    return dict(**ids, keys=keys, engine=engine, queued=queued)


def call(client, world, command, user="alice", **params):
    key, secret = world["keys"][user]
    params = {"apiKey": key, "response": "json", "command": command, **{k: str(v) for k, v in params.items()}}
    params["signature"] = sign(params, secret)
    resp = client.get("/client/api", query_string=params)
    assert resp.status_code == 200, resp.data
    return json.loads(resp.data)[f"{command.lower()}response"]


def run_queued(app, world) -> int:
    """Run the queued job as a worker would (its own app context); its statements."""
    job_id = world["queued"].pop()
    with Counter(world["engine"]) as c:
        with app.app_context():  # as the worker's task: a fresh context, its own session
            jobs.execute(job_id)
    return c.n


@pytest.mark.db
def test_statement_budget(app, client, world, auth, db_url):
    counts: dict[str, int] = {}
    eng = world["engine"]

    def deploy(name):
        with Counter(eng) as c:
            body = call(client, world, "deployVirtualMachine", zoneid=world["zone"],
                        serviceofferingid=world["so"], templateid=world["t"], name=name)
        return body, c.n, run_queued(app, world)

    deploy("warm")  # first use: settings, caches, the template's first copy to the pool
    body, counts["deploy.api"], counts["deploy.job"] = deploy("b1")
    for name in ("b2", "b3"):
        deploy(name)
    vm_id = call(client, world, "queryAsyncJobResult", jobid=body["jobid"])["jobresult"]["virtualmachine"]["id"]

    for action in ("stop", "start"):
        with Counter(eng) as c:
            call(client, world, f"{action}VirtualMachine", id=vm_id)
        counts[f"{action}.api"] = c.n
        counts[f"{action}.job"] = run_queued(app, world)

    call(client, world, "listVirtualMachines", pagesize=20, page=1)
    with Counter(eng) as c:
        listed = call(client, world, "listVirtualMachines", pagesize=20, page=1)
    assert listed["count"] == 4
    counts["listVirtualMachines"] = c.n

    with Counter(eng) as c:
        res = call(client, world, "queryAsyncJobResult", jobid=body["jobid"])
    assert res["jobstatus"] == 1
    counts["queryAsyncJobResult"] = c.n

    auth.login("admin")
    for page in ("/admin/", "/vms/"):
        client.get(page)  # warm up
        with Counter(eng) as c:
            assert client.get(page).status_code == 200
        counts[f"page {page}"] = c.n

    pins = {k: n + (MARIADB_MORE.get(k, 0) if db_url.startswith("mysql") else 0) for k, n in PINS.items()}
    assert counts == pins, "statement counts changed; update PINS (and say why): " + json.dumps(counts)

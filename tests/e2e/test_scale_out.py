"""Scale-out mode, as documented in README: PostgreSQL or MariaDB, Redis for the job
queue, two gunicorn workers, two huey consumer processes (and the transfer queue's
consumer) and the console proxy, all
real processes. An API scenario (zone, Simulator hosts, a template, 50 deploys, then
actions) runs through it with no lost or duplicated job."""
from __future__ import annotations

import os
import time

import pytest

from tests.conftest import SERVER_URLS, fresh_server_database
from tests.helpers.www import raw_image, serve

pytestmark = pytest.mark.browser
REDIS = os.environ.get("NUBO_TEST_REDIS_URL", "")


@pytest.fixture
def image_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    raw_image(root / "tiny.raw", "8M")
    with serve(root) as url:
        yield f"{url}/tiny.raw"


def _wait_jobs(api, job_ids, timeout=300):
    """Every job ends, once; returns {jobid: result}."""
    done, deadline = {}, time.monotonic() + timeout
    while len(done) < len(job_ids) and time.monotonic() < deadline:
        for j in api.listAsyncJobs(listall="true", pagesize=500, page=1).get("asyncjobs", []):
            if j["jobid"] in job_ids and j["jobstatus"] != 0:
                done[j["jobid"]] = j
        time.sleep(0.5)
    missing = set(job_ids) - set(done)
    assert not missing, f"{len(missing)} jobs never finished"
    return done


@pytest.mark.skipif(not SERVER_URLS or not REDIS, reason="needs NUBO_TEST_DATABASE_URLS and NUBO_TEST_REDIS_URL "
                    "(.ci/run sets both)")
@pytest.mark.parametrize("db", SERVER_URLS, ids=lambda u: u.split("+")[0].split(":")[0])
def test_scale_out_scenario(stack, db, image_server):
    import redis
    # A Redis database of its own per variant (xdist may run them at once), emptied first.
    queue_url = REDIS.rsplit("/", 1)[0] + ("/7" if db.startswith("postgresql") else "/8")
    redis.Redis.from_url(queue_url).flushdb()
    stack.env.update(NUBO_DATABASE_URL=fresh_server_database(db, "scale"), NUBO_JOBS_URL=queue_url,
                     NUBO_WEB_WORKERS="2", NUBO_WORKER_THREADS="4")
    stack.start(concurrency="worker=2")
    log = stack.log.read_text()
    assert "worker.2 started" in log and "web.1 started" in log and "console.1 started" in log
    assert "transfers.1 started" in log  # the template download below runs on the transfer consumer
    api = stack.api()
    z = api.createZone(name="SZ", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2",
                       guestcidraddress="10.50.0.0/24")["zone"]
    p = api.createPod(zoneid=z["id"], name="P", gateway="192.168.9.1", netmask="255.255.255.0",
                      startip="192.168.9.10", endip="192.168.9.99")["pod"]
    c = api.addCluster(zoneid=z["id"], podid=p["id"], clustername="C", hypervisor="Simulator",
                       clustertype="CloudManaged")["cluster"][0]
    for i in range(4):
        api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"],
                    url=f"simulator://so-{i}?cpus=32&cpuspeed=2000&memory=65536&localstorage=500")
    api.createStoragePool(zoneid=z["id"], clusterid=c["id"], name="nfs", url="nfs://filer/export/so")
    api.addImageStore(provider="Local", url=f"file://{stack.env['NUBO_INSTANCE_PATH']}/sec", zoneid=z["id"],
                      name="sec")
    t = api.registerTemplate(name="tiny", url=image_server, zoneid=z["id"], hypervisor="Simulator", format="RAW",
                             ispublic="true")["template"][0]
    deadline = time.monotonic() + 60
    while not api.listTemplates(templatefilter="all", id=t["id"])["template"][0].get("isready"):
        assert time.monotonic() < deadline, "template never became ready"
        time.sleep(0.5)
    so = api.createServiceOffering(name="s", displaytext="s", cpunumber=1, cpuspeed=500, memory=512)["serviceoffering"]

    t0 = time.monotonic()
    jobs = [api.deployVirtualMachine(zoneid=z["id"], templateid=t["id"], serviceofferingid=so["id"],
                                     name=f"so-vm-{i}")["jobid"] for i in range(50)]
    results = _wait_jobs(api, set(jobs))
    elapsed = time.monotonic() - t0
    failed = [r["jobresult"]["errortext"] for r in results.values() if r["jobstatus"] != 1]
    assert not failed, failed[:2]
    vms = api.listVirtualMachines(listall="true", pagesize=500, page=1)["virtualmachine"]
    assert len(vms) == 50 and {v["state"] for v in vms} == {"Running"}
    starts = api.listEvents(type="VM.START", pagesize=500, page=1)["event"]
    assert len(starts) == 50  # every deploy ran exactly once
    print(f"50 deploys through 2 web + 2 worker processes on {db.split(':')[0]} + Redis: {elapsed:.1f} s")

    # Actions on a third of them, at the same time.
    some = vms[:15]
    stops = {api.stopVirtualMachine(id=v["id"], forced="true")["jobid"] for v in some}
    assert all(r["jobstatus"] == 1 for r in _wait_jobs(api, stops).values())
    starts = {api.startVirtualMachine(id=v["id"])["jobid"] for v in some}
    assert all(r["jobstatus"] == 1 for r in _wait_jobs(api, starts).values())
    destroys = {api.destroyVirtualMachine(id=v["id"], expunge="true")["jobid"] for v in some[:5]}
    assert all(r["jobstatus"] == 1 for r in _wait_jobs(api, destroys).values())
    states = [v["state"] for v in api.listVirtualMachines(listall="true", pagesize=500, page=1)["virtualmachine"]]
    assert len(states) == 45 and set(states) == {"Running"}
    all_jobs = api.listAsyncJobs(listall="true", pagesize=500, page=1)["asyncjobs"]
    assert not [j for j in all_jobs if j["jobstatus"] == 0]  # nothing pending, nothing lost

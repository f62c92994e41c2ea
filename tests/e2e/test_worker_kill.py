"""A worker that really dies, in the real process stack:
- the job consumer running a VM start is SIGKILLed mid-job. Another consumer's reaper
  fails the job with the reason, the VM is back to what the hypervisor says (Stopped),
  and host capacity and the account's usage are back where they were before the start;
- the transfer consumer is SIGKILLed mid-download: the reaper fails the job, the copy
  is in Error with the reason, no partial file stays, and a retry downloads it."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import BIN, ROOT
from tests.helpers.www import raw_image, serve, trickling_server

pytestmark = pytest.mark.browser

HEARTBEAT_TIMEOUT = 10  # job.heartbeat.timeout's smallest value


def _consumer(stack, log, periodic: bool, queue: str = "huey") -> subprocess.Popen:
    """`huey_consumer` for the jobs queue (or "transfers"), as the Procfile runs them."""
    args = [str(BIN / "huey_consumer"), f"app.jobs.worker.{queue}", "--workers", "2", "--worker-type", "thread"]
    return subprocess.Popen(args + ([] if periodic else ["--no-periodic"]), cwd=ROOT, env=stack.env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(*procs) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _heartbeat_stale(engine, job_id: str) -> bool:
    with engine.connect() as conn:
        age = conn.execute(sa.text("SELECT (julianday('now') - julianday(heartbeat)) * 86400 "
                                   "FROM async_jobs WHERE uuid = :u"), {"u": job_id}).scalar()
    return age is not None and age > HEARTBEAT_TIMEOUT + 1


def _until(what, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(0.3)


def _usage(api, account: str) -> dict:
    a = api.listAccounts(name=account, listall="true")["account"][0]
    return {k: v for k, v in a.items() if k.endswith("total")}


def _allocated(api) -> list:
    return sorted((h["name"], h["memoryallocated"], h["cpuallocated"]) for h in api.listHosts(type="Routing")["host"])


def test_a_killed_worker_is_reaped_and_its_start_undone(stack, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    raw_image(www / "tiny.raw", "8M")
    stack.env["NUBO_WORKER_THREADS"] = "2"
    stack.start(concurrency="worker=0")  # web, transfers, monitor, console; the jobs consumers are ours
    victim = _consumer(stack, tmp_path / "victim.log", periodic=False)  # no reaper in the one we kill
    survivor = None
    engine = sa.create_engine(f"sqlite:///{stack.env['NUBO_INSTANCE_PATH']}/nubo.db")
    try:
        api = stack.api()
        api.updateConfiguration(name="job.heartbeat.timeout", value=str(HEARTBEAT_TIMEOUT))
        z = api.createZone(name="KZ", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2",
                           guestcidraddress="10.60.0.0/24")["zone"]
        p = api.createPod(zoneid=z["id"], name="P", gateway="192.168.8.1", netmask="255.255.255.0",
                          startip="192.168.8.10", endip="192.168.8.99")["pod"]
        c = api.addCluster(zoneid=z["id"], podid=p["id"], clustername="C", hypervisor="Simulator",
                           clustertype="CloudManaged")["cluster"][0]
        api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"],
                    url="simulator://kill-1?cpus=8&cpuspeed=2000&memory=16384")
        api.createStoragePool(zoneid=z["id"], clusterid=c["id"], name="nfs", url="nfs://filer/export/kill")
        api.addImageStore(provider="Local", url=f"file://{stack.env['NUBO_INSTANCE_PATH']}/sec", zoneid=z["id"],
                          name="sec")
        with serve(www) as url:
            t = api.registerTemplate(name="tiny", url=f"{url}/tiny.raw", zoneid=z["id"], hypervisor="Simulator",
                                     format="RAW", ispublic="true")["template"][0]
            _until(lambda: api.listTemplates(templatefilter="all", id=t["id"])["template"][0].get("isready"), 60,
                   "the template never became ready")
        so = api.createServiceOffering(name="s", displaytext="s", cpunumber=2, cpuspeed=1000,
                                       memory=2048)["serviceoffering"]
        vm = api.deployVirtualMachine(zoneid=z["id"], templateid=t["id"], serviceofferingid=so["id"], name="kv",
                                      startvm="false")
        _until(lambda: api.queryAsyncJobResult(jobid=vm["jobid"])["jobstatus"] == 1, 60, "deploy never ended")
        vm_id = vm["id"]
        before = {"usage": _usage(api, "admin"), "hosts": _allocated(api)}

        # Every call on the host now takes two minutes: the start reserves capacity, then hangs on the host.
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE sim_hosts SET delay_seconds = 120"))
        job_id = api.startVirtualMachine(id=vm_id)["jobid"]
        _until(lambda: _allocated(api) != before["hosts"], 60, "the start never reserved capacity")
        assert api.listVirtualMachines(id=vm_id)["virtualmachine"][0]["state"] == "Starting"

        os.killpg(victim.pid, signal.SIGKILL)  # the worker dies mid-job: no finally, no clean-up
        killed = time.monotonic()
        victim.wait()
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE sim_hosts SET delay_seconds = 0"))
        job = api.queryAsyncJobResult(jobid=job_id)
        assert job["jobstatus"] == 0  # nothing noticed yet
        _until(lambda: _heartbeat_stale(engine, job_id), HEARTBEAT_TIMEOUT + 30,
               "the dead worker's heartbeat never went stale")
        # A worker comes back (a restart, or another machine's): its reaper runs at once, then each minute.
        survivor = _consumer(stack, tmp_path / "survivor.log", periodic=True)
        job = _until(lambda: (j := api.queryAsyncJobResult(jobid=job_id))["jobstatus"] != 0 and j, 90,
                     "the reaper never failed the dead worker's job")
        reaped_after = time.monotonic() - killed
        assert job["jobstatus"] == 2 and job["jobresultcode"] == 530
        assert "the worker running this job stopped (no heartbeat)" in job["jobresult"]["errortext"]

        # Consistent again: the VM as the hypervisor has it, nothing held, nothing leaked. (The
        # reaper's clean-up commits just after the job's failure: wait for the state, not a time.)
        _until(lambda: api.listVirtualMachines(id=vm_id)["virtualmachine"][0]["state"] == "Stopped", 30,
               "the VM never went back to Stopped")
        assert _allocated(api) == before["hosts"]
        assert _usage(api, "admin") == before["usage"]
        assert not [j for j in api.listAsyncJobs(listall="true")["asyncjobs"] if j["jobstatus"] == 0]
        # ...and usable: the VM is not left locked by the dead job.
        again = api.startVirtualMachine(id=vm_id)["jobid"]
        done = _until(lambda: (j := api.queryAsyncJobResult(jobid=again))["jobstatus"] != 0 and j, 60,
                      "the start after the reap never ended")
        assert done["jobstatus"] == 1, done
        print(f"reaped {reaped_after:.1f} s after the SIGKILL (job.heartbeat.timeout {HEARTBEAT_TIMEOUT} s); "
              f"usage {before['usage']}, hosts {before['hosts']}")
        assert api.listVirtualMachines(id=vm_id)["virtualmachine"][0]["state"] == "Running"
    finally:
        _stop(victim, survivor)
        engine.dispose()


def test_a_killed_transfer_worker_is_reaped_and_its_download_can_be_retried(stack, tmp_path):
    image = raw_image(tmp_path / "image.raw", "4M").read_bytes()
    stack.start(concurrency="worker=0,transfers=0")  # web, monitor, console; both consumers are ours
    victim = _consumer(stack, tmp_path / "victim.log", periodic=False, queue="transfers")
    jobs_consumer = transfers = None
    instance = stack.env["NUBO_INSTANCE_PATH"]
    engine = sa.create_engine(f"sqlite:///{instance}/nubo.db")
    try:
        api = stack.api()
        api.updateConfiguration(name="job.heartbeat.timeout", value=str(HEARTBEAT_TIMEOUT))
        z = api.createZone(name="TZ", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2",
                           guestcidraddress="10.61.0.0/24")["zone"]
        api.addImageStore(provider="Local", url=f"file://{instance}/sec", zoneid=z["id"], name="sec")
        usage = _usage(api, "admin")
        with trickling_server(image) as (url, fast):
            t = api.registerTemplate(name="slow", url=f"{url}/image.raw", zoneid=z["id"], hypervisor="Simulator",
                                     format="RAW")["template"][0]
            with engine.connect() as conn:
                job_id = conn.execute(sa.text("SELECT uuid FROM async_jobs WHERE cmd = 'downloadTemplate'")).scalar()
            parts = lambda: list((tmp_path / "instance" / "sec").rglob("*.part"))  # noqa: E731
            _until(parts, 60, "the download never started writing")

            os.killpg(victim.pid, signal.SIGKILL)  # mid-download
            victim.wait()
            _until(lambda: _heartbeat_stale(engine, job_id), HEARTBEAT_TIMEOUT + 30,
                   "the dead worker's heartbeat never went stale")
            jobs_consumer = _consumer(stack, tmp_path / "jobs.log", periodic=True)  # its reaper runs at once
            job = _until(lambda: (j := api.queryAsyncJobResult(jobid=job_id))["jobstatus"] != 0 and j, 90,
                         "the reaper never failed the dead transfer worker's job")
            assert job["jobstatus"] == 2
            assert "the worker running this job stopped (no heartbeat)" in job["jobresult"]["errortext"]
            listed = _until(lambda: (x := api.listTemplates(templatefilter="all", id=t["id"])["template"][0])
                            ["status"].startswith("Failed") and x, 30, "the copy never went to Error")
            assert not listed.get("isready") and "retry the download" in listed["status"]
            assert parts() == []  # no partial file left on secondary storage
            assert _usage(api, "admin") == usage

            # A transfer consumer again, and the owner retries (the portal's Retry): it downloads.
            transfers = _consumer(stack, tmp_path / "transfers.log", periodic=False, queue="transfers")
            fast.set()
            s = _portal_session(stack)
            page = s.get(f"{stack.url}/templates/").text
            token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
            r = s.post(f"{stack.url}/templates/{t['id']}/retry", data={"csrf_token": token})
            assert r.status_code < 400, r.status_code
            _until(lambda: api.listTemplates(templatefilter="all", id=t["id"])["template"][0].get("isready"), 60,
                   "the retried download never finished")
        assert not [j for j in api.listAsyncJobs(listall="true")["asyncjobs"] if j["jobstatus"] == 0]
    finally:
        _stop(victim, jobs_consumer, transfers)
        engine.dispose()


def _portal_session(stack):
    import requests
    s = requests.Session()
    html = s.get(stack.url + "/login").text
    token = html.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    s.post(stack.url + "/login", data={"username": "admin", "password": "e2e-operator-pass", "csrf_token": token})
    return s

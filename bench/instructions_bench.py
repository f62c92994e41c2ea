"""Instructions per operation (issue 21), counted by valgrind's callgrind in Nubo's process: the
same code gives nearly the same count however busy the machine is (in this pass's runs, API calls
within 0.5 %, jobs within 1.5 %: time still plays a small part, as a connection idle for a second
is pinged before use, and the counted process runs twenty times slower). The CPU times of
budget_bench.py drifted by up to 2x between runs of the same code on these shared two-core
machines, so a change of a few per cent could not be told from noise; counted instructions can.
What they leave out: the database server's work and the waits for it (budget_bench.py measures
those), and the instructions' unequal costs (a cache miss costs more than an add).

The operations are budget_bench.py's, on the same world (a Simulator zone of four hosts), each
run `--n` times in a row: a signed API call through the WSGI app with its request prepared
beforehand (no test client, no HTTP server: gunicorn's part is not counted), a job as a worker
runs it (a fresh app context each), a portal page.

    PYTHONPATH=$PWD .venv/bin/python bench/instructions_bench.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432 [--n 40] [--only query,list]

Needs valgrind (Debian's package `valgrind`, with callgrind_control and callgrind_annotate;
`make setup-test` does not install it: no test uses it).
It runs itself under `valgrind --tool=callgrind --instr-atstart=no` and steers that process with
callgrind_control: counting is on only while a batch runs (zeroed before it, dumped after it).
The process is slowed about twenty-fold while counting and five-fold otherwise: a run of the
default set takes three to four minutes.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NUBO_PASSWORD_HASH", "scrypt:1024:8:1")


def child(a) -> None:
    """Under callgrind: build the world, then run each batch when the parent says go."""
    from werkzeug.test import EnvironBuilder

    from app.api.signing import sign
    from app.jobs import service as jobs, tasks
    from bench.budget_bench import simulator_world
    from bench.stack_bench import LOAD_CALLS
    from tests.conftest import csrf_token

    app, ids, key, secret = simulator_world(a.database_url, "instructions", testing=False)

    def environ(command, **params):
        p = {"apiKey": key, "response": "json", "command": command, **{k: str(v) for k, v in params.items()}}
        p["signature"] = sign(p, secret)
        return EnvironBuilder(path="/client/api", query_string=urlencode(p)).get_environ()

    def call(env) -> dict:
        env = dict(env, **{"wsgi.input": io.BytesIO(b"")})
        status = []
        body = b"".join(app(env, lambda s, headers, exc=None: status.append(s)))
        assert status[0].startswith("200"), body
        return next(iter(json.loads(body).values()))

    queued: list[int] = []
    tasks.run_job = queued.append  # jobs run apart from their calls, as a worker would

    def run_job():
        with app.app_context():
            jobs.execute(queued.pop(0))

    def deploy(name: str) -> dict:
        return call(environ("deployVirtualMachine", zoneid=ids["zone"], serviceofferingid=ids["so"],
                            templateid=ids["t"], name=name))

    n = a.n
    last = None
    for i in range(n + 1):  # VMs to act on (one to warm the actions with), a finished job to query
        last = deploy(f"w{i}")
        run_job()
    vms = [v["id"] for v in call(environ("listVirtualMachines", listall="true"))["virtualmachine"]]
    warm, vms = vms[0], vms[1:n + 1]

    def api(make_envs):
        """A batch of API calls: their requests prepared first (not counted)."""
        def prepare():
            envs = make_envs()
            return lambda: [call(e) for e in envs]
        return prepare

    def queued_jobs():
        """A batch of the jobs the batch before queued."""
        def prepare():
            k = len(queued)
            return lambda: [run_job() for _ in range(k)]
        return prepare

    names = iter(range(10**6))
    batches = [("deployVirtualMachine: API call", api(lambda: [environ(
        "deployVirtualMachine", zoneid=ids["zone"], serviceofferingid=ids["so"], templateid=ids["t"],
        name=f"d{next(names)}") for _ in range(n)])), ("deploy job", queued_jobs())]
    for action in ("stop", "start", "reboot"):
        call(environ(f"{action}VirtualMachine", id=warm))  # warm
        run_job()
        batches += [(f"{action}VirtualMachine: API call",
                     api(lambda action=action: [environ(f"{action}VirtualMachine", id=v) for v in vms])),
                    (f"{action} job", queued_jobs())]
    reads = [("listVirtualMachines pagesize=20", environ("listVirtualMachines", pagesize=20, page=1)),
             ("queryAsyncJobResult", environ("queryAsyncJobResult", jobid=last["jobid"]))]
    for command, params in LOAD_CALLS:
        label = f"{command} {' '.join(f'{k}={v}' for k, v in params.items() if k != 'listall')}".strip()
        reads.append((f"load mix: {label}", environ(command, **params)))
    for name, env in reads:
        call(env)  # warm
        batches.append((name, api(lambda env=env: [env] * n)))
    client = app.test_client()
    client.post("/login", data={"username": "admin", "password": "adminpass", "csrf_token": csrf_token(client)})
    for page in ("/admin/", "/vms/"):
        client.get(page)  # warm
        batches.append((f"page {page}", lambda page=page: lambda: [client.get(page) for _ in range(n)]))
    only = [w.strip() for w in a.only.split(",")] if a.only else None
    for name, prepare in batches:
        if only and not any(w in name for w in only):
            if "API call" in name or name.endswith(" job"):
                prepare()()  # not counted, but the next batch needs its VMs' states or its jobs
            continue
        run = prepare()
        _wait(f"ready {name}")
        run()
        _wait(f"done {name}")


def _wait(line: str) -> None:
    """Tell the parent, then wait for its answer. The wait polls: a process blocked in a read runs
    no code, and callgrind acts on callgrind_control's commands only while it runs some."""
    print(line, flush=True)
    while not select.select([sys.stdin], [], [], 0.02)[0]:
        pass
    sys.stdin.readline()


def parent(a) -> None:
    out_dir = Path(tempfile.mkdtemp(prefix="nubo-instructions-"))
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_dir}/cg.%p",
           sys.executable, __file__, "--child", "--database-url", a.database_url, "--n", str(a.n)]
    if a.only:
        cmd += ["--only", a.only]
    # One hash seed for every run: with Python's random one, dicts and sets hash and collide
    # differently in each process, and the same code's counts moved by up to 2 % run to run.
    env = {**os.environ, "PYTHONHASHSEED": str(a.hash_seed)}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            stderr=open(out_dir / "stderr.log", "w"))
    pid = str(proc.pid)

    def control(*args):
        subprocess.run(["callgrind_control", *args, pid], check=True, capture_output=True)

    rows = []
    for line in proc.stdout:
        kind, _, name = line.strip().partition(" ")
        if kind == "ready":
            control("-z")
            control("-i", "on")
        elif kind == "done":
            control("-d", "batch")
            control("-i", "off")
            dump = max(out_dir.glob(f"cg.{pid}.*"), key=lambda p: int(p.suffix[1:]))
            rows.append((name, _total(dump) / a.n))
            print(f"| {name} | {rows[-1][1] / 1e6:.2f} |", flush=True)
        else:
            continue
        proc.stdin.write("go\n")
        proc.stdin.flush()
    if proc.wait() != 0:
        sys.exit(f"the counted process failed: see {out_dir}/stderr.log")
    print(f"\n{len(rows)} operations, n={a.n} each, on {a.database_url.split(':')[0] or 'sqlite'}; "
          f"millions of instructions per operation (Nubo's process only); dumps in {out_dir}")


def _total(dump: Path) -> int:
    """The instructions of a callgrind dump, as callgrind_annotate sums them."""
    out = subprocess.run(["callgrind_annotate", str(dump)], check=True, capture_output=True, text=True).stdout
    return int(re.search(r"^\s*([\d,]+).*PROGRAM TOTALS", out, re.M)[1].replace(",", ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default="", help="a server's URL (a fresh database is made on it)")
    ap.add_argument("--n", type=int, default=40, help="runs of each operation counted")
    ap.add_argument("--only", help="comma-separated parts of operation names: only those")
    ap.add_argument("--hash-seed", type=int, default=0, help="PYTHONHASHSEED of the counted process (default 0)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    child(a) if a.child else parent(a)


if __name__ == "__main__":
    main()

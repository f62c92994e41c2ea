"""Live updates at work: how long after a VM changes behind Nubo's back (`virsh destroy` /
`virsh start` on the real local libvirtd) an open page's Server-Sent Events stream (GET /stream)
carries the news — and, with the page's re-fetch of its fragment, shows it. Target: ≤ 1 s.

The path measured is the whole one: libvirt event → the monitor's EventListener writes the
VM's state (and the change row, same transaction) → the web process's tailer reads it (woken
by NOTIFY on PostgreSQL, else its 100 ms poll) → the stream's message at an HTTP client
logged in as the admin → (then) GET of the VM page's fragment, which says Stopped/Running.

    .venv/bin/python bench/live_delay.py [--rounds 20] [--database-url URL] [--db-only]

--db-only: no libvirt: a thread sets the VM's state as the monitor does (one ORM commit)
and the delay is from that commit's start; useful where libvirtd is not at hand.
The web side is the app served by werkzeug's threaded server in this process (one web
process; the stream code is the same under gunicorn).
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamReader:
    """An SSE client: each event's name and the monotonic time its message arrived."""

    def __init__(self, session, url: str):
        self.resp = session.get(url + "/stream", stream=True, timeout=(5, 60))
        assert self.resp.status_code == 200, self.resp.status_code
        self.events: list[tuple[str, float]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.resp.iter_lines(chunk_size=1, decode_unicode=True):
            if line and line.startswith("event: "):
                with self.cond:
                    self.events.append((line[7:], time.monotonic()))
                    self.cond.notify_all()

    def wait(self, name: str, since: int, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev, at in self.events[since:]:
                    if ev == name:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"no {name} event within {timeout} s")
                self.cond.wait(left)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[max(0, int(round(len(xs) * p)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--db-only", action="store_true")
    args = ap.parse_args()
    import requests
    from werkzeug.serving import make_server

    from app import create_app
    from app.extensions import db
    from app.models import VirtualMachine
    from app.services import bootstrap, settings
    from tests.helpers.users import existing_user
    tmp = Path(tempfile.mkdtemp(prefix="nubo-livebench-"))
    os.environ.setdefault("NUBO_INSTANCE_PATH", str(tmp / "instance"))
    app = create_app({"INSTANCE_PATH": str(tmp / "instance"), "DATABASE_URL": args.database_url, "TESTING": True,
                      "SEED_DEMO": False, "JOBS_IMMEDIATE": True, "WTF_CSRF_ENABLED": True})
    suffix = "L" + uuid.uuid4().hex[:8]
    made: dict = {}
    conn = listener = None
    with app.app_context():
        db.drop_all()
        db.create_all()
        settings.sync_definitions()
        bootstrap.seed_reference_data()
        existing_user("benchadmin", "benchadminpass", role="admin", account="admin")
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        with app.app_context():
            if args.db_only:
                vm_id, vm_uuid = _db_vm()
            else:
                import libvirt

                from app.monitor.vms import EventListener
                from app.services import accounts, hosts, vms
                from tests.helpers import kvm_zone
                from tests.helpers.www import raw_image, serve
                (tmp / "www").mkdir()
                raw_image(tmp / "www" / "empty.raw", "64M", stamp=None)
                kvm_zone.ensure_bridge()
                conn = libvirt.open(kvm_zone.URI)
                with serve(tmp / "www") as www:
                    made = kvm_zone.make_zone(tmp, www, {"empty": "empty.raw"}, suffix)
                    alice = accounts.user_by_uuid(made["alice"])
                    vm, job = vms.deploy(alice, zone_uuid=made["zone"], service_offering_uuid=made["so"],
                                         template_uuid=made["empty"], name="live")
                    db.session.refresh(job)
                    assert job.status == 1, job.result
                vm = vms.get_vm(alice, vm.uuid)
                vm_id, vm_uuid, instance = vm.id, vm.uuid, vm.instance_name
                listener = EventListener(app)
                listener.sync([hosts.get_host(made["host"])])
            db.session.remove()

        http = requests.Session()
        token = re.search(r'name="csrf-token" content="([^"]+)"', http.get(url + "/login").text).group(1)
        r = http.post(url + "/login", data={"username": "benchadmin", "password": "benchadminpass",
                                            "csrf_token": token})
        assert r.ok, r.status_code
        stream = StreamReader(http, url)
        time.sleep(0.5)  # the stream is open and the tailer waits
        to_event, to_page, after_call = [], [], {"Stopped": [], "Running": []}
        for n in range(args.rounds * 2):
            want = "Stopped" if n % 2 == 0 else "Running"
            since = len(stream.events)
            t0 = time.monotonic()
            if args.db_only:
                threading.Thread(target=_set_state, args=(app, vm_id, want)).start()
            else:
                dom = conn.lookupByName(instance)
                dom.destroy() if want == "Stopped" else dom.create()
            returned = time.monotonic()
            at = stream.wait(f"vm-{vm_uuid}", since)
            to_event.append(at - t0)
            after_call[want].append(max(0.0, at - returned))
            while f">{want}<" not in http.get(f"{url}/vms/{vm_uuid}", headers={"HX-Request": "true"}).text:
                if time.monotonic() - t0 > 10:
                    raise SystemExit(f"the VM page did not say {want}")
            to_page.append(time.monotonic() - t0)
            time.sleep(0.3)
        dialect = (args.database_url or "sqlite").split("+")[0].split(":")[0]
        source = "a monitor-like ORM commit" if args.db_only else "virsh destroy / virsh start"
        print(f"{len(to_event)} changes ({source}), {dialect}, one web process, {os.cpu_count()} CPUs")
        print("| from the change to | p50 | p95 | max |\n|---|---|---|---|")
        for label, xs in (("the SSE message at the client", to_event), ("the VM page's fragment saying it", to_page)):
            print(f"| {label} | {statistics.median(xs) * 1000:.0f} ms | {pct(xs, 0.95) * 1000:.0f} ms | "
                  f"{max(xs) * 1000:.0f} ms |")
        if not args.db_only:
            for want, label in (("Stopped", "virsh destroy returned"), ("Running", "virsh start returned")):
                xs = after_call[want]
                print(f"| SSE message after {label} | {statistics.median(xs) * 1000:.0f} ms | "
                      f"{pct(xs, 0.95) * 1000:.0f} ms | {max(xs) * 1000:.0f} ms |")
    finally:
        server.shutdown()
        if listener is not None:
            listener.close()
        if made:
            from tests.helpers import kvm_zone
            kvm_zone.clean_up(made, suffix)
        if conn is not None:
            conn.close()


def _db_vm() -> tuple[int, str]:
    from app.extensions import db
    from app.models import ServiceOffering, VirtualMachine, new_uuid
    from app.services import zones
    from tests.helpers.users import existing_user
    alice = existing_user("alice", "alicepass1")
    z = zones.create_zone(None, name="bz", dns1="8.8.8.8", internal_dns1="10.0.0.2")
    so = ServiceOffering(uuid=new_uuid(), name="s", cpu_number=1, cpu_speed=1000, memory=512)
    db.session.add(so)
    db.session.flush()
    vm = VirtualMachine(uuid=new_uuid(), name="live", instance_name="i-live", state="Running",
                        account_id=alice.account_id, user_id=alice.id, zone_id=z.id, service_offering_id=so.id,
                        hypervisor_type="Simulator", cpu_number=1, cpu_speed=1000, memory=512)
    db.session.add(vm)
    db.session.commit()
    return vm.id, vm.uuid


def _set_state(app, vm_id: int, state: str) -> None:
    from app.extensions import db
    from app.models import VirtualMachine
    with app.app_context():
        db.session.get(VirtualMachine, vm_id).state = state
        db.session.commit()


if __name__ == "__main__":
    main()

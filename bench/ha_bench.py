"""VM HA on the lab's two real libvirt hosts: the time from a host's failure (`scripts/lab.sh
fail`, a power cut) to its HA VMs Running again on the other host.

Makes a lab of its own (NUBO_LAB_ID, default 60; removed at the end), a fresh SQLite Nubo with
both hosts in one KVM cluster, the lab's shared primary storage and the ACPI test guest as a
template (tests/guests/acpi_guest.py, QEMU emulation), deploys --vms HA VMs (128 MiB) on one
host, then --runs times: fail the host that runs them, run the monitor's sweeps (the real
app.monitor.sweep, at ping.interval) until every HA VM is Running on the other host, recover
the failed host and sweep until it is Up with its stale copies gone. Measured: seconds from the
fail to the host judged Down, and to the last HA VM Running (the start job runs in-process).

    .venv/bin/python bench/ha_bench.py
    options: --vms 2 --runs 3 --ping-interval 1 --ping-timeout 2 --heartbeat-timeout 6 --lab-id 60
Needs root and what scripts/sysdeps.sh test installs. The lab's heartbeat writers beat every
2 s (NUBO_LAB_HEARTBEAT_INTERVAL).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vms", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ping-interval", default="1")
    ap.add_argument("--ping-timeout", default="2")
    ap.add_argument("--heartbeat-timeout", default="6")
    ap.add_argument("--lab-id", type=int, default=60)
    args = ap.parse_args()
    lab_sh = str(ROOT / "scripts" / "lab.sh")
    env = {**os.environ, "NUBO_LAB_ID": str(args.lab_id)}
    env.pop("NUBO_LAB_DIR", None)
    os.environ["NUBO_LAB_ID"] = str(args.lab_id)
    subprocess.run([lab_sh, "down"], env=env, capture_output=True, timeout=120)
    subprocess.run([lab_sh, "up", "2"], env=env, check=True, capture_output=True, timeout=300)
    try:
        run(args)
    finally:
        subprocess.run([lab_sh, "down"], env=env, capture_output=True, timeout=120)


def run(args) -> None:
    from bench.list_bench import fresh_app
    from tests.guests import acpi_guest
    from tests.helpers.www import serve
    from tests.lab.conftest import Lab
    lab = Lab(args.lab_id)
    work = Path(tempfile.mkdtemp(prefix="nubo-ha-bench-"))
    image = acpi_guest.build(work / "guest")
    www_root = work / "www"
    www_root.mkdir()
    (www_root / "acpi.raw").symlink_to(image)
    app = fresh_app("")
    with serve(www_root) as www, app.app_context():
        from app.extensions import db
        from sqlalchemy import select

        from app.models import Event, Host, ServiceOffering, VirtualMachine, new_uuid, utcnow
        from app.monitor import sweep
        from app.services import accounts, hosts, settings, storage, templates, vms, zones
        from app.services.network import networks
        admin = accounts.create_user("root", "Kx-admin-secret-7", role="admin", account="admin")
        z = zones.create_zone(admin, name="ha", network_type="Basic", dns1="198.18.0.53",
                              internal_dns1="198.18.0.53", guest_cidr="10.79.0.0/24")
        zones.create_physical_network(admin, z, vlan_range=None, traffic_labels={"KVM": lab.traffic_label})
        networks.ensure_default_network(admin, z)
        p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                             start_ip="10.0.0.10")
        c = zones.add_cluster(admin, pod_uuid=p.uuid, name="c", hypervisor="KVM")
        ids = {h.name: hosts.add_host(admin, cluster_uuid=c.uuid, url=h.uri, fields=lab.host_fields(h)).id
               for h in lab.hosts}
        storage.create_storage_pool(admin, zone_uuid=z.uuid, cluster_uuid=c.uuid, name="lab-primary",
                                    url=lab.storage_url)
        storage.add_image_store(admin, provider="Local", url=f"file://{work}/secondary", zone_uuid=z.uuid)
        tpl = templates.register(admin, url=f"{www}/acpi.raw", name="acpi", hypervisor="KVM", format="RAW",
                                 zone_uuid=z.uuid, is_public=True)
        so = ServiceOffering(uuid=new_uuid(), name="ha", cpu_number=1, cpu_speed=500, memory=128, offer_ha=True)
        db.session.add(so)
        db.session.commit()
        settings.update("ping.interval", args.ping_interval)
        settings.update("ping.timeout", args.ping_timeout)
        settings.update("ha.heartbeat.timeout", args.heartbeat_timeout)
        vm_ids = []
        for i in range(args.vms):
            vm, job = vms.deploy(admin, zone_uuid=z.uuid, service_offering_uuid=so.uuid, template_uuid=tpl.uuid,
                                 host_uuid=db.session.get(Host, ids["lab1"]).uuid, name=f"ha{i}")
            db.session.refresh(job)
            assert job.status == 1, job.result
            vm_ids.append(vm.id)
        interval = settings.get("ping.interval")
        print(f"load average before: {os.getloadavg()[0]:.1f}; {args.vms} HA VMs on lab1; ping.interval {interval} s, ping.timeout {settings.get('ping.timeout')}, "
              f"ha.heartbeat.timeout {settings.get('ha.heartbeat.timeout')} s")
        downs, ups = [], []
        failing, other = "lab1", "lab2"
        for n in range(1, args.runs + 1):
            sweep()
            failed_wall = utcnow()
            lab.fail(failing)
            t0 = time.monotonic()
            while True:
                sweep()
                db.session.expire_all()
                placed = [db.session.get(VirtualMachine, i) for i in vm_ids]
                if all(v.state == "Running" and v.host_id == ids[other] for v in placed):
                    break
                if time.monotonic() - t0 > 600:
                    raise SystemExit(f"run {n}: the HA VMs are not Running on {other} after 600 s")
                time.sleep(interval)
            took = time.monotonic() - t0
            down_event = db.session.scalar(select(Event.created).where(
                Event.type == "HOST.STATE", Event.resource_id == db.session.get(Host, ids[failing]).uuid,
                Event.description.like("% is Down%"), Event.created >= failed_wall).order_by(Event.id))
            down_at = (down_event - failed_wall).total_seconds()
            downs.append(down_at)
            ups.append(took)
            print(f"run {n}: {failing} failed → Down after {down_at:.1f} s, {args.vms} HA VMs Running on {other} "
                  f"after {took:.1f} s")
            lab.recover(failing)
            deadline = time.monotonic() + 300
            while db.session.get(Host, ids[failing]).state != "Up" or _copies_left(lab, failing, vm_ids):
                if time.monotonic() > deadline:
                    raise SystemExit(f"run {n}: {failing} not back clean after 300 s")
                sweep()
                db.session.expire_all()
                time.sleep(interval)
            failing, other = other, failing
        print(f"median: Down after {statistics.median(downs):.1f} s, HA VMs Running after "
              f"{statistics.median(ups):.1f} s (min {min(ups):.1f}, max {max(ups):.1f}) over {args.runs} runs")


def _copies_left(lab, host: str, vm_ids: list[int]) -> bool:
    import libvirt

    from app.extensions import db
    from app.models import VirtualMachine
    names = [db.session.get(VirtualMachine, i).instance_name for i in vm_ids]
    with lab.connect(host) as conn:
        for name in names:
            try:
                conn.lookupByName(name)
                return True
            except libvirt.libvirtError:
                continue
    return False


if __name__ == "__main__":
    main()

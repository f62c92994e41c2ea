"""The Simulator driver on a real database: URL parsing, state shared between
driver instances and processes, transitions, migration rules, storage
bookkeeping and every kind of fault injection."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import event

from app.hypervisors import registry
from app.hypervisors.base import (
    ConsoleSpec, DiskSpec, DriverContext, HostUnreachable, OperationFailed, PowerState, StoragePoolSpec, VMNotFound, VMSpec,
    VolumeSpec,
)
from app.hypervisors.simulator import SIMULATOR, InvalidHostUrl, dispose_engines, engine_for, parse_url
from app.services import simulator as sim
from app.services.errors import InvalidParameter, NotFound

GIB = 1 << 30


@pytest.fixture(autouse=True)
def _engines():
    yield
    dispose_engines()


@pytest.fixture
def db_uri(app):
    return app.config["SQLALCHEMY_DATABASE_URI"]


@pytest.fixture
def host(db_uri):
    """A driver factory: host("h1", cpus=4) -> a checked Simulator driver."""
    def make(name, **params):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"simulator://{name}" + (f"?{query}" if query else "")
        drv = SIMULATOR.make_driver(SIMULATOR.connection(url, {}), DriverContext(database_url=db_uri))
        drv.check_host()
        return drv
    return make


class FakeClock:
    """The time module as the Simulator driver sees it: sleep() moves the clock on
    at once, so a test measures what the driver waited, not how busy the machine is."""

    def __init__(self):
        self.now = time.time()
        self.during_sleep = None  # called once, inside the next sleep: "while it lasts"

    def time(self) -> float:
        return self.now

    monotonic = time

    def sleep(self, seconds: float) -> None:
        if self.during_sleep:
            look, self.during_sleep = self.during_sleep, None
            look()
        self.now += max(0.0, seconds)

    def __getattr__(self, name):
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch):
    from app.hypervisors import simulator as driver_module
    fake = FakeClock()
    monkeypatch.setattr(driver_module, "time", fake)
    return fake


def spec(name, cpus=1, memory=512, **kw) -> VMSpec:
    return VMSpec(name=name, uuid=f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}", cpus=cpus,
                  cpu_mhz=1000, memory_mib=memory, **kw)


# --- URL ---------------------------------------------------------------------

def test_url_defaults_and_values():
    assert parse_url("simulator://sim-1") == parse_url("simulator://sim-1/?")
    s = parse_url("simulator://sim-1")
    assert (s.name, s.cpus, s.cpu_speed, s.memory_mib, s.local_storage_gib) == ("sim-1", 16, 2400, 65536, 2048)
    s = parse_url("SIMULATOR://Rack2.h_7/?cpus=4&cpuspeed=3000&memory=8192&localstorage=100")
    assert (s.name, s.cpus, s.cpu_speed, s.memory_mib, s.local_storage_gib) == ("Rack2.h_7", 4, 3000, 8192, 100)


@pytest.mark.parametrize("url, message", [
    ("kvm://h", "starts with simulator://"),
    ("simulator://", "host name"),
    ("simulator://bad name", "host name"),
    ("simulator://h/extra", "Unexpected path"),
    ("simulator://h?cpus=0", "between 1 and"),
    ("simulator://h?memory=lots", "whole number of MiB"),
    ("simulator://h?cpus=2&cpus=4", "given twice"),
    ("simulator://h?disks=4", "Unknown Simulator host parameter 'disks'"),
    ("simulator://h?cpus", "Cannot read the parameters"),
    ("simulator://h?cpus=", "whole number"),
])
def test_url_errors(url, message):
    with pytest.raises(InvalidHostUrl, match=message):
        parse_url(url)


def test_type_declaration():
    registry.load_plugins()
    t = registry.get("simulator")
    assert t is SIMULATOR or t.name == "Simulator"
    c = SIMULATOR.capabilities
    assert {"RAW", "QCOW2"} <= set(c.template_formats) and c.direct_download and c.local_storage
    assert {"NFS", "Filesystem"} <= set(c.storage_kinds) and c.live_migration and c.scale_stopped_vm
    assert c.console == "vnc" and not c.lifecycle_events and c.iso and c.config_drive
    field = SIMULATOR.host_fields[0]
    assert field.name == "url" and field.validate("simulator://x") is None
    assert "between" in field.validate("simulator://x?cpus=-1")
    assert SIMULATOR.connection(" simulator://x?cpus=2 ", {}).address == "x"


@pytest.mark.db
def test_check_host_creates_then_refreshes(app, host):
    facts = host("h1", cpus=8, cpuspeed=2000, memory=16384, localstorage=100).check_host()
    assert (facts.hypervisor, facts.cpu_cores, facts.cpu_mhz) == ("Simulator", 8, 2000)
    assert facts.memory_bytes == 16384 << 20 and facts.local_storage_bytes == 100 * GIB
    assert facts.local_storage_path == "/var/lib/nubo/simulator/h1"
    facts = host("h1", cpus=32).check_host()  # the URL is the truth: capacity refreshed
    assert facts.cpu_cores == 32 and facts.memory_bytes == 65536 << 20
    with app.app_context():
        assert sim.get_host("h1").cpus == 32


@pytest.mark.db
def test_unknown_host_and_missing_database(db_uri):
    drv = SIMULATOR.make_driver(SIMULATOR.connection("simulator://ghost", {}), DriverContext(database_url=db_uri))
    with pytest.raises(HostUnreachable, match="does not exist"):
        drv.list_vms()
    with pytest.raises(HostUnreachable):
        drv.start_vm(spec("i-1"))
    nodb = SIMULATOR.make_driver(SIMULATOR.connection("simulator://x", {}), DriverContext())
    with pytest.raises(OperationFailed, match="database"):
        nodb.check_host()


# --- shared state --------------------------------------------------------------

@pytest.mark.db
def test_state_shared_between_instances_and_processes(host, db_uri):
    a = host("shared-1")
    a.start_vm(spec("i-2-10-VM", cpus=2, memory=1024))
    # Another driver instance, another engine: the same hypervisor.
    b = SIMULATOR.make_driver(SIMULATOR.connection("simulator://shared-1", {}), DriverContext(database_url=db_uri))
    assert [(v.name, v.state) for v in b.list_vms()] == [("i-2-10-VM", PowerState.RUNNING)]
    # A separate process reads what this one wrote, and writes what this one reads.
    code = textwrap.dedent(f"""
        import json
        from app.hypervisors.base import DriverContext
        from app.hypervisors.simulator import SIMULATOR
        d = SIMULATOR.make_driver(SIMULATOR.connection("simulator://shared-1", {{}}),
                                  DriverContext(database_url={db_uri!r}))
        seen = [(v.name, v.state.value, v.cpus) for v in d.list_vms()]
        d.force_stop_vm("i-2-10-VM")
        print(json.dumps(seen))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [["i-2-10-VM", "running", 2]]
    assert a.vm_info("i-2-10-VM").state == PowerState.STOPPED


@contextlib.contextmanager
def _statements(db_uri):
    """The SQL the Simulator's engine runs inside the block."""
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    eng = engine_for(db_uri)
    event.listen(eng, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        event.remove(eng, "before_cursor_execute", listener)


@pytest.mark.db
def test_list_vms_is_one_query(host, db_uri):
    drv = host("q-1")
    for i in range(5):
        drv.start_vm(spec(f"i-{i}"))
    with _statements(db_uri) as statements:
        vms = drv.list_vms()
    assert len(vms) == 5 and len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


@pytest.mark.db
def test_snapshot_reads_answer_the_sweep_from_one_query(app, host, db_uri):
    """The monitor asks host_stats, list_vms and vm_stats of a host inside snapshot_reads: one
    SELECT for the three. A change made through the driver ends that look; outside the block
    every call reads afresh; a fault armed for the host is still consumed by the call it names."""
    drv = host("snap-1")
    for i in range(3):
        drv.start_vm(spec(f"i-{i}"))
    with _statements(db_uri) as statements:
        with drv.snapshot_reads():
            hs, vms, stats = drv.host_stats(), drv.list_vms(), drv.vm_stats()
            looked = len(statements)
            drv.force_stop_vm("i-0")  # a change: the next read looks again
            after = {v.name: v.state for v in drv.list_vms()}
        assert sorted(v.name for v in vms) == sorted(stats) == ["i-0", "i-1", "i-2"]
        assert hs.memory_total_bytes - hs.memory_free_bytes >= 3 * 512 << 20
        assert looked == 1
        assert after["i-0"] == PowerState.STOPPED and after["i-1"] == PowerState.RUNNING
        statements.clear()
        drv.list_vms(), drv.list_vms()
        assert len(statements) == 2  # outside the block: afresh each time
    with app.app_context():
        sim.arm_fault(host="snap-1", count=1, message="stats daemon gone", operations="vm_stats")
    with drv.snapshot_reads():
        drv.host_stats()
        assert [v.name for v in drv.list_vms()] == ["i-0", "i-1", "i-2"]
        with pytest.raises(OperationFailed, match="stats daemon gone"):
            drv.vm_stats()
    with app.app_context():
        assert sim.list_faults() == []
        sim.set_host_up("snap-1", False)
    with drv.snapshot_reads():
        for call in (drv.host_stats, drv.list_vms, drv.vm_stats):
            with pytest.raises(HostUnreachable, match="down"):
                call()


# --- lifecycle ---------------------------------------------------------------

@pytest.mark.db
def test_lifecycle_transitions(host):
    drv = host("life-1")
    info = drv.start_vm(spec("i-1", cpus=2, memory=2048, console=ConsoleSpec(password="pw")))
    assert info.state == PowerState.RUNNING and info.console.kind == "vnc"
    assert info.console.host == "127.0.0.1" and info.console.port >= 5900 and info.console.password == "pw"
    assert drv.console_target("i-1").port == info.console.port
    second = drv.start_vm(spec("i-2"))
    assert second.console.port != info.console.port
    assert drv.start_vm(spec("i-1", cpus=2, memory=2048)).state == PowerState.RUNNING  # idempotent
    drv.reboot_vm("i-1")
    assert drv.vm_info("i-1").state == PowerState.RUNNING
    assert drv.stop_vm("i-1", timeout=5) is True
    assert drv.vm_info("i-1").state == PowerState.STOPPED and drv.vm_info("i-1").console is None
    with pytest.raises(OperationFailed, match="not running"):
        drv.console_target("i-1")
    with pytest.raises(OperationFailed, match="not running"):
        drv.reboot_vm("i-1")
    drv.scale_vm("i-1", 4, 4096)
    assert (drv.vm_info("i-1").cpus, drv.vm_info("i-1").memory_mib) == (4, 4096)
    with pytest.raises(OperationFailed, match="stop it"):
        drv.scale_vm("i-2", 2, 1024)
    drv.attach_iso("i-1", "/isos/x.iso")
    drv.detach_iso("i-1")
    drv.attach_volume("i-1", DiskSpec(path="/p/data-1", device_id=1))
    assert drv.vm_disks("i-1") == ["/p/data-1"]
    drv.detach_volume("i-1", DiskSpec(path="/p/data-1"))
    drv.force_stop_vm("i-2")
    assert drv.vm_info("i-2").state == PowerState.STOPPED
    drv.destroy_vm("i-1")
    drv.destroy_vm("i-1")  # a missing VM is not an error
    with pytest.raises(VMNotFound):
        drv.vm_info("i-1")
    assert [v.name for v in drv.list_vms()] == ["i-2"]


@pytest.mark.db
def test_starting_is_visible_while_it_lasts(app, host, clock):
    drv = host("slowstart")
    with app.app_context():
        from app.extensions import db
        sim.get_host("slowstart").step_seconds = 1.0
        db.session.commit()
    seen = []
    clock.during_sleep = lambda: seen.append(drv.vm_info("i-s").state)  # while start_vm waits
    drv.start_vm(spec("i-s"))
    assert seen == [PowerState.STARTING]
    assert drv.vm_info("i-s").state == PowerState.RUNNING


@pytest.mark.db
def test_graceful_stop_honours_the_timeout(app, host, clock):
    drv = host("stopper")
    drv.start_vm(spec("i-1"))
    with app.app_context():
        sim.set_delay("stopper", 1.5)  # the guest now takes ~1.5 s to shut down
    t0 = clock.time()
    assert drv.stop_vm("i-1", timeout=0.3) is False
    assert clock.time() - t0 == pytest.approx(0.3)  # it waited its timeout, not the shutdown
    with app.app_context():
        sim.set_delay("stopper", 0)  # calls are quick again; the shutdown under way is not
    assert drv.vm_info("i-1").state == PowerState.STOPPING
    assert drv.stop_vm("i-1", timeout=5) is True  # waits for the same shutdown to finish
    assert drv.vm_info("i-1").state == PowerState.STOPPED


@pytest.mark.db
def test_capacity_is_enforced(host):
    drv = host("small", cpus=2, memory=2048)
    with pytest.raises(OperationFailed, match="2 cores"):
        drv.start_vm(spec("big", cpus=4))
    drv.start_vm(spec("a", memory=1024))
    drv.start_vm(spec("b", memory=1024))
    with pytest.raises(OperationFailed, match="Not enough memory"):
        drv.start_vm(spec("c", memory=512))
    assert {v.name for v in drv.list_vms()} == {"a", "b"}  # nothing half-created
    drv.force_stop_vm("b")
    drv.start_vm(spec("c", memory=512))


@pytest.mark.db
def test_migration(app, host):
    src, dst = host("m-src"), host("m-dst", memory=1024)
    src.start_vm(spec("i-m", memory=512))
    src.start_vm(spec("i-big", memory=2048))
    src.migrate_vm("i-m", dst.conn)
    assert [v.name for v in dst.list_vms()] == ["i-m"] and "i-m" not in [v.name for v in src.list_vms()]
    assert dst.vm_info("i-m").state == PowerState.RUNNING
    with pytest.raises(OperationFailed, match="Not enough memory"):
        src.migrate_vm("i-big", dst.conn)
    with pytest.raises(OperationFailed, match="no such host"):
        src.migrate_vm("i-big", SIMULATOR.connection("simulator://nowhere", {}))
    with app.app_context():
        sim.set_host_up("m-dst", False)
    with pytest.raises(OperationFailed, match="down"):
        src.migrate_vm("i-big", dst.conn)
    assert src.vm_info("i-big").state == PowerState.RUNNING  # still where it was
    src.force_stop_vm("i-big")
    with pytest.raises(OperationFailed, match="live"):
        src.migrate_vm("i-big", host("m-third").conn)


@pytest.mark.db
def test_storage_bookkeeping(host):
    drv = host("st-1", localstorage=10)
    local = StoragePoolSpec(uuid="11111111-1111-4111-8111-111111111111", name="local", kind="Filesystem",
                            path=drv.check_host().local_storage_path)
    shared = StoragePoolSpec(uuid="22222222-2222-4222-8222-222222222222", name="nfs", kind="NFS",
                             path="/export/primary", server="filer")
    assert drv.prepare_storage_pool(local).capacity_bytes == 10 * GIB
    assert drv.prepare_storage_pool(shared).capacity_bytes > 10 * GIB
    assert drv.prepare_storage_pool(local).capacity_bytes == 10 * GIB  # idempotent
    vol = drv.create_volume(VolumeSpec(name="root-1", pool=local, size_bytes=4 * GIB, format="RAW",
                                       base_path="/export/primary/tmpl.raw"))
    assert vol.path == f"{local.path}/root-1" and vol.size_bytes == 4 * GIB
    assert drv.pool_info(local).available_bytes == 6 * GIB
    assert drv.check_host().local_storage_free == 6 * GIB
    with pytest.raises(OperationFailed, match="already exists"):
        drv.create_volume(VolumeSpec(name="root-1", pool=local, size_bytes=GIB))
    with pytest.raises(OperationFailed, match="Not enough space"):
        drv.create_volume(VolumeSpec(name="huge", pool=local, size_bytes=7 * GIB))
    assert drv.resize_volume(local, "root-1", 5 * GIB).size_bytes == 5 * GIB
    with pytest.raises(OperationFailed, match="Shrinking"):
        drv.resize_volume(local, "root-1", GIB)
    with pytest.raises(OperationFailed, match="still holds"):
        drv.delete_storage_pool(local)
    drv.delete_volume(local, "root-1")
    drv.delete_volume(local, "root-1")  # missing is fine
    drv.delete_storage_pool(local)
    with pytest.raises(OperationFailed, match="not prepared"):
        drv.pool_info(local)


@pytest.mark.db
def test_stats_vary_plausibly(host):
    drv = host("stats-1", cpus=4, memory=8192)
    drv.start_vm(spec("i-1", cpus=2, memory=1024))
    drv.start_vm(spec("i-2", memory=2048))
    drv.force_stop_vm("i-2")
    first = drv.vm_stats()
    assert set(first) == {"i-1"}
    time.sleep(0.2)
    second = drv.vm_stats()["i-1"]
    assert second.cpu_time_ns > first["i-1"].cpu_time_ns
    assert second.net_rx_bytes >= first["i-1"].net_rx_bytes
    assert 0 < second.memory_kib <= 1024 * 1024
    hs = drv.host_stats()
    assert 0 < hs.cpu_pct <= 100 and hs.memory_total_bytes == 8192 << 20
    assert hs.memory_free_bytes < hs.memory_total_bytes - (1024 << 20)


# --- fault injection -----------------------------------------------------------

@pytest.mark.db
def test_host_down_and_back(app, host):
    drv = host("flaky")
    drv.start_vm(spec("i-1"))
    with app.app_context():
        sim.set_host_up("flaky", False)
    for call in (drv.check_host, drv.list_vms, drv.host_stats, drv.vm_stats, lambda: drv.vm_info("i-1"),
                 lambda: drv.start_vm(spec("i-2")), lambda: drv.destroy_vm("i-1")):
        with pytest.raises(HostUnreachable, match="down"):
            call()
    with app.app_context():
        sim.set_host_up("flaky", True)
    assert [v.name for v in drv.list_vms()] == ["i-1"]


@pytest.mark.db
def test_fail_next_on_host(app, host):
    drv = host("fh")
    with app.app_context():
        sim.arm_fault(host="fh", count=2, message="disk controller on fire")
    assert drv.list_vms() == []  # polling does not consume an action fault
    for _ in range(2):
        with pytest.raises(OperationFailed, match="disk controller on fire"):
            drv.start_vm(spec("i-1"))
    assert drv.list_vms() == []  # the failed starts created nothing
    drv.start_vm(spec("i-1"))
    with app.app_context():
        assert sim.list_faults() == []


@pytest.mark.db
def test_fail_next_on_vm_for_some_operations(app, host):
    a, b = host("fv-1"), host("fv-2")
    with app.app_context():
        sim.arm_fault(vm="i-7", count=1, message="guest kernel panic", operations="stop_vm,vm_info")
    a.start_vm(spec("i-7"))  # not a listed operation
    b.start_vm(spec("i-8"))
    with pytest.raises(OperationFailed, match="guest kernel panic"):
        a.vm_info("i-7")  # queries count when named
    assert a.stop_vm("i-7", timeout=5) is True  # count used up
    with app.app_context():
        sim.arm_fault(vm="i-8", count=1, message="nope")
    with pytest.raises(OperationFailed, match="nope"):
        b.reboot_vm("i-8")
    b.reboot_vm("i-8")


@pytest.mark.db
def test_slow_host(app, host, clock):
    drv = host("slow")
    with app.app_context():
        sim.set_delay("slow", 0.4)
    t0 = clock.time()
    drv.list_vms()
    assert clock.time() - t0 == pytest.approx(0.4)
    with app.app_context():
        sim.reset("slow")
    t0 = clock.time()
    drv.list_vms()
    assert clock.time() - t0 == 0


@pytest.mark.db
def test_fault_service_validation(app, host):
    host("val")
    with app.app_context():
        for kwargs, field in [({}, "host"), ({"host": "val", "vm": "i-1"}, "host"),
                              ({"host": "val", "count": 0}, "count"), ({"host": "val", "count": "x"}, "count"),
                              ({"host": "val", "operations": "start_vm,explode"}, "operations"),
                              ({"vm": "bad name"}, "vm"), ({"host": "val", "message": "x" * 2000}, "message")]:
            with pytest.raises(InvalidParameter) as e:
                sim.arm_fault(**kwargs)
            assert e.value.field == field
        with pytest.raises(NotFound):
            sim.arm_fault(host="nope")
        for bad in (-1, 601, "soon", float("nan")):
            with pytest.raises(InvalidParameter):
                sim.set_delay("val", bad)
        assert sim.list_faults() == [] and sim.get_host("val").delay_seconds == 0
        with pytest.raises(NotFound):
            sim.set_host_up("nope", False)

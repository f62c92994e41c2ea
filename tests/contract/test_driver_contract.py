"""The driver contract: ONE set of tests every driver passes (the pattern of
OpenStack nova's test_virt_drivers.py). Each driver module in
tests/contract/drivers/ plugs in through the `env` fixture (see env.py).

The expectations here are base.py's contract, never one driver's specifics.
Tests adapt to the type's declared Capabilities: an operation the type does
not declare must raise OperationNotSupported, which is asserted, not skipped.

Hooks every driver module must put in ContractEnv.extras (what the hypervisor
really holds, not what the driver says; the suite asserts their answers exactly):
  "volume_exists": (pool, name) -> bool
  "iso_of": (vm_name) -> str|None    what the hypervisor has in the VM's ISO drive

Optional hooks a driver module may put in ContractEnv.extras:
  "guest_ignores_acpi": bool   VMs from make_vm_spec ignore a graceful shutdown
                               request (e.g. an empty disk at the BIOS); default False
  "iso_path": str              an ISO file usable on the host; default: one the
                               suite builds in tmp_path with xorriso
  "live_media": bool           the ISO can be changed on a running VM; default True
  "unreachable": () -> Driver  a driver for a host that does not answer
  "template_source": (tmp_path, checksum_ok) -> TemplateSource   an image the driver can import
                               (a right or a wrong checksum); absent: import is not testable here
  "no_template_import": str    why not (the skip's reason)
  "no_volume_backup": str      why volume snapshots' streams cannot run here though the type declares them
  "make_snapshot_vm_spec": (name) -> VMSpec   a VM whose disks can hold VM snapshots (KVM: qcow2);
                               default: make_vm_spec
"""
from __future__ import annotations

import queue
import subprocess
import time
import uuid

import pytest

from app.hypervisors.base import (
    ConsoleKind, DriverError, HostUnreachable, OperationFailed, OperationNotSupported, PoolInfo, PowerState,
    TemplateSource, VMNotFound, VMSnapshotSpec, VolumeSpec,
)

MiB = 1024 * 1024
DISK_FORMATS = ("QCOW2", "RAW", "VHDX", "VHD")


def _name(prefix: str = "ct") -> str:
    return f"nubo-{prefix}-{uuid.uuid4().hex[:8]}"


def _wait_state(driver, name: str, state: PowerState, timeout: float = 15.0) -> PowerState:
    deadline = time.monotonic() + timeout
    while True:
        current = driver.vm_info(name).state
        if current == state or time.monotonic() > deadline:
            return current
        time.sleep(0.2)


@pytest.fixture
def vm(env):
    """A running VM, destroyed (with its definition) afterwards whatever happens."""
    spec = env.make_vm_spec(_name())
    try:
        info = env.driver.start_vm(spec)
        yield spec, info
    finally:
        env.driver.destroy_vm(spec.name)


@pytest.fixture
def iso_path(env, tmp_path):
    if env.extras.get("iso_path"):
        return env.extras["iso_path"]
    src = tmp_path / "iso-src"
    src.mkdir()
    (src / "README.TXT").write_text("nubo contract test\n")
    path = tmp_path / "contract.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "NUBOTEST", "-o", str(path), str(src)],
                   check=True, capture_output=True)
    return str(path)


# --- Host ----------------------------------------------------------------------

def test_check_host_facts_are_sane(env):
    facts = env.driver.check_host()
    assert facts.hypervisor == env.hv_type.name
    if env.hv_type.capabilities.external_orchestrator:
        pytest.skip("an external orchestrator's host reports no version, CPU or memory: they are the "
                    "extension's business (Capabilities.external_orchestrator)")
    assert facts.version and facts.arch
    assert facts.cpu_sockets >= 1 and facts.cpu_cores >= facts.cpu_sockets
    assert facts.cpu_mhz > 0 and facts.memory_bytes >= 64 * MiB
    if env.hv_type.capabilities.local_storage:
        assert facts.local_storage_path
        assert facts.local_storage_bytes >= facts.local_storage_free >= 0


def test_unreachable_host_raises_host_unreachable(env):
    make = env.extras.get("unreachable")
    if make is None:
        pytest.skip("this driver module gives no unreachable host")
    driver = make()
    try:
        with pytest.raises(HostUnreachable):
            driver.check_host()
    finally:
        driver.close()


def test_host_stats(env):
    if env.hv_type.capabilities.external_orchestrator:
        pytest.skip("an external orchestrator's host reports no usage: the extension contract has no "
                    "action for it (Capabilities.external_orchestrator)")
    s = env.driver.host_stats()
    assert 0.0 <= s.cpu_pct <= 100.0
    assert s.memory_total_bytes > 0 and 0 <= s.memory_free_bytes <= s.memory_total_bytes


# --- Storage -------------------------------------------------------------------

def test_prepare_storage_pool_is_idempotent(env):
    if env.hv_type.capabilities.external_orchestrator:  # no primary storage in Nubo: refused
        with pytest.raises(OperationNotSupported):
            env.driver.prepare_storage_pool(env.pool)
        return
    first = env.driver.prepare_storage_pool(env.pool)
    second = env.driver.prepare_storage_pool(env.pool)
    for info in (first, second, env.driver.pool_info(env.pool)):
        assert isinstance(info, PoolInfo)
        assert info.capacity_bytes > 0 and 0 <= info.available_bytes <= info.capacity_bytes


REQUIRED_HOOKS = ("volume_exists", "iso_of")


def test_no_storage_heartbeat_of_a_host_that_never_wrote_one(env):
    """Types that read storage heartbeats (HA investigation) answer None for a host that never
    wrote one on the pool, and leave nothing behind."""
    if not env.hv_type.capabilities.storage_heartbeat:
        pytest.skip("the type reads no storage heartbeats")
    env.driver.prepare_storage_pool(env.pool)
    assert env.driver.heartbeat_age(env.pool, "198.18.255.254") is None


def test_driver_module_gives_the_required_hooks(env):
    """Without them the checks below could not tell a driver that lies from one that works."""
    assert [h for h in REQUIRED_HOOKS if not callable(env.extras.get(h))] == []


def _exists(env, name: str) -> bool:
    return env.extras["volume_exists"](env.pool, name)


def test_volumes_blank_and_from_base_leave_nothing_after_delete(env):
    formats = [f for f in env.hv_type.capabilities.template_formats if f in DISK_FORMATS]
    if env.hv_type.capabilities.external_orchestrator:  # the orchestrator keeps the disks: refused
        with pytest.raises(OperationNotSupported):
            env.driver.create_volume(VolumeSpec(name=_name("vol"), pool=env.pool, size_bytes=16 * MiB))
        return
    env.driver.prepare_storage_pool(env.pool)
    if not formats:  # container types take root filesystems, not disk images
        with pytest.raises(OperationNotSupported):
            env.driver.create_volume(VolumeSpec(name=_name("vol"), pool=env.pool, size_bytes=16 * MiB))
        return
    fmt = formats[0]
    base_name, thin_name, full_name = _name("base"), _name("thin"), _name("full")
    made = []
    try:
        base = env.driver.create_volume(VolumeSpec(name=base_name, pool=env.pool, size_bytes=16 * MiB,
                                                   format=fmt))
        made.append(base_name)
        assert base.size_bytes >= 16 * MiB and base.path
        assert base.format.upper() == fmt
        thin = env.driver.create_volume(VolumeSpec(name=thin_name, pool=env.pool, size_bytes=32 * MiB,
                                                   format=fmt, base_path=base.path, thin=True))
        made.append(thin_name)
        assert thin.size_bytes >= 32 * MiB and thin.path != base.path
        full = env.driver.create_volume(VolumeSpec(name=full_name, pool=env.pool, size_bytes=8 * MiB,
                                                   format=fmt, base_path=base.path, thin=False))
        made.append(full_name)
        assert full.size_bytes >= base.size_bytes  # never smaller than its template
        for name in made:
            assert _exists(env, name) is True
    finally:
        for name in reversed(made):  # overlays before their base
            env.driver.delete_volume(env.pool, name)
    for name in made:
        assert _exists(env, name) is False
        env.driver.delete_volume(env.pool, name)  # a missing volume is not an error


def test_import_template_is_idempotent_clones_and_refuses_a_bad_checksum(env, tmp_path):
    make = env.extras.get("template_source")
    if make is None:
        pytest.skip(env.extras.get("no_template_import", "this driver module has no importable template image"))
    source = make(tmp_path, True)
    env.driver.prepare_storage_pool(env.pool)
    name, clone, bad = _name("tmpl"), _name("root"), _name("bad")
    made = []
    try:
        info = env.driver.import_template(env.pool, name, source)
        made.append(name)
        assert info.path and info.size_bytes > 0 and info.format == source.format.upper()
        assert env.driver.import_template(env.pool, name, source).path == info.path  # cached, not fetched again
        fmt = "QCOW2" if info.format == "RAW" and "QCOW2" in env.hv_type.capabilities.template_formats \
            else info.format
        root = env.driver.create_volume(VolumeSpec(name=clone, pool=env.pool, size_bytes=info.size_bytes,
                                                   format=fmt, base_path=info.path, thin=True))
        made.append(clone)
        assert root.size_bytes >= info.size_bytes and root.path != info.path
    finally:
        for n in reversed(made):
            env.driver.delete_volume(env.pool, n)
    with pytest.raises(OperationFailed, match="Checksum mismatch"):
        env.driver.import_template(env.pool, bad, make(tmp_path, False))
    assert _exists(env, bad) is False  # nothing half-imported


def test_volume_backup_and_restore(env, tmp_path):
    """Volume snapshots' steps: a self-contained QCOW2 copy of a (thin) volume written to a file
    the management server holds, put back onto the volume; a failed copy leaves no file."""
    dest = tmp_path / "store" / "snap.qcow2"
    if not env.hv_type.capabilities.volume_snapshots:
        with pytest.raises(OperationNotSupported):
            env.driver.backup_volume(env.pool, "/nowhere", str(dest))
        with pytest.raises(OperationNotSupported):
            env.driver.restore_volume(env.pool, "nothing", TemplateSource(format="QCOW2", local_path=str(dest)))
        return
    env.driver.prepare_storage_pool(env.pool)
    if env.extras.get("no_volume_backup"):
        pytest.skip(env.extras["no_volume_backup"])
    base_name, thin_name = _name("sbase"), _name("sthin")
    made = []
    try:
        base = env.driver.create_volume(VolumeSpec(name=base_name, pool=env.pool, size_bytes=16 * MiB,
                                                   format="QCOW2"))
        made.append(base_name)
        thin = env.driver.create_volume(VolumeSpec(name=thin_name, pool=env.pool, size_bytes=16 * MiB,
                                                   format="QCOW2", base_path=base.path, thin=True))
        made.append(thin_name)
        info = env.driver.backup_volume(env.pool, thin.path, str(dest))
        assert dest.exists() and info.path == str(dest) and info.format == "QCOW2"
        assert info.size_bytes >= 16 * MiB and info.physical_bytes > 0
        assert not (tmp_path / "store" / "snap.qcow2.part").exists()
        restored = env.driver.restore_volume(env.pool, thin_name, TemplateSource(
            format="QCOW2", size_bytes=info.size_bytes, local_path=str(dest)))
        assert restored.path == thin.path and restored.size_bytes >= 16 * MiB
        assert _exists(env, thin_name) is True
    finally:
        for name in reversed(made):
            env.driver.delete_volume(env.pool, name)
    missing = tmp_path / "store" / "missing.qcow2"
    with pytest.raises(DriverError):
        env.driver.backup_volume(env.pool, f"{base.path}-missing", str(missing))
    assert not missing.exists() and not (tmp_path / "store" / "missing.qcow2.part").exists()


# --- Lifecycle -----------------------------------------------------------------

def test_start_gives_running_vm_with_console_on_listen_address(env, vm):
    spec, info = vm
    assert info.name == spec.name and info.state == PowerState.RUNNING
    kind = env.hv_type.capabilities.console
    if kind is ConsoleKind.NONE:
        with pytest.raises(OperationNotSupported):
            env.driver.console_target(spec.name)
        return
    target = env.driver.console_target(spec.name)
    assert target.kind is kind
    if env.hv_type.capabilities.external_orchestrator:  # where the extension's getconsole says
        assert target.host and 0 < target.port < 65536
        return
    if kind is ConsoleKind.VNC:
        assert target.host == spec.console.listen and target.host not in ("0.0.0.0", "::")
        assert 0 < target.port < 65536
        assert info.console is not None and info.console.port == target.port


def test_start_is_idempotent(env, vm):
    spec, info = vm
    again = env.driver.start_vm(spec)
    assert again.state == PowerState.RUNNING and again.uuid == info.uuid


def test_vm_info_and_list_vms(env, vm):
    spec, _ = vm
    info = env.driver.vm_info(spec.name)
    assert info.state == PowerState.RUNNING
    if not env.hv_type.capabilities.external_orchestrator:  # an extension's status is the power state only
        assert info.cpus == spec.cpus and info.memory_mib == spec.memory_mib
    listed = {v.name: v for v in env.driver.list_vms()}
    assert spec.name in listed and listed[spec.name].state == PowerState.RUNNING


def test_snapshot_reads_answer_as_the_plain_calls_and_see_a_change_made_inside(env, vm):
    """The monitor's sweep asks host_stats, list_vms and vm_stats inside snapshot_reads (a type may
    answer them from one look at the host): the same answers, and a change made through the driver
    inside the block is seen by the reads after it."""
    spec, _ = vm
    external = env.hv_type.capabilities.external_orchestrator  # no host or VM statistics there
    with env.driver.snapshot_reads():
        hs = env.driver.host_stats()
        assert external or hs.memory_total_bytes > 0
        listed = {v.name: v.state for v in env.driver.list_vms()}
        assert listed.get(spec.name) == PowerState.RUNNING
        assert external or spec.name in env.driver.vm_stats()
        env.driver.force_stop_vm(spec.name)
        deadline = time.monotonic() + 15
        while {v.name: v.state for v in env.driver.list_vms()}.get(spec.name) != PowerState.STOPPED:
            assert time.monotonic() < deadline, "the stop made inside snapshot_reads is never seen"
            time.sleep(0.2)


def test_graceful_stop_with_timeout_then_force_stop(env, vm):
    spec, _ = vm
    ignores = env.extras.get("guest_ignores_acpi", False)
    started = time.monotonic()
    stopped = env.driver.stop_vm(spec.name, timeout=2.0)
    if ignores:
        assert stopped is False
        assert time.monotonic() - started < 15  # the timeout is honoured
        assert env.driver.vm_info(spec.name).state == PowerState.RUNNING
        env.driver.force_stop_vm(spec.name)
    else:
        assert stopped is True
    assert _wait_state(env.driver, spec.name, PowerState.STOPPED) == PowerState.STOPPED
    env.driver.force_stop_vm(spec.name)  # already off: not an error
    assert env.driver.stop_vm(spec.name, timeout=1.0) is True


def test_force_stop(env, vm):
    spec, _ = vm
    env.driver.force_stop_vm(spec.name)
    assert _wait_state(env.driver, spec.name, PowerState.STOPPED) == PowerState.STOPPED
    # A stopped VM is still known (reconcile sees it) until it is destroyed.
    assert spec.name in {v.name for v in env.driver.list_vms()}


def test_reboot_keeps_vm_running(env, vm):
    spec, _ = vm
    env.driver.reboot_vm(spec.name)
    assert _wait_state(env.driver, spec.name, PowerState.RUNNING) == PowerState.RUNNING


def test_destroy_leaves_nothing_and_is_idempotent(env, vm):
    spec, _ = vm
    if env.hv_type.capabilities.external_orchestrator:
        pytest.skip("the extension contract has no 'no such VM' answer (status says poweron or poweroff, in "
                    "CloudStack 4.21 too): Nubo forgets an expunged VM itself")
    env.driver.destroy_vm(spec.name)
    with pytest.raises(VMNotFound):
        env.driver.vm_info(spec.name)
    assert spec.name not in {v.name for v in env.driver.list_vms()}
    env.driver.destroy_vm(spec.name)


def test_vm_stats(env, vm):
    spec, _ = vm
    if env.hv_type.capabilities.external_orchestrator:
        pytest.skip("an extension reports no VM statistics: the contract has no action for them "
                    "(Capabilities.external_orchestrator)")
    stats = env.driver.vm_stats()
    assert spec.name in stats
    s = stats[spec.name]
    assert s.timestamp > 0
    for counter in (s.cpu_time_ns, s.memory_kib, s.disk_read_bytes, s.disk_write_bytes,
                    s.net_rx_bytes, s.net_tx_bytes):
        assert counter >= 0


def test_scale_stopped_vm(env, vm):
    spec, _ = vm
    env.driver.force_stop_vm(spec.name)
    _wait_state(env.driver, spec.name, PowerState.STOPPED)
    if not env.hv_type.capabilities.scale_stopped_vm:
        with pytest.raises(OperationNotSupported):
            env.driver.scale_vm(spec.name, spec.cpus + 1, spec.memory_mib + 64)
        return
    env.driver.scale_vm(spec.name, spec.cpus + 1, spec.memory_mib + 64)
    info = env.driver.vm_info(spec.name)
    assert info.state == PowerState.STOPPED
    assert (info.cpus, info.memory_mib) == (spec.cpus + 1, spec.memory_mib + 64)


def test_scale_running_vm_is_refused(env, vm):
    spec, _ = vm
    with pytest.raises(DriverError):
        env.driver.scale_vm(spec.name, spec.cpus + 1, spec.memory_mib + 64)
    if not env.hv_type.capabilities.external_orchestrator:  # an extension's status is the power state only
        assert env.driver.vm_info(spec.name).cpus == spec.cpus


def test_attach_and_detach_iso(env, vm, iso_path):
    spec, _ = vm
    iso_of = env.extras["iso_of"]
    if not env.hv_type.capabilities.iso:
        with pytest.raises(OperationNotSupported):
            env.driver.attach_iso(spec.name, iso_path)
        return
    # Running VM: change the media live, or say the driver cannot.
    if env.extras.get("live_media", True):
        env.driver.attach_iso(spec.name, iso_path)
        assert iso_of(spec.name) == iso_path
        env.driver.detach_iso(spec.name)
        assert iso_of(spec.name) is None
    else:
        with pytest.raises(OperationNotSupported):
            env.driver.attach_iso(spec.name, iso_path)
        assert iso_of(spec.name) is None
    # Stopped VM: always possible.
    env.driver.force_stop_vm(spec.name)
    _wait_state(env.driver, spec.name, PowerState.STOPPED)
    env.driver.attach_iso(spec.name, iso_path)
    assert iso_of(spec.name) == iso_path
    env.driver.detach_iso(spec.name)
    assert iso_of(spec.name) is None


def test_unknown_vm_raises_vm_not_found(env):
    name = _name("ghost")
    calls = [
        lambda: env.driver.vm_info(name),
        lambda: env.driver.stop_vm(name, timeout=1.0),
        lambda: env.driver.force_stop_vm(name),
        lambda: env.driver.reboot_vm(name),
    ]
    if env.hv_type.capabilities.scale_stopped_vm:
        calls.append(lambda: env.driver.scale_vm(name, 1, 128))
    if env.hv_type.capabilities.console is not ConsoleKind.NONE:
        calls.append(lambda: env.driver.console_target(name))
    if env.hv_type.capabilities.iso:
        calls.append(lambda: env.driver.attach_iso(name, "/nonexistent.iso"))
    for call in calls:
        with pytest.raises(VMNotFound):
            call()
    env.driver.destroy_vm(name)  # destroying what is not there is not an error


def test_errors_are_driver_errors(env, vm):
    """Whatever goes wrong comes out as a base.py exception, never a backend one."""
    spec, _ = vm
    for call in (lambda: env.driver.reboot_vm(_name("ghost")),
                 lambda: env.driver.scale_vm(spec.name, spec.cpus + 1, spec.memory_mib)):
        with pytest.raises(DriverError):
            call()


def test_lifecycle_events(env):
    events: queue.Queue = queue.Queue()
    if not env.hv_type.capabilities.lifecycle_events:
        with pytest.raises(OperationNotSupported):
            env.driver.register_events(lambda name, state: events.put((name, state)))
        return
    env.driver.register_events(lambda name, state: events.put((name, state)))
    spec = env.make_vm_spec(_name("ev"))
    try:
        env.driver.start_vm(spec)
        deadline = time.monotonic() + 15
        seen = []
        while time.monotonic() < deadline:
            try:
                seen.append(events.get(timeout=0.5))
            except queue.Empty:
                continue
            if (spec.name, PowerState.RUNNING) in seen:
                break
        assert (spec.name, PowerState.RUNNING) in seen
    finally:
        env.driver.destroy_vm(spec.name)


def test_live_migration(env, vm):
    spec, _ = vm
    if not env.hv_type.capabilities.live_migration:
        with pytest.raises(OperationNotSupported):
            env.driver.migrate_vm(spec.name, env.driver.conn)
        return
    if env.migration_target is None:
        pytest.skip("this environment has one host of the type; migration is verified at unit level")
    env.driver.migrate_vm(spec.name, env.migration_target.conn)
    assert env.migration_target.vm_info(spec.name).state == PowerState.RUNNING
    with pytest.raises(VMNotFound):
        env.driver.vm_info(spec.name)
    env.migration_target.destroy_vm(spec.name)


# --- VM snapshots (Capabilities.vm_snapshots) -------------------------------------

def test_vm_snapshots_both_kinds_revert_and_delete(env):
    caps = env.hv_type.capabilities
    make = env.extras.get("make_snapshot_vm_spec") or env.make_vm_spec
    spec = make(_name("snap"))
    mem = VMSnapshotSpec(name=_name("mem"), description="contract", memory=True)
    disk = VMSnapshotSpec(name=_name("disk"))
    try:
        env.driver.start_vm(spec)
        if not caps.vm_snapshots:
            with pytest.raises(OperationNotSupported):
                env.driver.create_vm_snapshot(spec.name, mem)
            return
        info = env.driver.create_vm_snapshot(spec.name, mem)
        assert info.name == mem.name and info.memory
        assert env.driver.create_vm_snapshot(spec.name, mem).name == mem.name  # idempotent
        assert env.driver.list_vm_snapshots(spec.name) == [mem.name]
        if not caps.vm_snapshot_disk_running:
            with pytest.raises(DriverError):
                env.driver.create_vm_snapshot(spec.name, disk)
            assert env.driver.list_vm_snapshots(spec.name) == [mem.name]
        env.driver.force_stop_vm(spec.name)
        assert _wait_state(env.driver, spec.name, PowerState.STOPPED) == PowerState.STOPPED
        with pytest.raises(DriverError):  # a stopped VM has no memory to keep
            env.driver.create_vm_snapshot(spec.name, VMSnapshotSpec(name=_name("nomem"), memory=True))
        assert not env.driver.create_vm_snapshot(spec.name, disk).memory
        assert sorted(env.driver.list_vm_snapshots(spec.name)) == sorted([mem.name, disk.name])
        # A memory snapshot brings the VM back running; a disk-only one leaves it stopped.
        env.driver.revert_vm_snapshot(spec.name, mem)
        assert _wait_state(env.driver, spec.name, PowerState.RUNNING) == PowerState.RUNNING
        env.driver.revert_vm_snapshot(spec.name, disk)
        assert _wait_state(env.driver, spec.name, PowerState.STOPPED) == PowerState.STOPPED
        with pytest.raises(DriverError):
            env.driver.revert_vm_snapshot(spec.name, VMSnapshotSpec(name=_name("none")))
        for s in (disk, mem):
            env.driver.delete_vm_snapshot(spec.name, s)
            env.driver.delete_vm_snapshot(spec.name, s)  # a missing one is not an error
        assert env.driver.list_vm_snapshots(spec.name) == []
        assert env.driver.list_vm_snapshots(_name("absent")) == []
    finally:
        env.driver.destroy_vm(spec.name)  # with its snapshots: nothing of the VM stays
    with pytest.raises(VMNotFound):
        env.driver.vm_info(spec.name)

"""The VM lifecycle on an extension (CloudStack's ExternalPathPayloadProvisioner as the
VirtualMachineManager drives it): the first start runs `prepare` (when the extension asks for
it; its stdout is a JSON merge-patch whose `details` Nubo keeps and sends on every later call)
and `create`; later starts `start`; stop, reboot and expunge run `stop`, `reboot`, `delete`.
No primary storage, volumes, network segments or routers are made for these VMs: the
orchestrator keeps what it runs. app/services/vms.py calls run_on() for a host that serves()."""
from __future__ import annotations

from app.extensions import db
from app.hypervisors.base import DriverError, VMSpec
from app.models import Host, VirtualMachine, VMState, utcnow
from app.services.errors import ResourceUnavailable
from app.services.extensions import calls, details, registry

CREATED = "UserVmCreated"  # owner type of the marker: the orchestrator has made the VM


def created(vm: VirtualMachine) -> bool:
    return bool(details.values_of(CREATED, vm.id))


def merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge-patch (CloudStack's JsonMergeUtil.mergeJsonPatch)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _spec(vm: VirtualMachine) -> VMSpec:
    return VMSpec(name=vm.instance_name, uuid=vm.uuid, cpus=vm.cpu_number, cpu_mhz=vm.cpu_speed,
                  memory_mib=vm.memory, display_name=vm.display_name or vm.name)


def run_on(vm: VirtualMachine, host: Host, caller=None) -> None:
    """Start the VM through the host's extension (prepare + create the first time)."""
    first = not created(vm)
    e = registry.extension_of_cluster(host.cluster_id)
    if first and e is not None and e.orchestrator_requires_prepare_vm:
        driver = calls.driver_for(host, [vm], caller=caller, first=True)
        db.session.commit()
        try:
            patch = driver.prepare_vm(vm.instance_name)
        except DriverError as e2:
            raise ResourceUnavailable(f"VM {vm.name} could not be prepared by extension {e.name}: {e2}") from None
        finally:
            driver.close()
        current = details.values_of("UserVmPrepared", vm.id)
        merged = merge_patch({"details": current}, patch).get("details") or {}
        details.replace("UserVmPrepared", vm.id, {str(k): str(v) for k, v in merged.items()})
        db.session.commit()
    driver = calls.driver_for(host, [vm], caller=caller, first=first)
    db.session.commit()  # nothing held while the extension works
    try:
        driver.start_vm(_spec(vm))
    except DriverError as e2:
        raise ResourceUnavailable(f"VM {vm.name} could not {'be created' if first else 'start'} on "
                                  f"{host.name}: {e2}") from None
    finally:
        driver.close()
    if first:
        details.replace(CREATED, vm.id, {"created": utcnow().isoformat()})
    vm.state, vm.host_id, vm.last_host_id, vm.state_updated = VMState.RUNNING, host.id, host.id, utcnow()
    db.session.commit()


def forget(vm: VirtualMachine) -> None:
    """The VM expunged: its external details go with it."""
    for owner in ("UserVm", "UserVmPrepared", CREATED, "UserVmConsole"):
        details.forget(owner, [vm.id])

"""The External type's driver: speaks CloudStack 4.21's extension contract through runner.run.

Every call is `<path> <action> <payload.json> <timeout>`; the payloads are built by the
services (app/services/extensions) and handed over in the DriverContext (ExternalSpec):
the driver only picks the action, runs it and reads the answer.
- start_vm: `create` when the VM's details say deployvm=true (its first start), else `start`;
- stop_vm / force_stop_vm: `stop`; reboot_vm: `reboot`; destroy_vm: `delete`;
- vm_info / list_vms: `status` (stdout `poweron`/`poweroff`, or JSON {"power_state": ...};
  anything else, or a failure, is Unknown), list_vms with bounded parallelism;
- prepare_vm: `prepare` (its stdout: a JSON merge-patch over the VM's details);
- console_target: `getconsole` ({"console": {host, port, password, passwordonetimeuseonly,
  protocol: vnc}} or {"console": {url, protocol: direct}});
- run: a custom action.
Hosts report no CPU or memory: capacity is the extension's business."""
from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from app.hypervisors.base import (
    ConsoleKind, ConsoleTarget, Driver, HostFacts, HostStats, OperationFailed, OperationNotSupported, OperationTimedOut,
    PowerState, VMInfo, VMNotFound, VMSpec, VMStats,
)
from app.hypervisors.external import runner


@dataclass
class ExternalSpec:
    """What the services prepared for one driver: the checked executable and the payloads."""
    name: str  # the extension's name (messages)
    path: str | None  # None: not usable now, `unusable` says why
    payload_dir: str
    timeout: int
    status_timeout: int = 30
    parallel: int = 4
    payloads: dict[str, dict] = field(default_factory=dict)  # by VM instance name
    host_payload: dict = field(default_factory=dict)  # for calls about no VM
    unusable: str | None = None
    # Values never to show (the secrets in the payloads): masked in every output and message.
    secrets: tuple[str, ...] = ()

    def mask(self, text: str) -> str:
        for value in self.secrets:
            if value and len(value) >= 3:
                text = text.replace(value, "******")
        return text


@dataclass
class ExternalConsole:
    """getconsole's answer beyond what ConsoleTarget holds: a direct URL."""
    url: str | None = None
    protocol: str | None = None
    one_time_password: bool = False


def parse_power_state(output: str) -> PowerState:
    text = (output or "").strip()
    if not text:
        return PowerState.UNKNOWN
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get("power_state") or "")
        except (ValueError, AttributeError):
            return PowerState.UNKNOWN
    return {"poweron": PowerState.RUNNING, "poweroff": PowerState.STOPPED}.get(text.strip().lower(),
                                                                              PowerState.UNKNOWN)


class ExternalDriver(Driver):

    @property
    def spec(self) -> ExternalSpec:
        spec = getattr(self.context, "external", None)
        if spec is None:
            raise OperationFailed("No extension is registered with this host's cluster")
        return spec

    def _payload(self, name: str | None) -> dict:
        if name is None:
            return self.spec.host_payload
        try:
            return self.spec.payloads[name]
        except KeyError:
            raise VMNotFound(f"No VM {name} was prepared for the extension") from None

    def run(self, action: str, name: str | None = None, timeout: int | None = None,
            payload: dict | None = None) -> runner.Result:
        spec = self.spec
        if spec.path is None:
            return runner.Result(False, spec.unusable or f"Extension: {spec.name} not configured")
        res = runner.run(runner.Call(spec.path, action, payload if payload is not None else self._payload(name),
                                     timeout or spec.timeout, spec.payload_dir))
        return dataclasses.replace(res, output=spec.mask(res.output))

    def _must(self, action: str, name: str | None, timeout: int | None = None) -> str:
        res = self.run(action, name, timeout)
        if res.timed_out:
            raise OperationTimedOut(f"{action} of {name or 'the host'} by extension {self.spec.name}: Timeout")
        if not res.ok:
            raise OperationFailed(f"{action} of {name or 'the host'} by extension {self.spec.name} failed: "
                                  f"{res.message}")
        return res.output

    # Host
    def check_host(self) -> HostFacts:
        return HostFacts(hypervisor="External", version="", arch="", cpu_sockets=0, cpu_cores=0, cpu_mhz=0,
                         memory_bytes=0, hostname=self.conn.address)

    def host_stats(self) -> HostStats:
        """An external host is Up while Nubo can reach it: the extension's own business beyond that."""
        return HostStats(cpu_pct=0.0, memory_total_bytes=0, memory_free_bytes=0)

    def check_labels(self, labels):
        return []  # the orchestrator's networks are its business

    # VM lifecycle
    def prepare_vm(self, name: str) -> dict:
        out = self._must("prepare", name)
        if not out:
            return {}
        try:
            patch = json.loads(out)
        except ValueError:
            raise OperationFailed(f"prepare of {name} by extension {self.spec.name}: Failed to parse VM "
                                  "(its output is not JSON)") from None
        if not isinstance(patch, dict):
            raise OperationFailed(f"prepare of {name} by extension {self.spec.name}: Failed to parse VM")
        return patch

    def start_vm(self, spec: VMSpec) -> VMInfo:
        details = self._payload(spec.name).get("cloudstack.vm.details", {}).get("details", {})
        self._must("create" if str(details.get("deployvm", "")).lower() == "true" else "start", spec.name)
        return VMInfo(name=spec.name, state=PowerState.RUNNING, uuid=spec.uuid)

    def stop_vm(self, name: str, timeout: float) -> bool:
        self._must("stop", name)
        return True

    def force_stop_vm(self, name: str) -> None:
        self._must("stop", name)

    def reboot_vm(self, name: str) -> None:
        self._must("reboot", name)

    def destroy_vm(self, name: str) -> None:
        if name not in self.spec.payloads:
            return  # a VM Nubo has not prepared is none of this host's: nothing to delete
        self._must("delete", name)

    def vm_info(self, name: str) -> VMInfo:
        res = self.run("status", name, self.spec.status_timeout)
        if res.timed_out:
            raise OperationTimedOut(f"status of {name} by extension {self.spec.name}: Timeout")
        return VMInfo(name=name, state=parse_power_state(res.output) if res.ok else PowerState.UNKNOWN)

    def list_vms(self) -> list[VMInfo]:
        """`status` of every VM Nubo placed on this host, a few at a time. A VM whose status
        fails or times out is Unknown (never reported missing: that would stop it in Nubo)."""
        names = list(self.spec.payloads)
        if not names:
            return []

        def one(name: str) -> VMInfo:
            res = self.run("status", name, self.spec.status_timeout)
            return VMInfo(name=name, state=parse_power_state(res.output) if res.ok else PowerState.UNKNOWN)

        with ThreadPoolExecutor(max_workers=max(1, min(self.spec.parallel, len(names)))) as pool:
            return list(pool.map(one, names))

    def vm_stats(self) -> dict[str, VMStats]:
        return {}

    def console_target(self, name: str) -> ConsoleTarget:
        out = self._must("getconsole", name)
        try:
            console = json.loads(out)["console"]
        except (ValueError, KeyError, TypeError):
            raise OperationFailed("Missing console object in output") from None
        if not isinstance(console, dict):
            raise OperationFailed("Missing console object in output")
        url, host, port = console.get("url"), console.get("host"), console.get("port")
        if url is None and (host is None or port is None):
            raise OperationFailed("Missing required fields in output")
        target = ConsoleTarget(kind=ConsoleKind.VNC, host=str(host or ""), port=int(port or 0),
                               password=console.get("password"))
        target.external = ExternalConsole(url=url, protocol=console.get("protocol"),  # type: ignore[attr-defined]
                                          one_time_password=bool(console.get("passwordonetimeuseonly")))
        return target

    # What the orchestrator keeps is not Nubo's: no pools, volumes, ISOs, segments here, and
    # nothing the extension contract has no action for (CloudStack 4.21 has none either).
    def prepare_storage_pool(self, pool):
        raise OperationNotSupported("External hosts have no primary storage")

    def _none(self, what: str):
        raise OperationNotSupported(f"External hosts have no {what}: the orchestrator keeps them")

    def delete_storage_pool(self, pool):
        self._none("primary storage")

    def pool_info(self, pool):
        self._none("primary storage")

    def create_volume(self, vol):
        self._none("volumes")

    def delete_volume(self, pool, name):
        self._none("volumes")

    def resize_volume(self, pool, name, size_bytes):
        self._none("volumes")

    def import_template(self, pool, name, source):
        self._none("templates in Nubo's storage")

    def attach_volume(self, name, disk):
        self._none("volumes")

    def detach_volume(self, name, disk):
        self._none("volumes")

    def attach_iso(self, name, iso_path):
        self._none("ISOs")

    def detach_iso(self, name):
        self._none("ISOs")

    def scale_vm(self, name, cpus, memory_mib):
        raise OperationNotSupported("An extension has no action to scale a VM")

    def migrate_vm(self, name, dest, live=True, *, spec=None, progress=None):
        raise OperationNotSupported("An extension has no action to migrate a VM")

    def ensure_segment(self, segment):
        raise OperationNotSupported("External hosts make no network segments")

    def release_segment(self, segment):
        return None

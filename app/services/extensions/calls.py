"""Calling an extension: which extension serves a host, the checks before every call, the
driver with its payloads prepared, and what a call's output may show (secrets masked)."""
from __future__ import annotations

import logging
import time

from sqlalchemy import select

from app.extensions import db
from app.hypervisors.external import runner
from app.hypervisors.external.driver import ExternalSpec
from app.models import Extension, ExtensionResourceMap, ExtensionState, Host, VirtualMachine
from app.services import hypervisors as hv
from app.services import settings
from app.services.extensions import details, paths, payload, registry
from app.services.settings import Definition, define

log = logging.getLogger("nubo.extensions")

define(Definition("extensions.call.timeout", "600", "Seconds an extension's VM action (prepare, create, start, "
                  "stop, reboot, delete, getconsole) may take before it is killed and reported as Timeout.",
                  category="Extensions", type="integer", min=1, max=86400, unit="seconds"))
define(Definition("extensions.status.timeout", "30", "Seconds an extension's `status` call may take (the monitor "
                  "asks it for every VM of an external host).", category="Extensions", type="integer", min=1,
                  max=3600, unit="seconds"))
define(Definition("extensions.status.parallel", "4", "How many `status` calls of one host the monitor runs at once.",
                  category="Extensions", type="integer", min=1, max=64))
define(Definition("extensions.payload.keep", "86400", "Seconds a call's payload file is kept (mode 0600) before it "
                  "is swept; as in CloudStack, only a successful `status` call removes its file at once.",
                  category="Extensions", type="integer", min=0, unit="seconds"))


def serves(host: Host | None) -> bool:
    """Whether the host's VMs are an extension's: an External host, or a Custom host whose
    cluster is bound to an extension."""
    if host is None:
        return False
    if host.hypervisor_type == registry.EXTERNAL:
        return True
    return host.hypervisor_type == registry.CUSTOM and registry.map_of_cluster(host.cluster_id) is not None


def is_external_type(type_name: str, cluster_id: int | None = None) -> bool:
    if type_name == registry.EXTERNAL:
        return True
    return type_name == registry.CUSTOM and cluster_id is not None and registry.map_of_cluster(cluster_id) is not None


_last_sweep: dict[str, float] = {}


def _usable(e: Extension) -> tuple[str | None, str | None]:
    """(the executable's path, None) or (None, why it cannot be called now). Checked afresh
    before every call but never written here (this runs inside the caller's transaction, which
    it must not commit): the recorded state (pathready, its event) is the listing's, the
    extension pages' and the monitor's (registry.check_paths)."""
    if e.state != ExtensionState.ENABLED:
        return None, f"Extension {e.name} is Disabled"
    st, ready, reason = registry.evaluate(e)
    if not ready:
        return None, f"Extension: {e.name} not configured: {reason}"
    keep = settings.get("extensions.payload.keep")
    now = time.time()
    if now - _last_sweep.get(e.name, 0) > 60:  # payload files, once kept long enough
        _last_sweep[e.name] = now
        runner.sweep(paths.payload_dir(e.name), keep)
    return st.path, None


def spec_for(host: Host, vms: list[VirtualMachine], *, caller=None, first: bool = False,
             action=None, parameters: dict | None = None) -> ExternalSpec:
    m = registry.map_of_cluster(host.cluster_id)
    if m is None:
        return ExternalSpec(name="?", path=None, payload_dir="", timeout=1,
                            unusable=f"No extension is registered with the cluster of host {host.name}")
    e = m.extension
    path, why = _usable(e)
    payloads = {vm.instance_name: payload.build(e, m, host, vm, caller=caller, first=first, action=action,
                                                parameters=parameters) for vm in vms}
    owners = payload.owners(e, m, host, None, action) + [
        o for vm in vms for o in payload.owners(e, m, host, vm)]
    secrets = tuple({v for owner_type, owner_id in set(owners) for k, v in details.values_of(owner_type, owner_id).items()
                     if details.is_secret(k)})
    return ExternalSpec(name=e.name, path=path, unusable=why, payload_dir=paths.payload_dir(e.name), secrets=secrets,
                        timeout=settings.get("extensions.call.timeout"),
                        status_timeout=settings.get("extensions.status.timeout"),
                        parallel=settings.get("extensions.status.parallel"), payloads=payloads,
                        host_payload=payload.build(e, m, host, None, caller=caller, action=action,
                                                   parameters=parameters))


def driver_for(host: Host, vms: list[VirtualMachine] | None = None, **kw):
    """The External driver of the host, its payloads prepared for `vms`."""
    from app.services.hosts import connection_for
    ctx = hv.driver_context()
    ctx.external = spec_for(host, [v for v in (vms or []) if v is not None], **kw)
    t = hv.registry.get(registry.EXTERNAL)
    return t.make_driver(connection_for(host), ctx)


def driver_for_host_id(host_id: int):
    """For the monitor: every VM Nubo has on the host (running there, or stopped last there)."""
    host = db.session.get(Host, host_id)
    vms = list(db.session.scalars(select(VirtualMachine).where(
        VirtualMachine.removed.is_(None),
        (VirtualMachine.host_id == host_id) | ((VirtualMachine.last_host_id == host_id)
                                               & VirtualMachine.host_id.is_(None)))))
    return driver_for(host, vms)


def redacted(text: str, extension: Extension, m: ExtensionResourceMap | None, host: Host | None,
             vm: VirtualMachine | None, action=None) -> str:
    return details.redact(text or "", payload.owners(extension, m, host, vm, action))

"""Adding hosts (discovery through the driver) and their lifecycle.

Rules, each with a clear error: the host's real hypervisor must match the
cluster's type; a host address is added once; the cluster's max hosts is
respected. Credentials (the type's secret fields) are Fernet-encrypted and never
shown back. When the zone has local storage on, the host's local storage becomes
a per-host primary pool at discovery.
"""
from __future__ import annotations

import json

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.hypervisors import registry
from app.hypervisors.base import (AuthenticationFailed, DriverError, HostUnreachable, UntrustedCertificate,
                                  WrongHypervisor)
from app.models import (Cluster, Host, HostState, PoolType, ResourceState, StoragePool, StorageScope, VirtualMachine,
                        Pod, VMState, Zone, new_uuid, utcnow)
from app.services import crypto, events, zones
from app.services import hypervisors as hv
from app.services.errors import InvalidParameter, NotFound, ResourceInUse, ResourceUnavailable, ServiceError
from app.services.pagination import name_of, page_of, ratio, sorted_by


def get_host(uuid: str, field: str = "id") -> Host:
    h = db.session.scalar(select(Host).where(Host.uuid == uuid, Host.removed.is_(None)))
    if h is None:
        raise NotFound("Unable to find host with the specified id", field=field)
    return h


def _check_fields(t, url: str, fields: dict[str, str]) -> dict[str, str]:
    values = {"url": url, **{k: v for k, v in fields.items() if v is not None}}
    for f in t.host_fields:
        v = (values.get(f.name) or f.default or "").strip() if f.kind != "textarea" else values.get(f.name) or ""
        if f.required and not v:
            raise InvalidParameter(f"{f.label} is required for {hv.display_name(t.name)} hosts", field=f.name)
        if v and f.choices and v not in f.choices:
            raise InvalidParameter(f"{f.label} must be one of {', '.join(f.choices)}", field=f.name)
        if v and f.validate:
            error = f.validate(v)
            if error:
                raise InvalidParameter(error, field=f.name)
        values[f.name] = v
    broken = t.check_fields(values)
    if broken:
        raise InvalidParameter(broken[1], field=broken[0])
    return values


def discover(cluster, url: str, fields: dict[str, str]):
    """Run the type's host check now (the wizard's Test connection): (connection, facts)."""
    t = hv.resolve(cluster.hypervisor_type if hasattr(cluster, "hypervisor_type") else cluster)
    values = _check_fields(t, url, fields)
    conn = t.connection(values["url"], values)
    driver = hv.driver_for(t.name, conn)
    try:
        facts = driver.check_host()
    except WrongHypervisor as e:
        raise InvalidParameter(str(e), field="url") from None
    except AuthenticationFailed as e:
        raise InvalidParameter(f"Authentication failed: {e}", field="password") from None
    except UntrustedCertificate as e:
        raise InvalidParameter(str(e), field=e.field) from None
    except HostUnreachable as e:
        raise ResourceUnavailable(f"Cannot reach the host: {e}", field="url") from None
    except DriverError as e:
        raise ServiceError(f"Host check failed: {e}", field="url") from None
    finally:
        driver.close()
    if facts.hypervisor != t.name:
        raise InvalidParameter(f"The host runs {hv.display_name(facts.hypervisor)}, but the cluster is "
                               f"{hv.display_name(t.name)}", field="url")
    return conn, facts


def check_new_host(type_name: str, url: str, fields: dict[str, str]):
    """Fields valid, the address not added yet, and the host answers as this type: (connection, facts).
    The add-host and zone wizards run it before anything is created."""
    t = hv.resolve(type_name)
    values = _check_fields(t, url, fields)
    conn = t.connection(values["url"], values)
    if db.session.scalar(select(Host.id).where(Host.removed.is_(None), or_(
            Host.url == conn.url, (Host.address == conn.address) & (Host.hypervisor_type == t.name)
            & (conn.address not in ("localhost", "127.0.0.1"))))):
        raise InvalidParameter(f"A host at {conn.address} is already added", field="url")
    return discover(t.name, url, fields)


def add_host(caller, *, cluster_uuid: str, url: str, fields: dict[str, str], pod_uuid: str | None = None,
             zone_uuid: str | None = None, hypervisor: str | None = None, commit: bool = True,
             host_tags=None, external_details=None) -> Host:
    from app.services import placement_tags
    from app.services.extensions import calls as extension_calls
    from app.services.extensions import details as extension_details
    host_tags = placement_tags.normalize(host_tags, "hosttags")
    ext_values = extension_details.parse(external_details, "externaldetails")
    cluster = zones.get_cluster(cluster_uuid)
    if pod_uuid and zones.get_pod(pod_uuid).id != cluster.pod_id:
        raise InvalidParameter("The cluster is not in that pod", field="clusterid")
    if zone_uuid and zones.get_zone(zone_uuid).id != cluster.zone_id:
        raise InvalidParameter("The cluster is not in that zone", field="clusterid")
    t = hv.resolve(cluster.hypervisor_type)
    if hypervisor and hv.resolve(hypervisor).name != t.name:
        raise InvalidParameter(f"Cluster {cluster.name} holds {hv.display_name(t.name)} hosts only; clusters "
                               "never mix hypervisor types", field="hypervisor")
    limit = hv.limits(t.name).max_hosts_per_cluster
    count = db.session.scalar(select(func.count()).select_from(Host).where(Host.cluster_id == cluster.id,
                                                                         Host.removed.is_(None)))
    if count >= limit:
        raise InvalidParameter(f"Cluster {cluster.name} already has {count} hosts, the most a "
                               f"{hv.display_name(t.name)} cluster may hold", field="clusterid")
    # A Custom cluster bound to an extension takes External hosts: checked (and driven) as External.
    checked = hv.resolve("External") if extension_calls.is_external_type(t.name, cluster.id) else t
    if checked.name == "External" and extension_calls.registry.map_of_cluster(cluster.id) is None:
        raise InvalidParameter(f"No extension is registered with cluster {cluster.name} (registerExtension)",
                               field="clusterid")
    conn, facts = check_new_host(checked.name, url, fields)
    _check_labels(cluster.zone_id, checked.name, conn, facts.hostname or conn.address)
    values = _check_fields(checked, url, fields)
    if checked.name == "External":  # the form's "name=value" lines: external details too
        for line in (values.pop("externaldetails", "") or "").splitlines():
            if line.strip():
                name, sep, value = line.partition("=")
                if not sep or not name.strip():
                    raise InvalidParameter(f"External details are name=value lines, not {line.strip()[:40]!r}",
                                           field="externaldetails")
                ext_values.setdefault(name.strip(), value.strip())
    secret = {f.name: values[f.name] for f in checked.host_fields if f.secret and values.get(f.name)}
    public = {f.name: values[f.name] for f in checked.host_fields if not f.secret and f.name != "url"
              and values.get(f.name)}
    zone = cluster.zone
    host = Host(uuid=new_uuid(), name=facts.hostname or conn.address, zone_id=cluster.zone_id, pod_id=cluster.pod_id,
                cluster_id=cluster.id, hypervisor_type=t.name, url=conn.url, address=conn.address,
                credentials_enc=crypto.encrypt_json(secret), details=json.dumps(public), state=HostState.UP,
                resource_state=ResourceState.ENABLED, last_pinged=utcnow(), hypervisor_version=facts.version,
                arch=facts.arch, cpu_sockets=facts.cpu_sockets, cpu_number=facts.cpu_cores, cpu_speed=facts.cpu_mhz,
                memory_total=facts.memory_bytes, local_storage_path=facts.local_storage_path,
                local_storage_total=facts.local_storage_bytes, host_tags=host_tags)
    db.session.add(host)
    db.session.flush()
    if ext_values:  # CloudStack's "External:" host details, sent to the extension as externaldetails.host
        extension_details.replace("Host", host.id, ext_values)
    if zone.local_storage_enabled and t.capabilities.local_storage and facts.local_storage_path:
        db.session.add(StoragePool(uuid=new_uuid(), name=f"{host.name}-local", zone_id=zone.id, pod_id=cluster.pod_id,
                                   cluster_id=cluster.id, host_id=host.id, scope=StorageScope.HOST,
                                   pool_type=PoolType.FILESYSTEM, hypervisor_type=t.name, url=f"file://{facts.local_storage_path}",
                                   path=facts.local_storage_path, capacity_bytes=facts.local_storage_bytes,
                                   used_bytes=max(0, facts.local_storage_bytes - facts.local_storage_free)))
    events.record("HOST.ADD", f"Host {host.name} ({hv.display_name(t.name)} {facts.version}) added to cluster "
                              f"{cluster.name}", user=caller, resource_type="Host", resource_id=host.uuid)
    if commit:
        db.session.commit()
    return host


def _check_labels(zone_id: int, type_name: str, conn, host_name: str) -> None:
    """The zone's traffic labels for this type exist on the host (before anything is made)."""
    from app.services.network import physical
    driver = hv.driver_for(type_name, conn)
    try:
        physical.check_host_labels(zone_id, type_name, driver, host_name)
    except DriverError as e:
        raise ServiceError(f"Unable to check the traffic labels on host {host_name}: {e}", field="url") from None
    finally:
        driver.close()


def connection_for(host: Host):
    t = hv.resolve(host.hypervisor_type)
    fields = {**json.loads(host.details or "{}"), **crypto.decrypt_json(host.credentials_enc)}
    return t.connection(host.url, fields)


def public_settings(host: Host) -> list[tuple[str, str]]:
    """The host's add-host fields as given, secrets left out: (label, value), in the type's order
    (e.g. a Hyper-V host's transport and the certificate fingerprint it is pinned to)."""
    t = registry.get(host.hypervisor_type)
    details = json.loads(host.details or "{}")
    return [(f.label, details[f.name]) for f in (t.host_fields if t else ()) if not f.secret and details.get(f.name)]


def _vm_count(host: Host) -> int:
    return db.session.scalar(select(func.count()).select_from(VirtualMachine).where(
        VirtualMachine.host_id == host.id, VirtualMachine.removed.is_(None),
        VirtualMachine.state != VMState.DESTROYED))


def update_host(caller, uuid: str, *, allocation_state: str | None = None, name: str | None = None,
                host_tags=None) -> Host:
    """updateHost: enable/disable, rename, and its host tags (given: replaced; an empty value clears them)."""
    from app.services import placement_tags
    host = get_host(uuid)
    if host_tags is not None:
        host.host_tags = placement_tags.normalize(host_tags, "hosttags")
    if allocation_state is not None:
        wanted = {"enable": ResourceState.ENABLED, "disable": ResourceState.DISABLED}.get(allocation_state.lower())
        if wanted is None:
            raise InvalidParameter("allocationstate must be Enable or Disable", field="allocationstate")
        if host.resource_state in (ResourceState.MAINTENANCE, ResourceState.PREPARE_FOR_MAINTENANCE):
            raise InvalidParameter("Cancel maintenance before enabling or disabling the host", field="allocationstate")
        host.resource_state = wanted
    if name is not None:
        host.name = zones._name(name)
    events.record("HOST.UPDATE", f"Host {host.name} is {host.resource_state}", user=caller, resource_type="Host",
                  resource_id=host.uuid)
    db.session.commit()
    return host


def prepare_maintenance(caller, uuid: str):
    """PrepareForMaintenance at once (the planner stops placing VMs here), then a job moves
    the host's VMs off: live-migrated to other hosts of the cluster where the type can,
    stopped otherwise. The host ends in Maintenance, or ErrorInMaintenance saying which
    VMs stayed. Returns the job (prepareHostForMaintenance is async, as in CloudStack)."""
    from app.jobs import service as jobs
    host = get_host(uuid)
    done = db.session.execute(update(Host).where(Host.id == host.id, Host.resource_state.in_(
        [ResourceState.ENABLED, ResourceState.DISABLED, ResourceState.ERROR_IN_MAINTENANCE]))
        .values(resource_state=ResourceState.PREPARE_FOR_MAINTENANCE).execution_options(synchronize_session=False))
    db.session.commit()
    if done.rowcount != 1:
        db.session.refresh(host)
        raise InvalidParameter(f"Host {host.name} is {host.resource_state} already", field="id")
    events.record("MAINT.PREPARE", f"Host {host.name} is being prepared for maintenance", user=caller,
                  resource_type="Host", resource_id=host.uuid, commit=True)
    return jobs.submit("prepareHostForMaintenance", caller, "host.maintenance", {"host": host.uuid},
                       instance_type="Host", instance_id=host.uuid)


def cancel_maintenance(caller, uuid: str) -> Host:
    host = get_host(uuid)
    if host.resource_state not in (ResourceState.MAINTENANCE, ResourceState.PREPARE_FOR_MAINTENANCE,
                                   ResourceState.ERROR_IN_MAINTENANCE):
        raise InvalidParameter(f"Host {host.name} is not in maintenance", field="id")
    host.resource_state = ResourceState.ENABLED
    events.record("MAINT.CANCEL", f"Host {host.name} back from maintenance", user=caller, resource_type="Host",
                  resource_id=host.uuid)
    db.session.commit()
    return host


def reconnect(caller, uuid: str) -> Host:
    """Check the host again now; its facts and state follow what it answers."""
    host = get_host(uuid)
    from app.services.extensions import calls as extension_calls
    driver = extension_calls.driver_for(host) if extension_calls.serves(host) else \
        hv.driver_for(host.hypervisor_type, connection_for(host))
    try:
        facts = driver.check_host()
    except DriverError as e:
        host.state, host.state_reason = HostState.ALERT, str(e)[:1000]
        db.session.commit()
        raise ResourceUnavailable(f"Host {host.name} did not answer: {e}") from None
    finally:
        driver.close()
    host.state, host.state_reason, host.last_pinged = HostState.UP, None, utcnow()
    host.hypervisor_version, host.cpu_number, host.cpu_speed = facts.version, facts.cpu_cores, facts.cpu_mhz
    host.memory_total = facts.memory_bytes
    db.session.commit()
    return host


def delete_host(caller, uuid: str) -> None:
    host = get_host(uuid)
    if _vm_count(host):
        raise ResourceInUse(f"Host {host.name} still holds VMs; it can be removed only when empty")
    host.removed = utcnow()
    host.state = HostState.REMOVED
    for pool in db.session.scalars(select(StoragePool).where(StoragePool.host_id == host.id,
                                                             StoragePool.removed.is_(None))):
        pool.removed = utcnow()
    from app.services.extensions import details as extension_details
    extension_details.forget("Host", [host.id])
    events.record("HOST.DELETE", f"Host {host.name} removed", user=caller, resource_type="Host", resource_id=host.uuid)
    db.session.commit()


# Sort keys the admin lists accept (a whitelist: the key comes from the query string).
HOST_SORTS = {"name": Host.name, "zone": name_of(Zone, Host.zone_id), "pod": name_of(Pod, Host.pod_id),
              "cluster": name_of(Cluster, Host.cluster_id), "hypervisor": Host.hypervisor_type,
              "state": Host.state, "resourcestate": Host.resource_state,
              "cpu": ratio(Host.cpu_allocated, Host.cpu_number * Host.cpu_speed),
              "memory": ratio(Host.memory_allocated, Host.memory_total)}


def list_hosts(*, id=None, zone_uuid=None, pod_uuid=None, cluster_uuid=None, state=None, hypervisor=None,
               name=None, keyword=None, resource_state=None, page=None, sort: str | None = None):
    q = (sorted_by(select(Host).where(Host.removed.is_(None)), sort, HOST_SORTS, Host.id)
         .options(joinedload(Host.cluster), joinedload(Host.pod), joinedload(Host.zone)))  # no query per row
    if id:
        q = q.where(Host.uuid == id)
    if zone_uuid:
        q = q.where(Host.zone_id == zones.get_zone(zone_uuid).id)
    if pod_uuid:
        q = q.where(Host.pod_id == zones.get_pod(pod_uuid).id)
    if cluster_uuid:
        q = q.where(Host.cluster_id == zones.get_cluster(cluster_uuid).id)
    if state:
        q = q.where(Host.state == state)
    if resource_state:
        q = q.where(Host.resource_state == resource_state)
    if hypervisor:
        q = q.where(Host.hypervisor_type == hv.resolve(hypervisor).name)
    if name:
        q = q.where(Host.name == name)
    if keyword:
        q = q.where(Host.name.contains(keyword, autoescape=True))
    return page_of(q, page)


def host_choices(limit: int = 500) -> list[tuple[str, str]]:
    """(uuid, name) of live hosts by name, for filter selects: one light query, no objects."""
    return [tuple(r) for r in db.session.execute(select(Host.uuid, Host.name).where(Host.removed.is_(None))
                                                 .order_by(Host.name).limit(limit))]

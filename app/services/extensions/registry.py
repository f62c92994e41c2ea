"""Extensions and the clusters they serve (CloudStack's ExtensionsManagerImpl: createExtension,
listExtensions, updateExtension, deleteExtension, registerExtension, unregisterExtension)."""
from __future__ import annotations

import os

from sqlalchemy import func, select

from app.extensions import db
from app.models import utcnow, Cluster, Extension, ExtensionCustomAction, ExtensionResourceMap, ExtensionState, Host
from app.services import events
from app.services.errors import InvalidParameter, NotFound, ResourceInUse, ServiceError
from app.services.extensions import details, paths

TYPES = ("Orchestrator",)
STATES = (ExtensionState.ENABLED, ExtensionState.DISABLED)
RESOURCE_TYPES = ("Cluster",)
EXTERNAL = "External"  # the hypervisor type an extension drives
CUSTOM = "Custom"  # may be bound to an extension instead of a libvirt URI


class Refused(ServiceError):
    """A refusal CloudStack's ExtensionsManagerImpl throws as CloudRuntimeException: 530 with
    its text, shown to every caller."""
    shown_to_users = True


def get(uuid: str, field: str = "id") -> Extension:
    e = db.session.scalar(select(Extension).where(Extension.uuid == uuid, Extension.removed.is_(None)))
    if e is None:
        raise NotFound("Unable to find the extension with the specified id", field=field)
    return e


def _state(value: str | None, default: str) -> str:
    if value is None or value == "":
        return default
    for s in STATES:
        if s.lower() == value.strip().lower():
            return s
    raise InvalidParameter("Invalid state specified", field="state")


def evaluate(e: Extension, *, accept: bool = False) -> tuple[paths.PathState, bool, str | None]:
    """The executable's state now against what is recorded: (its state, ready, why not).
    Writes nothing: a call's check (calls.py) may run in the middle of its caller's work."""
    st = paths.inspect(e.name, e.relative_path)
    if st.ready and e.checksum is not None and not accept and e.checksum != st.checksum:
        return st, False, (f"{st.path} changed: its checksum {st.checksum[:12]}… is not the recorded "
                           f"{e.checksum[:12]}… (put the recorded file back, or update the extension "
                           "with state=Enabled to accept this one)")
    return st, st.ready, st.reason


def refresh_path(e: Extension, *, accept: bool = False) -> paths.PathState:
    """Check the executable now and record what was found (in the session; the caller commits).
    A first good file's checksum is recorded; later a different one makes the extension Not
    Ready until it matches again, or until the admin accepts the new file (accept:
    updateExtension re-enabling it)."""
    st, ready, reason = evaluate(e, accept=accept)
    if st.ready and (e.checksum is None or accept):
        e.checksum = st.checksum
    if (e.path_ready, e.path_reason) != (ready, reason):
        e.path_ready, e.path_reason = ready, reason
        if not ready:
            events.record("EXTENSION.PATH", f"Extension {e.name} is Not Ready: {reason}", level="WARN",
                          resource_type="Extension", resource_id=e.uuid)
    return st


def check_paths() -> int:
    """Every extension's executable checked and its state recorded (the monitor, after each
    sweep: CloudStack's periodic path state check). Returns how many changed state."""
    changed = 0
    for e in db.session.scalars(select(Extension).where(Extension.removed.is_(None))):
        before = (e.path_ready, e.path_reason)
        refresh_path(e)
        changed += (e.path_ready, e.path_reason) != before
        db.session.commit()
    return changed


def create(caller, *, name: str, type: str, description: str | None = None, path: str | None = None,
           orchestrator_requires_prepare_vm: bool | None = None, state: str | None = None,
           details_map=None) -> Extension:
    name = paths.check_name(name)
    if type not in TYPES:
        raise Refused(f"Invalid type specified - {type}", field="type")
    relative = paths.check_relative(name, path)
    st = _state(state, ExtensionState.ENABLED)
    values = details.parse(details_map)
    if db.session.scalar(select(Extension.id).where(func.lower(Extension.name) == name.lower(),
                                                    Extension.removed.is_(None))):
        raise Refused("Extension by name already exists", field="name")
    e = Extension(name=name, type=type, description=description, relative_path=relative, state=st,
                  orchestrator_requires_prepare_vm=bool(orchestrator_requires_prepare_vm))
    db.session.add(e)
    db.session.flush()
    details.replace("Extension", e.id, values)
    os.makedirs(paths.directory(name), mode=0o755, exist_ok=True)  # where the admin puts its files
    refresh_path(e)
    events.record("EXTENSION.CREATE", f"Extension {name} created ({'ready' if e.path_ready else 'Not Ready'})",
                  user=caller, resource_type="Extension", resource_id=e.uuid)
    db.session.commit()
    return e


def list_extensions(*, id=None, name=None, keyword=None, page=None):
    q = select(Extension).where(Extension.removed.is_(None))
    if id:
        q = q.where(Extension.uuid == id)
    if name:
        q = q.where(Extension.name == name)
    if keyword:
        q = q.where(Extension.name.ilike(f"%{keyword}%"))
    total = db.session.scalar(select(func.count()).select_from(q.subquery()))
    q = q.order_by(Extension.id.desc())
    if page is not None:
        q = q.offset(page.offset).limit(page.limit)
    rows = list(db.session.scalars(q))
    for e in rows:  # the page and the API show the executable as it is now
        refresh_path(e)
    db.session.commit()
    return rows, total


def update(caller, uuid: str, *, description: str | None = None, orchestrator_requires_prepare_vm: bool | None = None,
           state: str | None = None, details_map=None, cleanup_details: bool | None = None) -> Extension:
    e = get(uuid)
    values = details.parse(details_map) if details_map else None
    new_state = _state(state, e.state)
    if description is not None:
        e.description = description
    if orchestrator_requires_prepare_vm is not None:
        e.orchestrator_requires_prepare_vm = orchestrator_requires_prepare_vm
    if cleanup_details:
        details.replace("Extension", e.id, {})
    elif values:
        details.replace("Extension", e.id, values)
    e.state = new_state
    refresh_path(e, accept=bool(state) and new_state == ExtensionState.ENABLED)
    events.record("EXTENSION.UPDATE", f"Extension {e.name} updated ({e.state})", user=caller,
                  resource_type="Extension", resource_id=e.uuid)
    db.session.commit()
    return e


def delete(caller, uuid: str, cleanup: bool = False) -> None:
    e = get(uuid)
    if not e.user_defined:
        raise InvalidParameter("System extension can not be deleted", field="id")
    if db.session.scalar(select(ExtensionResourceMap.id).where(ExtensionResourceMap.extension_id == e.id)):
        raise ResourceInUse("Extension has associated resources, unregister them to delete the extension")
    actions = list(db.session.scalars(select(ExtensionCustomAction).where(
        ExtensionCustomAction.extension_id == e.id, ExtensionCustomAction.removed.is_(None))))
    details.forget("ExtensionCustomAction", [a.id for a in actions])
    for a in actions:
        a.removed = utcnow()
    details.forget("Extension", [e.id])
    e.removed = utcnow()
    # The name may be used again: the removed row keeps its uuid, not its name.
    e.name = f"{e.name}-removed-{e.id}"[:255]
    events.record("EXTENSION.DELETE", f"Extension {e.name} deleted", user=caller, resource_type="Extension",
                  resource_id=e.uuid)
    db.session.commit()
    if cleanup:
        from app.hypervisors.external import runner
        runner.sweep(paths.payload_dir(e.name), 0)


# --- Clusters --------------------------------------------------------------------------

def map_of_cluster(cluster_id: int) -> ExtensionResourceMap | None:
    return db.session.scalar(select(ExtensionResourceMap).where(ExtensionResourceMap.resource_type == "Cluster",
                                                                ExtensionResourceMap.resource_id == cluster_id))


def extension_of_cluster(cluster_id: int) -> Extension | None:
    m = map_of_cluster(cluster_id)
    return m.extension if m else None


def _cluster(uuid: str) -> Cluster:
    c = db.session.scalar(select(Cluster).where(Cluster.uuid == uuid, Cluster.removed.is_(None)))
    if c is None:
        raise InvalidParameter("Invalid cluster ID specified", field="resourceid")
    return c


def register_with_cluster(caller, e: Extension, cluster: Cluster, values: dict[str, str], *,
                          commit: bool = True) -> ExtensionResourceMap:
    if cluster.hypervisor_type not in (EXTERNAL, CUSTOM):
        raise InvalidParameter(f"Cluster ID: {cluster.uuid} is not of External hypervisor type (it is "
                               f"{cluster.hypervisor_type})", field="resourceid")
    if map_of_cluster(cluster.id) is not None:
        raise InvalidParameter("Extension already registered with this resource", field="resourceid")
    if cluster.hypervisor_type == CUSTOM and db.session.scalar(select(Host.id).where(
            Host.cluster_id == cluster.id, Host.removed.is_(None))):
        raise ResourceInUse(f"Cluster {cluster.name} has libvirt hosts; a Custom cluster is bound to an extension "
                            "before its first host")
    m = ExtensionResourceMap(extension_id=e.id, resource_type="Cluster", resource_id=cluster.id)
    db.session.add(m)
    db.session.flush()
    details.replace("ExtensionResourceMap", m.id, values)
    events.record("EXTENSION.RESOURCE.REGISTER", f"Extension {e.name} registered with cluster {cluster.name}",
                  user=caller, resource_type="Extension", resource_id=e.uuid)
    if commit:
        db.session.commit()
    return m


def register(caller, *, extension_uuid: str, resource_id: str, resource_type: str, details_map=None) -> Extension:
    if resource_type not in RESOURCE_TYPES:
        raise InvalidParameter(f"Currently only [Cluster] can be used to register an extension of type "
                               "Orchestrator", field="resourcetype")
    cluster = _cluster(resource_id)
    e = get(extension_uuid, "extensionid")
    register_with_cluster(caller, e, cluster, details.parse(details_map))
    return e


def unregister(caller, *, extension_uuid: str, resource_id: str, resource_type: str) -> Extension:
    if resource_type not in RESOURCE_TYPES:
        raise InvalidParameter("Currently only [Cluster] can be used to unregister an extension of type "
                               "Orchestrator", field="resourcetype")
    cluster = _cluster(resource_id)
    e = get(extension_uuid, "extensionid")
    m = map_of_cluster(cluster.id)
    if m is None or m.extension_id != e.id:
        return e  # CloudStack: nothing to do
    if db.session.scalar(select(Host.id).where(Host.cluster_id == cluster.id, Host.removed.is_(None))):
        raise ResourceInUse(f"Cluster {cluster.name} still has hosts the extension drives; remove them first")
    details.forget("ExtensionResourceMap", [m.id])
    db.session.delete(m)
    events.record("EXTENSION.RESOURCE.UNREGISTER", f"Extension {e.name} unregistered from cluster {cluster.name}",
                  user=caller, resource_type="Extension", resource_id=e.uuid)
    db.session.commit()
    return e


def clusters_of(e: Extension) -> list[tuple[ExtensionResourceMap, Cluster]]:
    rows = db.session.execute(select(ExtensionResourceMap, Cluster).join(
        Cluster, Cluster.id == ExtensionResourceMap.resource_id).where(
        ExtensionResourceMap.extension_id == e.id, ExtensionResourceMap.resource_type == "Cluster")).all()
    return [(m, c) for m, c in rows]

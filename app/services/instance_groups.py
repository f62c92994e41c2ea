"""Instance groups (CloudStack's createInstanceGroup, ...): named groups of one account's
VMs, a VM in at most one. deployVirtualMachine and updateVirtualMachine take `group` by
name and make the group when the account has none of that name, as CloudStack does."""
from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import InstanceGroup, VirtualMachine, new_uuid
from app.services import access, events
from app.services.errors import InvalidParameter, NotFound
from app.services.pagination import page_of


def _name(name: str | None) -> str:
    name = (name or "").strip()
    if not name or len(name) > 255 or any(ord(c) < 32 for c in name):
        raise InvalidParameter("name is required: 1-255 printable characters", field="name")
    return name


def get_group(caller, uuid: str, field: str = "id") -> InstanceGroup:
    """Another account's group is "not found", exactly like a missing one."""
    g = db.session.scalar(select(InstanceGroup).where(InstanceGroup.uuid == uuid,
                                                      access.owned(caller, InstanceGroup.account_id)))
    if g is None:
        raise NotFound("Unable to find instance group with the specified id", field=field)
    return g


def _by_name(account_id: int, name: str) -> InstanceGroup | None:
    return db.session.scalar(select(InstanceGroup).where(InstanceGroup.account_id == account_id,
                                                         InstanceGroup.name == name))


def create(caller, name: str, *, account: str | None = None, domainid: str | None = None,
           projectid: str | None = None) -> InstanceGroup:
    name = _name(name)
    owner = access.owner_for(caller, account, domainid, projectid)
    if _by_name(owner.id, name) is not None:
        raise InvalidParameter(f"Unable to create vm group, a group with name {name} already exists for account "
                               f"{owner.name}", field="name")
    g = InstanceGroup(uuid=new_uuid(), name=name, account_id=owner.id)
    db.session.add(g)
    try:
        db.session.flush()
    except IntegrityError:  # a parallel create of the same name won
        db.session.rollback()
        raise InvalidParameter(f"Unable to create vm group, a group with name {name} already exists for account "
                               f"{owner.name}", field="name") from None
    events.record("VM.GROUP.CREATE", f"Instance group {name} created", user=caller,
                  resource_type="InstanceGroup", resource_id=g.uuid)
    db.session.commit()
    return g


def for_vm(account_id: int, name: str) -> InstanceGroup:
    """The account's group of this name, made when missing (deploy/updateVirtualMachine `group`).
    Uncommitted: it is written with the VM's change."""
    name = _name(name)
    g = _by_name(account_id, name)
    if g is None:
        g = InstanceGroup(uuid=new_uuid(), name=name, account_id=account_id)
        db.session.add(g)
        db.session.flush()
    return g


def update_group(caller, uuid: str, name: str | None) -> InstanceGroup:
    g = get_group(caller, uuid)
    if name is not None:
        name = _name(name)
        other = _by_name(g.account_id, name)
        if other is not None and other.id != g.id:
            raise InvalidParameter(f"Unable to update vm group, a group with name {name} already exists for "
                                   "account", field="name")
        g.name = name
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise InvalidParameter(f"Unable to update vm group, a group with name {name} already exists for "
                               "account", field="name") from None
    return g


def delete(caller, uuid: str) -> None:
    """The group goes; its VMs stay, in no group (CloudStack's deleteInstanceGroup)."""
    g = get_group(caller, uuid)
    db.session.execute(update(VirtualMachine).where(VirtualMachine.group_id == g.id).values(group_id=None)
                       .execution_options(synchronize_session=False))
    events.record("VM.GROUP.DELETE", f"Instance group {g.name} deleted", user=caller,
                  resource_type="InstanceGroup", resource_id=g.uuid)
    db.session.delete(g)
    db.session.commit()


def list_groups(caller, *, id=None, name=None, keyword=None, account=None, domainid=None, page=None):
    return page_of(access.named_rows(caller, InstanceGroup, id=id, name=name, keyword=keyword, account=account,
                                     domainid=domainid), page)


def member_counts(group_ids: list[int]) -> dict[int, int]:
    return dict(db.session.execute(select(VirtualMachine.group_id, func.count()).where(
        VirtualMachine.group_id.in_(group_ids), VirtualMachine.removed.is_(None)).group_by(VirtualMachine.group_id)).all())

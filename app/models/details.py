"""Resource details (CloudStack's *_details tables: user_vm_details, volume_details,
data_center_details, ...) in one table, and regions (CloudStack's `region`).

A detail is a key/value pair on an object named by CloudStack's resource type and the
object's internal id; `display` is CloudStack's fordisplay (false: kept from regular users).
A VM's details (updateVirtualMachine details, listVirtualMachines `details`) are these rows
with resource_type "UserVm": one store, whichever command wrote them."""
from __future__ import annotations

from sqlalchemy import Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class ResourceDetail(db.Model):
    __tablename__ = "resource_details"
    # One value per key on an object (addResourceDetail on an existing key replaces it, as
    # CloudStack's ResourceDetailsDaoBase.addDetail does); the prefix serves "this object's details".
    __table_args__ = (UniqueConstraint("resource_type", "resource_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(32))  # UserVm, Volume, Zone, ServiceOffering, ...
    resource_id: Mapped[int] = mapped_column(Integer)  # the object's internal id
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)
    display: Mapped[bool] = mapped_column(Boolean, default=True)


class Region(db.Model):
    """A region: CloudStack's `region` row (id chosen by the admin, unique name, an endpoint).
    Region 1 is this management server (made by the migration); its endpoint, when empty, is
    the address a client used."""
    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    endpoint: Mapped[str | None] = mapped_column(String(255))

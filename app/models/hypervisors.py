"""Admin-tunable limits per hypervisor type (CloudStack's hypervisor_capabilities).
The feature flags themselves are declared by each type in code."""
from __future__ import annotations

from sqlalchemy import Boolean, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import PublicIdMixin


class HypervisorCapability(PublicIdMixin, db.Model):
    __tablename__ = "hypervisor_capabilities"
    __table_args__ = (UniqueConstraint("hypervisor_type", "hypervisor_version"),)

    hypervisor_type: Mapped[str] = mapped_column(String(64))  # internal name
    hypervisor_version: Mapped[str] = mapped_column(String(64), default="default")
    max_guests_limit: Mapped[int] = mapped_column(Integer)
    max_data_volumes_limit: Mapped[int] = mapped_column(Integer)
    max_hosts_per_cluster: Mapped[int] = mapped_column(Integer)
    security_group_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    storage_motion_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    vm_snapshot_enabled: Mapped[bool] = mapped_column(Boolean, default=False)

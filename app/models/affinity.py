"""Affinity groups (CloudStack's affinity_group and affinity_group_vm_map): VMs that must run on
one host ("host affinity") or on different hosts ("host anti-affinity")."""
from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin

HOST_AFFINITY = "host affinity"
HOST_ANTI_AFFINITY = "host anti-affinity"
TYPES = (HOST_AFFINITY, HOST_ANTI_AFFINITY)  # listAffinityGroupTypes, in CloudStack's words


class AffinityGroup(PublicIdMixin, db.Model):
    """Deleted for good, as CloudStack expunges them (the VMs' memberships go with it)."""
    __tablename__ = "affinity_groups"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(4096))
    type: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # Bumped by every planner placing a member (an UPDATE that takes the row's lock): two
    # placements into one group are one after the other, each seeing where the other went.
    placements: Mapped[int] = mapped_column(Integer, default=0)

    account = relationship("Account")


class AffinityGroupVM(db.Model):
    __tablename__ = "affinity_group_vm_map"
    __table_args__ = (UniqueConstraint("affinity_group_id", "vm_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    affinity_group_id: Mapped[int] = mapped_column(ForeignKey("affinity_groups.id", ondelete="CASCADE"))
    vm_id: Mapped[int] = mapped_column(ForeignKey("vm_instances.id", ondelete="CASCADE"), index=True)

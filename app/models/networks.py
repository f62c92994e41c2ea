"""Guest networks and their IP address allocations."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin


class Network(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "networks"

    name: Mapped[str] = mapped_column(String(255))
    display_text: Mapped[str | None] = mapped_column(String(1024))
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    # None: shared by every account of the zone.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str] = mapped_column(String(64))
    netmask: Mapped[str] = mapped_column(String(64))
    start_ip: Mapped[str] = mapped_column(String(64))
    end_ip: Mapped[str] = mapped_column(String(64))
    vlan: Mapped[int | None] = mapped_column(Integer)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="Implemented")

    zone = relationship("Zone")


class IpAddress(db.Model):
    """One allocated guest IP; the unique constraint makes allocation atomic."""

    __tablename__ = "ip_addresses"
    __table_args__ = (UniqueConstraint("network_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(64))
    nic_id: Mapped[int | None] = mapped_column(ForeignKey("nics.id", ondelete="SET NULL"), index=True)
    allocated: Mapped[datetime | None] = mapped_column(DateTime)

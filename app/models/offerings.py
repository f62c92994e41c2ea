"""Service offerings (CPU/memory) and disk offerings (data volume sizes)."""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin


class ServiceOffering(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "service_offerings"

    name: Mapped[str] = mapped_column(String(255))
    display_text: Mapped[str | None] = mapped_column(String(4096))
    cpu_number: Mapped[int] = mapped_column(Integer)
    cpu_speed: Mapped[int] = mapped_column(Integer)  # MHz
    memory: Mapped[int] = mapped_column(Integer)  # MiB
    storage_type: Mapped[str] = mapped_column(String(16), default="shared")  # shared | local
    root_disk_size: Mapped[int | None] = mapped_column(BigInteger)  # GiB, None = template size
    offer_ha: Mapped[bool] = mapped_column(Boolean, default=False)
    host_tags: Mapped[str | None] = mapped_column(String(4096))  # comma separated: hosts need them all
    storage_tags: Mapped[str | None] = mapped_column(String(4096))  # comma separated: root volume pools
    sort_key: Mapped[int] = mapped_column(Integer, default=0)  # lists: ascending, then by id
    # CloudStack's customized offering: vCPUs and memory chosen at deploy (details cpuNumber,
    # memory) within these bounds (serviceofferingdetails mincpunumber ... maxmemory); cpu_number
    # and memory hold the least, cpu_speed is fixed.
    is_customized: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    min_cpu_number: Mapped[int | None] = mapped_column(Integer)
    max_cpu_number: Mapped[int | None] = mapped_column(Integer)
    min_memory: Mapped[int | None] = mapped_column(Integer)  # MiB
    max_memory: Mapped[int | None] = mapped_column(Integer)  # MiB


class DiskOffering(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "disk_offerings"

    name: Mapped[str] = mapped_column(String(255))
    display_text: Mapped[str | None] = mapped_column(String(4096))
    disk_size: Mapped[int] = mapped_column(BigInteger, default=0)  # GiB, 0 when custom
    is_custom: Mapped[bool] = mapped_column(Boolean, default=False)
    storage_type: Mapped[str] = mapped_column(String(16), default="shared")
    tags: Mapped[str | None] = mapped_column(String(4096))  # storage tags, comma separated
    sort_key: Mapped[int] = mapped_column(Integer, default=0)


class OfferingDomain(db.Model):
    """A domain a service or disk offering is restricted to (CloudStack's service_offering_details /
    disk_offering_details rows named "domainid"): an offering with none is public; with some, the
    accounts of those domains and of every domain below them may see and use it."""
    __tablename__ = "offering_domains"
    __table_args__ = (UniqueConstraint("offering_type", "offering_id", "domain_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    offering_type: Mapped[str] = mapped_column(String(16))  # ServiceOffering | DiskOffering
    offering_id: Mapped[int] = mapped_column(Integer)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)


class OfferingZone(db.Model):
    """A zone a service or disk offering is restricted to (the offerings' "zoneid" details in
    CloudStack): with none it serves every zone."""
    __tablename__ = "offering_zones"
    __table_args__ = (UniqueConstraint("offering_type", "offering_id", "zone_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    offering_type: Mapped[str] = mapped_column(String(16))  # ServiceOffering | DiskOffering
    offering_id: Mapped[int] = mapped_column(Integer)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id", ondelete="CASCADE"), index=True)

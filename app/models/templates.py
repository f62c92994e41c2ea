"""Templates and ISOs, their copies on image stores and their caches on primary pools."""
from __future__ import annotations

from enum import StrEnum

from sqlalchemy import false, BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin


class OsCategory(PublicIdMixin, db.Model):
    __tablename__ = "os_categories"

    name: Mapped[str] = mapped_column(String(255), unique=True)


class OsType(PublicIdMixin, db.Model):
    __tablename__ = "os_types"

    description: Mapped[str] = mapped_column(String(255), unique=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("os_categories.id"))

    category: Mapped[OsCategory] = relationship()


class TemplateFormat(StrEnum):
    RAW = "RAW"
    QCOW2 = "QCOW2"
    VHD = "VHD"
    VHDX = "VHDX"
    OVA = "OVA"
    TAR = "TAR"
    ISO = "ISO"


class DownloadState(StrEnum):
    NOT_DOWNLOADED = "NOT_DOWNLOADED"
    DOWNLOADING = "DOWNLOAD_IN_PROGRESS"
    DOWNLOADED = "DOWNLOADED"
    ERROR = "DOWNLOAD_ERROR"
    BYPASSED = "BYPASSED"  # direct download: not kept on secondary storage


class Template(PublicIdMixin, RemovableMixin, db.Model):
    """A template or (is_iso) an ISO."""

    __tablename__ = "templates"

    name: Mapped[str] = mapped_column(String(255), index=True)
    display_text: Mapped[str | None] = mapped_column(String(4096))
    is_iso: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    format: Mapped[str] = mapped_column(String(16))
    hypervisor_type: Mapped[str | None] = mapped_column(String(64), index=True)  # None for ISOs
    os_type_id: Mapped[int | None] = mapped_column(ForeignKey("os_types.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str | None] = mapped_column(String(2048))
    checksum: Mapped[str | None] = mapped_column(String(255))
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    featured: Mapped[bool] = mapped_column(Boolean, default=False)
    bootable: Mapped[bool] = mapped_column(Boolean, default=True)
    direct_download: Mapped[bool] = mapped_column(Boolean, default=False)
    # CloudStack's isextractable: extractTemplate/extractIso may hand out a download URL
    extractable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    size: Mapped[int | None] = mapped_column(BigInteger)  # virtual size, bytes
    physical_size: Mapped[int | None] = mapped_column(BigInteger)
    # CloudStack's passwordenabled: its guests take a password from the router at boot.
    password_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # linkUserDataToTemplate (CloudStack 4.18+): user data every VM of this template gets, and
    # how a deploy's own user data meets it (ALLOWOVERRIDE, APPEND, DENYOVERRIDE).
    userdata_id: Mapped[int | None] = mapped_column(ForeignKey("user_data.id"))
    userdata_policy: Mapped[str | None] = mapped_column(String(16))

    os_type: Mapped[OsType | None] = relationship()
    linked_userdata = relationship("UserData", foreign_keys=[userdata_id])
    account = relationship("Account")


class TemplateStoreRef(db.Model):
    """A template's copy (or download) on one image store of one zone."""

    __tablename__ = "template_store_refs"
    __table_args__ = (UniqueConstraint("template_id", "zone_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    image_store_id: Mapped[int | None] = mapped_column(ForeignKey("image_stores.id"))
    state: Mapped[str] = mapped_column(String(32), default=DownloadState.NOT_DOWNLOADED)
    download_pct: Mapped[int] = mapped_column(Integer, default=0)
    downloaded_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    install_path: Mapped[str | None] = mapped_column(String(2048))
    size: Mapped[int | None] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("async_jobs.id", ondelete="SET NULL"))

    template: Mapped[Template] = relationship()
    zone = relationship("Zone")


class TemplatePoolRef(db.Model):
    """A template cached on a primary pool (base image for thin clones / direct download)."""

    __tablename__ = "template_pool_refs"
    __table_args__ = (UniqueConstraint("template_id", "pool_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("storage_pools.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(32), default=DownloadState.NOT_DOWNLOADED)
    install_path: Mapped[str | None] = mapped_column(String(2048))
    size: Mapped[int] = mapped_column(BigInteger, default=0)


class TemplatePermission(db.Model):
    """CloudStack's launch_permission: another account may see and deploy from a private
    template or ISO (updateTemplatePermissions op=add)."""

    __tablename__ = "template_permissions"
    __table_args__ = (UniqueConstraint("template_id", "account_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)

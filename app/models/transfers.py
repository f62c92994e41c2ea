"""Bytes going out of and into Nubo through its own HTTP endpoints (CloudStack's SSVM
URLs): extracts (extractTemplate / extractVolume download URLs) and a volume's copy on
an image store while it waits for its first attach (uploadVolume, getUploadParamsForVolume:
CloudStack's volume_store_ref)."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin, utcnow


class ExtractState(StrEnum):
    """CloudStack's Upload.Status names where it has one."""
    COPYING = "COPY_IN_PROGRESS"  # a volume is being copied to the image store
    READY = "DOWNLOAD_URL_CREATED"
    ERROR = "ERROR"
    EXPIRED = "DOWNLOAD_URL_NOT_CREATED"  # expired or failed: the URL answers 404


class Extract(PublicIdMixin, RemovableMixin, db.Model):
    """One download URL. The URL carries a random token; only its SHA-256 is kept here.
    A volume's extract owns its file (a copy made for it, deleted at expiry); a template's
    serves the template's own file on the store."""
    __tablename__ = "extracts"

    kind: Mapped[str] = mapped_column(String(16))  # Template, Iso, Volume
    object_uuid: Mapped[str] = mapped_column(String(40), index=True)
    name: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    image_store_id: Mapped[int | None] = mapped_column(ForeignKey("image_stores.id"))
    install_path: Mapped[str | None] = mapped_column(String(2048))  # relative to the store's root
    owns_file: Mapped[bool] = mapped_column(Boolean, default=False)
    file_name: Mapped[str] = mapped_column(String(255))  # the name the download is offered under
    mode: Mapped[str] = mapped_column(String(16), default="HTTP_DOWNLOAD")
    state: Mapped[str] = mapped_column(String(32), default=ExtractState.COPYING)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    expires: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("async_jobs.id", ondelete="SET NULL"))

    zone = relationship("Zone")
    account = relationship("Account")


class VolumeStoreRef(db.Model):
    """An uploaded volume's image on the zone's image store (CloudStack's volume_store_ref):
    filled by uploadVolume's download job or by a browser POST, checked like a template,
    then moved into primary storage at the volume's first attach and deleted. It counts
    `counted_gib` GiB of the account's secondary storage (resource type 11) while it exists."""
    __tablename__ = "volume_store_refs"

    id: Mapped[int] = mapped_column(primary_key=True)
    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    image_store_id: Mapped[int] = mapped_column(ForeignKey("image_stores.id"))
    url: Mapped[str | None] = mapped_column(String(2048))  # None: a browser upload
    checksum: Mapped[str | None] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(32))  # DownloadState
    download_pct: Mapped[int] = mapped_column(Integer, default=0)
    downloaded_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    install_path: Mapped[str] = mapped_column(String(2048))
    physical_size: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("async_jobs.id", ondelete="SET NULL"))
    quota_counted: Mapped[bool] = mapped_column(default=False)
    counted_gib: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    volume = relationship("Volume")

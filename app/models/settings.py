"""Global settings (CloudStack's configuration table). Definitions live in
app/services/settings.py; rows hold the current values."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import utcnow


class Setting(db.Model):
    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    default: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(64), default="Advanced")
    description: Mapped[str] = mapped_column(Text, default="")
    is_dynamic: Mapped[bool] = mapped_column(Boolean, default=True)
    scope: Mapped[str] = mapped_column(String(32), default="global")
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class SettingValue(db.Model):
    """A setting's value in one scope (CloudStack's data_center_details, cluster_details,
    account_details, domain_details, storage_pool_details rows of a configuration key):
    scope is zone | cluster | account | domain | storagepool, scope_id that row's id."""
    __tablename__ = "setting_values"
    __table_args__ = (UniqueConstraint("name", "scope", "scope_id", name="uq_setting_values_name_scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    scope: Mapped[str] = mapped_column(String(32))
    scope_id: Mapped[int] = mapped_column(Integer)
    value: Mapped[str] = mapped_column(Text)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

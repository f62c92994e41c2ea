"""Extensions (CloudStack 4.21's extensions framework): an executable the admin registers that
drives an orchestrator for the External hypervisor type, the clusters it serves, its custom
actions, and the external details of every object that sends them (CloudStack's extension,
extension_resource_map, extension_custom_action and their *_details tables, plus the
"External:" details of hosts, templates, offerings and VMs).

The module is models/extensions.py; app/extensions.py is Flask's db/login/csrf objects."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin, utcnow


class ExtensionState:
    ENABLED = "Enabled"
    DISABLED = "Disabled"


class Extension(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "extensions"

    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(4096))
    type: Mapped[str] = mapped_column(String(32), default="Orchestrator")
    # Relative to <extensions directory>/<name>/ (CloudStack's relative path).
    relative_path: Mapped[str] = mapped_column(String(1024))
    # sha256 of the executable when it was last accepted (create, or updateExtension re-enabling it);
    # rechecked before every call and by the monitor: a different file makes the extension Not Ready.
    checksum: Mapped[str | None] = mapped_column(String(64))
    path_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    path_reason: Mapped[str | None] = mapped_column(String(1024))  # why it is not ready
    orchestrator_requires_prepare_vm: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=ExtensionState.ENABLED)
    user_defined: Mapped[bool] = mapped_column(Boolean, default=True)


class ExtensionResourceMap(db.Model):
    """An extension registered with a resource (a cluster: one extension per cluster)."""
    __tablename__ = "extension_resource_maps"
    __table_args__ = (UniqueConstraint("resource_type", "resource_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    extension_id: Mapped[int] = mapped_column(ForeignKey("extensions.id"), index=True)
    resource_type: Mapped[str] = mapped_column(String(32), default="Cluster")
    resource_id: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    extension: Mapped[Extension] = relationship()


class ExtensionCustomAction(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "extension_custom_actions"
    __table_args__ = (UniqueConstraint("extension_id", "name"),)

    extension_id: Mapped[int] = mapped_column(ForeignKey("extensions.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(4096))
    resource_type: Mapped[str | None] = mapped_column(String(32))  # VirtualMachine
    allowed_role_types: Mapped[str] = mapped_column(String(255), default="Admin")  # comma separated
    success_message: Mapped[str | None] = mapped_column(String(4096))
    error_message: Mapped[str | None] = mapped_column(String(4096))
    timeout: Mapped[int] = mapped_column(Integer, default=3)  # seconds
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The declared parameters: JSON list of {name, type, validationformat, valueoptions, required}.
    parameters: Mapped[str] = mapped_column(Text, default="[]")

    extension: Mapped[Extension] = relationship()


class ExternalDetail(db.Model):
    """One key/value of an object's external details. owner_type: Extension,
    ExtensionResourceMap, ExtensionCustomAction, Host, VMTemplate, ServiceOffering, UserVm
    (given at deploy), or UserVmPrepared (what the extension's `prepare` answered).
    A secret (password, token, key, ...) is stored encrypted and never shown back."""
    __tablename__ = "external_details"
    __table_args__ = (UniqueConstraint("owner_type", "owner_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_type: Mapped[str] = mapped_column(String(32))
    owner_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)
    secret: Mapped[bool] = mapped_column(Boolean, default=False)

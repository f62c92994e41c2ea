"""HA work: one row per VM taken from a host judged Down (CloudStack's op_ha_work).

The monitor writes the rows when a host goes Down and works them off sweep by sweep
(app/services/ha/work.py), so a monitor killed at any step leaves rows that the next
sweep (of this monitor after a restart, or of another) picks up again.

- type HA: an HA-enabled VM to start again on another host of its cluster
  (Scheduled → Restarting → Done, or back to Scheduled to retry, or Error after
  max.retries; Cancelled when there is nothing to do any more).
- type Stop: a VM that was only marked Stopped (not HA-enabled, or its host's death could
  not be confirmed); Done from the start.

Both keep `host_cleared` False until the dead host answers again and no longer holds a
copy of the VM that the database places elsewhere (such a copy is destroyed there): a VM
never runs on two hosts at once.
"""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import utcnow


class HaWorkType(StrEnum):
    HA = "HA"  # restart elsewhere
    STOP = "Stop"  # marked Stopped only


class HaStep(StrEnum):
    SCHEDULED = "Scheduled"
    RESTARTING = "Restarting"
    DONE = "Done"
    ERROR = "Error"
    CANCELLED = "Cancelled"


FINAL_STEPS = (HaStep.DONE, HaStep.ERROR, HaStep.CANCELLED)


class HaWork(db.Model):
    __tablename__ = "ha_work"
    __table_args__ = (Index("ix_ha_work_step_time", "step", "time_to_try"),
                      Index("ix_ha_work_host_cleared", "host_id", "host_cleared"))

    id: Mapped[int] = mapped_column(primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vm_instances.id", ondelete="CASCADE"), index=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"))  # the host judged Down
    work_type: Mapped[str] = mapped_column(String(16))  # HaWorkType
    step: Mapped[str] = mapped_column(String(16))  # HaStep
    previous_state: Mapped[str] = mapped_column(String(16))  # the VM's state when its host went Down
    times_tried: Mapped[int] = mapped_column(Integer, default=0)
    time_to_try: Mapped[datetime] = mapped_column(DateTime, default=utcnow)  # not before this
    job_id: Mapped[int | None] = mapped_column(Integer)  # the start job of the current try
    taken: Mapped[datetime | None] = mapped_column(DateTime)  # when a monitor claimed the current try
    reason: Mapped[str | None] = mapped_column(String(1024))  # the last outcome, in words
    host_cleared: Mapped[bool] = mapped_column(default=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    vm = relationship("VirtualMachine")
    host = relationship("Host")

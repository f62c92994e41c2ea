"""Metrics history: what the monitor sampled of VMs and hosts, kept as a time series.

One narrow row per resource per sample: no surrogate id, the primary key (kind, resource,
period, time) is the index every chart reads by. `period` 0 is a sample as the monitor
took it (every vm.stats.interval); 3600 is an hour's average, rolled up from the samples
before they are pruned, so a week's chart reads 168 rows per resource, not 10,080.
"""
from __future__ import annotations

from datetime import datetime
from enum import IntEnum

from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, SmallInteger
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class MetricKind(IntEnum):
    VM = 1
    HOST = 2


RAW = 0
HOURLY = 3600


class MetricSample(db.Model):
    __tablename__ = "metric_samples"
    # Pruning and the hourly roll-up read by time across every resource.
    __table_args__ = (Index("ix_metric_samples_period_at", "period", "at"),)

    kind: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)  # MetricKind
    resource_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # vm_instances.id / hosts.id
    period: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, default=RAW)  # seconds
    at: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    cpu_pct: Mapped[float | None] = mapped_column(Float)
    memory_used: Mapped[int | None] = mapped_column(BigInteger)  # bytes
    net_rx_bps: Mapped[float | None] = mapped_column(Float)  # bytes per second
    net_tx_bps: Mapped[float | None] = mapped_column(Float)
    disk_read_bps: Mapped[float | None] = mapped_column(Float)
    disk_write_bps: Mapped[float | None] = mapped_column(Float)

"""Snapshots. volume.py: volume snapshots on secondary storage (and volumes and templates made
from them); policies.py: their schedules; schedule.py: CloudStack's schedule format.
(VM snapshots get a module of their own here.)"""
from app.services.snapshots import policies, schedule, volume  # noqa: F401

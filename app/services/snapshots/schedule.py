"""Snapshot policy schedules as CloudStack parses them (DateUtil.getNextRunTime):
HOURLY "MM", DAILY "MM:HH", WEEKLY "MM:HH:DD" (DD 1-7, 1 = Sunday), MONTHLY "MM:HH:DD"
(DD 1-28), read in the policy's time zone."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.services.errors import InvalidParameter

INTERVALS = ("HOURLY", "DAILY", "WEEKLY", "MONTHLY")
_PARTS = {"HOURLY": 1, "DAILY": 2, "WEEKLY": 3, "MONTHLY": 3}


@dataclass(frozen=True)
class Schedule:
    interval: str
    minute: int
    hour: int = 0
    day: int = 0  # weekday 1-7 (1 = Sunday) or day of the month 1-28
    tz: str = "UTC"

    def next_after(self, after: datetime) -> datetime:
        """The first run strictly after `after` (naive UTC), as naive UTC."""
        zone = ZoneInfo(self.tz)
        local = after.replace(tzinfo=timezone.utc).astimezone(zone)
        if self.interval == "HOURLY":
            cand, step = local.replace(minute=self.minute, second=0, microsecond=0), timedelta(hours=1)
        elif self.interval == "DAILY":
            cand, step = local.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0), timedelta(days=1)
        elif self.interval == "WEEKLY":
            want = (self.day - 2) % 7  # CloudStack's 1 = Sunday ... 7 = Saturday; Python's Monday = 0
            cand = local.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
            cand += timedelta(days=(want - cand.weekday()) % 7)
            step = timedelta(days=7)
        else:
            cand, step = local.replace(day=self.day, hour=self.hour, minute=self.minute, second=0, microsecond=0), None
        for _ in range(3):  # wall-clock arithmetic: normalised through UTC (DST changes)
            utc = cand.astimezone(timezone.utc).replace(tzinfo=None)
            if utc > after:
                return utc
            if step is None:  # next month
                y, m = (cand.year + 1, 1) if cand.month == 12 else (cand.year, cand.month + 1)
                cand = cand.replace(year=y, month=m)
            else:
                cand = (cand + step).replace(tzinfo=zone)
        return cand.astimezone(timezone.utc).replace(tzinfo=None)


def interval_of(value) -> str:
    """HOURLY/DAILY/WEEKLY/MONTHLY from the name (any case) or CloudStack's number 0-3."""
    text = str(value or "").strip().upper()
    if text.isdigit() and int(text) < len(INTERVALS):
        return INTERVALS[int(text)]
    if text not in INTERVALS:
        raise InvalidParameter(f"Unsupported interval type {value}: use HOURLY, DAILY, WEEKLY or MONTHLY",
                               field="intervaltype")
    return text


def check_timezone(value: str | None) -> str:
    tz = (value or "").strip() or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParameter(f"Invalid timezone {tz}", field="timezone") from None
    return tz


def parse(interval: str, schedule: str, tz: str = "UTC") -> Schedule:
    """431 for a schedule that does not fit its interval (as CloudStack's DateUtil refuses it)."""
    interval = interval_of(interval)
    parts = [p.strip() for p in str(schedule or "").split(":")]
    bad = InvalidParameter(f"Invalid schedule: {schedule} for interval type: {interval} "
                           f"(expected {('MM', 'MM:HH', 'MM:HH:DD', 'MM:HH:DD')[INTERVALS.index(interval)]})",
                           field="schedule")
    if len(parts) != _PARTS[interval] or not all(p.isdigit() for p in parts):
        raise bad
    nums = [int(p) for p in parts]
    minute = nums[0]
    hour = nums[1] if len(nums) > 1 else 0
    day = nums[2] if len(nums) > 2 else 0
    if not 0 <= minute <= 59 or not 0 <= hour <= 23:
        raise bad
    if interval == "WEEKLY" and not 1 <= day <= 7:
        raise bad
    if interval == "MONTHLY" and not 1 <= day <= 28:
        raise bad
    return Schedule(interval, minute, hour, day, check_timezone(tz))

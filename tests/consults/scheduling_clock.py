"""The clock of the scheduling tests: the moment they stop it at, and wall-clock times in
Bishkek around it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

BISHKEK = ZoneInfo("Asia/Bishkek")
# A Monday morning in Bishkek; every scheduling test runs with the clock stopped here.
NOW = dt.datetime(2030, 3, 4, 9, 0, tzinfo=BISHKEK)


def at(hour: int, minute: int = 0, *, days: int = 0) -> dt.datetime:
    """A moment `days` after NOW's date, at a wall-clock time in Bishkek."""
    day = NOW.date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BISHKEK)

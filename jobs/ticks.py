"""When a schedule ticks: a cron expression read on the wall clock of a time zone, or a fixed interval.

Cron expressions are parsed and stepped by croniter, on naive wall-clock times of the schedule's zone;
this module only turns those wall-clock times into instants, with one rule for the days the clocks change:

- a wall-clock time the change skips (02:30 on the spring-forward night) is read with the offset in force
  before the change, so it falls as long after the change as it was after 02:00: 02:30 fires at 03:30,
  the new time (``zoneinfo``'s reading of such a time, PEP 495). Where that instant is another tick too
  (an hourly schedule's 02:00 and 03:00), the two are one tick and fire once;
- a wall-clock time the change repeats (02:30 on the fall-back night) fires once, at its first
  occurrence (before the change).

Intervals are counted in absolute time from the Unix epoch (``every=timedelta(hours=1)`` ticks at each
whole hour UTC), so clock changes do not touch them. Every process computes the same instants from the
same schedule, which is what lets the database keep one run per tick.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from django.conf import settings

from .exceptions import InvalidSchedule

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Wall-clock times stepped through at most to find one tick; only a seconds-field expression on the
#: night of a fall-back comes near (the repeated hour's ticks are stepped over once).
MAX_STEPS = 10_000


def zone(name: str = "") -> ZoneInfo:
    """The zone called ``name``, or ``settings.TIME_ZONE`` for ``""``; ``InvalidSchedule`` if unknown."""
    name = name or settings.TIME_ZONE or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise InvalidSchedule(
            f"{name!r} is not a time zone (use an IANA name such as 'Europe/Paris')", "timezone"
        ) from exc


#: croniter's random value of a field (``R``, ``R(0-30)``, ``R/5``).
_RANDOM = re.compile(r"[Rr](\(\d+-\d+\))?(/\d+)?")


def check_cron(expression: str) -> None:
    """Refuse what croniter cannot read, with its reason."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidSchedule(f"a cron expression must be a non-empty string, not {expression!r}", "cron")
    if any(_RANDOM.fullmatch(element) for field in expression.split() for element in field.split(",")):
        # croniter draws R's value again at every reading: each worker, each pass, would tick elsewhere.
        raise InvalidSchedule(
            f"{expression!r} uses R (a random value), which is drawn again at every reading; "
            "pick the minute and hour yourself",
            "cron",
        )
    try:
        croniter(expression, datetime(2000, 1, 1))
    except (CroniterError, ValueError, KeyError) as exc:
        raise InvalidSchedule(f"{expression!r} is not a valid cron expression: {exc}", "cron") from exc
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError as exc:
        raise InvalidSchedule(f"{expression!r} never ticks (a date that does not exist?)", "cron") from exc


#: The longest interval: its ticks must stay within the dates Python and the databases hold.
LONGEST_EVERY = timedelta(days=366 * 1000)


def check_every(every: timedelta) -> None:
    if not isinstance(every, timedelta) or not timedelta(seconds=1) <= every <= LONGEST_EVERY:
        raise InvalidSchedule(
            f"an interval must be a timedelta of at least one second and at most 1,000 years, not {every!r}",
            "every",
        )


def instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a naive wall-clock time of ``tz``: the first occurrence of a repeated time, and
    a skipped time read with the offset before the change (``fold=0`` in both cases)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def next_tick(
    *, after: datetime, cron: str = "", every: timedelta | None = None, zone_name: str = ""
) -> datetime:
    """The first tick strictly after the aware instant ``after``, in UTC; ``InvalidSchedule`` if none."""
    tick = tick_after(after=after, cron=cron, every=every, zone_name=zone_name)
    if tick is None:
        raise InvalidSchedule(f"{cron!r} has no tick after {after.isoformat()}", "cron")
    return tick


def tick_after(
    *, after: datetime, cron: str = "", every: timedelta | None = None, zone_name: str = ""
) -> datetime | None:
    """The first tick strictly after the aware instant ``after``, in UTC; None when the schedule has
    ended (a cron expression whose year field has passed)."""
    if every is not None:
        check_every(every)
        steps = (after - EPOCH) // every + 1
        return EPOCH + steps * every
    tz = zone(zone_name)
    check_cron(cron)
    # Step over wall-clock times from ``after``'s own; those of a repeated hour read as instants before
    # ``after`` (their first occurrence) are passed over, which is what fires each of them once.
    wall = after.astimezone(tz).replace(tzinfo=None)
    steps = croniter(cron, wall)
    for _ in range(MAX_STEPS):
        try:
            candidate = instant(steps.get_next(datetime), tz)
        except CroniterError:
            return None
        if candidate > after:
            return candidate
    raise InvalidSchedule(f"{cron!r} has no tick within {MAX_STEPS} steps after {after.isoformat()}")


def ticks_between(
    start: datetime, end: datetime, *, cron: str = "", every: timedelta | None = None, zone_name: str = ""
) -> list[datetime]:
    """Ticks ``t`` with ``start < t <= end``, in order."""
    found: list[datetime] = []
    tick = tick_after(after=start, cron=cron, every=every, zone_name=zone_name)
    while tick is not None and tick <= end:
        found.append(tick)
        tick = tick_after(after=tick, cron=cron, every=every, zone_name=zone_name)
    return found

"""When schedules tick: cron expressions on a zone's wall clock across daylight-saving changes, and
intervals."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from jobs.exceptions import InvalidSchedule
from jobs.ticks import next_tick, ticks_between

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def local(ticks, zone):
    return [tick.astimezone(zone).strftime("%m-%d %H:%M %Z") for tick in ticks]


def test_a_daily_tick_in_the_skipped_hour_fires_once_an_hour_later_on_the_new_time():
    # Paris, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that night.
    ticks = ticks_between(
        utc(2026, 3, 27, 12), utc(2026, 3, 30, 12), cron="30 2 * * *", zone_name="Europe/Paris"
    )
    assert local(ticks, PARIS) == ["03-28 02:30 CET", "03-29 03:30 CEST", "03-30 02:30 CEST"]


def test_an_ambiguous_time_fires_once_at_its_first_occurrence():
    # Paris, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    ticks = ticks_between(
        utc(2026, 10, 24, 12), utc(2026, 10, 26, 12), cron="30 2 * * *", zone_name="Europe/Paris"
    )
    assert local(ticks, PARIS) == ["10-25 02:30 CEST", "10-26 02:30 CET"]
    assert ticks[0] == utc(2026, 10, 25, 0, 30)


def test_the_repeated_hour_is_not_fired_again_by_a_frequent_schedule():
    ticks = ticks_between(
        utc(2026, 10, 24, 23), utc(2026, 10, 25, 3), cron="*/30 * * * *", zone_name="Europe/Paris"
    )
    assert local(ticks, PARIS) == [
        "10-25 01:30 CEST",
        "10-25 02:00 CEST",
        "10-25 02:30 CEST",
        "10-25 03:00 CET",
        "10-25 03:30 CET",
        "10-25 04:00 CET",
    ]
    assert len(set(ticks)) == len(ticks)


def test_from_inside_the_repeated_hour_the_next_tick_is_after_it():
    # 01:30 UTC is 02:30 CET, the second 02:30 of the night: the next daily 02:30 is the next day's.
    assert next_tick(after=utc(2026, 10, 25, 1, 30), cron="30 2 * * *", zone_name="Europe/Paris") == utc(
        2026, 10, 26, 1, 30
    )
    # An hourly schedule passes over the second 02:00 and fires at 03:00 CET.
    assert next_tick(after=utc(2026, 10, 25, 0, 30), cron="0 * * * *", zone_name="Europe/Paris") == utc(
        2026, 10, 25, 2
    )


def test_an_hourly_schedule_fires_23_times_on_the_spring_forward_day_and_never_twice():
    start, end = utc(2026, 3, 7, 5), utc(2026, 3, 9, 5)  # New York, DST starts 2026-03-08 02:00
    ticks = ticks_between(start, end, cron="0 * * * *", zone_name="America/New_York")
    on_the_day = [tick for tick in ticks if tick.astimezone(NEW_YORK).date().isoformat() == "2026-03-08"]
    assert len(on_the_day) == 23
    assert len(set(ticks)) == len(ticks)
    assert all(later > earlier for earlier, later in pairwise(ticks))


def test_an_hourly_schedule_fires_24_times_on_the_fall_back_day():
    start, end = utc(2026, 10, 31, 4), utc(2026, 11, 2, 6)  # New York, DST ends 2026-11-01 02:00
    ticks = ticks_between(start, end, cron="0 * * * *", zone_name="America/New_York")
    on_the_day = [tick for tick in ticks if tick.astimezone(NEW_YORK).date().isoformat() == "2026-11-01"]
    assert len(on_the_day) == 24  # each wall-clock hour once; the repeated 01:00 only at its first
    assert [t.astimezone(NEW_YORK).strftime("%H:%M %Z") for t in on_the_day[:4]] == [
        "00:00 EDT",
        "01:00 EDT",
        "02:00 EST",
        "03:00 EST",
    ]


def test_the_zone_defaults_to_settings_time_zone():
    with override_settings(TIME_ZONE="America/New_York"):
        assert next_tick(after=utc(2026, 1, 1), cron="0 9 * * *") == utc(2026, 1, 1, 14)
    with override_settings(TIME_ZONE="UTC"):
        assert next_tick(after=utc(2026, 1, 1), cron="0 9 * * *") == utc(2026, 1, 1, 9)


def test_intervals_count_absolute_time_from_the_epoch():
    assert next_tick(after=utc(2026, 3, 29, 0, 59, 59, 500000), every=timedelta(seconds=1)) == utc(
        2026, 3, 29, 1
    )
    assert next_tick(after=utc(2026, 3, 29, 1), every=timedelta(hours=1)) == utc(2026, 3, 29, 2)
    # The clock change does not move them: ticks stay an hour apart in absolute time.
    ticks = ticks_between(utc(2026, 3, 28, 23), utc(2026, 3, 29, 3), every=timedelta(hours=1))
    assert [b - a for a, b in pairwise(ticks)] == [timedelta(hours=1)] * 3


@pytest.mark.parametrize(
    ("timing", "field", "message"),
    [
        ({"cron": "61 * * * *"}, "cron", "not a valid cron expression"),
        ({"cron": "every day"}, "cron", "not a valid cron expression"),
        ({"cron": "0 0 30 2 *"}, "cron", "never ticks"),
        ({"cron": "0 9 * * *", "zone_name": "Mars/Olympus"}, "timezone", "is not a time zone"),
        ({"every": timedelta(0)}, "every", "at least one second"),
    ],
)
def test_what_cannot_tick_is_refused(timing, field, message):
    with pytest.raises(InvalidSchedule, match=message) as caught:
        next_tick(after=utc(2026, 1, 1), **timing)
    assert caught.value.field == field

import datetime

import pytest
from django.test import override_settings

from jobs import job
from jobs.exceptions import InvalidJobDefinition
from jobs.options import JobOptions


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout must be a whole number from 1 to 2147483647"),
        ({"timeout": 1.5}, "timeout must be a whole number from 1"),
        ({"timeout": 2**63}, "timeout must be a whole number from 1 to 2147483647"),
        ({"max_attempts": True}, "max_attempts must be a whole number from 1"),
        ({"max_attempts": 2**31}, "max_attempts must be a whole number from 1"),
        ({"backoff_base": 2**63}, "backoff_base must be a whole number from 1"),
        ({"backoff": "linear"}, "backoff must be 'exponential', 'fixed' or a list"),
        ({"backoff": []}, "one or more whole numbers"),
        ({"backoff": [1, -2]}, "one or more whole numbers"),
        ({"backoff": [10**15]}, "one or more whole numbers of seconds from 0 to"),
        ({"queue": ""}, "queue must be a queue name"),
        ({"unique_key": 42}, "unique_key must be a string or a callable"),
        ({"unique_key": "x" * 256}, "1 to 255 characters"),
        ({"unique_key": "a\x00b"}, "unique_key must not hold a NUL character"),
        ({"unique_key": "lone \ud800"}, "unique_key is not valid Unicode text"),
        ({"delay": 5, "at": datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)}, "either delay or at"),
        ({"delay": -1}, "delay must be a timedelta or a number of seconds from 0"),
        ({"delay": float("nan")}, "delay must be a timedelta or a number of seconds from 0"),
        ({"delay": float("inf")}, "delay must be a timedelta or a number of seconds from 0"),
        ({"delay": 10**12}, "delay must be a timedelta or a number of seconds from 0"),
        ({"delay": datetime.timedelta(days=10**6)}, "delay must be a timedelta or a number of seconds"),
        ({"at": datetime.datetime(2030, 1, 1)}, "timezone-aware"),
        # Past datetime.max once rounded up to RQ's whole second: every push of it failed, the relay's too.
        ({"at": datetime.datetime(9999, 12, 31, 23, 59, 59, 500000, tzinfo=datetime.UTC)}, "ten years ahead"),
        ({"at": datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3700)}, "ten years ahead"),
        ({"colour": "red"}, "unknown job option"),
    ],
)
def test_invalid_options_are_refused_with_one_message_each(options, message):
    with pytest.raises(InvalidJobDefinition, match=message):
        JobOptions().replace(**options)


def test_decorator_reports_bad_options_where_they_are_written():
    with pytest.raises(InvalidJobDefinition, match="max_attempts"):

        @job(max_attempts=0)
        def f():
            pass


def test_local_functions_cannot_be_jobs():
    def local():
        pass

    with pytest.raises(InvalidJobDefinition, match="define job functions at module level"):
        job(local)


def test_options_are_immutable():
    options = JobOptions(queue="high")
    with pytest.raises(AttributeError):
        options.queue = "low"
    assert options.replace(queue="low").queue == "low"
    assert options.queue == "high"


def test_exponential_backoff_has_jitter_within_bounds():
    options = JobOptions(max_attempts=6, backoff_base=4)
    samples = [options.retry_intervals() for _ in range(50)]
    for intervals in samples:
        assert len(intervals) == 5
        for n, seconds in enumerate(intervals):
            assert 4 * 2**n / 2 - 1 <= seconds <= 4 * 2**n
    assert len({tuple(s) for s in samples}) > 1, "no jitter"


@override_settings(JOBS={"BACKOFF_MAX": 10})
def test_exponential_backoff_is_capped():
    assert max(JobOptions(max_attempts=10, backoff_base=8).retry_intervals()) <= 10


def test_fixed_and_listed_backoff():
    assert JobOptions(max_attempts=4, backoff="fixed", backoff_base=3).retry_intervals() == [3, 3, 3]
    assert JobOptions(max_attempts=4, backoff=[1, 5]).retry_intervals() == [1, 5, 5]
    assert JobOptions(max_attempts=1).retry_intervals() == []


def test_delay_in_seconds_becomes_timedelta():
    assert JobOptions(delay=90).delay == datetime.timedelta(seconds=90)


def test_a_unique_key_a_callable_makes_is_checked_as_a_given_one():
    options = JobOptions(unique_key=lambda name: f"report:{name}")
    assert options.unique_key_for(["may"], {}) == "report:may"
    for name, message in [("a\x00b", "must not hold a NUL character"), ("\ud800", "not valid Unicode")]:
        with pytest.raises(InvalidJobDefinition, match=message):
            options.unique_key_for([name], {})

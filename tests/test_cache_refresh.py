"""Stale-while-revalidate: stale values served at once, one refresh job, run by a real worker."""

import time

import pytest
from django.test import override_settings

from jobs.cache import stats
from jobs.models import Job
from tests import cache_functions as fns
from tests.helpers import drain, run_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_stale_hits_enqueue_one_refresh_that_a_worker_runs(redis):
    stats.reset()
    assert fns.generation("a") == 1
    time.sleep(1.05)  # its ttl is 1 s: now it is stale, and stays so for 60 s
    served = [fns.generation("a") for _ in range(20)]
    assert served == [1] * 20, "stale hits are served the old value at once"
    refreshes = Job.objects.filter(function="jobs.cache.refresh.refresh_entry")
    assert refreshes.count() == 1, "many stale hits, one refresh"
    assert refreshes.get().args == [
        "tests.cache_functions.generation",
        ["a"],
        {},
        "tests.cache_functions.generation",
        1,
    ], "the function, its arguments, and the namespace and version of its wrapper"

    run_worker()
    assert refreshes.get().status == "finished"
    # Counted before the next read: on a slow machine the refreshed entry (fresh 1 s) may be stale by then.
    counts = stats.read()["tests.cache_functions.generation"]
    assert counts["stale"] == 20
    assert counts["refreshes"] == 1, "the worker's count reached Redis"
    assert counts["misses"] == 1
    assert fns.generation("a") == 2, "the worker stored a fresh value"
    assert fns.runs("generation") == 2


def test_a_refresh_of_something_that_is_not_a_cached_function_fails_clearly(redis):
    from jobs.cache.refresh import refresh_entry

    record = refresh_entry.enqueue("tests.jobs.add", [1, 2], {})
    drain()
    record.refresh_from_db()
    assert record.status == "failed"
    assert "is not a @cached function" in record.error_message


def test_arguments_a_job_cannot_carry_are_served_stale_and_not_refreshed(redis, caplog):
    from jobs.cache import cached

    with override_settings(JOBS={"CACHE_JITTER": 0}):
        fn = cached(ttl=0.2, stale=30, namespace="unjsonable")(fns.generation.func)
        fn(("a", b"bytes"))
        time.sleep(0.25)
        assert fn(("a", b"bytes")) == 1
    assert not Job.objects.exists()
    assert "Cannot refresh unjsonable on a worker" in caplog.text

"""Job functions for the tests of due jobs and of workers that outlive their jobs' faults."""

import time

from jobs import current_job, job
from tests.fault_jobs import count_run

#: The rate key of ``keyed_by_lookup`` reads this; a test empties it to make the key raise in the worker.
BUCKETS: dict[str, str] = {}


@job(max_attempts=2, backoff=[3])
def fails_once(name):
    """Fails its first attempt; its retry, after a 3 s backoff, counts its run."""
    if current_job().attempts == 1:
        raise RuntimeError(f"first attempt of {name}")
    return count_run(name)


@job(rate_limit="2/s")
def limited_count(name):
    return count_run(name)


@job(rate_limit="5/s", rate_key=lambda name: BUCKETS[name])
def keyed_by_lookup(name):
    return count_run(name)


@job(rate_limit="5/s", rate_key=lambda user, name: user.pk)
def per_user(user, name):
    return count_run(name)


@job(max_attempts=1)
def count_slowly(name, seconds):
    time.sleep(seconds)
    return count_run(name)

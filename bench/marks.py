"""What the 50 ms jobs of the concurrency benchmark (``bench/bench_concurrency.py``) do, whatever runs them
(the threaded worker, Dramatiq, Celery): no Django here, so that every worker imports it as it is."""

from __future__ import annotations

import functools
import os
import time

import redis

FIRST_KEY, LAST_KEY, DONE_KEY = "bench:first-start", "bench:last-end", "bench:done"
SLEEP = 0.05


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def sleep_and_mark() -> None:
    """Wait on "the network" for 50 ms; mark the first start, the last end and the count in Redis."""
    client = _redis()
    client.set(FIRST_KEY, repr(time.time()), nx=True)
    time.sleep(SLEEP)
    with client.pipeline(transaction=False) as pipe:
        pipe.set(LAST_KEY, repr(time.time()))
        pipe.incr(DONE_KEY)
        pipe.execute()

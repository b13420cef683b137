"""Job functions of the benchmarks, importable by worker processes."""

from __future__ import annotations

import functools
import os
import time

import redis

from bench.marks import sleep_and_mark
from jobs import job

#: Where a latency probe writes the moment its job started.
STAMPS_KEY = "bench:started"


@job
def noop() -> None:
    """The ledger's no-op job."""


def plain_noop() -> None:
    """The same no-op, enqueued straight to RQ by the baselines."""


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def _stamp() -> None:
    _redis().rpush(STAMPS_KEY, repr(time.time()))


@job
def stamp() -> None:
    """Record when it started, for the enqueue-to-start latency."""
    _stamp()


def plain_stamp() -> None:
    _stamp()


@job
def sleepy() -> None:
    """The ledger's 50 ms job (``bench/bench_concurrency.py``)."""
    sleep_and_mark()

"""Enqueue-to-start latency with an idle worker: from the call to enqueue until the job's function runs.

A long-running ``manage.py rqworker`` waits on an empty queue; the bench enqueues one job, and the job
writes the moment it started to Redis. For `jobs` the time includes the record's INSERT and commit and
the claiming UPDATE in the worker. Between two samples the bench waits a little, so that the worker is
idle again, blocked on the queue, when the next job arrives.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import django_rq
import redis
from django.db import connection
from rq import Queue
from rq.serializers import JSONSerializer

from bench.bench_drain import JOBS_SIMPLE, LEAN, ROOT, RQ_SIMPLE, THREADED, THREADED_ASYNC, Worker
from bench.jobs import STAMPS_KEY, plain_stamp, stamp
from bench.measure import Case, Comparison, clear

#: Enough for the worker to end the previous job and block on the queue again.
SETTLE_SECONDS = 0.02


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _wait_for_stamp(client: redis.Redis) -> float:
    popped = client.blpop([STAMPS_KEY], timeout=30)
    if popped is None:
        raise RuntimeError("no job started within 30 s")
    return float(popped[1])


def sample(client: redis.Redis, worker: Worker, samples: int, log: Path) -> tuple[list[float], list[float]]:
    """Milliseconds from enqueue to start of ``samples`` jobs, each enqueued to an idle worker, and
    milliseconds the enqueue calls themselves took."""
    clear(client)
    if worker.ledger:
        enqueue: Callable[[], object] = stamp.enqueue
    else:
        queue = Queue("default", connection=django_rq.get_connection("default"), serializer=JSONSerializer)

        def enqueue() -> object:
            return queue.enqueue(plain_stamp, result_ttl=0)

    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", *worker.options, "default"],
            cwd=ROOT,
            env={**os.environ, "BENCH_JOBS": worker.jobs_settings or "{}"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        enqueue()  # the first job waits for the worker to start
        _wait_for_stamp(client)
        latencies, calls = [], []
        for _ in range(samples):
            time.sleep(SETTLE_SECONDS)
            enqueued_at = time.time()
            enqueue()
            calls.append((time.time() - enqueued_at) * 1000)
            latencies.append((_wait_for_stamp(client) - enqueued_at) * 1000)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    return latencies, calls


def run(client: redis.Redis, runs: int, samples: int, log_dir: Path) -> list[Comparison]:
    # PostgreSQL: also the recommended worker whose claims do not wait for the WAL flush (the enqueue's
    # INSERT still does: it is the caller's).
    postgresql = connection.vendor == "postgresql"
    workers = (RQ_SIMPLE, JOBS_SIMPLE, LEAN, THREADED, *((THREADED_ASYNC,) if postgresql else ()))
    p50 = {worker: Case(worker.label) for worker in workers}
    p99 = {worker: Case(worker.label) for worker in workers}
    call = {worker: Case(worker.label) for worker in workers}
    for _ in range(runs):
        for worker in workers:
            latencies, calls = sample(client, worker, samples, log_dir / "latency-worker.log")
            p50[worker].runs.append(statistics.median(latencies))
            p99[worker].runs.append(_percentile(latencies, 0.99))
            call[worker].runs.append(statistics.median(calls))
    clear(client)
    comparisons = []
    for ours in workers[1:]:
        comparisons.append(
            Comparison(
                "enqueue-to-start p50, idle worker",
                "ms",
                samples,
                p50[ours],
                p50[RQ_SIMPLE],
                higher_is_better=False,
                target={LEAN: "< 3 ms", THREADED: "<= 2.5 ms and <= RQ's"}.get(ours, ""),
            )
        )
        comparisons.append(
            Comparison(
                "enqueue-to-start p99, idle worker",
                "ms",
                samples,
                p99[ours],
                p99[RQ_SIMPLE],
                higher_is_better=False,
            )
        )
    comparisons.append(
        Comparison(
            "enqueue call alone, p50 (part of the above)",
            "ms",
            samples,
            call[THREADED],
            call[RQ_SIMPLE],
            higher_is_better=False,
        )
    )
    return comparisons

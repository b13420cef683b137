"""Enqueue-to-start latency with an idle worker: from the call to enqueue until the job's function runs.

Every worker compared runs at once, as a long-running ``manage.py rqworker`` waiting on a queue of its
own; the bench enqueues one job to each in turn, and the job writes the moment it started to Redis. The
samples of the workers interleave, so that the machine's other load falls on all of them alike rather
than on whichever ran while it lasted. For `jobs` the time includes the record's INSERT and commit and
the claiming UPDATE in the worker. Before each sample the bench waits a little, so that the worker is
idle again, blocked on its queue, when the next job arrives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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
#: How long a worker has to stop once asked, at the end, before it is killed.
STOP_SECONDS = 10


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _wait_for_stamp(client: redis.Redis) -> float:
    popped = client.blpop([STAMPS_KEY], timeout=30)
    if popped is None:
        raise RuntimeError("no job started within 30 s")
    return float(popped[1])


def _enqueuer(worker: Worker, queue_name: str) -> Callable[[], object]:
    if worker.ledger:
        return stamp.using(queue=queue_name).enqueue
    queue = Queue(queue_name, connection=django_rq.get_connection(queue_name), serializer=JSONSerializer)
    return lambda: queue.enqueue(plain_stamp, result_ttl=0)


@contextlib.contextmanager
def _running(
    client: redis.Redis, workers: tuple[Worker, ...], log_dir: Path
) -> Iterator[list[Callable[[], object]]]:
    """Start each worker on a queue of its own; yields their enqueue functions, once each has run one
    job (so that all have started)."""
    processes, enqueuers = [], []
    try:
        for number, worker in enumerate(workers):
            queue_name = f"latency-{number}"
            with (log_dir / f"latency-worker-{number}.log").open("w") as out:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "manage.py", "rqworker", *worker.options, queue_name],
                        cwd=ROOT,
                        env={**os.environ, "BENCH_JOBS": worker.jobs_settings or "{}"},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            enqueuers.append(_enqueuer(worker, queue_name))
        for enqueue in enqueuers:  # the first job of each waits for its worker to start
            enqueue()
        for _ in enqueuers:
            _wait_for_stamp(client)
        yield enqueuers
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                # Seen once of RQ's SimpleWorker here; the samples are taken by then.
                process.kill()
                process.wait()


def sample(
    client: redis.Redis, workers: tuple[Worker, ...], samples: int, log_dir: Path
) -> tuple[list[list[float]], list[list[float]]]:
    """Per worker, milliseconds from enqueue to start of ``samples`` jobs, each enqueued to an idle
    worker, the workers taking turns; and milliseconds the enqueue calls themselves took."""
    clear(client)
    latencies: list[list[float]] = [[] for _ in workers]
    calls: list[list[float]] = [[] for _ in workers]
    with _running(client, workers, log_dir) as enqueuers:
        for _ in range(samples):
            for index, enqueue in enumerate(enqueuers):
                time.sleep(SETTLE_SECONDS)
                enqueued_at = time.time()
                enqueue()
                calls[index].append((time.time() - enqueued_at) * 1000)
                latencies[index].append((_wait_for_stamp(client) - enqueued_at) * 1000)
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
        latencies, calls = sample(client, workers, samples, log_dir)
        for worker, worker_latencies, worker_calls in zip(workers, latencies, calls, strict=True):
            p50[worker].runs.append(statistics.median(worker_latencies))
            p99[worker].runs.append(_percentile(worker_latencies, 0.99))
            call[worker].runs.append(statistics.median(worker_calls))
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

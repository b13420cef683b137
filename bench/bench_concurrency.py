"""Jobs that wait 50 ms each (as on a network call), drained by one worker process running N at once.

``jobs.worker.ThreadedWorker`` at N = 1, 8 and 32 (``JOBS["WORKER_CONCURRENCY"]``) against Dramatiq and
Celery, each with one process of 32 threads, on the same Redis; and against the ceiling: 32 plain threads
that run the same function from memory (``bench.bare_threads``). Every job marks in Redis when the first
job started, when the last one ended and how many ended (``bench.jobs.sleep_and_mark``, the same for all),
and throughput is jobs / (last end - first start), so that no worker's start-up is counted.

N = 1 drains ``jobs // 10`` jobs (2,000 of them take over 100 s one at a time); its jobs/s is the same
whatever their number, and is compared as such.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
from django.db import transaction

from bench.jobs import sleepy
from bench.marks import DONE_KEY, FIRST_KEY, LAST_KEY
from bench.measure import Case, CommandCounter, Comparison, clear

ROOT = Path(__file__).resolve().parent.parent
THREADS = 32


def _threaded(client: redis.Redis, jobs: int, concurrency: int) -> list[str]:
    with transaction.atomic():
        sleepy.enqueue_many([] for _ in range(jobs))
    return [
        sys.executable, "-m", "bench.worker", os.devnull, "--burst",
        "--worker-class", "jobs.worker.ThreadedWorker", "default",
    ]  # fmt: skip


def _dramatiq(client: redis.Redis, jobs: int, concurrency: int) -> list[str]:
    from bench.dramatiq_jobs import sleepy as dramatiq_sleepy

    for _ in range(jobs):
        dramatiq_sleepy.send()
    return [
        sys.executable, "-m", "dramatiq", "bench.dramatiq_jobs", "--processes", "1",
        "--threads", str(concurrency), "--queues", "bench",
    ]  # fmt: skip


def _celery(client: redis.Redis, jobs: int, concurrency: int) -> list[str]:
    from bench.celery_jobs import sleepy as celery_sleepy

    for _ in range(jobs):
        celery_sleepy.delay()
    return [
        sys.executable, "-m", "celery", "-A", "bench.celery_jobs", "worker", "--pool", "threads",
        "--concurrency", str(concurrency), "--queues", "bench", "--without-heartbeat",
        "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
    ]  # fmt: skip


def _bare_threads(client: redis.Redis, jobs: int, concurrency: int) -> list[str]:
    return [sys.executable, "-m", "bench.bare_threads", str(concurrency), str(jobs)]


def drain(
    client: redis.Redis,
    fill: Callable[[redis.Redis, int, int], list[str]],
    jobs: int,
    concurrency: int,
    case: Case,
) -> None:
    """Fill the queue, start the worker, wait until every job has marked its end; add jobs/s to ``case``."""
    clear(client)
    command = fill(client, jobs, concurrency)
    counter = CommandCounter(client)
    counter.reset()
    env = {**os.environ, "BENCH_JOBS": f'{{"WORKER_CONCURRENCY": {concurrency}}}'}
    with tempfile.TemporaryFile("w+") as log:
        worker = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 60 + jobs * 0.1
            while int(client.get(DONE_KEY) or 0) < jobs:
                if time.monotonic() > deadline or worker.poll() not in (None, 0):
                    log.seek(0)
                    raise RuntimeError(
                        f"{case.label}: {client.get(DONE_KEY)} of {jobs} ran\n{log.read()[-3000:]}"
                    )
                time.sleep(0.05)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
    seconds = float(client.get(LAST_KEY) or 0) - float(client.get(FIRST_KEY) or 0)
    case.runs.append(jobs / seconds)
    # Less the job's own three commands (the marks), as with the worker's figures elsewhere.
    case.redis_commands = counter.total() / jobs - 3


def run(client: redis.Redis, runs: int, jobs: int) -> list[Comparison]:
    one = Case("ThreadedWorker, N = 1")
    eight = Case("ThreadedWorker, N = 8")
    many = Case(f"ThreadedWorker, N = {THREADS}")
    dramatiq = Case(f"Dramatiq, {THREADS} threads")
    celery = Case(f"Celery, {THREADS} threads")
    bare = Case(f"{THREADS} bare threads, no framework")
    for _ in range(runs):
        drain(client, _threaded, max(1, jobs // 10), 1, one)
        drain(client, _threaded, jobs, 8, eight)
        drain(client, _threaded, jobs, THREADS, many)
        drain(client, _dramatiq, jobs, THREADS, dramatiq)
        drain(client, _celery, jobs, THREADS, celery)
        drain(client, _bare_threads, jobs, THREADS, bare)
    clear(client)
    return [
        Comparison("50 ms jobs, one process, N = 8", "jobs/s", jobs, eight, one, target=">= 6x"),
        Comparison(f"50 ms jobs, one process, N = {THREADS}", "jobs/s", jobs, many, one, target=">= 20x"),
        Comparison(f"50 ms jobs, N = {THREADS}", "jobs/s", jobs, many, dramatiq, target=">= 1x"),
        Comparison(f"50 ms jobs, N = {THREADS}", "jobs/s", jobs, many, celery, target=">= 1x"),
        Comparison(f"50 ms jobs, N = {THREADS}, the ceiling", "jobs/s", jobs, many, bare),
    ]

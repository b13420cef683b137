"""The soak: many jobs, some of them delayed, enqueued from several processes, while workers are killed
and restarted and Redis is stopped and started again.

``python -m bench.soak`` starts a redis-server (append-only file on, so that it keeps its data across a
restart) and makes a database of its own (SQLite, or PostgreSQL with ``--postgres URL``), starts two
workers, and enqueues ``--jobs`` jobs from ``--enqueuers`` processes, spread over ``--enqueue-over``
seconds, in batches and one by one; ``--delayed-share`` of them are delayed by 1 to ``--max-delay``
seconds. Meanwhile it SIGKILLs one worker every ``--kill-every`` seconds and starts it again (a worker
that exits on its own is started again too), and stops Redis ``--redis-restarts`` times, spread over
the enqueue phase, for ``--redis-down`` seconds each. It waits until every record is in a final state.

Each job writes a row per run with the moment it started. The soak prints: the records by status; the
jobs that never ran (must be 0), ran once, ran more than once; the kills and Redis restarts; for the
delayed jobs, how late their first run started after the latest of their due time, the last time Redis
came back and the last worker kill before that start (median, p99, maximum, and how many were later
than ``--late-after``, the 10 s target); how long the reaper took to record the job of a killed worker;
and the run time.

``python -m bench.soak --detect`` measures only the detection time, once per worker class, with the
default ``ABANDONED_AFTER``.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from bench import environment
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent

#: Jobs enqueued together; every fifth batch is enqueued one job at a time, the others with enqueue_many.
BATCH = 20


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def start_worker(env: dict[str, str], worker_class: str, log: IO[str] | int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "--worker-class", worker_class, "default"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the worker and whatever it runs (a forking worker's work horse has a group of its own)."""
    children = subprocess.run(
        ["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in [process.pid, *map(int, children)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def delayed_count(count: int, share: float) -> int:
    """How many of an enqueuer's ``count`` jobs are delayed."""
    return math.floor(count * share)


def enqueue(count: int, share: float, max_delay: float, over: float, seed: int) -> None:
    """Run in each enqueuer process: enqueue ``count`` jobs in batches, paced over ``over`` seconds.

    Each batch holds its share of delayed jobs: one by one, each its own delay, in a batch of single
    enqueues; all with one delay, in a batch of ``enqueue_many``.
    """
    import django

    django.setup()
    from bench.soak_jobs import counted

    rng = random.Random(seed)
    batches = math.ceil(count / BATCH)
    began = time.monotonic()
    for index in range(batches):
        pause = began + over * index / batches - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        done = index * BATCH
        size = min(BATCH, count - done)
        delayed = delayed_count(done + size, share) - delayed_count(done, share)
        singles = index % 5 == 0
        if singles:
            for _ in range(delayed):
                at = datetime.now(UTC) + _delay(rng, max_delay)
                counted.using(at=at).enqueue(at.timestamp())
            for _ in range(size - delayed):
                counted.enqueue()
        else:
            if delayed:
                at = datetime.now(UTC) + _delay(rng, max_delay)
                counted.using(at=at).enqueue_many([[at.timestamp()]] * delayed)
            counted.enqueue_many([[] for _ in range(size - delayed)])


def _delay(rng: random.Random, max_delay: float) -> timedelta:
    return timedelta(seconds=rng.uniform(1, max_delay))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--enqueuers", type=int, default=4)
    parser.add_argument("--enqueue-over", type=float, default=60.0, help="seconds the enqueue phase lasts")
    parser.add_argument("--delayed-share", type=float, default=0.1)
    parser.add_argument("--max-delay", type=float, default=20.0)
    parser.add_argument("--kill-every", type=float, default=4.0)
    parser.add_argument("--redis-restarts", type=int, default=2)
    parser.add_argument("--redis-down", type=float, default=3.0, help="seconds Redis stays down each time")
    parser.add_argument("--late-after", type=float, default=10.0, help="the target for delayed jobs (s)")
    parser.add_argument("--worker-class", default="jobs.worker.LeanWorker")
    parser.add_argument("--abandoned-after", type=int, default=10)
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--detect", action="store_true", help="measure only the detection time")
    parser.add_argument("--enqueue", type=json.loads, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.enqueue is not None:
        return enqueue(**options.enqueue)
    redis_server = RedisServer(appendonly=True)
    redis_server.start()
    try:
        if options.postgres:
            database = environment.postgres_database(options.postgres)
        else:
            database = environment.sqlite_database()
        with database as database_url:
            env = environment.child_env(database_url, redis_server.url)
            env["DJANGO_SETTINGS_MODULE"] = "bench.soak_settings"
            if not options.detect:
                env["SOAK_JOBS"] = json.dumps({"ABANDONED_AFTER": options.abandoned_after})
            environment.migrate(env)
            django_setup(env)
            if options.detect:
                detect(env)
            else:
                soak(env, options, redis_server)
    finally:
        redis_server.cleanup()


class RedisRestarts:
    """Stops the soak's Redis at the planned moments (``time.monotonic()``) and starts it again
    ``down`` seconds later; records when it came back (``time.time()``)."""

    def __init__(self, server: RedisServer, planned: list[float], down: float) -> None:
        self.server = server
        self.planned = sorted(planned)
        self.down = down
        self.stopped_at: float | None = None
        self.windows: list[tuple[float, float]] = []  # wall-clock times Redis went down and came back
        self._down_since = 0.0

    def step(self) -> None:
        now = time.monotonic()
        if self.stopped_at is not None:
            if now - self.stopped_at >= self.down:
                self.server.start()
                self.windows.append((self._down_since, time.time()))
                self.stopped_at = None
        elif self.planned and now >= self.planned[0]:
            self.planned.pop(0)
            self._down_since = time.time()
            self.server.stop()
            self.stopped_at = now

    def finished(self) -> bool:
        return not self.planned and self.stopped_at is None

    @property
    def back(self) -> list[float]:
        return [back for _, back in self.windows]

    def was_down(self, moment: float) -> bool:
        return any(down <= moment <= back for down, back in self.windows)


def _last_before(moments: list[float], moment: float) -> float:
    """The latest of the sorted ``moments`` at or before ``moment``; -inf when there is none."""
    index = bisect.bisect_right(moments, moment)
    return moments[index - 1] if index else float("-inf")


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    p99 = statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]
    return f"median {statistics.median(values):.1f}s, p99 {p99:.1f}s, max {max(values):.1f}s"


def _table(rows: list[tuple[str, object]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


class Workers:
    """The soak's two workers: one SIGKILLed and started again at each ``kill_next()``, and any that
    ended on its own started again at ``restart_exited()``, as a supervisor would; ``exits`` holds
    when each of those had been started."""

    def __init__(self, env: dict[str, str], worker_class: str, log: IO[str]) -> None:
        self.env = env
        self.worker_class = worker_class
        self.log = log
        self.started: dict[int, float] = {}
        self.processes = [self._start() for _ in range(2)]
        self.kills: list[float] = []  # wall-clock times of the kills
        self.exits: list[float] = []
        self._victim = 0

    def _start(self) -> subprocess.Popen:
        process = start_worker(self.env, self.worker_class, self.log)
        self.started[process.pid] = time.time()
        return process

    def kill_next(self) -> None:
        kill(self.processes[self._victim])
        self.kills.append(time.time())
        self.processes[self._victim] = self._start()
        self._victim = 1 - self._victim

    def restart_exited(self) -> None:
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                self.exits.append(self.started[process.pid])
                self.processes[index] = self._start()

    def stop(self) -> None:
        for process in self.processes:
            kill(process)


def start_enqueuers(
    env: dict[str, str], options: argparse.Namespace, log: IO[str]
) -> tuple[list[subprocess.Popen], int]:
    """The enqueuer processes, and how many delayed jobs they enqueue in all."""
    per = options.jobs // options.enqueuers
    shares = [per] * (options.enqueuers - 1) + [options.jobs - per * (options.enqueuers - 1)]
    processes = []
    for seed, count in enumerate(shares):
        arguments = {
            "count": count,
            "share": options.delayed_share,
            "max_delay": options.max_delay,
            "over": options.enqueue_over,
            "seed": seed,
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.soak", "--enqueue", json.dumps(arguments)],
                cwd=ROOT,
                env=env,
                stderr=log,
            )
        )
    return processes, sum(delayed_count(count, options.delayed_share) for count in shares)


def soak(env: dict[str, str], options: argparse.Namespace, redis_server: RedisServer) -> None:
    from bench.soak_jobs import create_table
    from jobs.models import FINAL, Job

    create_table()
    logs = Path(tempfile.mkdtemp(prefix="jobs-soak-"))
    started = time.monotonic()
    with (logs / "workers.log").open("a") as worker_log, (logs / "enqueuers.log").open("a") as enqueuer_log:
        enqueuers, delayed = start_enqueuers(env, options, enqueuer_log)
        workers = Workers(env, options.worker_class, worker_log)
        planned = [
            started + options.enqueue_over * (k + 1) / (options.redis_restarts + 1)
            for k in range(options.redis_restarts)
        ]
        restarts = RedisRestarts(redis_server, planned, options.redis_down)
        next_kill = time.monotonic() + options.kill_every
        try:
            while True:
                restarts.step()
                if time.monotonic() >= next_kill:
                    workers.kill_next()
                    next_kill = time.monotonic() + options.kill_every
                workers.restart_exited()
                if any(p.poll() not in (None, 0) for p in enqueuers):
                    raise SystemExit(f"an enqueuer failed; see {logs}/enqueuers.log")
                enqueued = all(p.poll() == 0 for p in enqueuers) and Job.objects.count() >= options.jobs
                if enqueued and restarts.finished() and not Job.objects.exclude(status__in=FINAL).exists():
                    break
                if time.monotonic() - started > options.timeout:
                    raise SystemExit("the soak did not drain in time")
                time.sleep(0.5)
        finally:
            workers.stop()
            for process in enqueuers:
                if process.poll() is None:
                    kill(process)
    elapsed = time.monotonic() - started
    figures = [
        ("worker class", options.worker_class),
        ("ABANDONED_AFTER", f"{options.abandoned_after}s"),
        *outcome(),
        ("workers killed", len(workers.kills)),
        (
            "workers that exited",
            f"{len(workers.exits)} ({sum(map(restarts.was_down, workers.exits))} of them started "
            "while Redis was down)",
        ),
        ("Redis restarts", f"{len(restarts.back)} (down {options.redis_down:g}s each)"),
        *lateness(delayed, workers.kills, restarts.back, options.late_after, logs),
        *detection(workers.kills),
        ("run time", f"{elapsed:.0f}s"),
        ("logs", logs),
    ]
    print(_table(figures))


def outcome() -> list[tuple[str, object]]:
    """The records by status, and how many times each job ran."""
    from django.db import connection
    from django.db.models import Count

    from bench.soak_jobs import TABLE
    from jobs.models import Job

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT job_id, COUNT(*) FROM {TABLE} GROUP BY job_id")
        runs = dict(cursor.fetchall())
    counts = [runs.get(str(pk), 0) for pk in Job.objects.values_list("pk", flat=True)]
    by_status = dict(Job.objects.values_list("status").annotate(n=Count("pk")).order_by())
    status_text = ", ".join(f"{status} {n}" for status, n in sorted(by_status.items()))
    return [
        ("database", connection.vendor),
        ("records", f"{len(counts)} ({status_text})"),
        ("never ran", counts.count(0)),
        ("ran once", counts.count(1)),
        ("ran more than once", sum(c > 1 for c in counts)),
    ]


def lateness(
    delayed: int, kills: list[float], redis_back: list[float], late_after: float, logs: Path
) -> list[tuple[str, object]]:
    """How late each delayed job's first run started.

    Strict: after the latest of its due time and the last time Redis came back before that start.
    With kills: after the last worker kill before that start too, as the target counts; with a kill
    every few seconds, this one is bounded by the kill interval. The strictly late ones are written
    to ``late.json`` in the logs.
    """
    from django.db import connection

    from bench.soak_jobs import TABLE

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT job_id, MIN(started), MAX(due) FROM {TABLE} WHERE due IS NOT NULL GROUP BY job_id"
        )
        rows = cursor.fetchall()
    strict: list[float] = []
    with_kills: list[float] = []
    late = []
    for job_id, first, due in rows:
        reference = max(due, _last_before(redis_back, first))
        strict.append(first - reference)
        with_kills.append(first - max(reference, _last_before(kills, first)))
        if first - reference > late_after:
            late.append({"job": job_id, "due": due, "started": first, "reference": reference})
    with (logs / "late.json").open("w") as late_file:
        json.dump({"kills": kills, "redis_back": redis_back, "late": late}, late_file, indent=1)
    return [
        ("delayed jobs", f"{delayed} enqueued, {len(rows)} ran"),
        ("late after due/Redis back", _spread(strict)),
        (f"  later than {late_after:g}s", sum(x > late_after for x in strict)),
        ("late after due/Redis back/kill", _spread(with_kills)),
        (f"  later than {late_after:g}s", sum(x > late_after for x in with_kills)),
    ]


def detection(kills: list[float]) -> list[tuple[str, object]]:
    """How long after a kill the reaper recorded the job the killed worker was running."""
    from jobs.models import FailedAttempt

    abandoned = FailedAttempt.objects.filter(error_class="jobs.exceptions.JobAbandoned")
    detections = []
    for failed_at in abandoned.values_list("failed_at", flat=True):
        before = _last_before(kills, failed_at.timestamp())
        if before > float("-inf"):
            detections.append(failed_at.timestamp() - before)
    return [("abandoned attempts", len(detections)), ("detection after a kill", _spread(detections))]


def detect(env: dict[str, str]) -> None:
    """Kill a worker mid-job, once per worker class, and time until the reaper records it."""
    from bench.soak_jobs import create_table
    from jobs.conf import jobs_settings
    from jobs.models import Job, Status
    from tests.fault_jobs import hang_first_attempt

    create_table()
    for worker_class in ("jobs.worker.Worker", "jobs.worker.SimpleWorker", "jobs.worker.LeanWorker"):
        record = hang_first_attempt.enqueue(600)
        victim = start_worker(env, worker_class, subprocess.DEVNULL)
        while Job.objects.get(pk=record.pk).status != Status.STARTED:
            time.sleep(0.05)
        rescuer = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "--worker-class", worker_class, "low"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        kill(victim)
        killed = time.monotonic()
        while Job.objects.get(pk=record.pk).status == Status.STARTED:
            time.sleep(0.05)
        detected = time.monotonic() - killed
        rescuer.terminate()
        rescuer.wait()
        print(
            f"{worker_class}: detected {detected:.1f}s after SIGKILL "
            f"(ABANDONED_AFTER={jobs_settings.ABANDONED_AFTER}s)"
        )
        Job.objects.filter(pk=record.pk).delete()


if __name__ == "__main__":
    main()

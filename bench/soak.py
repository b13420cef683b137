"""The soak: many jobs, enqueued from several processes, while workers are killed and restarted.

``python -m bench.soak`` starts a redis-server and makes a database of its own (SQLite, or PostgreSQL
with ``--postgres URL``), starts two workers, enqueues ``--jobs`` jobs from ``--enqueuers`` processes,
SIGKILLs one worker every ``--kill-every`` seconds and starts it again, and waits until every record is
in a final state. Each job counts its runs in a table of its own. It prints: the records by status,
the jobs that never ran (must be 0), ran once, ran more than once; the run time; and, for each kill,
how long the reaper took to record the job the killed worker was running (the detection time).

``python -m bench.soak --detect`` measures only the detection time, once per worker class, with the
default ``ABANDONED_AFTER``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import environment
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def start_worker(env: dict[str, str], worker_class: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "--worker-class", worker_class, "default"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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


def enqueue(count: int) -> None:
    """Run in each enqueuer process: enqueue ``count`` jobs in batches and one by one."""
    import django

    django.setup()
    from bench.soak_jobs import counted

    done = 0
    while done < count:
        size = min(100, count - done)
        if done % 1000 < 100:
            for _ in range(size):
                counted.enqueue()
        else:
            counted.enqueue_many([[] for _ in range(size)])
        done += size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--enqueuers", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=4.0)
    parser.add_argument("--worker-class", default="jobs.worker.LeanWorker")
    parser.add_argument("--abandoned-after", type=int, default=10)
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--detect", action="store_true", help="measure only the detection time")
    parser.add_argument("--enqueue", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.enqueue is not None:
        return enqueue(options.enqueue)
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
                soak(env, options)
    finally:
        redis_server.cleanup()


def soak(env: dict[str, str], options: argparse.Namespace) -> None:
    from django.db import connection
    from django.db.models import Count

    from bench.soak_jobs import TABLE, create_table
    from jobs.models import FINAL, FailedAttempt, Job

    create_table()
    started = time.monotonic()
    per = options.jobs // options.enqueuers
    enqueuers = [
        subprocess.Popen([sys.executable, "-m", "bench.soak", "--enqueue", str(n)], cwd=ROOT, env=env)
        for n in [per] * (options.enqueuers - 1) + [options.jobs - per * (options.enqueuers - 1)]
    ]
    workers = [start_worker(env, options.worker_class) for _ in range(2)]
    kills: list[float] = []  # wall-clock times of the kills
    victim = 0
    next_kill = time.monotonic() + options.kill_every
    try:
        while True:
            if time.monotonic() >= next_kill:
                kill(workers[victim])
                kills.append(time.time())
                workers[victim] = start_worker(env, options.worker_class)
                victim = 1 - victim
                next_kill = time.monotonic() + options.kill_every
            enqueuing = any(p.poll() is None for p in enqueuers)
            enqueued = not enqueuing and Job.objects.count() >= options.jobs
            if enqueued and not Job.objects.exclude(status__in=FINAL).exists():
                break
            if time.monotonic() - started > options.timeout:
                raise SystemExit("the soak did not drain in time")
            time.sleep(0.5)
    finally:
        for process in workers:
            kill(process)
    elapsed = time.monotonic() - started
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT job_id, COUNT(*) FROM {TABLE} GROUP BY job_id")
        runs = dict(cursor.fetchall())
    ids = [str(pk) for pk in Job.objects.values_list("pk", flat=True)]
    counts = [runs.get(pk, 0) for pk in ids]
    by_status = dict(Job.objects.values_list("status").annotate(n=Count("pk")).order_by())
    abandoned = FailedAttempt.objects.filter(error_class="jobs.exceptions.JobAbandoned")
    detections = []
    for failed_at in abandoned.values_list("failed_at", flat=True):
        before = [k for k in kills if k <= failed_at.timestamp()]
        if before:
            detections.append(failed_at.timestamp() - before[-1])
    print(f"worker class: {options.worker_class}, ABANDONED_AFTER={options.abandoned_after}s")
    print(f"records: {len(ids)}; by status: {by_status}")
    print(
        f"never ran: {counts.count(0)}; ran once: {counts.count(1)}; "
        f"ran more than once: {sum(c > 1 for c in counts)}"
    )
    print(f"workers killed: {len(kills)}; abandoned attempts recorded: {abandoned.count()}")
    if detections:
        print(
            f"detection after a kill: median {statistics.median(detections):.1f}s, max {max(detections):.1f}s"
        )
    print(f"run time: {elapsed:.0f}s")


def detect(env: dict[str, str]) -> None:
    """Kill a worker mid-job, once per worker class, and time until the reaper records it."""
    from bench.soak_jobs import create_table
    from jobs.conf import jobs_settings
    from jobs.models import Job, Status
    from tests.fault_jobs import hang_first_attempt

    create_table()
    for worker_class in ("jobs.worker.Worker", "jobs.worker.SimpleWorker", "jobs.worker.LeanWorker"):
        record = hang_first_attempt.enqueue(600)
        victim = start_worker(env, worker_class)
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

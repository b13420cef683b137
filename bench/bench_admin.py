"""The Job admin on a large ledger: query count and page time of the change list (and the dashboard).

``python -m bench.bench_admin`` makes a SQLite database and a PostgreSQL one (as ``python -m bench`` does),
fills each with ``--rows`` job records by ``bulk_create``, and GETs each page with Django's test client,
``--runs`` times after one warm-up; it prints the median time and the number of queries of each page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from bench import environment
from tests.redis_server import RedisServer

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"

PAGES = [
    ("change list", "/admin/jobs/job/"),
    ("failed, one queue", "/admin/jobs/job/?status__exact=failed&queue__exact=high"),
    ("one function", "/admin/jobs/job/?function=bench.jobs.f7"),
    ("search in errors", "/admin/jobs/job/?q=timeout"),
    ("last page", "/admin/jobs/job/?p={last_page}"),
    ("a job's page", None),
    ("dashboard", "/admin/jobs/dashboard/"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_admin", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="job records (default 100000)")
    parser.add_argument("--runs", type=int, default=5, help="timed GETs of each page (default 5)")
    parser.add_argument(
        "--databases", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument("--postgres", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def fill(rows: int) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from jobs.models import FailedAttempt, Job, Status

    statuses = [Status.FINISHED] * 7 + [Status.FAILED, Status.QUEUED, Status.CANCELLED]
    now = timezone.now()
    batch: list[Job] = []
    attempts: list[FailedAttempt] = []
    for index in range(rows):
        status = statuses[index % len(statuses)]
        enqueued = now - timedelta(seconds=rows - index)
        failed = status == Status.FAILED
        batch.append(
            Job(
                function=f"bench.jobs.f{index % 20}",
                queue=("default", "high", "low")[index % 3],
                status=status,
                args=[index, f"customer-{index % 997}"],
                kwargs={"report": index % 13},
                attempts=1 if status != Status.QUEUED else 0,
                enqueued_at=enqueued,
                started_at=enqueued if status != Status.QUEUED else None,
                finished_at=enqueued + timedelta(milliseconds=40) if status != Status.QUEUED else None,
                progress=100 if status == Status.FINISHED else 0,
                error_class="builtins.TimeoutError" if failed else "",
                error_message=f"timeout talking to host {index % 50}" if failed else "",
                traceback="Traceback (most recent call last):\n  ...\nTimeoutError\n" if failed else "",
            )
        )
        if failed:
            attempts.append(FailedAttempt(job=batch[-1], number=1, error_class="builtins.TimeoutError"))
        if len(batch) == 5000:
            Job.objects.bulk_create(batch, batch_size=1000)
            FailedAttempt.objects.bulk_create(attempts, batch_size=1000)
            batch, attempts = [], []
    Job.objects.bulk_create(batch, batch_size=1000)
    FailedAttempt.objects.bulk_create(attempts, batch_size=1000)


def child(options: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from jobs.models import Job, Status

    setup_test_environment()
    started = time.monotonic()
    fill(options.rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"{Job.objects.count():,} records written in {time.monotonic() - started:.1f} s")
    client = Client()
    client.force_login(User.objects.create_superuser("bench", password="bench"))
    failed = Job.objects.filter(status=Status.FAILED).order_by("-enqueued_at").first()
    print("| page | median | queries |\n| --- | ---: | ---: |")
    for name, url in PAGES:
        last_page = -(-options.rows // 50)  # the admin shows 50 jobs a page
        url = (url or f"/admin/jobs/job/{failed.pk}/change/").format(last_page=last_page)
        client.get(url)  # warm-up
        times = []
        for _ in range(options.runs):
            with CaptureQueriesContext(connection) as queries:
                begin = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - begin)
            assert response.status_code == 200, (url, response.status_code)
        print(f"| {name} (`{url}`) | {statistics.median(times) * 1000:.0f} ms | {len(queries)} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    if options.child:
        child(options)
        return
    server = RedisServer()
    server.start()
    try:
        for name in options.databases:
            database = environment.database_for(name, options.postgres)
            if database is None:
                continue
            print(f"\n### {'SQLite (WAL)' if name == 'sqlite' else 'PostgreSQL'}: {options.rows:,} records\n")
            with database as database_url:
                env = environment.child_env(database_url, server.url)
                environment.migrate(env)
                command = [sys.executable, "-m", "bench.bench_admin", "--child"]
                command += ["--rows", str(options.rows), "--runs", str(options.runs)]
                subprocess.run(command, cwd=environment.ROOT, env=env, check=True)
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()

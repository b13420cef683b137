"""The metrics endpoint on a large ledger: time, database queries and Redis commands of one scrape.

``python -m bench.bench_metrics`` makes a SQLite database and a PostgreSQL one (as ``python -m bench`` does),
fills each with ``--rows`` job records spread over the past (``bench.bench_admin.fill``) plus ``--recent``
records that ended within the metrics window (a busy minute: each with a run time and a start latency,
one in ten failed), scrapes ``/jobs/metrics/`` with the bearer token ``--runs`` times after one warm-up,
and prints the median time of a scrape, its queries (``CaptureQueriesContext``), its slowest query and
its Redis commands (``INFO commandstats``). Then it times each choice the endpoint made beside what it
replaced: the window's histograms bucketed in Python or counted in SQL, and the whole-ledger count by
function too or by queue and status only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from bench import environment
from bench.bench_admin import fill
from tests.redis_server import RedisServer

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
TOKEN = "bench-metrics-token-0123456789"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_metrics", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="job records (default 1000000)")
    parser.add_argument(
        "--recent", type=int, default=10_000, help="of which ended in the window (default 10000)"
    )
    parser.add_argument("--runs", type=int, default=5, help="timed scrapes (default 5)")
    parser.add_argument(
        "--databases", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument("--postgres", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def date_failed_attempts() -> None:
    """``fill`` leaves its failed attempts dated when they were written (now): date each when its job
    ended, so that only the records meant to be in the window are."""
    from django.db.models import OuterRef, Subquery

    from jobs.models import FailedAttempt, Job

    ended = Job.objects.filter(pk=OuterRef("job_id")).values("finished_at")[:1]
    FailedAttempt.objects.update(failed_at=Subquery(ended), started_at=Subquery(ended))


def fill_recent(count: int) -> None:
    """``count`` records that ended in the last minute, one in ten failed (with its failed attempt)."""
    import random
    from datetime import timedelta

    from django.utils import timezone

    from jobs.models import FailedAttempt, Job, Status

    rng = random.Random(14)
    now = timezone.now()
    records, attempts = [], []
    for index in range(count):
        finished = now - timedelta(seconds=rng.uniform(0, 55))
        started = finished - timedelta(seconds=rng.expovariate(1 / 0.2))
        failed = index % 10 == 0
        records.append(
            Job(
                function=f"bench.jobs.f{index % 20}",
                queue=("default", "high", "low")[index % 3],
                status=Status.FAILED if failed else Status.FINISHED,
                attempts=1,
                enqueued_at=started - timedelta(seconds=rng.expovariate(1 / 0.05)),
                started_at=started,
                finished_at=finished,
            )
        )
        if failed:
            attempts.append(FailedAttempt(job=records[-1], number=1, started_at=started, failed_at=finished))
    Job.objects.bulk_create(records, batch_size=1000)
    FailedAttempt.objects.bulk_create(attempts, batch_size=1000)


def median_ms(read, runs: int) -> float:
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        read()
        times.append(time.perf_counter() - begin)
    return statistics.median(times) * 1000


def window_in_sql() -> None:
    """The window's main query as first written: one ``COUNT(...) FILTER`` per bucket of each histogram,
    the durations computed by the database for each bucket."""
    from datetime import timedelta

    from django.db.models import Count, F, Q
    from django.db.models.functions import Coalesce
    from django.utils import timezone

    from jobs.metrics.window import BUCKETS, Seconds
    from jobs.models import Job, Status

    start = timezone.now() - timedelta(seconds=60)
    ended = Q(finished_at__gte=start)
    finished = ended & Q(status=Status.FINISHED)
    first = Q(attempts=1, started_at__gte=start)
    buckets = {}
    for index, bound in enumerate(BUCKETS):
        buckets[f"run_{index}"] = Count("pk", filter=finished & Q(run__lte=bound))
        buckets[f"wait_{index}"] = Count("pk", filter=first & Q(wait__lte=bound))
    list(
        Job.objects.filter(ended | Q(status=Status.STARTED))
        .alias(
            run=Seconds(F("finished_at"), F("started_at")),
            wait=Seconds(F("started_at"), Coalesce("scheduled_for", "enqueued_at")),
        )
        .order_by()
        .values("queue", "function", "status")
        .annotate(ended=Count("pk", filter=ended), **buckets)
    )


def window_now() -> None:
    """The same query as the endpoint makes it (the records that ended in the window or run)."""
    from datetime import timedelta

    from django.utils import timezone

    from jobs.metrics import window

    window._read_jobs(window.Window(60), timezone.now() - timedelta(seconds=60))


def ledger_count(*fields: str):
    from django.db.models import Count

    from jobs.models import Job

    return lambda: list(Job.objects.order_by().values_list(*fields).annotate(n=Count("pk")))


def compare(runs: int) -> None:
    """The choices the endpoint made, each beside what it replaced, timed in turn on the same records."""
    rows = [
        ("window: durations per row, bucketed in Python (the endpoint)", median_ms(window_now, runs)),
        ("window: one COUNT FILTER per bucket, in SQL", median_ms(window_in_sql, runs)),
        (
            "ledger by queue, status and function (the endpoint)",
            median_ms(ledger_count("queue", "status", "function"), runs),
        ),
        (
            "ledger by queue and status (the admin dashboard)",
            median_ms(ledger_count("queue", "status"), runs),
        ),
    ]
    print("\n| query | median |\n| --- | ---: |")
    for name, ms in rows:
        print(f"| {name} | {ms:.0f} ms |", flush=True)


def parts() -> list[tuple[str, float]]:
    """Seconds of each part of the collector, read on its own."""
    from jobs.admin import figures
    from jobs.metrics.collector import JobsCollector

    collector = JobsCollector()
    timed = []
    for name, read in [
        ("ledger: records by queue, status and function", lambda: figures.ledger_counts(by_function=True)),
        ("ledger: oldest waiting job per queue", figures.oldest_waiting_by_queue),
        ("ledger: undispatched records", figures.undispatched_count),
        ("window: ended jobs with their histograms, failed attempts", lambda: list(collector._window())),
        ("django-rq's RQCollector", collector._rq),
        ("paused queues", collector._paused),
        ("cache counters", collector._cache),
    ]:
        begin = time.perf_counter()
        read()
        timed.append((name, time.perf_counter() - begin))
    return timed


def child(options: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from django_redis import get_redis_connection

    from jobs.models import Job

    setup_test_environment()
    started = time.monotonic()
    fill(options.rows - options.recent)
    date_failed_attempts()
    fill_recent(options.recent)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"{Job.objects.count():,} records written in {time.monotonic() - started:.1f} s")
    redis = get_redis_connection("default")
    client = Client()
    headers = {"authorization": f"Bearer {TOKEN}"}
    assert client.get("/jobs/metrics/", headers=headers).status_code == 200  # warm-up
    times, slowest = [], []
    for _ in range(options.runs):
        redis.config_resetstat()
        with CaptureQueriesContext(connection) as queries:
            begin = time.perf_counter()
            response = client.get("/jobs/metrics/", headers=headers)
            times.append(time.perf_counter() - begin)
        assert response.status_code == 200, response.status_code
        commands = sum(
            stats["calls"] for name, stats in redis.info("commandstats").items() if name != "cmdstat_info"
        )
        slowest.append(max(float(query["time"]) for query in queries.captured_queries))
    print("| scrape, median | queries | slowest query, median | Redis commands |")
    print("| ---: | ---: | ---: | ---: |")
    print(
        f"| {statistics.median(times) * 1000:.0f} ms | {len(queries)} "
        f"| {statistics.median(slowest) * 1000:.0f} ms | {commands} |",
        flush=True,
    )
    print("\nParts of one scrape (each read in full, as the encoder reads it):\n")
    for part, seconds in parts():
        print(f"- {part}: {seconds * 1000:.0f} ms")
    compare(options.runs)


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
            title = "SQLite (WAL)" if name == "sqlite" else "PostgreSQL"
            print(f"\n### {title}: {options.rows:,} records, {options.recent:,} of them in the window\n")
            with database as database_url:
                env = {
                    **environment.child_env(database_url, server.url),
                    "BENCH_JOBS": f'{{"METRICS_TOKEN": "{TOKEN}"}}',
                }
                environment.migrate(env)
                command = [sys.executable, "-m", "bench.bench_metrics", "--child"]
                command += [
                    "--rows",
                    str(options.rows),
                    "--recent",
                    str(options.recent),
                    "--runs",
                    str(options.runs),
                ]
                subprocess.run(command, cwd=environment.ROOT, env=env, check=True)
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()

"""Draining pre-filled no-op jobs with one ``manage.py rqworker --burst`` process: `jobs` against raw RQ
and Huey.

Each pair runs the same kind of worker: RQ's own class on jobs enqueued straight to RQ (JSON, and no
result kept, which is RQ's cheapest path), and the `jobs` class on jobs enqueued with their records.
The recommended worker, ``jobs.worker.ThreadedWorker``, is held against RQ's ``SimpleWorker`` and against
Huey's single worker (``huey_consumer -w 1``, which keeps no record), timed from its first job taken to
its queue empty, while ours is timed, for that comparison, from its first job's start to its last job's
end as the ledger recorded them: neither counts its process's start-up and shutdown. After each drain of
a `jobs` worker every record must be finished, once, with its result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import django_rq
import redis
from django.db import connection, transaction
from rq import Queue
from rq.serializers import JSONSerializer

from bench.jobs import noop, plain_noop
from bench.measure import Case, CommandCounter, Comparison, clear

ROOT = Path(__file__).resolve().parent.parent
RAW_OPTIONS = ("--serializer", "rq.serializers.JSONSerializer")


@dataclass(frozen=True)
class Worker:
    label: str
    worker_class: str
    ledger: bool
    forking: bool = False
    #: JOBS settings of the worker's process, as JSON (see bench/settings.py).
    jobs_settings: str = ""

    @property
    def options(self) -> tuple[str, ...]:
        return ("--worker-class", self.worker_class, *(() if self.ledger else RAW_OPTIONS))


RQ_SIMPLE = Worker("RQ SimpleWorker", "rq.SimpleWorker", ledger=False)
JOBS_SIMPLE = Worker("jobs SimpleWorker", "jobs.worker.SimpleWorker", ledger=True)
LEAN = Worker("jobs LeanWorker", "jobs.worker.LeanWorker", ledger=True)
THREADED = Worker("jobs ThreadedWorker", "jobs.worker.ThreadedWorker", ledger=True)
RQ_FORKING = Worker("RQ Worker (fork)", "rq.Worker", ledger=False, forking=True)
JOBS_FORKING = Worker("jobs Worker (fork)", "jobs.worker.Worker", ledger=True, forking=True)
#: PostgreSQL only: the recommended worker with the ledger's commits not waiting for the WAL flush.
LEAN_ASYNC = Worker(
    "jobs LeanWorker, LEDGER_ASYNC_COMMIT",
    "jobs.worker.LeanWorker",
    ledger=True,
    jobs_settings='{"LEDGER_ASYNC_COMMIT": true}',
)
THREADED_ASYNC = Worker(
    "jobs ThreadedWorker, LEDGER_ASYNC_COMMIT",
    "jobs.worker.ThreadedWorker",
    ledger=True,
    jobs_settings='{"LEDGER_ASYNC_COMMIT": true}',
)


def fill(client: redis.Redis, worker: Worker, jobs: int) -> None:
    clear(client)
    if worker.ledger:
        with transaction.atomic():
            noop.enqueue_many([] for _ in range(jobs))
    else:
        queue = Queue("default", connection=django_rq.get_connection("default"), serializer=JSONSerializer)
        queue.enqueue_many([Queue.prepare_data(plain_noop, result_ttl=0) for _ in range(jobs)])


def drain(
    client: redis.Redis,
    worker: Worker,
    jobs: int,
    case: Case,
    profile: str | None = None,
    span_case: Case | None = None,
) -> None:
    """Fill the queue, run one burst worker over it, and add its throughput and costs to ``case``; and to
    ``span_case``, its throughput from the first job's start to the last job's end, as the ledger
    recorded them (no start-up or shutdown of the process)."""
    fill(client, worker, jobs)
    counter = CommandCounter(client)
    counter.reset()
    with tempfile.TemporaryDirectory() as tmp:
        result_file, log_file = Path(tmp) / "result.json", Path(tmp) / "worker.log"
        env = {**os.environ, "BENCH_JOBS": worker.jobs_settings or "{}"}
        if profile:
            env["BENCH_PROFILE"] = profile
        command = [sys.executable, "-m", "bench.worker", str(result_file), "--burst", *worker.options]
        with log_file.open("w") as log:
            completed = subprocess.run(
                [*command, "default"],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                check=False,
            )
        if completed.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"{worker.label} failed:\n{log_file.read_text()[-3000:]}")
        result = json.loads(result_file.read_text())
    left = client.llen("rq:queue:default")
    if left:
        raise RuntimeError(f"{worker.label} left {left} jobs in the queue")
    if worker.ledger:
        check_records(worker, jobs)
    if span_case is not None:
        from django.db.models import Max, Min

        from jobs.models import Job

        span = Job.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
        span_case.runs.append(jobs / (span["last"] - span["first"]).total_seconds())
        span_case.redis_commands, span_case.db_statements = case.redis_commands, case.db_statements
    case.runs.append(jobs / result["seconds"])
    case.redis_commands = counter.total() / jobs
    # A forking worker's statements are sent by its work horses, which this count cannot see.
    case.db_statements = None if worker.forking else result["statements"] / jobs


def check_records(worker: Worker, jobs: int) -> None:
    """Every record of the drain finished, in one attempt, with its result: the ledger is right."""
    from jobs.models import Job, Status

    right = Job.objects.filter(status=Status.FINISHED, attempts=1, finished_at__isnull=False, progress=100)
    if right.count() != jobs or Job.objects.count() != jobs:
        wrong = Job.objects.exclude(pk__in=right.values("pk")).values_list("status", "attempts")[:5]
        raise RuntimeError(
            f"{worker.label}: {jobs - right.count()} records not finished right: {list(wrong)}"
        )


def drain_huey(client: redis.Redis, jobs: int, case: Case) -> None:
    """Huey's single worker over ``jobs`` no-op tasks: from the moment its queue first shrinks until it is
    empty (so that the consumer's start-up is not counted)."""
    from bench.huey_jobs import huey
    from bench.huey_jobs import noop as huey_noop

    clear(client)
    for _ in range(jobs):
        huey_noop()
    key = huey.storage.queue_key
    counter = CommandCounter(client)
    counter.reset()
    command = [sys.executable, "-m", "huey.bin.huey_consumer", "bench.huey_jobs.huey", "-w", "1", "-q", "-n"]
    with tempfile.TemporaryFile("w+") as log:
        consumer = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while client.llen(key) == jobs:
                if time.monotonic() > deadline or consumer.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"Huey did not start:\n{log.read()[-3000:]}")
                time.sleep(0.001)
            started = time.perf_counter()
            while client.llen(key):
                if time.monotonic() > deadline:
                    raise RuntimeError("Huey did not drain its queue")
                time.sleep(0.001)
            seconds = time.perf_counter() - started
        finally:
            consumer.terminate()
            consumer.wait(timeout=30)
    case.runs.append(jobs / seconds)
    # Less the bench's own polling (LLEN).
    case.redis_commands = (counter.total() - counter.by_command().get("llen", 0)) / jobs


def run(client: redis.Redis, runs: int, jobs: int, forking_jobs: int) -> list[Comparison]:
    postgresql = connection.vendor == "postgresql"
    simple = (
        RQ_SIMPLE,
        JOBS_SIMPLE,
        LEAN,
        THREADED,
        *((LEAN_ASYNC, THREADED_ASYNC) if postgresql else ()),
    )
    workers = (*simple, RQ_FORKING, JOBS_FORKING)
    cases = {worker: Case(worker.label) for worker in workers}
    huey = Case("Huey, one worker (no record)")
    spans = {worker: Case(f"{worker.label}, first start to last record") for worker in simple}
    for _ in range(runs):
        for worker in simple:
            drain(client, worker, jobs, cases[worker], span_case=spans[worker] if worker.ledger else None)
        drain_huey(client, jobs, huey)
        for worker in (RQ_FORKING, JOBS_FORKING):
            drain(client, worker, forking_jobs, cases[worker])
    clear(client)
    huey_target = ">= 2/3 x" if postgresql else ">= 1x"
    return [
        Comparison(
            "drain, non-forking worker",
            "jobs/s",
            jobs,
            cases[JOBS_SIMPLE],
            cases[RQ_SIMPLE],
            target=">= 0.8x; <= 2 statements/job",
        ),
        Comparison(
            "drain, forking worker",
            "jobs/s",
            forking_jobs,
            cases[JOBS_FORKING],
            cases[RQ_FORKING],
            target=">= 0.8x",
        ),
        Comparison(
            "drain, lean worker",
            "jobs/s",
            jobs,
            cases[LEAN],
            cases[RQ_SIMPLE],
            target=">= 500 jobs/s and >= 3x",
        ),
        Comparison(
            "drain, recommended worker",
            "jobs/s",
            jobs,
            cases[THREADED],
            cases[RQ_SIMPLE],
            target="<= 12 Redis cmds, <= 2 statements/job",
        ),
        Comparison(
            "drain, recommended worker",
            "jobs/s",
            jobs,
            spans[THREADED],
            huey,
            target=huey_target,
        ),
        *(
            [
                Comparison(
                    "drain, lean worker, LEDGER_ASYNC_COMMIT",
                    "jobs/s",
                    jobs,
                    cases[LEAN_ASYNC],
                    cases[RQ_SIMPLE],
                    target=">= 500 jobs/s and >= 3x",
                ),
                Comparison(
                    "drain, recommended worker, LEDGER_ASYNC_COMMIT",
                    "jobs/s",
                    jobs,
                    spans[THREADED_ASYNC],
                    huey,
                    target=huey_target,
                ),
            ]
            if postgresql
            else []
        ),
    ]


def profile(client: redis.Redis, jobs: int, directory: Path) -> list[Path]:
    """One profiled drain of RQ's SimpleWorker and of the recommended worker; returns the reports."""
    directory.mkdir(parents=True, exist_ok=True)
    reports = []
    for worker in (RQ_SIMPLE, JOBS_SIMPLE, LEAN, THREADED):
        report = directory / f"{worker.worker_class}.txt"
        drain(client, worker, jobs, Case(worker.label), profile=str(report))
        reports.append(report)
    clear(client)
    return reports

"""Draining pre-filled no-op jobs with one ``manage.py rqworker --burst`` process: `jobs` against raw RQ.

Each pair runs the same kind of worker: RQ's own class on jobs enqueued straight to RQ (JSON, and no
result kept, which is RQ's cheapest path), and the `jobs` class on jobs enqueued with their records.
The recommended worker, ``jobs.worker.LeanWorker``, is held against RQ's ``SimpleWorker``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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
RQ_FORKING = Worker("RQ Worker (fork)", "rq.Worker", ledger=False, forking=True)
JOBS_FORKING = Worker("jobs Worker (fork)", "jobs.worker.Worker", ledger=True, forking=True)
#: PostgreSQL only: the recommended worker with the ledger's commits not waiting for the WAL flush.
LEAN_ASYNC = Worker(
    "jobs LeanWorker, LEDGER_ASYNC_COMMIT",
    "jobs.worker.LeanWorker",
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


def drain(client: redis.Redis, worker: Worker, jobs: int, case: Case, profile: str | None = None) -> None:
    """Fill the queue, run one burst worker over it, and add its throughput and costs to ``case``."""
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
    case.runs.append(jobs / result["seconds"])
    case.redis_commands = counter.total() / jobs
    # A forking worker's statements are sent by its work horses, which this count cannot see.
    case.db_statements = None if worker.forking else result["statements"] / jobs


def run(client: redis.Redis, runs: int, jobs: int, forking_jobs: int) -> list[Comparison]:
    postgresql = connection.vendor == "postgresql"
    simple = (RQ_SIMPLE, JOBS_SIMPLE, LEAN, *((LEAN_ASYNC,) if postgresql else ()))
    workers = (*simple, RQ_FORKING, JOBS_FORKING)
    cases = {worker: Case(worker.label) for worker in workers}
    for _ in range(runs):
        for worker in simple:
            drain(client, worker, jobs, cases[worker])
        for worker in (RQ_FORKING, JOBS_FORKING):
            drain(client, worker, forking_jobs, cases[worker])
    clear(client)
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
            "drain, recommended worker",
            "jobs/s",
            jobs,
            cases[LEAN],
            cases[RQ_SIMPLE],
            target=">= 500 jobs/s and >= 3x",
        ),
        *(
            [
                Comparison(
                    "drain, recommended worker, LEDGER_ASYNC_COMMIT",
                    "jobs/s",
                    jobs,
                    cases[LEAN_ASYNC],
                    cases[RQ_SIMPLE],
                    target=">= 500 jobs/s and >= 3x",
                )
            ]
            if postgresql
            else []
        ),
    ]


def profile(client: redis.Redis, jobs: int, directory: Path) -> list[Path]:
    """One profiled drain of RQ's SimpleWorker and of the recommended worker; returns the reports."""
    directory.mkdir(parents=True, exist_ok=True)
    reports = []
    for worker in (RQ_SIMPLE, JOBS_SIMPLE, LEAN):
        report = directory / f"{worker.worker_class}.txt"
        drain(client, worker, jobs, Case(worker.label), profile=str(report))
        reports.append(report)
    clear(client)
    return reports

"""Enqueue, one at a time and in bulk: `jobs` (a record per job, pushed on commit) against RQ and django-rq.

One at a time, each `jobs` enqueue runs in autocommit, so it pays its INSERT, its commit and its push.
In bulk, `enqueue_many` writes the records with one bulk INSERT (Django splits it on SQLite, whose
statements take at most 999 parameters) and pushes them in one pipeline when the transaction commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import django_rq
import redis
from django.db import transaction
from rq import Queue
from rq.serializers import JSONSerializer

from bench.jobs import noop, plain_noop
from bench.measure import Case, CommandCounter, Comparison, StatementCounter, clear


def _measure(case: Case, client: redis.Redis, jobs: int, enqueue: Callable[[], object]) -> None:
    clear(client)
    counter = CommandCounter(client)
    counter.reset()
    with StatementCounter() as statements:
        started = time.perf_counter()
        enqueue()
        elapsed = time.perf_counter() - started
    case.runs.append(jobs / elapsed)
    case.redis_commands = counter.total() / jobs
    case.db_statements = statements.count / jobs


def run(client: redis.Redis, runs: int, single: int, bulk: int) -> list[Comparison]:
    queue = Queue("default", connection=django_rq.get_connection("default"), serializer=JSONSerializer)
    django_rq_queue = django_rq.get_queue("default")

    def ours_one_by_one() -> None:
        for _ in range(single):
            noop.enqueue()

    def rq_one_by_one() -> None:
        for _ in range(single):
            queue.enqueue(plain_noop)

    def django_rq_one_by_one() -> None:
        for _ in range(single):
            django_rq_queue.enqueue(plain_noop)

    def ours_bulk() -> None:
        with transaction.atomic():
            noop.enqueue_many([] for _ in range(bulk))

    def rq_bulk() -> None:
        queue.enqueue_many([Queue.prepare_data(plain_noop) for _ in range(bulk)])

    one = Case("jobs: fn.enqueue()")
    rq_one = Case("RQ: queue.enqueue()")
    django_rq_one = Case("django-rq: queue.enqueue()")
    many = Case("jobs: fn.enqueue_many()")
    rq_many = Case("RQ: queue.enqueue_many()")
    for _ in range(runs):
        _measure(rq_one, client, single, rq_one_by_one)
        _measure(django_rq_one, client, single, django_rq_one_by_one)
        _measure(one, client, single, ours_one_by_one)
        _measure(rq_many, client, bulk, rq_bulk)
        _measure(many, client, bulk, ours_bulk)
    clear(client)
    return [
        Comparison("enqueue, one at a time", "jobs/s", single, one, rq_one, target="<= 1 statement/job"),
        Comparison("enqueue, one at a time", "jobs/s", single, one, django_rq_one),
        Comparison(
            "enqueue_many, one batch",
            "jobs/s",
            bulk,
            many,
            rq_many,
            target=">= 10,000 jobs/s; constant statements/batch",
        ),
    ]

"""The ledger's hot statements (``jobs.statements``, the SQL of the claim and finish transitions and of
enqueue): what they store is what the ORM stores, and a worker sends two of them per job, an enqueue one."""

import datetime
import decimal
import threading

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import statements, transitions
from jobs.models import Job, Status
from jobs.worker import LeanWorker, SimpleWorker
from tests import jobs

pytestmark = pytest.mark.django_db(transaction=True)


def _fields(record):
    return {f.attname: getattr(record, f.attname) for f in Job._meta.concrete_fields}


def test_a_batch_reads_back_exactly_as_returned_and_as_the_orm_writes_it():
    moment = timezone.now()
    records = jobs.echo_types.enqueue_many(
        [([moment, decimal.Decimal("1.50")], {"day": datetime.date(2026, 1, 2)}), ([], {})]
    )
    orm = Job.objects.create(
        function="tests.jobs.echo_types",
        queue="default",
        args=records[0].args,
        kwargs=records[0].kwargs,
        backoff="exponential",  # what an enqueue keeps of the job's options (the model leaves it empty)
    )
    for record in records:
        assert _fields(Job.objects.get(pk=record.pk)) == _fields(record)
        assert record._state.adding is False
        assert record._state.db == "default"
    stored, by_orm = _fields(Job.objects.get(pk=records[0].pk)), _fields(Job.objects.get(pk=orm.pk))
    for name in ("id", "enqueued_at"):
        del stored[name], by_orm[name]
    assert stored == by_orm
    # The arguments' JSON is queryable as the ORM's is.
    assert Job.objects.filter(kwargs__day__isnull=False).count() == 2


def test_claim_takes_a_waiting_job_once_and_never_a_cancelled_one():
    record = jobs.noop.enqueue()
    assert transitions.claim(record, "w1") == 1
    assert (record.status, record.worker_name, record.attempts) == (Status.STARTED, "w1", 1)
    assert transitions.claim(Job.objects.get(pk=record.pk), "w2") is None
    stored = Job.objects.get(pk=record.pk)
    assert (stored.worker_name, stored.attempts, stored.undispatched_since) == ("w1", 1, None)

    cancelled = jobs.noop.enqueue()
    Job.objects.filter(pk=cancelled.pk).update(status=Status.CANCELLED)
    assert transitions.claim(cancelled, "w1") is None
    assert Job.objects.get(pk=cancelled.pk).attempts == 0


def test_finish_stores_the_result_and_none_as_sql_null():
    record = jobs.noop.enqueue()
    assert transitions.finish(record, transitions.claim(record, "w1"), None)
    assert Job.objects.filter(pk=record.pk, result__isnull=True, status=Status.FINISHED).exists()
    other = jobs.add.enqueue(1, 2)
    assert transitions.finish(other, transitions.claim(other, "w1"), {"sum": [3]})
    stored = Job.objects.get(pk=other.pk)
    assert (stored.result, stored.progress, stored.status) == ({"sum": [3]}, 100, Status.FINISHED)
    assert stored.started_at <= stored.finished_at


def test_finish_of_a_deleted_record_reports_it():
    record = jobs.noop.enqueue()
    Job.objects.filter(pk=record.pk).delete()
    assert not transitions.finish(record, 1, 1)
    assert statements.claim("default", record.pk, "w1", timezone.now()) is None


def test_a_batch_without_ids_is_refused_and_writes_nothing():
    with pytest.raises(ValueError, match="each row of a batch gives its id"):
        statements.insert_batch("default", {"function": "tests.jobs.noop", "queue": "default"}, [{}, {}])
    assert Job.objects.count() == 0


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize("worker_class", [LeanWorker, SimpleWorker], ids=["lean", "simple"])
def test_a_worker_sends_two_statements_per_job(redis, worker_class):
    """A real worker's loop, run in this process so that each job's statements can be captured."""
    per_job = []

    class Counting(worker_class):
        def execute_job(self, job, queue):
            with CaptureQueriesContext(connections["default"]) as captured:
                super().execute_job(job, queue)
            per_job.append(len(captured))

    records = [jobs.add.enqueue(n, 1) for n in range(10)]
    Counting(["default"], connection=redis).work(burst=True)
    assert Job.objects.filter(pk__in=[r.pk for r in records], status=Status.FINISHED).count() == 10
    assert per_job == [2] * 10


def test_enqueue_costs_one_statement_and_a_batch_one_in_all(django_assert_num_queries):
    with django_assert_num_queries(1):
        jobs.add.enqueue(1, 2)
    with django_assert_num_queries(1):
        jobs.add.enqueue_many([(n, n) for n in range(1500)])


def test_async_ledger_commits_cost_no_statement_and_leave_the_session_alone(settings):
    settings.JOBS = {"LEDGER_ASYNC_COMMIT": True}
    connection = connections["default"]
    on_postgresql = connection.vendor == "postgresql"
    record = jobs.add.enqueue(2, 3)
    with CaptureQueriesContext(connection) as captured:
        assert transitions.finish(record, transitions.claim(record, "w1"), 5)
    assert len(captured) == 2
    assert [("synchronous_commit" in query["sql"]) for query in captured] == [on_postgresql] * 2
    stored = Job.objects.get(pk=record.pk)
    assert (stored.status, stored.result, stored.attempts) == (Status.FINISHED, 5, 1)
    if on_postgresql:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"
    # Inside the caller's own transaction the setting would reach the caller's writes: not used there.
    other = jobs.add.enqueue(1, 1)
    with transaction.atomic(), CaptureQueriesContext(connection) as inside:
        assert transitions.claim(other, "w1") == 1
    assert "synchronous_commit" not in inside[0]["sql"]


def test_the_sql_is_built_once_per_database_vendor_whatever_the_threads():
    """Each thread has a connection object of its own; the built statements must not grow with them."""

    def claim_nothing():
        try:
            statements._sql(connections["default"], "finish")
        finally:
            connections["default"].close()

    threads = [threading.Thread(target=claim_nothing) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [key for key in statements._sql_cache if key[1] == "finish"] == [
        (connections["default"].vendor, "finish")
    ]

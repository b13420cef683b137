"""A statement of the worker's own that the database wrote, whose answer was lost with its connection (a
backend terminated, a network reset at that moment): sent once more on a new connection, it first asks
whether it was written. The claim sent again found the record started, by this very worker, and the job
was skipped, its record left started without a run; the finish sent again lost its condition, and the
success was logged as stale, with no ``job_finished``."""

import uuid

import pytest
from django.db import connection

from jobs.models import Status
from tests import fault_jobs

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend"),
]


def _lose_the_reply_of_the_first(monkeypatch, name, after=0):
    """``jobs.statements.<name>`` commits as usual; the first time after ``after`` calls, the connection
    then dies before its reply is read (a backend terminated, a network reset at that moment): the caller
    gets the error."""
    from django.db import connections

    from jobs import statements

    real = getattr(statements, name)
    lost = []
    calls = []

    def claim(alias, *args, **kwargs):
        won = real(alias, *args, **kwargs)
        calls.append(won)
        if not lost and len(calls) > after:
            lost.append(won)
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            other = connections.create_connection(alias)
            try:
                with other.cursor() as cursor:
                    cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            finally:
                other.close()
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")  # raises: the connection is gone
        return won

    monkeypatch.setattr(statements, name, claim)
    return lost


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker"])
def test_a_claim_whose_reply_the_dead_connection_lost_still_runs_the_job(monkeypatch, worker_class):
    """The second job's claim is lost on the connection the first job's run kept (``CONN_MAX_AGE``)."""
    from tests.helpers import drain

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)  # the connection is kept
    connection.close()
    tags = [uuid.uuid4().hex, uuid.uuid4().hex]
    records = [fault_jobs.count_run.enqueue(tag) for tag in tags]
    lost = _lose_the_reply_of_the_first(monkeypatch, "claim", after=1)
    drain(worker_class, queues=("default",))
    assert lost, "the claim was not made"
    connection.close()
    for record, tag in zip(records, tags, strict=True):
        record.refresh_from_db()
        assert (record.status, record.attempts, fault_jobs.runs_of(tag)) == (Status.FINISHED, 1, 1)


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker"])
def test_a_finish_whose_reply_the_dead_connection_lost_is_announced(monkeypatch, worker_class):
    """README, Reliability: the record of a job's end sent on a dead connection is sent once more; "the
    record keeps the job's outcome (and job_finished is sent)". When the first finish committed and only
    its reply was lost, the second loses its condition: the run is logged as a stale success, RQ is told
    not to retry it, and job_finished is never sent."""
    from jobs import signals
    from tests.helpers import drain, hearing

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)
    connection.close()
    tag = uuid.uuid4().hex
    record = fault_jobs.count_run.enqueue(tag)
    lost = _lose_the_reply_of_the_first(monkeypatch, "finish")
    with hearing(signals.job_finished) as heard:
        drain(worker_class, queues=("default",))
    assert lost, "the finish was not made"
    connection.close()
    record.refresh_from_db()
    assert (record.status, fault_jobs.runs_of(tag)) == (Status.FINISHED, 1)
    assert [str(h.job.pk) for h in heard] == [str(record.pk)]

"""A statement of the worker's own that the database wrote, whose answer was lost with its connection (a
backend terminated, a network reset at that moment): sent once more on a new connection, it first asks
whether it was written. The claim sent again found the record started, by this very worker, and the job
was skipped, its record left started without a run; the finish sent again lost its condition, and the
success was logged as stale, with no ``job_finished``. A claim on a connection made for it (every claim,
with ``CONN_MAX_AGE`` 0) was not sent again at all: its job was put off as if the database had failed,
its record left started without a run."""

import logging
import uuid

import pytest
from django.db import connection
from django.test import override_settings

from jobs.models import Status
from tests import fault_jobs

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend"),
]


def _lose_the_reply_of_the_first(
    monkeypatch, name, after=0, of=lambda *args: True, written=True, module=None
):
    """``jobs.statements.<name>`` (or ``module``'s, a function of a record) commits as usual; the first
    time after ``after`` calls that its arguments (after the alias or record) satisfy ``of``, the
    connection then dies before its reply is read (a backend terminated, a network reset at that
    moment): the caller gets the error. Not ``written``: the connection dies just before the statement
    is sent, which the database never sees. Returns the arguments of the call whose reply was lost."""
    from django.db import connections

    from jobs import statements

    module = module or statements
    real = getattr(module, name)
    lost = []
    calls = []

    def send(first, *args, **kwargs):
        if lost or len(calls) < after or not of(*args):
            won = real(first, *args, **kwargs)
            calls.append(won)
            return won
        alias = first if isinstance(first, str) else first._state.db
        lost.append(args)
        if not written:
            _kill_the_connection(connections[alias])
            real(first, *args, **kwargs)  # raises: the connection is gone
            raise AssertionError(f"{name} was sent on a dead connection")
        won = real(first, *args, **kwargs)
        calls.append(won)
        _kill_the_connection(connections[alias])
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")  # raises: the connection is gone
        return won

    monkeypatch.setattr(module, name, send)
    return lost


def _kill_the_connection(dying):
    from django.db import connections

    with dying.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    other = connections.create_connection(dying.alias)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()


#: ``CONN_MAX_AGE``: the worker's connection kept between jobs, or made for each job (Django's default,
#: where every claim is sent on a connection made for it).
CONNECTIONS = pytest.mark.parametrize("conn_max_age", [600, 0], ids=["kept", "per-job"])


@pytest.mark.usefixtures("restore_signal_handlers")
@CONNECTIONS
@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker"])
def test_a_claim_whose_reply_the_dead_connection_lost_still_runs_the_job(
    monkeypatch, worker_class, conn_max_age
):
    """The second job's claim is lost, on the connection the first job's run kept or on one made for it."""
    from tests.helpers import drain

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", conn_max_age)
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
@CONNECTIONS
@pytest.mark.parametrize(
    "worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"]
)
def test_the_claim_of_a_job_that_cannot_start_whose_reply_was_lost_still_fails_it(
    monkeypatch, worker_class, conn_max_age
):
    """A job whose rate key raises fails for good before it runs: its claim, then its failure. Sent
    again without asking, the claim found the record started by this very worker and took it for
    another run's: the record was left started, for the reaper to give up as abandoned."""
    from tests import due_jobs
    from tests.helpers import drain

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", conn_max_age)
    connection.close()
    tag = uuid.uuid4().hex[:8]
    due_jobs.BUCKETS[tag] = "bucket"
    record = due_jobs.keyed_by_lookup.enqueue(tag)
    del due_jobs.BUCKETS[tag]  # the rate key now raises KeyError in the worker
    lost = _lose_the_reply_of_the_first(monkeypatch, "claim")
    drain(worker_class, queues=("default",))
    assert lost, "the claim was not made"
    connection.close()
    record.refresh_from_db()
    assert (record.status, record.attempts, record.error_class) == (Status.FAILED, 1, "builtins.KeyError")


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


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize(
    ("conn_max_age", "written"),
    [(600, True), (600, False), (0, True)],
    ids=["kept-reply-lost", "kept-never-sent", "per-job-reply-lost"],
)
@override_settings(JOBS={"WORKER_CONCURRENCY": 3})
def test_a_batch_claim_whose_reply_the_dead_connection_lost_still_runs_each_job(
    monkeypatch, caplog, conn_max_age, written
):
    """The threaded worker claims the jobs it hands over in one statement (``claim_many``), sent once
    more as ``claim_many_again`` on a new connection: the claims the first send wrote are read back as
    won (reply lost), those it did not write are made (never sent: the connection died just before), and
    each job runs once. A claim on a connection made for it (``CONN_MAX_AGE`` 0; the first claim after
    the worker's start, which closes its connections) was not sent again: its jobs were put off as if
    the database had failed, their records left started without a run (see the module).

    The batch: the worker listens on "high", then "default". It takes the one job of "high" alone and
    claims it (on a connection it opens), then two or three jobs of "default" at once, whether a thread
    is still busy with the first job or not; their claim is the one whose reply is lost."""
    from jobs.models import Job
    from tests.helpers import drain, within

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", conn_max_age)
    connection.close()
    tags = [uuid.uuid4().hex for _ in range(5)]
    records = [fault_jobs.count_run.using(queue="high").enqueue(tags[0])]
    records += [fault_jobs.count_run.enqueue(tag) for tag in tags[1:]]
    lost = _lose_the_reply_of_the_first(
        monkeypatch, "claim_many", of=lambda pks, *rest: len(pks) > 1, written=written
    )
    with caplog.at_level(logging.INFO, logger="jobs"), within(60, "the burst"):
        drain("jobs.worker.ThreadedWorker", queues=("high", "default"), name="batch-claimer")
    assert lost, "no batch was claimed"
    [(pks, _worker_name, started_at)] = lost
    assert {str(pk) for pk in pks} <= {str(record.pk) for record in records[1:]}
    connection.close()
    for record, tag in zip(records, tags, strict=True):
        record.refresh_from_db()
        ran = (record.status, record.attempts, record.worker_name, fault_jobs.runs_of(tag))
        assert ran == (Status.FINISHED, 1, "batch-claimer", 1), tag
    assert not Job.objects.filter(status=Status.STARTED).exists()
    # Each record of the batch was claimed by that claim (its first send, or the one sent again).
    assert Job.objects.filter(pk__in=pks, started_at=started_at).count() == len(pks)
    assert "no longer waiting" not in caplog.text
    assert "could not start" not in caplog.text


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize("conn_max_age", [0, 600], ids=["new-connection", "kept-connection"])
def test_a_batch_of_finishes_whose_reply_the_dead_connection_lost_is_announced(
    monkeypatch, caplog, conn_max_age
):
    """The threaded worker's recorder, as ``finish`` above: its batch's UPDATE committed and its reply was
    lost (seen in the database chaos test, every backend terminated every 150 ms). Sent again, on the
    kept connection's replacement or by the recorder's own next try, it found the records finished:
    every job of the batch was logged as a stale success, and none was announced with job_finished."""
    from jobs import signals
    from tests.helpers import drain, hearing

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", conn_max_age)
    connection.close()
    tags = [uuid.uuid4().hex for _ in range(3)]
    records = [fault_jobs.count_run.enqueue(tag) for tag in tags]
    lost = _lose_the_reply_of_the_first(monkeypatch, "finish_many")
    with hearing(signals.job_finished) as heard:
        drain("jobs.worker.ThreadedWorker", queues=("default",))
    assert lost, "the batch's finish was not made"
    connection.close()
    for record, tag in zip(records, tags, strict=True):
        record.refresh_from_db()
        assert (record.status, record.attempts, fault_jobs.runs_of(tag)) == (Status.FINISHED, 1, 1)
    assert sorted(str(h.job.pk) for h in heard) == sorted(str(record.pk) for record in records)
    assert "after the record moved on" not in caplog.text


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker"])
def test_a_failure_for_good_whose_reply_the_dead_connection_lost_is_announced(
    monkeypatch, caplog, worker_class
):
    """As the finish's: the failure sent again lost its condition, was logged as a stale run's ("the
    record keeps its own outcome and this error is dropped"), and job_failed was never sent. (A
    ``ThreadedWorker`` records a failure in the job's thread, on a connection that thread opens for it
    unless the job's own queries opened one: a new connection's statement is not sent again.)"""
    from jobs import signals, transitions
    from tests import jobs
    from tests.helpers import drain, hearing

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)
    connection.close()
    record = jobs.boom.enqueue("its only attempt fails")
    lost = _lose_the_reply_of_the_first(monkeypatch, "fail_attempt", module=transitions)
    with hearing(signals.job_failed) as heard:
        drain(worker_class, queues=("default",))
    assert lost, "the failure was not made"
    connection.close()
    record.refresh_from_db()
    assert (record.status, record.attempts, record.failed_attempts.count()) == (Status.FAILED, 1, 1)
    assert [str(h.job.pk) for h in heard] == [str(record.pk)]
    assert "after the record moved on" not in caplog.text


@pytest.mark.usefixtures("restore_signal_handlers")
@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker"])
def test_a_failure_whose_reply_the_dead_connection_lost_is_retried_at_once(monkeypatch, caplog, worker_class):
    """The failure sent again lost its condition and told RQ not to retry the job, as for a stale run:
    the record said retrying, and its retry waited for the reconciler."""
    from jobs import transitions
    from tests import jobs
    from tests.helpers import drain

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)
    connection.close()
    record = jobs.fails_then_succeeds.enqueue(1)  # attempt 1 fails, attempt 2 returns
    lost = _lose_the_reply_of_the_first(monkeypatch, "fail_attempt", module=transitions)
    drain(worker_class, queues=("default",))
    assert lost, "the failure was not made"
    connection.close()
    record.refresh_from_db()
    assert (record.status, record.attempts, record.failed_attempts.count()) == (Status.FINISHED, 2, 1)
    assert "after the record moved on" not in caplog.text

"""The lifecycle signals (``jobs.signals``) as the workers that run jobs in their own process send them:
each with ``sender=Job`` and the job's record, whose id is a ``UUID`` as on a record the ORM reads."""

import uuid

import pytest

from jobs import signals
from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from tests import jobs
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)

LIFECYCLE = (signals.job_started, signals.job_finished, signals.job_failed)
WORKERS = pytest.mark.parametrize(
    "worker_class",
    ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"],
    ids=["simple", "lean", "threaded"],
)


@WORKERS
def test_a_job_is_announced_started_then_finished_or_failed_with_its_record(worker_class):
    received = []

    def receiver(signal, sender, job, **kwargs):
        received.append((signal, sender, job.pk, kwargs.get("exception")))

    for signal in LIFECYCLE:
        signal.connect(receiver, dispatch_uid="test")
    try:
        ok = jobs.add.enqueue(2, 3)
        bad = jobs.boom.enqueue("broken input")
        drain(worker_class)
    finally:
        for signal in LIFECYCLE:
            signal.disconnect(dispatch_uid="test")
    assert {sender for _, sender, _, _ in received} == {Job}
    assert all(type(pk) is uuid.UUID for _, _, pk, _ in received)
    assert [signal for signal, _, pk, _ in received if pk == ok.pk] == [
        signals.job_started,
        signals.job_finished,
    ]
    of_bad = [(signal, exception) for signal, _, pk, exception in received if pk == bad.pk]
    assert [signal for signal, _ in of_bad] == [signals.job_started, signals.job_failed]
    assert isinstance(of_bad[1][1], ValueError) and str(of_bad[1][1]) == "broken input"


@WORKERS
def test_a_receiver_of_an_end_that_raises_is_logged_and_changes_nothing(worker_class, caplog):
    """The end is recorded before it is announced: a receiver that raises is logged, the receivers
    after it still hear of the end, and neither the record nor RQ's side of the job change."""
    heard = []

    def broken(sender, **kwargs):
        raise RuntimeError("a receiver broke")

    def receiver(signal, sender, job, **kwargs):
        heard.append((signal, job.pk))

    for signal in (signals.job_finished, signals.job_failed):
        signal.connect(broken, dispatch_uid="test-broken")
        signal.connect(receiver, dispatch_uid="test")
    try:
        ok = jobs.add.enqueue(2, 3)
        bad = jobs.boom.enqueue("broken input")
        drain(worker_class)
    finally:
        for signal in (signals.job_finished, signals.job_failed):
            signal.disconnect(dispatch_uid="test-broken")
            signal.disconnect(dispatch_uid="test")
    assert sorted(heard, key=str) == sorted(
        [(signals.job_finished, ok.pk), (signals.job_failed, bad.pk)], key=str
    )
    ok.refresh_from_db()
    bad.refresh_from_db()
    assert (ok.status, ok.result, ok.attempts) == (Status.FINISHED, 5, 1)
    assert (bad.status, bad.error_message, bad.attempts) == (Status.FAILED, "broken input", 1)
    failed_in_rq = jobs_connection.get_queue("default").failed_job_registry.get_job_ids()
    assert failed_in_rq == [str(bad.pk)]
    logged = [entry for entry in caplog.records if "a receiver of a lifecycle signal" in entry.getMessage()]
    assert len(logged) == 2

"""The lifecycle signals (``jobs.signals``) as the workers that run jobs in their own process send them:
each with ``sender=Job`` and the job's record, whose id is a ``UUID`` as on a record the ORM reads."""

import uuid

import pytest

from jobs import signals
from jobs.admin import operations
from jobs.exceptions import DependencyFailed
from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from tests import jobs
from tests.helpers import drain, hearing, receiver_errors

pytestmark = pytest.mark.django_db(transaction=True)

LIFECYCLE = (signals.job_started, signals.job_finished, signals.job_failed)
WORKERS = pytest.mark.parametrize(
    "worker_class",
    ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"],
    ids=["simple", "lean", "threaded"],
)


@WORKERS
def test_a_job_is_announced_started_then_finished_or_failed_with_its_record(worker_class):
    with hearing(*LIFECYCLE) as heard:
        ok = jobs.add.enqueue(2, 3)
        bad = jobs.boom.enqueue("broken input")
        drain(worker_class)
    assert {sender for _, sender, _, _ in heard} == {Job}
    assert all(type(job.pk) is uuid.UUID for _, _, job, _ in heard)
    assert [signal for signal, _, job, _ in heard if job.pk == ok.pk] == [
        signals.job_started,
        signals.job_finished,
    ]
    of_bad = [(signal, exception) for signal, _, job, exception in heard if job.pk == bad.pk]
    assert [signal for signal, _ in of_bad] == [signals.job_started, signals.job_failed]
    assert isinstance(of_bad[1][1], ValueError) and str(of_bad[1][1]) == "broken input"


@WORKERS
def test_a_receiver_of_an_end_that_raises_is_logged_and_changes_nothing(worker_class, caplog):
    """The end is recorded before it is announced: a receiver that raises is logged, the receivers
    after it still hear of the end, and neither the record nor RQ's side of the job change."""
    with hearing(signals.job_finished, signals.job_failed, broken_first=True) as heard:
        ok = jobs.add.enqueue(2, 3)
        bad = jobs.boom.enqueue("broken input")
        drain(worker_class)
    assert sorted(((signal, job.pk) for signal, _, job, _ in heard), key=str) == sorted(
        [(signals.job_finished, ok.pk), (signals.job_failed, bad.pk)], key=str
    )
    ok.refresh_from_db()
    bad.refresh_from_db()
    assert (ok.status, ok.result, ok.attempts) == (Status.FINISHED, 5, 1)
    assert (bad.status, bad.error_message, bad.attempts) == (Status.FAILED, "broken input", 1)
    failed_in_rq = jobs_connection.get_queue("default").failed_job_registry.get_job_ids()
    assert failed_in_rq == [str(bad.pk)]
    assert len(receiver_errors(caplog)) == 2


def test_a_job_retried_by_a_person_and_the_dependents_its_failure_failed_are_announced_again():
    with hearing(signals.job_finished, signals.job_failed) as heard:
        parent = jobs.fails_on_first_attempt.enqueue("p")
        child = jobs.add.using(depends_on=parent).enqueue(1, 1)
        drain("jobs.worker.LeanWorker")
        ends = [(signal, job.pk, type(exception)) for signal, _, job, exception in heard]
        assert sorted(ends, key=str) == sorted(
            [(signals.job_failed, parent.pk, RuntimeError), (signals.job_failed, child.pk, DependencyFailed)],
            key=str,
        )
        heard.clear()
        operations.retry(Job.objects.filter(pk=parent.pk))  # the admin's retry
        assert Job.objects.get(pk=child.pk).status == Status.DEFERRED
        drain("jobs.worker.LeanWorker")
    assert [(signal, job.pk) for signal, _, job, _ in heard] == [
        (signals.job_finished, parent.pk),
        (signals.job_finished, child.pk),
    ]

"""The lifecycle signals (``jobs.signals``) as the workers that run jobs in their own process send them:
each with ``sender=Job`` and the job's record, whose id is a ``UUID`` as on a record the ORM reads."""

import uuid

import pytest

from jobs import signals
from jobs.models import Job
from tests import jobs
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)

LIFECYCLE = (signals.job_started, signals.job_finished, signals.job_failed)


@pytest.mark.parametrize(
    "worker_class",
    ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"],
    ids=["simple", "lean", "threaded"],
)
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

"""Priorities: among the waiting jobs of one queue, one of higher priority starts first, whichever way its
id reached the queue (enqueue, enqueue_many, the relay's or the admin's push, a due job moved by the
workers, a retry due at once); jobs of equal priority keep their order."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.dispatch import breaker
from jobs.exceptions import InvalidJobDefinition
from jobs.models import Job
from jobs.transport import connection as jobs_connection
from jobs.transport.queues import push
from jobs.transport.scheduling import enqueue_due
from jobs.upkeep.relay import relay
from tests import jobs
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


def waiting(queue="default"):
    """The ids on the queue's list, head first: the order in which workers take them."""
    return jobs_connection.get_queue(queue).get_job_ids()


def labels_in_start_order(records):
    by_pk = {str(record.pk): record for record in records}
    started = Job.objects.filter(pk__in=list(by_pk)).order_by("started_at")
    return [job.result for job in started]


def test_a_waiting_job_of_higher_priority_starts_first_and_equals_keep_their_order():
    records = [
        jobs.labelled.using(priority=-10).enqueue("low"),
        jobs.labelled.enqueue("zero 1"),
        jobs.urgent.enqueue("urgent"),
        jobs.labelled.enqueue("zero 2"),
        jobs.labelled.using(priority=100).enqueue("top"),
        jobs.labelled.using(priority=-100).enqueue("bottom"),
        jobs.urgent.using(priority=-10).enqueue("low 2"),
        jobs.labelled.using(at_front=True).enqueue("zero at front"),
        jobs.urgent.enqueue("urgent 2"),
    ]
    expected = ["top", "urgent", "urgent 2", "zero at front", "zero 1", "zero 2", "low", "low 2", "bottom"]
    by_label = {record.args[0]: str(record.pk) for record in records}
    assert waiting() == [by_label[label] for label in expected]
    assert Job.objects.get(pk=by_label["urgent"]).priority == 10

    drain(queues=("default",))
    assert labels_in_start_order(records) == expected


def test_enqueue_many_puts_its_jobs_in_their_place_in_their_order():
    zeros = [jobs.labelled.enqueue(f"zero {n}") for n in range(2)]
    batch = jobs.labelled.using(priority=5).enqueue_many([["five a"], ["five b"], ["five c"]])
    lows = jobs.labelled.using(priority=-5).enqueue_many([["low a"], ["low b"]])
    more = jobs.labelled.enqueue_many([["zero 2"], ["zero 3"]])
    records = [*zeros, *batch, *lows, *more]
    expected = ["five a", "five b", "five c", "zero 0", "zero 1", "zero 2", "zero 3", "low a", "low b"]
    drain(queues=("default",))
    assert labels_in_start_order(records) == expected


def test_records_pushed_again_by_the_relay_or_the_admin_keep_their_priority():
    # The relay and the admin's retry push records with no options: the priority is the record's own.
    records = [
        Job.objects.create(function="tests.jobs.labelled", queue="default", args=[label], priority=p)
        for label, p in [("zero", 0), ("high", 20), ("low", -20), ("mid", 10)]
    ]
    push(records)
    drain(queues=("default",))
    assert labels_in_start_order(records) == ["high", "mid", "zero", "low"]


def test_a_job_enqueued_at_the_front_is_pushed_there_by_the_relay_and_by_its_release_too():
    """``at_front`` is kept on the record: the relay (Redis was away at enqueue) and the release of a job
    that waited for another put it ahead of the waiting jobs of its priority, as its enqueue would."""
    zeros = [jobs.labelled.enqueue(f"zero {n}") for n in range(2)]
    breaker.open()  # as after a push that timed out: the record is left to the relay
    try:
        relayed = jobs.labelled.using(at_front=True).enqueue("relayed")
    finally:
        breaker.close()
    assert Job.objects.get(pk=relayed.pk).at_front
    assert relay() == 1
    dependency = jobs.labelled.using(queue="low").enqueue("dependency")
    released = jobs.labelled.using(at_front=True, depends_on=dependency).enqueue("released")
    assert str(released.pk) not in waiting()
    drain(queues=("low",))
    assert waiting() == [str(released.pk), str(relayed.pk), *(str(zero.pk) for zero in zeros)]


def test_a_due_job_moved_to_its_queue_goes_ahead_of_lower_waiting_jobs():
    queue = jobs_connection.get_queue("default")
    delayed = jobs.urgent.using(at=timezone.now() + timedelta(hours=1)).enqueue("due urgent")
    zeros = [jobs.labelled.enqueue(f"zero {n}") for n in range(3)]
    assert str(delayed.pk) not in waiting()
    # Its time comes: RQ's scheduled registry scores it in the past, as time passing would.
    registry = queue.scheduled_job_registry
    queue.connection.zadd(registry.key, {str(delayed.pk): 1})

    enqueue_due(["default"])

    assert waiting() == [str(delayed.pk), *(str(record.pk) for record in zeros)]
    drain(queues=("default",))
    assert labels_in_start_order([delayed, *zeros]) == ["due urgent", "zero 0", "zero 1", "zero 2"]


def test_a_retry_due_at_once_goes_ahead_of_lower_waiting_jobs():
    retried = jobs.urgent_fails_once.enqueue("urgent")
    zeros = [jobs.labelled.enqueue(f"zero {n}") for n in range(3)]
    drain(queues=("default",))
    retried.refresh_from_db()
    assert (retried.attempts, retried.result) == (2, "urgent")
    first_zero = Job.objects.filter(pk__in=[r.pk for r in zeros]).order_by("started_at").first()
    assert retried.started_at < first_zero.started_at


@pytest.mark.parametrize("priority", [101, -101, 1.5, True, "10", None])
def test_a_priority_out_of_range_is_refused_where_it_is_given(priority):
    with pytest.raises(InvalidJobDefinition, match="priority must be a whole number from -100 to 100"):
        jobs.labelled.using(priority=priority)
    assert not Job.objects.exists()


def test_the_admin_shows_a_jobs_priority(admin_client):
    record = jobs.urgent.enqueue("shown")
    page = admin_client.get(f"/admin/jobs/job/{record.pk}/change/").content.decode()
    assert "Priority" in page
    assert '<div class="readonly">10</div>' in page


def test_every_way_of_pushing_keeps_the_list_in_order():
    """Many pushes of every kind, checked against the rule: behind the waiting jobs of higher or equal
    priority (higher only, with at_front), ahead of the others."""
    rng = random.Random(2026)
    model: list[tuple[int, str]] = []

    def expect(job_id, priority, front=False):
        index = next(
            (i for i, (p, _) in enumerate(model) if (p <= priority if front else p < priority)),
            len(model),
        )
        model.insert(index, (priority, job_id))

    for step in range(40):
        priority = rng.choice([-100, -5, 0, 0, 0, 3, 10, 100])
        kind = rng.choice(["one", "front", "many", "relay"])
        if kind == "one":
            record = jobs.labelled.using(priority=priority).enqueue(step)
            expect(str(record.pk), priority)
        elif kind == "front":
            record = jobs.labelled.using(priority=priority, at_front=True).enqueue(step)
            expect(str(record.pk), priority, front=True)
        elif kind == "many":
            records = jobs.labelled.using(priority=priority).enqueue_many([[step]] * rng.randint(2, 6))
            for record in records:
                expect(str(record.pk), priority)
        else:
            records = [
                Job.objects.create(function="tests.jobs.labelled", args=[step], queue="default", priority=p)
                for p in rng.choices([-5, 0, 7], k=rng.randint(2, 5))
            ]
            push(records)
            for record in records:
                expect(str(record.pk), record.priority)
        assert waiting() == [job_id for _, job_id in model], f"after step {step} ({kind})"


def test_a_job_put_back_by_a_worker_goes_first_among_its_priority():
    from django_rq.workers import get_worker

    queue = jobs_connection.get_queue("default")
    zeros = [jobs.labelled.enqueue(f"zero {n}") for n in range(2)]
    taken = jobs.urgent.enqueue("taken")
    worker = get_worker("default", worker_class="jobs.worker.SimpleWorker")
    job, _ = queue.dequeue_any([queue], None, connection=queue.connection, serializer=queue.serializer)
    assert job.id == str(taken.pk)
    higher = jobs.labelled.using(priority=50).enqueue("higher, enqueued meanwhile")
    same = jobs.urgent.enqueue("same, enqueued meanwhile")

    worker.put_back(job, queue)  # as a worker does with a job of a queue paused meanwhile

    expected = [higher, taken, same, *zeros]
    assert waiting() == [str(record.pk) for record in expected]

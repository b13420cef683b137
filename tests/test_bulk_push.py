"""A batch pushed to RQ in one go, and a job pushed alone in one command (``jobs.transport.queues``), hold,
job for job, what RQ's enqueue writes."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from jobs import job
from jobs.dispatch import breaker
from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from jobs.transport import queues
from jobs.transport.queues import push
from jobs.upkeep import reaper
from jobs.upkeep.relay import relay
from tests import jobs
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)

#: What differs from one job to the next, or from one moment to the next.
PER_JOB = {b"data", b"description", b"created_at", b"enqueued_at", b"retry_intervals"}


@job(max_attempts=4)
def flaky(n):
    return n


def _hash(redis, record):
    return redis.hgetall(f"rq:job:{record.pk}")


def test_each_job_of_a_batch_is_stored_as_rqs_enqueue_stores_a_single_one(redis):
    batch = jobs.add.enqueue_many([(n, n) for n in range(5)])
    single = jobs.add.enqueue(7, 7)  # pushed alone: stored as RQ's enqueue_job stores it (test below)
    expected = {k: v for k, v in _hash(redis, single).items() if k not in PER_JOB}
    for record in batch:
        stored = _hash(redis, record)
        assert {k: v for k, v in stored.items() if k not in PER_JOB} == expected
        rq_job = RQJob.fetch(str(record.pk), connection=redis, serializer=JSONSerializer)
        assert rq_job.args[:4] == [str(record.pk), "tests.jobs.add", record.args, {}]
        assert rq_job.description == f"tests.jobs.add [{record.pk}]"
        assert rq_job.get_status() == "queued"
    queue = jobs_connection.get_queue("default")
    assert queue.get_job_ids() == [*(str(r.pk) for r in batch), str(single.pk)]
    assert redis.smembers("rq:queues") == {b"rq:queue:default"}


@pytest.mark.parametrize("at_front", [False, True], ids=["tail", "front"])
def test_a_job_pushed_alone_is_stored_as_rqs_enqueue_job_stores_it(redis, at_front):
    records = [
        Job.objects.create(function="tests.jobs.add", queue="default", args=[n, n], at_front=at_front)
        for n in range(3)
    ]
    push(records[:1])  # alone: one command
    push(records[1:])  # more than one, with no options (the relay's): RQ's enqueue_job, one after another
    expected = {k: v for k, v in _hash(redis, records[1]).items() if k not in PER_JOB}
    assert {k: v for k, v in _hash(redis, records[0]).items() if k not in PER_JOB} == expected
    assert expected[b"status"] == b"queued" and expected[b"origin"] == b"default"
    ids = [str(record.pk) for record in records]
    queue = jobs_connection.get_queue("default")
    assert queue.get_job_ids() == (ids[::-1] if at_front else ids)
    assert redis.smembers("rq:queues") == {b"rq:queue:default"}
    assert redis.ttl(f"rq:job:{records[0].pk}") == -1


@pytest.mark.parametrize("own_fields", ["all", "data not known to differ"])
def test_a_batch_keeps_its_order_and_each_job_its_own_fields(redis, monkeypatch, own_fields):
    """The fields a batch's jobs share are sent once; should a field that was taken as shared differ
    (a field a newer RQ writes per job), every hash is written whole, in the batch's order."""
    if own_fields != "all":
        monkeypatch.setattr(queues, "OWN_FIELDS", tuple(f for f in queues.OWN_FIELDS if f != "data"))
    monkeypatch.setattr(queues, "BATCH_CHUNK", 3)
    batch = jobs.add.enqueue_many([(n, n) for n in range(8)])
    queue = jobs_connection.get_queue("default")
    assert queue.get_job_ids() == [str(r.pk) for r in batch]
    for record in batch:
        rq_job = RQJob.fetch(str(record.pk), connection=redis, serializer=JSONSerializer)
        assert rq_job.args[:3] == [str(record.pk), "tests.jobs.add", record.args]
        assert rq_job.description == f"tests.jobs.add [{record.pk}]"
        assert rq_job.get_status() == "queued"
    drain("jobs.worker.LeanWorker", queues=("default",))
    assert sorted(Job.objects.values_list("result", flat=True)) == [2 * n for n in range(8)]


def test_every_job_of_a_batch_gets_its_own_retries():
    records = flaky.enqueue_many([(n,) for n in range(20)])
    intervals = []
    for record in records:
        rq_job = RQJob.fetch(
            str(record.pk), connection=jobs_connection.get_connection("default"), serializer=JSONSerializer
        )
        assert rq_job.retries_left == 3
        assert len(rq_job.retry_intervals) == 3
        intervals.append(tuple(rq_job.retry_intervals))
    assert len(set(intervals)) > 1, "every job got the same jittered backoff"


def test_a_batch_at_the_front_keeps_its_order():
    jobs.add.enqueue(0, 0)
    records = jobs.add.using(at_front=True).enqueue_many([(n, n) for n in range(1, 4)])
    ids = jobs_connection.get_queue("default").get_job_ids()
    # As with one enqueue_job(at_front=True) after another: the last one pushed runs first.
    assert ids[:3] == [str(r.pk) for r in reversed(records)]


def test_a_scheduled_batch_waits_in_rqs_scheduled_registry():
    records = jobs.add.using(delay=600).enqueue_many([(1, 1), (2, 2)])
    queue = jobs_connection.get_queue("default")
    assert set(queue.scheduled_job_registry.get_job_ids()) == {str(r.pk) for r in records}
    assert queue.get_job_ids() == []
    assert {r.status for r in records} == {Status.SCHEDULED}


def test_the_relay_pushes_many_records_one_by_one_with_their_own_options(redis):
    records = [Job.objects.create(function="tests.jobs.add", queue="default", args=[n, n]) for n in range(3)]
    push(records)
    assert jobs_connection.get_queue("default").get_job_ids() == [str(r.pk) for r in records]


@pytest.mark.parametrize("order", ["later-first", "due-first"])
def test_the_relay_pushes_delayed_and_due_records_of_one_queue_in_any_order(redis, order):
    later = Job.objects.create(
        function="tests.jobs.add",
        queue="default",
        args=[1, 1],
        status=Status.SCHEDULED,
        scheduled_for=timezone.now() + timedelta(minutes=10),
        undispatched_since=timezone.now(),
    )
    due = [
        Job.objects.create(
            function="tests.jobs.add", queue="default", args=[n, n], undispatched_since=timezone.now()
        )
        for n in range(2)
    ]
    push([later, *due] if order == "later-first" else [*due, later])
    queue = jobs_connection.get_queue("default")
    assert queue.get_job_ids() == [str(r.pk) for r in due]
    assert queue.scheduled_job_registry.get_job_ids() == [str(later.pk)]
    Job.objects.filter(pk=later.pk).update(scheduled_for=timezone.now() + timedelta(minutes=20))
    redis.flushall()
    assert relay() == 3  # the relay reads its batch in no particular order
    assert sorted(queue.get_job_ids()) == sorted(str(r.pk) for r in due)


def test_a_batch_runs_to_the_end_on_a_real_worker():
    records = jobs.add.enqueue_many([(n, 1) for n in range(30)])
    drain("jobs.worker.LeanWorker", queues=("default",))
    results = dict(Job.objects.filter(status=Status.FINISHED).values_list("pk", "result"))
    assert results == {r.pk: r.args[0] + 1 for r in records}


def test_a_batch_for_an_unknown_queue_is_refused_and_writes_nothing():
    from jobs.exceptions import InvalidJobDefinition

    with pytest.raises(InvalidJobDefinition, match="not in RQ_QUEUES"):
        jobs.add.using(queue="nowhere").enqueue_many([(1, 1), (2, 2)])
    assert Job.objects.count() == 0
    assert jobs_connection.get_queue("default").get_job_ids() == []


def _retry_intervals(redis, record):
    return RQJob.fetch(str(record.pk), connection=redis, serializer=JSONSerializer).retry_intervals


def test_a_backoff_given_per_call_holds_for_every_push_of_the_job_and_for_the_reaper(redis):
    """The backoff is kept on the record: the relay (Redis was away at enqueue), a release after the
    job's dependencies and the reaper's retry use the one the call gave, not the decorator's."""
    per_call = flaky.using(backoff=[7], max_attempts=3)
    breaker.open()  # as after a push that timed out: the record is left to the relay
    try:
        relayed = per_call.enqueue(1)
    finally:
        breaker.close()
    assert relay() == 1
    assert _retry_intervals(redis, relayed) == [7, 7]
    dependency = jobs.add.using(queue="low").enqueue(1, 1)
    released = flaky.using(backoff="fixed", backoff_base=11, depends_on=dependency).enqueue(2)
    drain(queues=("low",))
    assert _retry_intervals(redis, released) == [11, 11, 11]
    # A record written before records kept their backoff has none: its function's holds.
    older = Job.objects.create(
        function="tests.jobs.fails_then_succeeds", queue="default", args=[1], max_attempts=3
    )
    assert older.backoff is None
    push([older])
    assert _retry_intervals(redis, older) == [0, 0]
    # The reaper's retry of an attempt whose worker died waits the call's backoff too.
    Job.objects.filter(pk=relayed.pk).update(status=Status.STARTED, attempts=1, worker_name="gone")
    assert reaper.abandon(Job.objects.get(pk=relayed.pk), "its worker died")
    record = Job.objects.get(pk=relayed.pk)
    assert record.status == Status.RETRYING
    assert record.scheduled_for - record.failed_attempts.get().failed_at == timedelta(seconds=7)


def test_a_job_pushed_alone_after_redis_forgot_its_scripts_is_pushed(redis):
    """A restarted Redis (or ``SCRIPT FLUSH``) no longer holds the push script: it is loaded again."""
    first = jobs.add.enqueue(1, 1)
    redis.script_flush()
    second = jobs.add.enqueue(2, 2)
    queue = jobs_connection.get_queue("default")
    assert queue.get_job_ids() == [str(first.pk), str(second.pk)]
    assert Job.objects.get(pk=second.pk).status == Status.QUEUED

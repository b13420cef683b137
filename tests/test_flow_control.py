"""Rate limits held across workers, paused queues, and retention of old records."""

import threading
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone
from rq.registry import ScheduledJobRegistry

from jobs import job, pause
from jobs.admin import operations
from jobs.exceptions import InvalidJobDefinition
from jobs.models import FailedAttempt, Job, Status
from jobs.options import RateLimit
from jobs.transport import connection as jobs_connection
from jobs.transport.queues import push
from jobs.upkeep.retention import prune
from jobs.worker import ratelimit
from tests import fault_jobs, jobs
from tests.helpers import WorkerProcess, drain, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


# Rate limits.


@pytest.mark.parametrize(
    "text",
    [
        "10",
        "0/s",
        "10/d",
        "ten/s",
        "1/0s",
        "1/00s",
        "",
        5,
        "1/300000000h",
        "1/99999999999999h",
        "1/" + "9" * 5000 + "s",
    ],
)
def test_bad_rate_limits_are_refused_where_the_job_is_defined(text):
    with pytest.raises(InvalidJobDefinition, match="rate_limit must look like"):
        job(rate_limit=text)


def test_rate_key_needs_a_rate_limit_and_a_callable():
    with pytest.raises(InvalidJobDefinition, match="rate_key needs a rate_limit"):
        job(rate_key=lambda x: x)
    with pytest.raises(InvalidJobDefinition, match="callable"):
        job(rate_limit="1/s", rate_key="customer")


def test_a_rate_key_that_cannot_key_the_call_is_refused_at_enqueue():
    with pytest.raises(InvalidJobDefinition, match="rate_key must return"):
        fault_jobs.per_customer.enqueue(None, 1)
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "options", [{"rate_limit": "1/m"}, {"rate_key": str}, {"rate_limit": "1/m", "priority": 5}]
)
def test_a_rate_limit_given_per_call_is_refused_and_nothing_is_recorded(options):
    """The worker holds a job to the rate limit its decorator gave, in windows shared by every call: one
    given to ``using()`` would be ignored, so it is refused, naming the option."""
    with pytest.raises(InvalidJobDefinition, match=r"cannot be given per call.*@job decorator") as refused:
        jobs.add.using(**options).enqueue(1, 2)
    assert all(name in str(refused.value) for name in options if name.startswith("rate_"))
    assert not Job.objects.exists()
    assert fault_jobs.per_customer.using(priority=5).enqueue("acme", 1).priority == 5  # the others go


def test_the_window_is_shared_and_slides(redis):
    limit = RateLimit.parse("2/s")
    assert limit == RateLimit(count=2, seconds=1)
    assert RateLimit.parse("5/10s") == RateLimit(count=5, seconds=10)
    waits = [ratelimit.acquire(redis, "f", "*", limit, str(n)) for n in range(3)]
    assert waits[:2] == [0, 0]
    assert 0 < waits[2] <= 1
    assert ratelimit.acquire(redis, "f", "other-key", limit, "x") == 0  # another key, another window


@pytest.mark.slow
# A threaded worker that takes every job ahead of its two threads: the limit holds when they start.
@pytest.mark.parametrize("worker_class", ["jobs.worker.SimpleWorker", "tests.fault_jobs.TakingAheadWorker"])
def test_jobs_over_the_limit_wait_and_none_is_dropped_or_charged_an_attempt(worker_class):
    records = [fault_jobs.limited.enqueue(n) for n in range(6)]
    with WorkerProcess("--worker-class", worker_class, "--with-scheduler", queues=("default",)):
        wait_for(
            lambda: Job.objects.filter(pk__in=[r.pk for r in records], status=Status.FINISHED).count() == 6,
            timeout=90,
            message="the rate-limited jobs",
        )
    started = sorted(Job.objects.filter(pk__in=[r.pk for r in records]).values_list("started_at", flat=True))
    # 2/s: six runs cannot all start within two seconds, however fast the worker, and no second holds
    # more than two starts.
    assert started[-1] - started[0] >= timedelta(seconds=2)
    gaps = [later - earlier for earlier, later in zip(started, started[2:], strict=False)]
    assert min(gaps) >= timedelta(seconds=1), started
    assert set(Job.objects.filter(pk__in=[r.pk for r in records]).values_list("attempts", flat=True)) == {1}
    assert not FailedAttempt.objects.exists()


def test_jobs_taken_ahead_of_busy_threads_start_within_their_rate_limit():
    # Both threads busy for 2.5 s with jobs of a higher priority; the limited ones wait ahead of them.
    blockers = [fault_jobs.work_for.using(priority=10).enqueue(2.5) for _ in range(2)]
    records = [fault_jobs.limited.enqueue(n) for n in range(6)]
    with WorkerProcess("--worker-class", "tests.fault_jobs.TakingAheadWorker", queues=("default",)):
        everything = [r.pk for r in blockers + records]
        wait_for(
            lambda: Job.objects.filter(pk__in=everything, status=Status.FINISHED).count() == 8,
            timeout=90,
            message="the jobs",
        )
    started = sorted(Job.objects.filter(pk__in=[r.pk for r in records]).values_list("started_at", flat=True))
    gaps = [later - earlier for earlier, later in zip(started, started[2:], strict=False)]
    assert min(gaps) >= timedelta(seconds=1), started  # 2/s when they start, not when they were taken


@pytest.mark.slow
def test_per_key_limit_holds_one_customer_back_not_the_other():
    first_a = fault_jobs.per_customer.enqueue("a", 1)
    second_a = fault_jobs.per_customer.enqueue("a", 2)
    first_b = fault_jobs.per_customer.enqueue("b", 1)
    drain("jobs.worker.LeanWorker", queues=("default",))
    statuses = {r.pk: Job.objects.get(pk=r.pk) for r in (first_a, second_a, first_b)}
    assert statuses[first_a.pk].status == Status.FINISHED
    assert statuses[first_b.pk].status == Status.FINISHED
    held = statuses[second_a.pk]
    assert (held.status, held.attempts) == (Status.QUEUED, 0)
    scheduled = ScheduledJobRegistry(queue=jobs_connection.get_queue("default"))
    assert scheduled.get_job_ids() == [str(second_a.pk)]


# Paused queues.


def test_paused_queue_keeps_its_jobs_while_others_run():
    call_command("jobs_queue", "pause", "default")
    held = jobs.add.enqueue(1, 2)
    other = jobs.add.using(queue="high").enqueue(3, 4)
    drain("jobs.worker.SimpleWorker")
    assert Job.objects.get(pk=other.pk).status == Status.FINISHED
    assert Job.objects.get(pk=held.pk).status == Status.QUEUED
    assert jobs_connection.get_queue("default").get_job_ids() == [str(held.pk)]
    call_command("jobs_queue", "resume", "default")
    drain("jobs.worker.SimpleWorker")
    assert Job.objects.get(pk=held.pk).status == Status.FINISHED


def test_pause_command_refuses_unknown_queues_and_reports_status(capsys):
    with pytest.raises(CommandError, match="not a queue of RQ_QUEUES"):
        call_command("jobs_queue", "pause", "nope")
    with pytest.raises(CommandError, match="Name the queue"):
        call_command("jobs_queue", "resume")
    call_command("jobs_queue", "pause", "low")
    call_command("jobs_queue", "pause", "low")
    call_command("jobs_queue", "status")
    out = capsys.readouterr().out
    assert "already paused" in out
    assert "low: paused" in out and "default: active" in out
    assert pause.paused(["low", "high"]) == {"low"}
    with pytest.raises(InvalidJobDefinition):
        pause.pause("nope")


# Retention.


def _done(queue="default", status=Status.FINISHED, age=timedelta(0)):
    return Job.objects.create(
        function="tests.jobs.add", queue=queue, status=status, finished_at=timezone.now() - age
    )


RETAIN = {
    "RETAIN_FINISHED": 3600,
    "RETAIN_FINISHED_PER_QUEUE": 3,
    "RETAIN_FAILED": 7200,
}


def test_prune_by_age_by_count_and_failed_kept_longer():
    with override_settings(JOBS={"DEFAULT_QUEUE": "default", **RETAIN}):
        old_finished = _done(age=timedelta(hours=2))
        old_failed = _done(status=Status.FAILED, age=timedelta(minutes=90))
        older_failed = _done(status=Status.FAILED, age=timedelta(hours=3))
        recent = [_done(queue="high", age=timedelta(minutes=n)) for n in range(5)]
        waiting = Job.objects.create(
            function="tests.jobs.add", queue="default", enqueued_at=timezone.now() - timedelta(days=90)
        )
        call_command("jobs_prune")
        left = set(Job.objects.values_list("pk", flat=True))
    assert old_finished.pk not in left
    assert old_failed.pk in left and older_failed.pk not in left
    assert {r.pk for r in recent[:3]} <= left and not {r.pk for r in recent[3:]} & left
    assert waiting.pk in left


def test_prune_with_none_keeps_everything():
    with override_settings(
        JOBS={"RETAIN_FINISHED": None, "RETAIN_FINISHED_PER_QUEUE": None, "RETAIN_FAILED": None}
    ):
        _done(age=timedelta(days=400))
        _done(status=Status.FAILED, age=timedelta(days=400))
        assert prune().total == 0
    assert Job.objects.count() == 2


def test_rq_keeps_a_failed_job_as_long_as_the_ledger_keeps_its_record():
    with override_settings(JOBS={"RETAIN_FAILED": 1234}):
        record = Job.objects.create(function="tests.jobs.add", queue="default")
        push([record])
    rq_job = jobs_connection.get_queue("default").fetch_job(str(record.pk))
    assert (rq_job.failure_ttl, rq_job.result_ttl) == (1234, 0)


@pytest.mark.parametrize("value", [0, -1, "1d", True])
def test_bad_retention_settings_fail_the_checks(value):
    with override_settings(JOBS={"RETAIN_FAILED": value}):
        assert "jobs.E020" in [e.id for e in run_checks(databases=[])]


def test_a_record_retried_between_retentions_select_and_delete_survives():
    """A person retries an old failed job while retention is deleting it: the retried job is kept."""
    old = timedelta(hours=3)
    retried = _done(status=Status.FAILED, age=old)
    FailedAttempt.objects.create(job=retried, number=1, error_class="builtins.ValueError")
    expired = _done(status=Status.FAILED, age=old)
    statements_seen = []

    def retry_from_another_connection():
        try:
            operations.retry(Job.objects.filter(pk=retried.pk))
        finally:
            connections.close_all()

    def retry_after_the_batch_is_chosen(execute, sql, params, many, context):
        statements_seen.append(sql)
        if len(statements_seen) == 2:  # the batch's SELECT has run and been read; nothing deleted yet
            other = threading.Thread(target=retry_from_another_connection)
            other.start()
            other.join()
        return execute(sql, params, many, context)

    jobs_config = {"RETAIN_FINISHED": None, "RETAIN_FINISHED_PER_QUEUE": None, "RETAIN_FAILED": 3600}
    with override_settings(JOBS=jobs_config), connection.execute_wrapper(retry_after_the_batch_is_chosen):
        pruned = prune()
    assert "ORDER BY" in statements_seen[0] and "finished_at" in statements_seen[0]
    assert pruned.failed == 1
    assert not Job.objects.filter(pk=expired.pk).exists()
    retried.refresh_from_db()
    assert retried.status == Status.QUEUED
    assert retried.failed_attempts.count() == 1
    assert jobs_connection.get_queue("default").get_job_ids() == [str(retried.pk)]

"""Workflows: jobs that wait for other jobs (``depends_on``), chains, groups with a callback, the failure
policy, cancellation, transactions, and the catch-up of the reconciler. Drained in-process by the real
worker class; the tests with worker processes are in ``test_workflows_workers.py``."""

import datetime
import decimal
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext, override_settings

from jobs import allow_failure, signals, transitions
from jobs.admin import operations
from jobs.exceptions import DEPENDENCY_FAILED, DependencyFailed, InvalidArguments, InvalidJobDefinition
from jobs.models import Dependency, Job, Status
from jobs.transport import connection as jobs_connection
from jobs.upkeep import reconcile, retention
from tests import jobs
from tests.helpers import drain, hearing, receiver_errors

pytestmark = pytest.mark.django_db(transaction=True)


def fresh(record):
    return Job.objects.get(pk=record.pk)


def queued_ids(queue="default"):
    return set(jobs_connection.get_queue(queue).get_job_ids())


WORKER_CLASSES = ["jobs.worker.SimpleWorker", "jobs.worker.ThreadedWorker"]


def test_a_dependent_reads_its_dependencies_results_as_they_were_returned():
    """Dates, Decimals, UUIDs and large floats came back as the markers that carry them in the record."""
    when = datetime.datetime(2026, 12, 6, 5, 30, tzinfo=datetime.UTC)
    pk = uuid.uuid4()
    given = [jobs.given.enqueue(value) for value in (decimal.Decimal("1.50"), when, pk, 1e16, None)]
    reader = jobs.dependency_results_with_types.using(depends_on=given).enqueue()
    drain()
    reader = fresh(reader)
    assert reader.status == Status.FINISHED
    assert reader.result == [
        [repr(decimal.Decimal("1.50")), "Decimal"],
        [repr(when), "datetime"],
        [repr(pk), "UUID"],
        ["1e+16", "float"],
        ["None", "NoneType"],
    ]


@pytest.mark.parametrize("worker_class", WORKER_CLASSES, ids=["simple", "threaded"])
def test_a_chain_runs_in_order_and_passes_each_result_on(worker_class):
    first = jobs.add.enqueue(1, 2)
    second = jobs.dependency_results_as_given.using(depends_on=first).enqueue("b")
    third = jobs.dependency_results_as_given.using(depends_on=second).enqueue("c")
    assert (second.status, third.status) == (Status.DEFERRED, Status.DEFERRED)
    # Only the first is in Redis: the others wait in the database.
    assert queued_ids() == {str(first.pk)}
    drain(worker_class)
    first, second, third = fresh(first), fresh(second), fresh(third)
    assert [r.status for r in (first, second, third)] == [Status.FINISHED] * 3
    assert second.result == ["b", 3]
    assert third.result == ["c", ["b", 3]]
    assert first.finished_at <= second.started_at and second.finished_at <= third.started_at
    assert second.released_at is not None and second.dependencies_pending == 0


@pytest.mark.parametrize("worker_class", WORKER_CLASSES, ids=["simple", "threaded"])
def test_a_group_callback_runs_once_after_all_its_jobs_with_their_results_in_order(worker_class):
    # 100 jobs and their callback on three worker processes: test_workflows_workers.py.
    children = jobs.add.enqueue_many([(n, 0) for n in range(30)])
    callback = jobs.dependency_results_as_given.using(depends_on=children).enqueue()
    assert fresh(callback).waiting_for == "waiting for 30 of 30"
    assert Dependency.objects.filter(dependent=callback).count() == 30
    assert all(child.has_dependents for child in Job.objects.filter(pk__in=[c.pk for c in children]))
    drain(worker_class)
    callback = fresh(callback)
    assert callback.status == Status.FINISHED and callback.attempts == 1
    assert callback.result == list(range(30))
    ends = Job.objects.filter(pk__in=[c.pk for c in children]).values_list("finished_at", flat=True)
    assert callback.started_at >= max(ends)


def test_the_ledger_counts_down_what_a_job_waits_for():
    children = jobs.add.enqueue_many([(n, 0) for n in range(3)])
    callback = jobs.sum_of_dependencies.using(depends_on=children).enqueue()
    for done, child in enumerate(children, start=1):
        assert transitions.finish(child, transitions.claim(child, "w"), 1)
        stored = fresh(callback)
        if done < 3:
            assert (stored.status, stored.waiting_for) == (Status.DEFERRED, f"waiting for {3 - done} of 3")
    assert fresh(callback).status == Status.QUEUED
    assert [r.pk for r in fresh(callback).dependencies()] == [c.pk for c in children]
    assert list(children[0].dependents()) == [fresh(callback)]


def test_a_job_named_twice_is_one_dependency_allowed_to_fail_only_if_every_mention_allows_it():
    first = jobs.add.enqueue(1, 2)
    twice = jobs.dependency_results_as_given.using(depends_on=[first, first, allow_failure(first)]).enqueue()
    [link] = Dependency.objects.filter(dependent=twice)
    assert (link.dependency_id, link.allow_failure) == (first.pk, False)
    assert (fresh(twice).dependencies_total, fresh(twice).dependencies_pending) == (1, 1)
    drain()
    assert (fresh(twice).status, fresh(twice).result) == (Status.FINISHED, [3])


def test_a_job_without_dependents_still_finishes_with_one_statement():
    record = jobs.noop.enqueue()
    attempt = transitions.claim(record, "w")
    with CaptureQueriesContext(connection) as queries:
        assert transitions.finish(record, attempt, None)
    assert len(queries) == 1


def test_a_dependency_that_fails_for_good_fails_its_dependents_down_the_chain_with_the_reason():
    bad = jobs.boom.enqueue("broken input")
    good = jobs.add.enqueue(1, 1)
    middle = jobs.sum_of_dependencies.using(depends_on=[good, bad]).enqueue()
    last = jobs.sum_of_dependencies.using(depends_on=middle).enqueue()
    drain()
    middle, last = fresh(middle), fresh(last)
    assert (middle.status, middle.attempts, middle.error_class) == (Status.FAILED, 0, DEPENDENCY_FAILED)
    assert f"tests.jobs.boom ({bad.pk}) failed: builtins.ValueError: broken input" in middle.error_message
    assert (last.status, last.error_class) == (Status.FAILED, DEPENDENCY_FAILED)
    assert str(middle.pk) in last.error_message and "broken input" in last.error_message
    assert fresh(good).status == Status.FINISHED


def test_jobs_failed_by_a_dependency_are_announced_with_job_failed(caplog):
    """``job_failed`` for the failed job, then for each job its failure failed down the chain (with
    the reason as a ``DependencyFailed``), once that is committed; a raising receiver stops nothing.
    Cancelled dependents are not failed, and are not announced."""
    with hearing(signals.job_failed, broken_first=True) as heard:
        bad = jobs.boom.enqueue("broken input")
        middle = jobs.sum_of_dependencies.using(depends_on=bad).enqueue()
        last = jobs.sum_of_dependencies.using(depends_on=middle).enqueue()
        drain()
    by_pk = {str(job.pk): (job.status, exception) for _, _, job, exception in heard}
    assert len(heard) == 3 and set(by_pk) == {str(bad.pk), str(middle.pk), str(last.pk)}
    assert {status for status, _ in by_pk.values()} == {Status.FAILED}
    assert isinstance(by_pk[str(bad.pk)][1], ValueError)
    assert isinstance(by_pk[str(middle.pk)][1], DependencyFailed)
    assert "broken input" in str(by_pk[str(middle.pk)][1])
    assert str(middle.pk) in str(by_pk[str(last.pk)][1])
    logged = receiver_errors(caplog)
    assert len(logged) == 3 and all("a receiver broke" in line for line in logged)


def test_retrying_the_failed_dependency_releases_its_dependents_again():
    flaky = jobs.fails_on_first_attempt.enqueue(5)
    other = jobs.add.enqueue(2, 3)
    callback = jobs.sum_of_dependencies.using(depends_on=[flaky, other]).enqueue()
    after = jobs.sum_of_dependencies.using(depends_on=callback).enqueue()
    drain()
    assert fresh(callback).status == Status.FAILED
    outcome = operations.retry(Job.objects.filter(pk=flaky.pk))
    assert len(outcome.changed) == 1
    callback, after = fresh(callback), fresh(after)
    assert (callback.status, callback.error_class, callback.finished_at) == (Status.DEFERRED, "", None)
    assert (after.status, after.waiting_for) == (Status.DEFERRED, "waiting for 1 of 1")
    assert callback.waiting_for == "waiting for 1 of 2"
    drain()
    assert (fresh(callback).status, fresh(callback).result) == (Status.FINISHED, 10)
    assert (fresh(after).status, fresh(after).result) == (Status.FINISHED, 10)


def test_a_retry_does_not_release_a_job_that_another_failed_dependency_holds_back():
    first, second = jobs.boom.enqueue("one"), jobs.boom.enqueue("two")
    callback = jobs.sum_of_dependencies.using(depends_on=[first, second]).enqueue()
    drain()
    operations.retry(Job.objects.filter(pk=first.pk))
    assert fresh(callback).status == Status.FAILED


def test_a_dependency_allowed_to_fail_lets_its_dependent_run():
    bad = jobs.boom.enqueue()
    good = jobs.add.enqueue(20, 22)
    callback = jobs.dependency_results_as_given.using(depends_on=[good, allow_failure(bad)]).enqueue()
    drain()
    assert (fresh(callback).status, fresh(callback).result) == (Status.FINISHED, [42, None])


def test_cancelling_a_dependency_cancels_the_jobs_waiting_for_it_and_releases_those_that_allow_it():
    first = jobs.add.enqueue(1, 1)
    strict = jobs.sum_of_dependencies.using(depends_on=first).enqueue()
    after_strict = jobs.sum_of_dependencies.using(depends_on=strict).enqueue()
    lenient = jobs.sum_of_dependencies.using(depends_on=allow_failure(first)).enqueue()
    outcome = operations.cancel(Job.objects.filter(pk=first.pk))
    assert [r.pk for r in outcome.changed] == [first.pk]
    strict, after_strict, lenient = fresh(strict), fresh(after_strict), fresh(lenient)
    assert (strict.status, after_strict.status) == (Status.CANCELLED, Status.CANCELLED)
    assert "was cancelled" in strict.error_message
    assert lenient.status == Status.QUEUED
    drain()
    assert (fresh(first).status, fresh(lenient).status) == (Status.CANCELLED, Status.FINISHED)
    assert fresh(strict).attempts == 0


def test_a_deferred_job_can_be_cancelled_and_never_runs():
    first = jobs.add.enqueue(1, 1)
    waiting = jobs.sum_of_dependencies.using(depends_on=first).enqueue()
    outcome = operations.cancel(Job.objects.filter(pk=waiting.pk))
    assert len(outcome.changed) == 1
    drain()
    assert (fresh(first).status, fresh(waiting).status, fresh(waiting).attempts) == (
        Status.FINISHED,
        Status.CANCELLED,
        0,
    )


def test_a_rolled_back_workflow_leaves_nothing_anywhere(redis):
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        first = jobs.add.enqueue(1, 2)
        children = jobs.add.using(depends_on=first).enqueue_many([(n, 1) for n in range(10)])
        jobs.sum_of_dependencies.using(depends_on=children).enqueue()
        raise Rollback
    assert (Job.objects.count(), Dependency.objects.count()) == (0, 0)
    assert redis.dbsize() == 0


def test_a_workflow_in_a_committed_transaction_pushes_only_what_may_run():
    with transaction.atomic():
        first = jobs.add.enqueue(1, 2)
        jobs.sum_of_dependencies.using(depends_on=first).enqueue()
        assert queued_ids() == set()
    assert queued_ids() == {str(first.pk)}


def test_dependencies_that_have_ended_already_count_at_once():
    done = jobs.add.enqueue(1, 1)
    failed = jobs.boom.enqueue()
    drain()
    ready = jobs.sum_of_dependencies.using(depends_on=done).enqueue()
    assert ready.status == Status.QUEUED and str(ready.pk) in queued_ids()
    doomed = jobs.sum_of_dependencies.using(depends_on=[done, failed]).enqueue()
    assert (doomed.status, doomed.error_class) == (Status.FAILED, DEPENDENCY_FAILED)
    lenient = jobs.sum_of_dependencies.using(depends_on=[done, allow_failure(failed)]).enqueue()
    assert lenient.status == Status.QUEUED
    drain()
    assert (fresh(ready).result, fresh(lenient).result) == (2, 2)


def test_a_released_job_keeps_its_delay():
    first = jobs.add.enqueue(1, 1)
    later = jobs.add.using(depends_on=first, delay=timedelta(hours=1)).enqueue(2, 2)
    drain()
    later = fresh(later)
    assert later.status == Status.SCHEDULED
    assert str(later.pk) in jobs_connection.get_queue("default").scheduled_job_registry.get_job_ids()


def test_a_unique_key_is_held_while_its_job_waits_for_dependencies():
    first = jobs.add.enqueue(1, 1)
    waiting = jobs.unique_by_name.using(depends_on=first).enqueue("x")
    assert jobs.unique_by_name.enqueue("x").pk == waiting.pk
    drain()
    assert fresh(waiting).status == Status.FINISHED


@pytest.mark.parametrize(
    ("depends_on", "message"),
    [
        (42, "depends_on takes job records, job ids or lists of them, not 42"),
        ("not-an-id", "depends_on takes job records or job ids, not 'not-an-id'"),
        ([None, 3.5], "not 3.5"),
    ],
)
def test_a_bad_depends_on_is_refused_when_given(depends_on, message):
    with pytest.raises(InvalidJobDefinition, match=message):
        jobs.add.using(depends_on=depends_on)


def test_depends_on_is_refused_on_the_decorator():
    from jobs import job

    with pytest.raises(InvalidJobDefinition, match="give it per call, with using"):
        job(depends_on=["00000000-0000-0000-0000-000000000000"])


def test_a_dependency_that_does_not_exist_is_refused_and_nothing_is_recorded(redis):
    real = jobs.add.enqueue(1, 1)
    missing = "00000000-0000-0000-0000-000000000001"
    with pytest.raises(InvalidArguments, match=f"not on database 'default': {missing}") as caught:
        jobs.sum_of_dependencies.using(depends_on=[real, missing]).enqueue()
    assert caught.value.field == "depends_on"
    with pytest.raises(InvalidArguments):
        jobs.add.using(depends_on=missing).enqueue_many([(1, 2), (3, 4)])
    assert list(Job.objects.values_list("pk", flat=True)) == [real.pk]
    assert Dependency.objects.count() == 0
    assert not fresh(real).has_dependents


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_a_dependency_on_another_database_is_refused():
    elsewhere = jobs.add.using(using="other").enqueue(1, 1)
    with pytest.raises(InvalidArguments, match="not on database 'default'"):
        jobs.sum_of_dependencies.using(depends_on=elsewhere).enqueue()
    assert Job.objects.count() == 0


def test_an_empty_group_runs_its_callback_at_once():
    callback = jobs.sum_of_dependencies.using(depends_on=[]).enqueue()
    assert callback.status == Status.QUEUED
    drain()
    assert fresh(callback).result == 0


@override_settings(JOBS={"DEFAULT_QUEUE": "default", "RELAY_GRACE": 0})
def test_a_job_released_by_a_worker_that_died_before_pushing_it_is_pushed_by_the_reconciler():
    first = jobs.add.enqueue(1, 1)
    callback = jobs.sum_of_dependencies.using(depends_on=first).enqueue()
    # The worker committed the finish and the release, and died before its push (no push given).
    assert transitions.finish(first, transitions.claim(first, "w"), 2)
    assert fresh(callback).status == Status.QUEUED and str(callback.pk) not in queued_ids()
    assert reconcile.reconcile() == 1
    drain()
    callback = fresh(callback)
    assert (callback.status, callback.attempts, callback.result) == (Status.FINISHED, 1, 2)


def test_the_reconciler_leaves_a_job_released_within_the_grace():
    first = jobs.add.enqueue(1, 1)
    jobs.sum_of_dependencies.using(depends_on=first).enqueue()
    Job.objects.filter(pk=first.pk).update(enqueued_at=first.enqueued_at - timedelta(hours=1))
    assert transitions.finish(first, transitions.claim(first, "w"), 2)
    Job.objects.update(enqueued_at=first.enqueued_at - timedelta(hours=1))
    assert reconcile.reconcile() == 0


def test_the_reconciler_tells_dependents_of_ends_that_bypassed_the_transitions():
    first = jobs.add.enqueue(1, 1)
    second = jobs.add.enqueue(2, 2)
    callback = jobs.sum_of_dependencies.using(depends_on=[first, second]).enqueue()
    # Ended by hand (not through a transition), and deleted without the admin.
    Job.objects.filter(pk=first.pk).update(status=Status.FINISHED, result=2)
    Job.objects.filter(pk=second.pk).delete()
    assert fresh(callback).status == Status.DEFERRED
    assert reconcile.reconcile() == 2
    assert fresh(callback).status == Status.QUEUED
    assert reconcile.reconcile() == 0
    drain()
    assert fresh(callback).result == 2


def test_deleting_a_dependency_in_the_admin_cancels_the_jobs_waiting_for_it(admin_client):
    first = jobs.add.enqueue(1, 1)
    waiting = jobs.sum_of_dependencies.using(depends_on=first).enqueue()
    response = admin_client.post(f"/admin/jobs/job/{first.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    waiting = fresh(waiting)
    assert waiting.status == Status.CANCELLED and "was deleted" in waiting.error_message


@override_settings(JOBS={"DEFAULT_QUEUE": "default", "RETAIN_FINISHED": 1, "RETAIN_FINISHED_PER_QUEUE": None})
def test_retention_keeps_a_finished_dependency_while_a_job_still_waits_to_read_its_result():
    first, second = jobs.add.enqueue(1, 1), jobs.boom.enqueue()
    callback = jobs.sum_of_dependencies.using(depends_on=[first, second]).enqueue()
    assert transitions.finish(first, transitions.claim(first, "w"), 2)
    Job.objects.filter(pk=first.pk).update(finished_at=first.finished_at - timedelta(hours=1))
    assert retention.prune().finished == 0
    assert fresh(callback).status == Status.DEFERRED
    operations.cancel(Job.objects.filter(pk=callback.pk))
    assert retention.prune().finished == 1


@override_settings(JOBS={"DEFAULT_QUEUE": "default", "RETAIN_FINISHED": 1, "RETAIN_FINISHED_PER_QUEUE": None})
def test_retention_keeps_a_finished_dependency_while_a_job_that_failed_with_it_may_be_retried():
    first, second = jobs.add.enqueue(1, 1), jobs.fails_on_first_attempt.enqueue("x")
    callback = jobs.dependency_results_as_given.using(depends_on=[first, second]).enqueue()
    assert transitions.finish(first, transitions.claim(first, "w"), 2)
    Job.objects.filter(pk=first.pk).update(finished_at=first.finished_at - timedelta(hours=1))
    drain()  # the second fails (its only attempt), and fails the callback
    assert fresh(callback).status == Status.FAILED
    # Retrying the failed dependency brings the callback back, and it reads the first's result then.
    assert retention.prune().finished == 0
    operations.retry(Job.objects.filter(pk=second.pk))
    drain()
    assert fresh(callback).result == [2, "x"]


@override_settings(JOBS={"DEFAULT_QUEUE": "default", "RETAIN_FINISHED": 1, "RETAIN_FINISHED_PER_QUEUE": None})
def test_retention_counts_what_it_deleted_when_a_job_came_to_depend_on_it_meanwhile(monkeypatch):
    """An enqueue that depends on an old record commits between retention's choice and its DELETE: the
    DELETE keeps the record, and the count says so (it said pruned)."""
    old = jobs.add.enqueue(1, 1)
    assert transitions.finish(old, transitions.claim(old, "w"), 2)
    Job.objects.filter(pk=old.pk).update(finished_at=old.finished_at - timedelta(hours=1))
    delete = QuerySet.delete
    reader = []

    def enqueued_meanwhile(queryset):
        if not reader:
            reader.append(jobs.dependency_results_as_given.using(depends_on=old).enqueue())
        return delete(queryset)

    monkeypatch.setattr(QuerySet, "delete", enqueued_meanwhile)
    assert retention.prune().finished == 0
    assert Job.objects.filter(pk=old.pk).exists()


def test_a_dependency_deleted_before_its_dependent_runs_gives_none_in_its_place():
    first, second = jobs.add.enqueue(1, 1), jobs.add.enqueue(2, 2)
    callback = jobs.dependency_results_as_given.using(depends_on=[first, second]).enqueue()
    drain()
    assert fresh(callback).result == [2, 4]
    Job.objects.filter(pk=first.pk).delete()  # its links go with it
    Job.objects.filter(pk=callback.pk).update(status=Status.FAILED)
    operations.retry(Job.objects.filter(pk=callback.pk))  # it runs again, and reads its dependencies
    drain()
    assert fresh(callback).result == [None, 4]  # not [4]: each result left stays in its place


def test_a_fan_out_after_one_job_waits_for_it():
    first = jobs.add.enqueue(1, 1)
    parts = jobs.dependency_results_as_given.using(depends_on=first).enqueue_many([("a",), ("b",)])
    assert [part.status for part in parts] == [Status.DEFERRED, Status.DEFERRED]
    assert queued_ids() == {str(first.pk)}
    drain()
    assert [fresh(part).result for part in parts] == [["a", 2], ["b", 2]]


def test_retrying_the_failed_dependent_itself_runs_it_without_its_dependencies():
    bad = jobs.boom.enqueue()
    callback = jobs.sum_of_dependencies.using(depends_on=bad).enqueue()
    drain()
    operations.retry(Job.objects.filter(pk=callback.pk))
    drain()
    assert (fresh(callback).status, fresh(callback).result) == (Status.FINISHED, 0)
    # A later retry of the dependency leaves the finished dependent as it is.
    operations.retry(Job.objects.filter(pk=bad.pk))
    drain()
    assert (fresh(bad).status, fresh(callback).status, fresh(callback).attempts) == (
        Status.FAILED,
        Status.FINISHED,
        1,
    )


@override_settings(JOBS={"DEFAULT_QUEUE": "default", "RELAY_GRACE": 0})
def test_a_workflow_outlives_redis_losing_its_data(redis):
    children = jobs.add.enqueue_many([(n, n) for n in range(5)])
    callback = jobs.sum_of_dependencies.using(depends_on=children).enqueue()
    redis.flushall()
    # The waiting jobs are pushed again by the reconciler; the deferred one never was in Redis.
    assert reconcile.reconcile() == 5
    drain()
    callback = fresh(callback)
    assert (callback.status, callback.attempts, callback.result) == (Status.FINISHED, 1, 20)


def test_many_ends_at_once_release_the_callback_exactly_once():
    import threading

    from django.db import connections

    children = jobs.add.enqueue_many([(n, 0) for n in range(12)])
    callback = jobs.sum_of_dependencies.using(depends_on=children).enqueue()
    attempts = {child.pk: transitions.claim(child, "w") for child in children}
    barrier = threading.Barrier(len(children))
    pushed, errors = [], []

    def finish(child):
        try:
            barrier.wait(timeout=10)
            transitions.finish(child, attempts[child.pk], child.args[0], push=pushed.append)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=finish, args=(child,)) for child in children]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert [[record.pk for record in batch] for batch in pushed] == [[callback.pk]]
    callback = fresh(callback)
    assert (callback.status, callback.dependencies_pending) == (Status.QUEUED, 0)
    assert Dependency.objects.filter(dependent=callback, done=True).count() == 12


def test_a_job_with_dependents_finishes_in_one_transaction_of_a_few_statements():
    first = jobs.add.enqueue(1, 1)
    jobs.sum_of_dependencies.using(depends_on=first).enqueue()
    jobs.sum_of_dependencies.using(depends_on=[first, jobs.noop.enqueue()]).enqueue()
    attempt = transitions.claim(first, "w")
    with CaptureQueriesContext(connection) as queries:
        assert transitions.finish(first, attempt, 2)
    # The fast UPDATE (which skips a job with dependents); BEGIN; the UPDATE; the links locked and
    # marked done; the dependents locked and, for the one still waiting, counted down; the release of
    # the other and its re-read (for the push); COMMIT.
    assert len(queries) == 10, [q["sql"][:60] for q in queries]


def test_a_group_of_a_thousand_and_its_callback_are_recorded_in_a_fixed_number_of_statements():
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        children = jobs.add.enqueue_many([(n, 0) for n in range(1000)])
        jobs.sum_of_dependencies.using(depends_on=children).enqueue()
    # BEGIN; the INSERT of the jobs; SAVEPOINT; the INSERT of the callback; the dependencies marked;
    # the links' INSERT; the read of those already ended; RELEASE SAVEPOINT; COMMIT. (Django 5.2 splits
    # the links' INSERT on SQLite, at 999 parameters a statement: 6 of them.)
    links = [q for q in queries if q["sql"].startswith('INSERT INTO "jobs_dependency"')]
    assert len(queries) - len(links) == 8, [q["sql"][:60] for q in queries]
    assert len(links) <= 6

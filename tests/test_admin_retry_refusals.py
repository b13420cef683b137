"""A person's retry of failed jobs that cannot all go through again: a unique key another active job holds
now, a queue no longer in ``RQ_QUEUES``, a chain whose dependency is retried with its dependents. The
others in the same selection are retried, and the page says what was left and why."""

import uuid

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client

from jobs import transitions
from jobs.admin import job_admin
from jobs.models import Job, Status
from tests import jobs
from tests.helpers import drain, staff_user

LIST = "/admin/jobs/job/"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator():
    client = Client(raise_request_exception=False)
    client.force_login(staff_user("view_job", "retry_job"))
    return client


def failed(function="tests.jobs.add", args=(1, 2), queue="default", **fields):
    return Job.objects.create(
        function=function,
        args=list(args),
        queue=queue,
        status=Status.FAILED,
        attempts=1,
        error_class="builtins.ValueError",
        error_message="failed",
        **fields,
    )


def failed_unique(name, **fields):
    return failed("tests.jobs.unique_by_name", [name], unique_key=f"unique:{name}", **fields)


def shown(client, response):
    assert response.status_code == 302, response.content[:2000]
    return [str(message) for message in client.get(response["Location"]).context["messages"]]


def statuses(*records):
    return [Job.objects.get(pk=record.pk).status for record in records]


def test_a_failed_job_whose_unique_key_another_job_holds_now_stays_failed_with_a_message(operator, redis):
    old = failed_unique("a")
    holder = jobs.unique_by_name.enqueue("a")  # a failed job holds no key: a new one may take it
    others = [failed() for _ in range(3)]

    response = operator.post(f"{LIST}{old.pk}/retry/")
    assert shown(operator, response) == [
        "1 job was not retried: another waiting or running job holds its unique key."
    ]
    assert statuses(old, holder) == [Status.FAILED, Status.QUEUED]

    selected = [old.pk, *(other.pk for other in others)]
    response = operator.post(LIST, {"action": "retry_selected", "_selected_action": selected})
    assert shown(operator, response) == [
        "Retried 3 jobs.",
        "1 job was not retried: another waiting or running job holds its unique key.",
    ]
    assert statuses(old, *others) == [Status.FAILED, Status.QUEUED, Status.QUEUED, Status.QUEUED]
    assert LogEntry.objects.count() == 3  # the history names the jobs retried, and only those
    drain()
    assert statuses(holder, *others) == [Status.FINISHED] * 4


def test_of_failed_jobs_of_one_unique_key_retried_together_one_goes_through(operator, monkeypatch, redis):
    """A recurring job of a unique key that failed several times: "retry all" retries one of its runs
    (the one with the lowest id, batch after batch), not one per run."""
    runs = [failed_unique("nightly", id=uuid.UUID(int=n + 1)) for n in range(5)]
    plain = [failed(id=uuid.UUID(int=100 + n)) for n in range(3)]
    monkeypatch.setattr(job_admin, "RETRY_BATCH", 2)

    response = operator.post(f"{LIST}retry-failed/")
    assert shown(operator, response) == [
        "Retried 4 jobs.",
        "4 jobs were not retried: another waiting or running job holds their unique key.",
    ]
    assert statuses(*runs) == [Status.QUEUED, *[Status.FAILED] * 4]
    assert statuses(*plain) == [Status.QUEUED] * 3


def test_a_key_taken_between_the_check_and_the_update_is_checked_again(monkeypatch):
    """A job enqueued while the retry runs can take the key after it was found free: the database
    refuses the UPDATE, which is undone alone (a savepoint), and the batch is moved again."""
    old = failed_unique("race")
    others = [failed() for _ in range(2)]
    real = transitions._keys_held
    calls = []

    def checked_then_taken(alias, keyed):
        if not keyed:  # the dependents of the retried jobs: none here
            return set()
        calls.append(len(keyed))
        held = real(alias, keyed)
        if len(calls) == 1:
            jobs.unique_by_name.enqueue("race")  # after the check, before the UPDATE
        return held

    monkeypatch.setattr(transitions, "_keys_held", checked_then_taken)
    retried = transitions.retry(Job.objects.filter(pk__in=[old.pk, *(other.pk for other in others)]))

    assert len(calls) == 2
    assert retried.key_held == 1
    assert {record.pk for record in retried.changed} == {other.pk for other in others}
    assert statuses(old, *others) == [Status.FAILED, Status.QUEUED, Status.QUEUED]
    assert Job.objects.filter(unique_key="unique:race", status=Status.QUEUED).count() == 1


def test_a_dependent_whose_key_another_job_holds_now_does_not_wait_again(operator, redis):
    dependency = jobs.boom.enqueue()
    dependent = jobs.unique_by_name.using(depends_on=dependency).enqueue("c")
    other = jobs.add.using(depends_on=dependency).enqueue(1, 2)
    drain()
    assert statuses(dependency, dependent, other) == [Status.FAILED] * 3
    holder = jobs.unique_by_name.enqueue("c")

    response = operator.post(f"{LIST}{dependency.pk}/retry/")
    assert shown(operator, response) == [
        "Retried 1 job.",
        "1 job that a retried job had failed waits for it again.",
    ]
    assert statuses(dependency, dependent, other, holder) == [
        Status.QUEUED,
        Status.FAILED,
        Status.DEFERRED,
        Status.QUEUED,
    ]


def test_a_job_whose_queue_is_no_longer_configured_is_not_retried(operator, redis):
    gone = failed(queue="gone")
    kept = failed()
    response = operator.post(LIST, {"action": "retry_selected", "_selected_action": [gone.pk, kept.pk]})
    assert shown(operator, response) == [
        "Retried 1 job.",
        "1 job was not retried: its queue is not in RQ_QUEUES.",
    ]
    assert statuses(gone, kept) == [Status.FAILED, Status.QUEUED]
    assert Job.objects.get(pk=kept.pk).undispatched_since is None  # pushed
    drain()
    assert statuses(kept) == [Status.FINISHED]


@pytest.mark.parametrize("batch", [500, 1], ids=["one batch", "a batch each"])
@pytest.mark.parametrize("dependent_first", [True, False], ids=["dependent first", "dependency first"])
def test_retrying_a_chain_with_its_dependency_runs_it_after_the_dependency(
    operator, monkeypatch, redis, batch, dependent_first
):
    """ "Retry all failed" over a chain that failed: the jobs a failed dependency failed wait for it again,
    as when it is retried alone, rather than run at once before it (here the dependent even has the
    higher priority), whatever the order of the batches."""
    ids = [uuid.UUID(int=2), uuid.UUID(int=1), uuid.UUID(int=3)]  # pk order: then, first, last
    if not dependent_first:
        ids[:2] = reversed(ids[:2])
    with monkeypatch.context() as patched:
        patched.setattr(uuid, "uuid4", iter(ids).__next__)
        first = jobs.fails_on_first_attempt.enqueue("data")
        then = jobs.dependency_results_as_given.using(depends_on=first, priority=10).enqueue("mark")
        last = jobs.dependency_results_as_given.using(depends_on=then).enqueue("end")
    assert (then.pk < first.pk) is dependent_first
    drain()
    assert statuses(first, then, last) == [Status.FAILED] * 3
    monkeypatch.setattr(job_admin, "RETRY_BATCH", batch)

    response = operator.post(f"{LIST}retry-failed/")
    assert shown(operator, response) == [
        "Retried 1 job.",
        "2 jobs that retried jobs had failed wait for them again.",
    ]
    assert statuses(first, then, last) == [Status.QUEUED, Status.DEFERRED, Status.DEFERRED]
    drain()
    assert [Job.objects.get(pk=record.pk).result for record in (first, then, last)] == [
        "data",
        ["mark", "data"],
        ["end", ["mark", "data"]],
    ]


def test_a_dependent_retried_alone_still_runs_at_once(operator, redis):
    first = jobs.boom.enqueue()
    then = jobs.dependency_results_as_given.using(depends_on=first).enqueue("mark")
    drain()
    response = operator.post(f"{LIST}{then.pk}/retry/")
    assert shown(operator, response) == ["Retried 1 job."]
    drain()
    assert statuses(first, then) == [Status.FAILED, Status.FINISHED]

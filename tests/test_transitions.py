"""The state machine (``jobs.transitions``): each transition wins from its starting states only, and
never for an attempt that is no longer the record's; a refused transition changes nothing."""

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from jobs import context, set_progress, transitions
from jobs.models import CANCELLABLE, WAITING, FailedAttempt, Job, Status

pytestmark = pytest.mark.django_db(transaction=True)


def _retry(record, attempt):
    retried = transitions.retry(Job.objects.filter(pk=record.pk))
    assert len(retried.changed) + retried.refused == 1
    return bool(retried.changed)


def _cancel(record, attempt):
    changed, refused = transitions.cancel(Job.objects.filter(pk=record.pk))
    assert len(changed) + refused == 1
    return bool(changed)


#: name: (how to ask for it with the attempt a run believes it is, the states it may start from,
#: whether it is bound to an attempt)
TRANSITIONS = {
    "claim": (lambda record, attempt: transitions.claim(record, "w2") is not None, WAITING, False),
    "finish": (lambda record, attempt: transitions.finish(record, attempt, "done"), (Status.STARTED,), True),
    "report_progress": (
        lambda record, attempt: transitions.report_progress(record, attempt, 50, "half"),
        (Status.STARTED,),
        True,
    ),
    "fail_attempt": (
        lambda record, attempt: transitions.fail_attempt(
            record, attempt, error_class="E", error_message="m", traceback="t", retrying=True
        ),
        (Status.STARTED,),
        True,
    ),
    "abandon": (
        lambda record, attempt: transitions.abandon(record, "dead", error_class="E", retrying=False),
        (Status.STARTED,),
        True,
    ),
    "retry": (_retry, (Status.FAILED,), False),
    "cancel": (_cancel, CANCELLABLE, False),
    "mark_undispatched": (
        lambda record, attempt: transitions.mark_undispatched([record], record.enqueued_at) == 1,
        WAITING,
        False,
    ),
    "mark_dispatched": (lambda record, attempt: transitions.mark_dispatched([record]) == 1, WAITING, False),
}

CASES = [
    (name, status)
    for name, (_, allowed, _) in TRANSITIONS.items()
    for status in Status.values
    if status not in allowed
]


def _record(status, attempts=1, **fields):
    return Job.objects.create(
        function="tests.jobs.noop",
        queue="default",
        status=status,
        attempts=attempts,
        max_attempts=3,
        worker_name="w1",
        **fields,
    )


def _stored(record):
    return model_to_dict(Job.objects.get(pk=record.pk)), FailedAttempt.objects.filter(job=record).count()


@pytest.mark.parametrize(("name", "status"), CASES)
def test_a_transition_from_a_wrong_state_changes_nothing_and_says_so(name, status):
    ask, _, _ = TRANSITIONS[name]
    record = _record(status, undispatched_since=None if name != "mark_dispatched" else timezone.now())
    before = _stored(record)
    assert ask(record, 1) is False
    assert _stored(record) == before


@pytest.mark.parametrize("name", [name for name, (_, _, bound) in TRANSITIONS.items() if bound])
def test_a_transition_for_an_attempt_no_longer_current_changes_nothing(name):
    ask, _, _ = TRANSITIONS[name]
    record = _record(Status.STARTED, attempts=2)
    before = _stored(record)
    record.attempts = 1  # what the stale run (or the reaper's earlier read) believes
    assert ask(record, 1) is False
    assert _stored(record) == before


@pytest.mark.parametrize(
    ("name", "status"),
    [(name, status) for name, (_, allowed, _) in TRANSITIONS.items() for status in allowed],
)
def test_a_transition_from_its_starting_state_wins(name, status):
    ask, _, _ = TRANSITIONS[name]
    record = _record(status, undispatched_since=timezone.now() if name == "mark_dispatched" else None)
    assert ask(record, 1) is True
    stored = Job.objects.get(pk=record.pk)
    expected = {
        "claim": (Status.STARTED, 2),
        "finish": (Status.FINISHED, 1),
        "report_progress": (Status.STARTED, 1),
        "fail_attempt": (Status.RETRYING, 1),
        "abandon": (Status.FAILED, 1),
        "retry": (Status.QUEUED, 1),
        "cancel": (Status.CANCELLED, 1),
        "mark_undispatched": (status, 1),
        "mark_dispatched": (status, 1),
    }[name]
    assert (stored.status, stored.attempts) == expected
    if name in ("fail_attempt", "abandon"):
        attempt = FailedAttempt.objects.get(job=record)
        assert (attempt.number, attempt.error_class, attempt.worker_name) == (1, "E", "w1")
    assert (stored.undispatched_since is None) == (name != "mark_undispatched")


def test_claim_returns_the_attempt_it_starts_and_a_second_claim_loses():
    record = _record(Status.RETRYING, attempts=2)
    assert transitions.claim(record, "w2") == 3
    assert (record.status, record.attempts, record.worker_name) == (Status.STARTED, 3, "w2")
    assert transitions.claim(Job.objects.get(pk=record.pk), "w3") is None


def test_the_bulk_transitions_change_the_right_rows_and_count_the_refused():
    failed = [_record(Status.FAILED) for _ in range(3)]
    others = [_record(status) for status in (Status.STARTED, Status.FINISHED, Status.QUEUED)]
    retried = transitions.retry(Job.objects.all())
    assert {r.pk for r in retried.changed} == {r.pk for r in failed}
    assert retried.refused == 3
    assert all(r.status == Status.QUEUED for r in retried.changed)
    # Done twice (a double submit): nothing more changes.
    assert transitions.retry(Job.objects.filter(pk__in=[r.pk for r in failed])) == transitions.Retried(
        [], refused=3
    )
    changed, refused = transitions.cancel(Job.objects.all())
    assert {r.pk for r in changed} == {*(r.pk for r in failed), others[2].pk}
    assert refused == 2


def test_a_batch_of_runs_is_finished_with_the_moment_each_ended_and_only_for_its_attempt():
    ended = [timezone.now() - timezone.timedelta(seconds=seconds) for seconds in (3, 2)]
    first, second = (_record(Status.STARTED, attempts=1) for _ in range(2))
    stale = _record(Status.STARTED, attempts=2)
    now = _record(Status.STARTED, attempts=1)
    runs = [(first, 1, "a", ended[0]), (second, 1, "b", ended[1]), (stale, 1, "c", ended[1])]
    won = transitions.finish_many([*runs, (now, 1, "d", None)])
    assert won == {str(first.pk), str(second.pk), str(now.pk)}
    stored = {record.pk: record for record in Job.objects.all()}
    assert [(stored[r.pk].result, stored[r.pk].finished_at) for r in (first, second)] == [
        ("a", ended[0]),
        ("b", ended[1]),
    ]
    assert (stored[stale.pk].status, stored[stale.pk].finished_at) == (Status.STARTED, None)
    assert stored[now.pk].finished_at > ended[1]


def test_progress_of_a_run_no_longer_current_changes_nothing():
    record = _record(Status.STARTED, attempts=1)
    token = context.running(record, 1)
    try:
        assert set_progress(10, "first")
        # The reaper gave attempt 1 up and attempt 2 took the job.
        assert transitions.abandon(record, "dead", error_class="E", retrying=True)
        assert transitions.claim(record, "w2") == 2
        assert set_progress(90, "stale") is False
    finally:
        context.done(token)
    stored = Job.objects.get(pk=record.pk)
    assert (stored.progress, stored.progress_message, stored.attempts) == (0, "", 2)  # attempt 2 its own


@pytest.mark.parametrize("percent", [True, float("nan"), -1, 100.5, "50"])
def test_progress_that_is_not_a_number_from_0_to_100_is_refused_in_a_job_or_not(percent):
    from jobs.exceptions import JobsError

    with pytest.raises(JobsError, match="progress must be a number from 0 to 100"):
        set_progress(percent)


@pytest.mark.parametrize(("message", "position"), [("a\x00b", 1), ("half \ud800 pair", 5)])
def test_a_progress_message_not_every_database_stores_is_refused_on_all(message, position):
    """PostgreSQL refuses NUL and a lone surrogate (the job failed with a database error there, and
    SQLite stored the NUL): refused by name on every database, as arguments are."""
    from jobs.exceptions import JobsError

    record = _record(Status.STARTED, attempts=1)
    token = context.running(record, 1)
    try:
        with pytest.raises(
            JobsError, match=f"progress message holds the character .* at position {position}"
        ):
            set_progress(50, message)
        assert set_progress(50, "\U0001f600 a pair is fine")
    finally:
        context.done(token)
    assert Job.objects.get(pk=record.pk).progress_message == "\U0001f600 a pair is fine"

"""What a retry can mend is retried; what it cannot fails at once; job code can say which, and when."""

import time

import pytest
from django.contrib.auth.models import User
from rq.registry import ScheduledJobRegistry

from jobs.exceptions import ArgumentUnavailable, PermanentFailure, RetryLater
from jobs.models import Status
from jobs.transport import connection as jobs_connection
from tests import jobs
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_key_error_is_retried_while_attempts_remain():
    record = jobs.key_error_until_attempt.enqueue(3)
    drain()
    record.refresh_from_db()
    assert (record.status, record.attempts, record.result) == (Status.FINISHED, 3, 3)
    assert [a.error_class for a in record.failed_attempts.all()] == ["builtins.KeyError"] * 2


def test_permanent_failure_fails_at_once_whatever_attempts_are_left():
    record = jobs.gives_up.enqueue()
    drain()
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FAILED, 1)
    assert record.error_class == "jobs.exceptions.PermanentFailure"
    assert record.error_message == "the customer closed their account"
    assert not ScheduledJobRegistry("default", connection=jobs_connection.get_connection("default")).count


def test_a_deleted_model_argument_fails_at_once_with_the_reason():
    user = User.objects.create_user("gone")
    record = jobs.greet_user_retried.enqueue(user)
    pk = user.pk
    user.delete()
    drain()
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FAILED, 1)
    assert record.error_class == "jobs.exceptions.ArgumentUnavailable"
    assert f"auth.user with primary key {pk}" in record.error_message


def test_retry_later_schedules_the_next_attempt_when_asked():
    record = jobs.asks_to_retry_later.enqueue(120)
    before = time.time()
    drain()
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.RETRYING, 1)
    assert record.error_message == "the API said 429"
    assert 115 <= record.scheduled_for.timestamp() - before <= 125
    registry = ScheduledJobRegistry("default", connection=jobs_connection.get_connection("default"))
    due = registry.get_scheduled_time(str(record.pk)).timestamp()
    assert 115 <= due - before <= 125


def test_retry_later_with_no_attempt_left_fails_with_its_reason():
    record = jobs.asks_to_retry_later.enqueue(0)
    drain()  # attempt 1 asks for a retry now; attempt 2, the last, asks again and fails
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FAILED, 2)
    assert record.error_class == "jobs.exceptions.RetryLater"


@pytest.mark.parametrize("delay", [-1, "soon", True, float("nan"), 10**9])
def test_retry_later_refuses_a_delay_it_cannot_keep(delay):
    with pytest.raises(ValueError, match="RetryLater needs a delay"):
        RetryLater(delay)


def test_the_exceptions_are_part_of_the_public_api():
    import jobs as public

    assert public.PermanentFailure is PermanentFailure
    assert public.RetryLater is RetryLater
    assert issubclass(ArgumentUnavailable, PermanentFailure)


@pytest.mark.parametrize(
    "worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"]
)
def test_a_retried_attempt_starts_with_no_progress_of_its_own(worker_class):
    """The failed attempt's progress stays on the record while it waits for its retry (how far it got);
    the next attempt's claim starts it again at 0 with no message."""
    record = jobs.reports_progress_then_fails_once.enqueue()
    drain(worker_class)
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FINISHED, 2)
    assert record.result == [0.0, ""]

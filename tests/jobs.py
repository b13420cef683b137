"""Job functions for the tests, importable by worker processes."""

import os
import time

from jobs import PermanentFailure, RetryLater, current_job, job, set_progress


@job
def add(a, b):
    return a + b


@job
def noop():
    return None


@job
def echo_types(*args, **kwargs):
    return {
        "args": [type(a).__name__ for a in args],
        "kwargs": {k: type(v).__name__ for k, v in kwargs.items()},
    }


@job
def boom(message="boom"):
    raise ValueError(message)


@job(max_attempts=3, backoff=[0])
def fails_then_succeeds(times):
    record = current_job()
    if record.attempts <= times:
        raise RuntimeError(f"failure {record.attempts}")
    return record.attempts


@job
def progress_steps(steps, pause):
    for step in range(1, steps + 1):
        time.sleep(pause)
        set_progress(100 * step / steps, f"step {step}")
    return steps


@job
def touch(path):
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()}\n")


@job
def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


@job(unique_key=lambda name: f"unique:{name}")
def unique_by_name(name):
    return name


@job(timeout=1)
def too_slow():
    time.sleep(10)


def not_a_job():
    return "should never run"


@job
def greet_user(user):
    return f"hello {user.username}"


@job
def database_backend_pid():
    """The PostgreSQL server process serving this job's connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@job
def fails_on_first_attempt(value):
    """Fails its first run and succeeds on any later one (a person's retry, say)."""
    if current_job().attempts == 1:
        raise RuntimeError(f"first attempt of {value} fails")
    return value


@job(max_attempts=3, backoff=[0])
def key_error_until_attempt(succeeding_attempt):
    """Raises KeyError until its record's attempt reaches ``succeeding_attempt``."""
    if current_job().attempts < succeeding_attempt:
        raise KeyError("not yet")
    return current_job().attempts


@job(max_attempts=3, backoff=[0])
def gives_up():
    raise PermanentFailure("the customer closed their account")


@job(max_attempts=2, backoff=[0])
def asks_to_retry_later(seconds):
    raise RetryLater(seconds, "the API said 429")


@job(max_attempts=3, backoff=[0])
def greet_user_retried(user):
    return f"hello {user.username}"


@job
def sum_of_dependencies():
    """A group's callback: the sum of what its dependencies returned (a failed one allowed to: 0)."""
    from jobs import dependency_results

    return sum(result or 0 for result in dependency_results())


@job
def dependency_results_as_given(*marks):
    """Returns what its dependencies returned, in order, after ``marks`` (to pass a result on)."""
    from jobs import dependency_results

    return [*marks, *dependency_results()]


@job
def labelled(label):
    """Returns its label: the tests of priorities read the order in which the records were claimed."""
    return label


@job(priority=10)
def urgent(label):
    return label


@job(priority=5, max_attempts=2, backoff=[0])
def urgent_fails_once(label):
    if current_job().attempts == 1:
        raise RuntimeError("first attempt fails")
    return label


@job
def given(value):
    """Returns its argument, as the worker decoded it."""
    return value


@job
def dependency_results_with_types():
    """What its dependencies returned, each with the name of its type, as this job reads them."""
    from jobs import dependency_results

    return [[repr(result), type(result).__name__] for result in dependency_results()]


@job
def returns_a_long_int():
    """An int of 5,736 digits: more than the codec takes, and more than ``repr()`` writes."""
    import math

    return math.factorial(2000)


class Unrepresentable:
    def __repr__(self):
        raise RuntimeError("no repr for this one")


@job
def returns_unrepresentable():
    return Unrepresentable()


@job(max_attempts=2, backoff=[0])
def reports_progress_then_fails_once():
    """Attempt 1 reports 80% and fails; attempt 2 returns the progress its record shows as it starts."""
    from jobs import current_job
    from jobs.models import Job

    record = current_job()
    if record.attempts == 1:
        set_progress(80, "uploading")
        raise RuntimeError("the first attempt fails")
    fresh = Job.objects.get(pk=record.pk)
    return [fresh.progress, fresh.progress_message]


@job
def returns_a_set():
    return {1, 2}


@job
def fills_redis(name):
    """Makes the jobs' Redis refuse writes (``maxmemory`` of 1 byte, ``noeviction``), then counts its run."""
    from jobs.transport import connection as jobs_connection
    from tests.fault_jobs import count_run

    redis = jobs_connection.get_connection("default")
    redis.config_set("maxmemory-policy", "noeviction")
    redis.config_set("maxmemory", "1")
    return count_run(name)

"""Tasks of Django's task framework for the tests, importable by worker processes (as Django's own
``tests/tasks/tasks.py``)."""

try:
    from django.tasks import TaskContext, task
except ImportError:
    from django_tasks import TaskContext, task

from asgiref.sync import sync_to_async

from jobs import current_job, set_progress


@task()
def noop_task(*args, **kwargs):
    return None


@task
def noop_task_from_bare_decorator(*args, **kwargs):
    return None


@task()
async def noop_task_async(*args, **kwargs):
    return None


@task()
def calculate_meaning_of_life():
    return 42


@task()
def add(a, b):
    return a + b


@task()
async def add_async(a, b):
    return a + b


@task()
def failing_task_value_error():
    raise ValueError("This task failed due to ValueError")


@task()
def complex_exception():
    raise ValueError(ValueError("This task failed"))


@task()
def complex_return_value():
    # A set is not JSON: Django's backends fail such a task.
    return {1, 2}


@task(takes_context=True)
def get_task_id(context):
    return context.task_result.id


@task(takes_context=True)
def test_context(context, attempt):
    assert isinstance(context, TaskContext)
    assert context.attempt == attempt
    return {"attempt": context.attempt, "worker_ids": context.task_result.worker_ids}


@task(queue_name="high")
def record_order(label):
    """Returns its label and the moment its record was claimed, for the tests of priorities."""
    return label


@task(takes_context=True)
def fails_first_attempt(context):
    if context.attempt == 1:
        raise RuntimeError("first attempt fails")
    return context.attempt


@task()
def job_record_id():
    record = current_job()
    return str(record.pk) if record else None


@task()
def failing_task_system_exit():
    raise SystemExit("This task failed due to SystemExit")


@task()
async def reports_progress_async():
    await sync_to_async(set_progress)(50, "half way")
    return "done"


@task()
def returns_int_keys():
    return {1: "one"}


@task()
def returns_nan():
    return float("nan")


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message")


@task()
def raises_unprintable():
    raise Unprintable()

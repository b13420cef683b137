"""Django's task framework on `jobs` (``jobs.tasks.JobsBackend``): what Django's own ``tests/tasks`` and
the django-tasks backport's tests expect of a backend, with the tasks run by a real worker (drain())."""

import datetime
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.core.checks import run_checks
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone

from jobs.admin.operations import retry
from jobs.dispatch import breaker
from jobs.exceptions import InvalidArguments
from jobs.models import Job, Status
from jobs.tasks import JobsBackend
from jobs.tasks.framework import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
    task_finished,
    task_started,
)
from jobs.transport import connection as jobs_connection
from jobs.transport.scheduling import enqueue_due
from jobs.upkeep.relay import relay
from tests import jobs, tasks
from tests.helpers import drain, run_worker

try:
    from django.tasks import default_task_backend, task_backends
    from django.tasks.exceptions import TaskResultMismatch
except ImportError:
    from django_tasks import default_task_backend, task_backends
    from django_tasks.exceptions import TaskResultMismatch

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_backend_is_configured_and_supports_everything():
    assert isinstance(task_backends["default"], JobsBackend)
    assert default_task_backend.alias == "default"
    assert default_task_backend.queues == {"default", "high", "low"}
    assert default_task_backend.supports_defer is True
    assert default_task_backend.supports_async_task is True
    assert default_task_backend.supports_get_result is True
    assert default_task_backend.supports_priority is True


@pytest.mark.parametrize(
    "task", [tasks.noop_task, tasks.noop_task_async, tasks.noop_task_from_bare_decorator]
)
def test_enqueue_records_the_task_and_a_worker_runs_it(task):
    result = task.enqueue(1, two=3)

    assert result.status == TaskResultStatus.READY
    assert result.is_finished is False
    assert result.started_at is None and result.finished_at is None and result.last_attempted_at is None
    assert result.enqueued_at is not None
    assert (result.args, result.kwargs, result.attempts, result.worker_ids) == ([1], {"two": 3}, 0, [])
    assert result.task == task
    with pytest.raises(ValueError, match="Task has not finished yet"):
        _ = result.return_value
    record = Job.objects.get(pk=result.id)
    assert (record.function, record.queue, record.status) == (task.module_path, "default", Status.QUEUED)

    drain()
    result.refresh()

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.is_finished is True
    assert result.return_value is None
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    assert result.attempts == 1
    assert result.worker_ids == [Job.objects.get(pk=result.id).worker_name]
    assert result.errors == []


def test_return_values_come_back_through_get_result():
    sync_result = tasks.add.enqueue(2, 3)
    async_result = tasks.add_async.enqueue(a=4, b=5)
    meaning = default_task_backend.enqueue(tasks.calculate_meaning_of_life, [], {})
    drain()
    assert tasks.add.get_result(sync_result.id).return_value == 5
    assert tasks.add_async.get_result(async_result.id).return_value == 9
    assert default_task_backend.get_result(meaning.id).return_value == 42


def test_aenqueue_aget_result_and_arefresh():
    async def enqueue():
        return await tasks.add_async.aenqueue(20, 22)

    result = async_to_sync(enqueue)()
    assert result.status == TaskResultStatus.READY
    drain()

    async def read():
        fetched = await tasks.add_async.aget_result(result.id)
        await result.arefresh()
        return fetched

    fetched = async_to_sync(read)()
    assert fetched.return_value == 42
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42


@pytest.mark.parametrize(
    ("task", "exception", "text"),
    [
        (tasks.failing_task_value_error, ValueError, "ValueError: This task failed due to ValueError\n"),
        (tasks.complex_exception, ValueError, 'ValueError(ValueError("This task failed"))'),
        (tasks.complex_return_value, TypeError, "Unsupported type"),
    ],
)
def test_a_failure_gives_the_error_with_its_traceback(task, exception, text):
    result = task.enqueue()
    drain()
    result.refresh()

    assert result.status == TaskResultStatus.FAILED
    assert result.is_finished is True
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    assert result._return_value is None
    assert result.enqueued_at <= result.started_at <= result.finished_at
    [error] = result.errors
    assert error.exception_class is exception
    assert text in error.traceback
    assert result.attempts == 1
    assert Job.objects.get(pk=result.id).status == Status.FAILED


def test_a_task_that_takes_its_context_gets_its_result_and_attempt():
    task_id = tasks.get_task_id.enqueue()
    context = tasks.test_context.enqueue(1)
    drain()
    assert tasks.get_task_id.get_result(task_id.id).return_value == task_id.id
    context.refresh()
    assert context.status == TaskResultStatus.SUCCESSFUL
    assert context.return_value == {"attempt": 1, "worker_ids": context.worker_ids}


def test_a_failed_task_retried_in_the_admin_runs_again_as_its_next_attempt(admin_client):
    result = tasks.fails_first_attempt.enqueue()
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED

    page = admin_client.get("/admin/jobs/job/")
    assert tasks.fails_first_attempt.module_path in page.content.decode()
    outcome = retry(Job.objects.filter(pk=result.id))
    assert len(outcome.changed) == 1
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert result.finished_at is None

    drain()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 2
    assert result.attempts == 2
    assert len(result.worker_ids) == 2
    [error] = result.errors
    assert error.exception_class is RuntimeError
    assert result.started_at < result.last_attempted_at


def test_signals_are_sent_on_commit_at_the_start_and_at_the_end():
    seen = []

    def receiver(sender, task_result, signal, **kwargs):
        name = {task_enqueued: "enqueued", task_started: "started", task_finished: "finished"}[signal]
        seen.append((name, sender, task_result.id, task_result.status))

    for signal in (task_enqueued, task_started, task_finished):
        signal.connect(receiver, dispatch_uid="test")
    try:
        with transaction.atomic():
            ok = tasks.noop_task.enqueue()
            assert seen == []
        failing = tasks.failing_task_value_error.enqueue()
        drain()
    finally:
        for signal in (task_enqueued, task_started, task_finished):
            signal.disconnect(dispatch_uid="test")

    assert seen == [
        ("enqueued", JobsBackend, ok.id, TaskResultStatus.READY),
        ("enqueued", JobsBackend, failing.id, TaskResultStatus.READY),
        ("started", JobsBackend, ok.id, TaskResultStatus.RUNNING),
        ("finished", JobsBackend, ok.id, TaskResultStatus.SUCCESSFUL),
        ("started", JobsBackend, failing.id, TaskResultStatus.RUNNING),
        ("finished", JobsBackend, failing.id, TaskResultStatus.FAILED),
    ]


def test_a_rolled_back_enqueue_leaves_no_task_anywhere(redis):
    seen = []
    task_enqueued.connect(lambda **kwargs: seen.append(kwargs), dispatch_uid="rollback", weak=False)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            result = tasks.noop_task.enqueue()
            raise RuntimeError("roll back")
    finally:
        task_enqueued.disconnect(dispatch_uid="rollback")
    assert seen == []
    assert not Job.objects.exists()
    assert jobs_connection.get_queue("default").count == 0
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result.id)


def test_run_after_defers_the_task():
    later = timezone.now() + datetime.timedelta(hours=1)
    deferred = tasks.noop_task.using(run_after=later)
    result = deferred.enqueue()
    record = Job.objects.get(pk=result.id)
    assert (record.status, record.scheduled_for) == (Status.SCHEDULED, later)

    drain()
    fetched = tasks.noop_task.get_result(result.id)
    assert fetched.status == TaskResultStatus.READY
    assert fetched.task == deferred
    assert fetched.task.run_after == later

    # Its time comes: RQ's scheduled registry scores it in the past, as time passing would.
    queue = jobs_connection.get_queue("default")
    queue.connection.zadd(queue.scheduled_job_registry.key, {result.id: 1})
    enqueue_due(["default"])
    drain()
    fetched.refresh()
    assert fetched.status == TaskResultStatus.SUCCESSFUL


def test_priorities_order_the_waiting_tasks_of_a_queue():
    labels = [("low", -5), ("first zero", 0), ("top", 10), ("second zero", 0), ("mid", 5)]
    results = {label: tasks.record_order.using(priority=p).enqueue(label) for label, p in labels}
    drain(queues=("high",))
    started = sorted((Job.objects.get(pk=result.id).started_at, label) for label, result in results.items())
    assert [label for _, label in started] == ["top", "mid", "first zero", "second zero", "low"]
    assert tasks.record_order.get_result(results["top"].id).task.priority == 10


def test_a_priority_given_as_a_whole_float_is_taken_as_django_takes_it():
    result = tasks.noop_task.using(priority=5.0).enqueue()
    assert Job.objects.get(pk=result.id).priority == 5
    assert result.task.priority == 5.0


def test_get_result_refuses_what_is_not_a_task_of_this_backend():
    for missing in ["nonexistent", "123", str(uuid.uuid4()), ""]:
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(missing)
    record = jobs.add.enqueue(1, 2)
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(str(record.pk))
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch):
        tasks.noop_task.get_result(result.id)


def test_invalid_tasks_and_arguments_are_refused_and_nothing_is_recorded():
    with pytest.raises(InvalidTask, match="priority must be a whole number between -100 and 100"):
        tasks.noop_task.using(priority=101)
    with pytest.raises(InvalidTask, match="Queue 'unknown' is not valid for backend"):
        tasks.noop_task.using(queue_name="unknown")
    with pytest.raises(TypeError, match="Unsupported type"):
        tasks.noop_task.enqueue(datetime.date(2026, 1, 1))
    with pytest.raises(InvalidArguments, match=r"the arguments do not fit tests\.tasks\.add"):
        tasks.add.enqueue(1, 2, 3)
    with pytest.raises(InvalidArguments):
        tasks.get_task_id.enqueue("extra")
    assert not Job.objects.exists()


def test_the_forking_lean_and_threaded_workers_run_tasks_with_no_extra_flags():
    forked = [tasks.add.enqueue(1, 1), tasks.add_async.enqueue(1, 2), tasks.test_context.enqueue(1)]
    run_worker("--worker-class", "jobs.worker.Worker")
    lean = [tasks.add.enqueue(2, 2), tasks.add_async.enqueue(2, 3), tasks.test_context.enqueue(1)]
    drain("jobs.worker.LeanWorker")
    threaded = [tasks.add.enqueue(3, 3), tasks.add_async.enqueue(3, 4), tasks.test_context.enqueue(1)]
    finished = []
    task_finished.connect(
        lambda task_result, **kwargs: finished.append(task_result.id), weak=False, dispatch_uid="t"
    )
    try:
        drain("jobs.worker.ThreadedWorker")
    finally:
        task_finished.disconnect(dispatch_uid="t")
    # The threaded worker records its finished jobs in batches, and sends task_finished for each.
    assert sorted(finished) == sorted(result.id for result in threaded)
    for results in (forked, lean, threaded):
        for result in results:
            result.refresh()
        assert [result.status for result in results] == [TaskResultStatus.SUCCESSFUL] * 3
    assert [result.return_value for result in forked[:2]] == [2, 3]
    assert [result.return_value for result in lean[:2]] == [4, 5]
    assert [result.return_value for result in threaded[:2]] == [6, 7]


def test_the_running_task_is_the_current_job():
    result = tasks.job_record_id.enqueue()
    drain()
    assert tasks.job_record_id.get_result(result.id).return_value == result.id


def test_a_task_enqueued_while_redis_cannot_take_it_is_pushed_by_the_relay():
    breaker.open()  # as after a push that timed out: records are left to the relay at once
    try:
        result = tasks.add.enqueue(3, 4)
    finally:
        breaker.close()
    assert Job.objects.get(pk=result.id).undispatched_since is not None
    assert jobs_connection.get_queue("default").count == 0
    assert relay() == 1
    drain()
    assert tasks.add.get_result(result.id).return_value == 7


def test_checks_report_queues_missing_from_rq_queues():
    tasks_setting = {"default": {"BACKEND": "jobs.tasks.JobsBackend", "QUEUES": ["default", "nope"]}}
    with override_settings(TASKS=tasks_setting):
        messages = [m for m in run_checks(databases=[]) if m.id.startswith("jobs.")]
    assert [m.id for m in messages] == ["jobs.E086"]
    assert "'nope'" in messages[0].msg
    assert [m.id for m in run_checks(databases=[]) if m.id.startswith("jobs.")] == []
    assert isinstance(task_backends["default"], JobsBackend)


def test_get_result_right_after_enqueue_equals_the_enqueued_result():
    result = default_task_backend.enqueue(tasks.noop_task, [1], {"two": [3]})
    assert default_task_backend.get_result(result.id) == result

    async def read():
        return await default_task_backend.aget_result(result.id)

    assert async_to_sync(read)() == result


def test_the_framework_logs_enqueued_running_and_the_outcome(caplog):
    logger = "django.tasks" if TaskResultStatus.__module__.startswith("django.tasks") else "django_tasks"
    with caplog.at_level("DEBUG", logger=logger):
        ok = tasks.noop_task.enqueue()
        failing = tasks.failing_task_value_error.enqueue()
        drain()
    lines = [(record.levelname, record.getMessage()) for record in caplog.records if record.name == logger]
    assert [level for level, _ in lines] == ["DEBUG", "DEBUG", "INFO", "INFO", "INFO", "ERROR"]
    assert ok.id in lines[0][1] and "enqueued" in lines[0][1]
    assert ok.id in lines[2][1] and "state=RUNNING" in lines[2][1]
    assert ok.id in lines[3][1] and "state=SUCCESSFUL" in lines[3][1]
    assert failing.id in lines[5][1] and "state=FAILED" in lines[5][1]
    [error] = [record for record in caplog.records if record.name == logger and record.levelname == "ERROR"]
    assert error.exc_info is not None and error.exc_info[0] is ValueError


def test_a_worker_takes_the_tasks_of_its_own_queues_only():
    default = tasks.noop_task.enqueue()
    high = tasks.noop_task.using(queue_name="high").enqueue()
    drain(queues=("default",))
    assert default_task_backend.get_result(default.id).status == TaskResultStatus.SUCCESSFUL
    assert default_task_backend.get_result(high.id).status == TaskResultStatus.READY
    assert Job.objects.get(pk=high.id).queue == "high"


def test_the_backend_check_wants_the_jobs_app():
    assert list(default_task_backend.check()) == []
    without_jobs = [app for app in django_settings.INSTALLED_APPS if app != "jobs"]
    with override_settings(INSTALLED_APPS=without_jobs):
        [error] = task_backends["default"].check()
    assert error.id == "jobs.E085"
    assert "INSTALLED_APPS" in error.hint


def test_a_task_that_exits_fails_and_the_worker_takes_the_next_one():
    exiting = tasks.failing_task_system_exit.enqueue()
    following = tasks.noop_task.enqueue()
    drain()
    exiting.refresh()
    assert exiting.status == TaskResultStatus.FAILED
    # SystemExit in a job is how a cold shutdown (a second SIGTERM) reaches a non-forking worker's job:
    # the attempt is recorded as abandoned.
    assert [error.exception_class_path for error in exiting.errors] == ["jobs.exceptions.JobAbandoned"]
    assert default_task_backend.get_result(following.id).status == TaskResultStatus.SUCCESSFUL


def test_an_async_task_reports_progress_through_sync_to_async():
    result = tasks.reports_progress_async.enqueue()
    drain()
    record = Job.objects.get(pk=result.id)
    assert (record.status, record.progress_message, record.result) == (Status.FINISHED, "half way", "done")


def test_the_demo_enqueues_a_task_with_a_priority(client):
    response = client.get("/demo/task", {"msg": "hi", "priority": "10"})
    assert response.status_code == 202
    task_id = response.json()["id"]
    assert Job.objects.get(pk=task_id).priority == 10
    assert client.get("/demo/task", {"msg": "hi", "priority": "101"}).status_code == 400
    drain()
    assert default_task_backend.get_result(task_id).return_value == "HI (attempt 1)"
    assert client.get(f"/demo/jobs/{task_id}").json()["status"] == "finished"


def test_a_failing_task_finished_receiver_stops_nothing(caplog):
    """Neither the worker nor the receivers connected after it: ``task_finished`` is sent as the
    lifecycle signals are, each receiver's error logged."""
    heard = []

    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    task_finished.connect(broken, dispatch_uid="broken")
    task_finished.connect(
        lambda task_result, **kwargs: heard.append(task_result.id), weak=False, dispatch_uid="after"
    )
    try:
        first, second = tasks.add.enqueue(1, 2), tasks.add.enqueue(3, 4)
        drain()
    finally:
        task_finished.disconnect(dispatch_uid="broken")
        task_finished.disconnect(dispatch_uid="after")
    assert [tasks.add.get_result(r.id).return_value for r in (first, second)] == [3, 7]
    assert heard == [first.id, second.id]
    assert "a receiver of task_finished" in caplog.text and "receiver bug" in caplog.text


def test_a_task_given_up_by_a_process_that_never_imported_it_still_sends_task_finished():
    """The reaper's process (``manage.py jobs_reap``, or a worker that never ran a task of this kind)
    imports the task's module as the worker does, to tell ``task_finished``'s receivers."""
    from jobs import registry, transitions
    from jobs.upkeep import reaper

    result = tasks.add.enqueue(1, 2)
    assert transitions.claim(Job.objects.get(pk=result.id), worker_name="a-worker-that-died") == 1
    heard = []
    task_finished.connect(
        lambda task_result, **kwargs: heard.append(task_result), weak=False, dispatch_uid="heard"
    )
    registered = registry._registry.pop("tests.tasks.add")
    importer = registry.resolve
    imported = []

    def resolve(name):
        if name == "tests.tasks.add":  # as a fresh process imports the module: the module registers it
            imported.append(name)
            registry._registry[name] = registered
        return importer(name)

    registry.resolve = resolve
    try:
        assert reaper.abandon(Job.objects.get(pk=result.id), "its worker died")
    finally:
        registry.resolve = importer
        registry._registry["tests.tasks.add"] = registered
        task_finished.disconnect(dispatch_uid="heard")
    assert imported == ["tests.tasks.add"]
    assert [(task_result.id, task_result.status) for task_result in heard] == [
        (result.id, TaskResultStatus.FAILED)
    ]


def test_float_arguments_and_return_values_come_back_floats():
    """``jobs`` keeps a float that JSON writes with an exponent in a marker of its own (PostgreSQL's jsonb
    would make it a whole number); a task's ``TaskResult`` gives the floats, not the markers."""
    result = tasks.add.enqueue(1e16, 2.5e20)
    assert result.args == [1e16, 2.5e20]
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.args == [1e16, 2.5e20] and type(result.return_value) is float
    assert result.return_value == 1e16 + 2.5e20
    assert tasks.add.get_result(result.id).return_value == 1e16 + 2.5e20


def test_get_result_of_a_record_whose_task_is_gone():
    record = Job.objects.create(function="tests.tasks.removed_since", queue="default")
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(str(record.pk))


def test_every_status_of_a_record_reads_as_a_task_status():
    result = tasks.add.enqueue(1, 2)
    for status in Status:
        Job.objects.filter(pk=result.id).update(status=status)
        assert tasks.add.get_result(result.id).status is not None, status


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("task", [tasks.returns_int_keys, tasks.returns_nan], ids=["int keys", "NaN"])
def test_a_task_that_returns_what_cannot_be_stored_fails(task):
    """Django's backends refuse it; it used to succeed with its repr() as its return value."""
    result = task.enqueue()
    following = tasks.noop_task.enqueue()
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert "cannot be stored as JSON" in result.errors[-1].traceback
    following.refresh()
    assert following.status == TaskResultStatus.SUCCESSFUL


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("worker_class", ["jobs.worker.Worker", "jobs.worker.ThreadedWorker"])
def test_an_exception_whose_message_cannot_be_read_fails_the_task_with_its_class(worker_class):
    """Its ``__str__`` raised inside the worker's record of the failure: the attempt stayed started until
    the reaper gave it up as abandoned, its own class lost."""
    result = tasks.raises_unprintable.enqueue()
    run_worker("--worker-class", worker_class, queues=("default",))
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "tests.tasks.Unprintable"
    record = Job.objects.get(pk=result.id)
    assert record.error_message.startswith("<Unprintable whose message cannot be read")

"""A task's ``TaskResult``, read from its job's record and the record's failed attempts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..codec import plain
from ..models import FailedAttempt, Job, Status
from .framework import InvalidTask, Task, TaskError, TaskResult, TaskResultStatus

#: The record's status as Django's tasks name it. A cancelled job did not run and will not: it counts
#: as failed, with no error.
STATUSES = {
    Status.QUEUED: TaskResultStatus.READY,
    Status.SCHEDULED: TaskResultStatus.READY,
    Status.RETRYING: TaskResultStatus.READY,
    Status.DEFERRED: TaskResultStatus.READY,  # waiting for other jobs (depends_on): not started yet
    Status.STARTED: TaskResultStatus.RUNNING,
    Status.FINISHED: TaskResultStatus.SUCCESSFUL,
    Status.FAILED: TaskResultStatus.FAILED,
    Status.CANCELLED: TaskResultStatus.FAILED,
}
#: The statuses in which the record's own worker is one that ran the task (a failed attempt names its own).
_RUN_BY_RECORD_WORKER = (Status.STARTED, Status.FINISHED)


def task_result(
    record: Job, task: Task, backend: str, failed: Sequence[FailedAttempt] | None = None
) -> TaskResult:
    """The ``TaskResult`` of ``record``, a job of ``task`` enqueued through the backend ``backend``.

    ``failed`` are the record's failed attempts, read when not given: the errors, one per failed
    attempt, with their tracebacks, and the workers of the attempts (``attempts`` counts them).
    """
    if failed is None:
        failed = list(FailedAttempt.objects.using(record._state.db).filter(job=record).order_by("number"))
    worker_ids = [attempt.worker_name for attempt in failed]
    if record.status in _RUN_BY_RECORD_WORKER:
        worker_ids.append(record.worker_name)
    result: TaskResult = TaskResult(
        task=_as_enqueued(task, record, backend),
        id=str(record.pk),
        status=STATUSES[Status(record.status)],
        enqueued_at=record.enqueued_at,
        started_at=failed[0].started_at if failed else record.started_at,
        finished_at=record.finished_at,
        last_attempted_at=record.started_at,
        args=plain(record.args),
        kwargs=plain(record.kwargs),
        backend=backend,
        errors=[
            TaskError(exception_class_path=attempt.error_class, traceback=attempt.traceback)
            for attempt in failed
        ],
        worker_ids=worker_ids,
    )
    if record.status == Status.FINISHED:
        object.__setattr__(result, "_return_value", plain(record.result))
    return result


def _as_enqueued(task: Task, record: Job, backend: str) -> Task:
    """``task`` with the options its record was enqueued with."""
    changes: dict[str, Any] = {
        "priority": record.priority,
        "queue_name": record.queue,
        "run_after": record.scheduled_for,
        "backend": backend,
    }
    if all(getattr(task, name) == value for name, value in changes.items()):
        return task
    try:
        return dataclasses.replace(task, **changes)
    except InvalidTask:
        # The backend no longer takes these options (its QUEUES changed since): the task as defined.
        return task

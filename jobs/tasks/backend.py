"""``JobsBackend``: Django's task framework on `jobs`, each task a job with its record in the ledger."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.db import router, transaction

from .. import enqueue as _enqueue
from .. import registry
from ..exceptions import JobsError
from ..models import Job
from .framework import (
    BaseTaskBackend,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    normalize_json,
    task_enqueued,
)
from .functions import TaskFunction
from .results import task_result


class JobsBackend(BaseTaskBackend):
    """Each task enqueued is a job: a record written in the caller's transaction, pushed to its RQ queue
    on commit (or by the relay), run by ``manage.py rqworker``, shown and retried in the admin.

    ``QUEUES`` name queues of ``RQ_QUEUES``; a task's ``priority`` orders the waiting jobs of its queue
    (``transport.priority``); its attempts, timeout and backoff are the ``JOBS`` defaults.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: Task) -> None:
        """Django's rules; a valid task is registered as a job, so that a worker that imports the
        task's module may run it."""
        super().validate_task(task)
        existing = registry.registered(task.module_path)
        if not (isinstance(existing, TaskFunction) and existing.func is task.func):
            registry.register(TaskFunction(task))

    def enqueue(self, task: Task, args: Sequence[Any], kwargs: Mapping[str, Any]) -> TaskResult:
        self.validate_task(task)
        # Django's backends take JSON only: anything else is refused with its TypeError.
        json_args = cast(list[Any], normalize_json(list(args)))
        json_kwargs = cast(dict[str, Any], normalize_json(dict(kwargs)))
        # A naive run_after (USE_TZ = False) is refused as any job's naive ``at`` is. Django takes a
        # priority of 5.0 as the whole number it is; a job's priority is an int.
        target = _task_function(task).using(
            queue=task.queue_name, priority=int(task.priority), at=task.run_after
        )
        target.check_arguments(json_args, json_kwargs)
        record = _enqueue.enqueue(target, json_args, json_kwargs)
        result = task_result(record, task, self.alias, failed=[])
        alias = record._state.db or router.db_for_write(Job)
        transaction.on_commit(
            functools.partial(task_enqueued.send, sender=type(self), task_result=result), using=alias
        )
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The result of the task ``result_id``, read from its record; ``TaskResultDoesNotExist`` for an id
        that names no record, or a record that is not a task's."""
        try:
            pk = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        record = Job.objects.filter(pk=pk).first()
        if record is None:
            raise TaskResultDoesNotExist(result_id)
        try:
            target = registry.resolve(record.function)
        except JobsError:
            raise TaskResultDoesNotExist(result_id) from None
        if not isinstance(target, TaskFunction):
            raise TaskResultDoesNotExist(result_id)
        return task_result(record, target.task, self.alias)

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        return list(self._check())

    def _check(self) -> Iterable[CheckMessage]:
        if not apps.is_installed("jobs"):
            yield Error(
                f"TASKS[{self.alias!r}] uses {type(self).__name__}, but 'jobs' is not in INSTALLED_APPS.",
                hint="Add 'jobs' (and 'django_rq') to INSTALLED_APPS: the tasks' records live there.",
                id="jobs.E085",
            )
        rq_queues = getattr(settings, "RQ_QUEUES", {})
        for queue in sorted(self.queues - set(rq_queues)):
            yield Error(
                f"TASKS[{self.alias!r}]['QUEUES'] names {queue!r}, which is not in RQ_QUEUES.",
                hint=f"Add {queue!r} to RQ_QUEUES, or remove it from QUEUES "
                f"(RQ_QUEUES has: {', '.join(sorted(rq_queues)) or 'nothing'}).",
                id="jobs.E086",
            )


def _task_function(task: Task) -> TaskFunction:
    """The registry's entry of ``task``, as ``validate_task`` registered it."""
    target = registry.registered(task.module_path)
    if not isinstance(target, TaskFunction):
        raise JobsError(f"task {task.module_path} is not registered as a job; was it validated?")
    return target

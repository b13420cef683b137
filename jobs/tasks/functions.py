"""A ``django.tasks`` task as the registry holds it: what the worker runs, with the task's context and
Django's ``task_started`` and ``task_finished`` signals."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import DatabaseError
from django.dispatch import receiver

from .. import context, registry, signals
from ..codec import encode
from ..decorator import JobFunction
from ..exceptions import ArgumentNotSerializable
from ..models import Job
from ..options import JobOptions
from .framework import Task, TaskContext, normalize_json, task_finished, task_started
from .results import task_result

logger = logging.getLogger("jobs")


class TaskFunction(JobFunction[Any, Any]):
    """A task registered as a job under its module path, as ``@job`` registers a function."""

    def __init__(self, task: Task, options: JobOptions | None = None) -> None:
        super().__init__(task.func, task.module_path, options or JobOptions())
        self.task = task

    def __repr__(self) -> str:
        return f"<TaskFunction {self.name}>"

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        # A task that takes its context gets it first, from the worker.
        super().check_arguments((None, *args) if self.task.takes_context else args, kwargs)

    def run(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Run the task (a coroutine function in an event loop of its own), given its context if it takes
        one; its return value must be JSON, as Django's backends require, or the attempt fails."""
        record, attempt = context.current_job(), context.current_attempt()
        if record is None or attempt is None:
            raise RuntimeError("a task runs in a worker, inside its job's run")
        backend = self.task.get_backend()
        fresh = Job.objects.using(record._state.db).get(pk=record.pk)
        result = task_result(fresh, self.task, backend.alias, failed=None if attempt > 1 else [])
        task_started.send(sender=type(backend), task_result=result)
        if self.task.takes_context:
            args = (TaskContext(task_result=result), *args)
        value = normalize_json(self.task.call(*args, **kwargs))
        try:
            encode(value, "the return value")
        except ArgumentNotSerializable as exc:
            # Django's backends refuse it; a plain job's result would be kept as its repr().
            raise TypeError(f"{self.name} returned what cannot be stored as JSON: {exc}") from exc
        return value

    def finished(self, record: Job) -> None:
        """Send ``task_finished`` for a record that has finished or failed for good."""
        backend = self.task.get_backend()
        fresh = Job.objects.using(record._state.db).get(pk=record.pk)
        result = task_result(fresh, self.task, backend.alias)
        # As the lifecycle signals are sent (``signals.announce``): a receiver that raises is logged and
        # stops none of the others.
        for listener, response in task_finished.send_robust(sender=type(backend), task_result=result):
            if isinstance(response, Exception):
                logger.error(
                    "Task %s: a receiver of task_finished (%r) raised %r",
                    record.pk,
                    listener,
                    response,
                    exc_info=(type(response), response, response.__traceback__),
                )


@receiver(signals.job_finished)
@receiver(signals.job_failed)
def _send_task_finished(sender: Any, job: Job, **kwargs: Any) -> None:
    try:
        # Imported if need be: the process that ends a task (a reaper) may never have run one of its kind.
        target = registry.resolve(job.function)
    except Exception:
        return  # no job of that name can be imported here: not a task this process can tell of
    if not isinstance(target, TaskFunction):
        return
    try:
        target.finished(job)
    except (DatabaseError, Job.DoesNotExist) as exc:
        logger.warning("Task %s ended, but its result could not be read for task_finished: %s", job.pk, exc)
    except Exception:
        # The task's outcome is recorded already, and the process goes on with its work.
        logger.exception("Task %s ended; task_finished could not be sent", job.pk)

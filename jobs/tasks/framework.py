"""Django's task framework: ``django.tasks`` (Django 6.0+), else the ``django-tasks`` backport (Django 5.2).

Everything `jobs` uses of it is imported here, under Django's own names. Importing this module raises
``ImportError`` when neither is installed. Its ``checks`` module, imported here, registers the system
check that runs each ``TASKS`` backend's ``check()``.
"""

from __future__ import annotations

try:
    from django.tasks import DEFAULT_TASK_QUEUE_NAME, Task, TaskContext, TaskResult, TaskResultStatus, checks
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
except ImportError:
    from django_tasks import (  # type: ignore[no-redef,assignment,unused-ignore]
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        checks,
    )
    from django_tasks.backends.base import BaseTaskBackend  # type: ignore[no-redef,assignment,unused-ignore]
    from django_tasks.base import Task, TaskError  # type: ignore[no-redef,assignment,unused-ignore]
    from django_tasks.exceptions import InvalidTaskError as InvalidTask  # type: ignore[no-redef,assignment,unused-ignore]
    from django_tasks.exceptions import TaskResultDoesNotExist  # type: ignore[no-redef,assignment,unused-ignore]
    from django_tasks.signals import task_enqueued, task_finished, task_started  # type: ignore[no-redef,assignment,unused-ignore]
    from django_tasks.utils import normalize_json  # type: ignore[no-redef,assignment,unused-ignore]

__all__ = [
    "DEFAULT_TASK_QUEUE_NAME",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "checks",
    "normalize_json",
    "task_enqueued",
    "task_finished",
    "task_started",
]

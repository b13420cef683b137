"""What differs between the RQ versions `jobs` supports, rq 2.12 and rq 3.x, and between the redis-py
versions under them, kept in one place.

The rest of the transport reads these names instead of comparing versions itself. Each difference says
which versions it was checked against (rq 2.12.0 and rq 3.0.0; redis-py 5.0 and 8.2).
"""

from __future__ import annotations

import inspect
from typing import Any

import rq
from redis.client import PubSubWorkerThread
from rq.job import JobStatus

#: rq 3 (checked against 3.0.0, against 2.12.0 for the other side):
#: - ``perform_job``, ``handle_job_success``, ``monitor_work_horse`` and ``maintain_heartbeats`` take the
#:   job's ``execution``, and ``get_heartbeat_ttl`` a ``working_time``;
#: - a worker's current job is the set of its executions (``rq:worker:<name>:executions``, filled by
#:   ``Execution.create`` and emptied by ``Execution.delete``): the worker hash's ``current_job`` and
#:   ``current_job_working_time`` fields and ``set_current_job_id`` are gone;
#: - the worker, not ``Job.perform()``, removes the TTL of a starting job's hash
#:   (``prepare_job_execution`` sends ``PERSIST``);
#: - ``get_current_job()`` reads a context variable instead of a thread-local stack.
RQ_3 = int(rq.VERSION.split(".")[0]) >= 3

#: RQ's job states in which a job will still run. rq 3 adds two: a job waiting for a slot of RQ's own
#: rate limiter (``rate_limited``), and a dependent whose dependencies finished, on its way to its queue
#: (``ready_to_enqueue``).
STILL_TO_RUN: frozenset[str] = frozenset(
    status.value
    for status in JobStatus
    if status.name in {"QUEUED", "SCHEDULED", "DEFERRED", "STARTED", "RATE_LIMITED", "READY_TO_ENQUEUE"}
)


def execution_kwargs(execution: Any) -> dict[str, Any]:
    """The ``execution`` keyword for RQ's worker hooks that take one since rq 3, or nothing on rq 2.12
    (where RQ passes none, so ``execution`` is None)."""
    return {"execution": execution} if execution is not None else {}


def worker_executions_key(execution: Any) -> str | None:
    """The key of the set of the running worker's executions (rq 3), or None (rq 2.12 keeps none)."""
    return execution.worker_executions_key if RQ_3 and execution.worker_name else None


#: redis-py 8.2 made ``PubSubWorkerThread.stop()`` wait for the thread to end (``stop(timeout=None)``);
#: before, it only told the thread to stop (checked against redis-py 5.0 and 8.2).
_STOP_WAITS = "timeout" in inspect.signature(PubSubWorkerThread.stop).parameters


def tell_pubsub_thread_to_stop(thread: PubSubWorkerThread) -> None:
    """Tell a pubsub thread to stop after the message it waits for, without waiting for it to end: the
    thread waits up to its ``sleep_time`` (RQ's: 60 s) for a message, and a caller that would send that
    message after this call must not be held here until then."""
    if _STOP_WAITS:
        thread.stop(timeout=0)
    else:
        thread.stop()

"""The one function every RQ job of `jobs` calls, and the arguments it is called with.

An RQ job pushed by `jobs` calls ``RUNNER`` with the record's id, function, arguments and database
alias, so that the worker runs it without reading the record first. ``call_of`` reads them back from
an RQ job, and tells a job of `jobs` from any other RQ job on the same queues.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models import Job

#: The dotted path of the function every RQ job of `jobs` calls: ``jobs.worker.execution.run_job``.
RUNNER = "jobs.worker.execution.run_job"


@dataclass(frozen=True)
class Call:
    """What an RQ job of `jobs` runs: the record's id and function, its encoded arguments, its database."""

    job_id: str
    function: str
    args: list
    kwargs: dict
    alias: str


def runner_args(record: Job) -> list:
    """The arguments of ``RUNNER`` for a record: what the worker needs to run it without a query."""
    return [str(record.pk), record.function, record.args, record.kwargs, record._state.db or "default"]


def call_of(rq_job: Any) -> Call | None:
    """What an RQ job runs, or None for an RQ job that `jobs` did not push."""
    if rq_job.func_name != RUNNER:
        return None
    job_id, function, args, kwargs, *alias = rq_job.args
    return Call(job_id, function, args, kwargs, alias[0] if alias else "default")


def no_retry(rq_job: Any) -> None:
    """RQ fails this run's job instead of scheduling a retry (checked against rq 2.12 and 3.0:
    ``retries_left`` is read by ``Job.should_retry`` when the run's failure is handled)."""
    rq_job.retries_left = 0


def retry_in(rq_job: Any, seconds: float) -> None:
    """RQ's next retry of this run's job is due in ``seconds`` (checked against rq 2.12 and 3.0:
    ``Job.get_retry_interval`` takes ``retry_intervals[len - retries_left]``, so one interval is used
    whatever retries are left)."""
    rq_job.retry_intervals = [max(0, round(seconds))]

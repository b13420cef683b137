"""The RQ worker classes that the `jobs` workers (``jobs.worker``) are built on.

``WorkerMixin`` is what every `jobs` worker needs of RQ's worker beyond its hooks: a JSON serializer it
cannot be talked out of, dequeuing from some of its queues only, putting a dequeued job back, and its
state kept when Redis cannot take it. ``LeanExecutionMixin`` trims RQ's per-job bookkeeping for the lean
worker. ``RQForkingWorker``, ``RQSimpleWorker`` and ``RQLeanWorker`` are the bases that ``jobs.worker``'s
``Worker``, ``SimpleWorker`` and ``LeanWorker`` extend.

Every override of an RQ method and every use of an RQ private attribute says which RQ versions it was
checked against.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import rq
from redis.client import Pipeline
from redis.typing import EncodableT
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.timeouts import BaseTimeoutException
from rq.utils import now, utcformat
from rq.worker import WorkerStatus

from ..intervals import failure_ttl
from . import compat, priority
from .runner import RUNNER

#: RQ's queue, as the hooks of the `jobs` workers receive it.
Queue = rq.Queue

__all__ = [
    "BaseTimeoutException",
    "LeanExecutionMixin",
    "OneJobMixin",
    "Queue",
    "RQForkingWorker",
    "RQJob",
    "RQLeanWorker",
    "RQSimpleWorker",
    "Running",
    "StopRequested",
    "WorkerMixin",
    "current_rq_job",
]

if TYPE_CHECKING:
    # The mixins extend RQ's worker: a type checker reads them as subclasses of it.
    _WorkerBase = rq.worker.BaseWorker
else:
    _WorkerBase = object


@dataclass(frozen=True)
class Running:
    """The Redis keys that say a job is running: its registry entry and the worker's key."""

    registry_key: str
    entry: str  # "<job id>:<execution id>", RQ's composite key
    execution_key: str | None  # None for a job on the threaded worker's fast path (``transport.batch``)
    worker_key: str
    worker_executions_key: str | None = None  # the worker's set of executions (rq 3)


def current_rq_job() -> RQJob | None:
    """The RQ job this process is running (in a forking worker, its work horse), if any."""
    return rq.get_current_job()


class WorkerMixin(_WorkerBase):
    """RQ's worker as the `jobs` workers use it (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Checked against rq 2.12 and 3.0: BaseWorker.__init__ takes ``serializer``, builds ``self.queues``.
        kwargs["serializer"] = JSONSerializer
        super().__init__(*args, **kwargs)
        for queue in self.queues:
            queue.serializer = self.serializer
        self._narrowed = False

    def dequeue_skipping(
        self, skipped: set[str], timeout: int | None, max_idle_time: int | None = None
    ) -> Any:
        """RQ's ``dequeue_job_and_maintain_ttl``, from this worker's queues but those named in ``skipped``."""
        if not skipped:
            self._narrowed = False
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        # RQ dequeues from its private ``_ordered_queues`` (checked against rq 2.12 and 3.0).
        everything = self._ordered_queues
        self._ordered_queues = [queue for queue in everything if queue.name not in skipped]
        # RQ moves a job through the queue's intermediate list when it listens on one queue only.
        self._narrowed = len(self._ordered_queues) == 1 and len(self.queues) > 1
        try:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        finally:
            self._ordered_queues = everything

    def execute_job(self, job: RQJob, queue: rq.Queue) -> None:
        # Checked against rq 2.12 and 3.0: execute_job(job, queue).
        super().execute_job(job, queue)
        if self._narrowed:
            queue.intermediate_queue.remove(job.id)

    def put_back(self, job: RQJob, queue: rq.Queue) -> None:
        """Return a dequeued job, not started, to the front of its queue (of its priority)."""
        queue.push_job_id(job.id, at_front=True)
        priority.place(queue, [(job.id, None)], front=True)
        queue.intermediate_queue.remove(job.id)

    def handle_job_failure(self, job: RQJob, queue: rq.Queue, *args: Any, **kwargs: Any) -> None:
        # Checked against rq 2.12 and 3.0: a retry due at once is pushed by RQ at the tail of the queue
        # (``Job.retry``), and the job's status is then queued.
        super().handle_job_failure(job, queue, *args, **kwargs)
        if job.get_status(refresh=False) == JobStatus.QUEUED:
            priority.place(queue, [(job.id, None)])

    def run_at(self, job: RQJob, queue: rq.Queue, at: datetime) -> None:
        """Put a dequeued job, not started, in RQ's scheduled registry to run at ``at``."""
        queue.schedule_job(job, at)
        queue.intermediate_queue.remove(job.id)

    def file_failed(self, job: RQJob, queue: rq.Queue, reason: str) -> None:
        """End a dequeued job, not started, as RQ ends a failed one: status ``failed``, in the queue's
        ``FailedJobRegistry`` with the reason, out of the intermediate list (checked against rq 2.12)."""
        with self.connection.pipeline() as pipe:
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            queue.failed_job_registry.add(job, ttl=failure_ttl(), exc_string=reason, pipeline=pipe)
            pipe.execute()
        queue.intermediate_queue.remove(job.id)

    def forget_taken(self, job: RQJob, queue: rq.Queue) -> None:
        """Take a dequeued job, not started, out of the queue's intermediate list, where RQ's cleanup and
        the reconciler would push it again."""
        queue.intermediate_queue.remove(job.id)

    def running(self, job: RQJob, execution: Execution) -> Running:
        """The keys that say ``job`` is running in this worker, for ``jobs.worker.liveness``."""
        return Running(
            job.started_job_registry.key,
            execution.composite_key,
            execution.key,
            self.key,
            compat.worker_executions_key(execution),
        )

    def unsubscribe(self) -> None:
        # Overrides RQ's; checked against rq 2.12 and 3.0. RQ unsubscribes, then stops its pubsub thread,
        # which waits up to 60 s for a message: when the unsubscribe's reply reaches the thread before
        # the stop, the thread waits on, and the worker's exit waits for RQ's one-second join (or, with
        # redis-py 8.2, whose stop() waits for the thread, up to the whole 60 s). Told to stop first, the
        # thread ends on that reply.
        if self.pubsub_thread:
            self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
            compat.tell_pubsub_thread_to_stop(self.pubsub_thread)
            self.pubsub.unsubscribe()
            self.pubsub_thread.join(timeout=1)
            if not self.pubsub_thread.is_alive():
                # A thread still waiting (a slow Redis) closes the pubsub itself as it ends: two closes
                # at once race in redis-py (an AttributeError in the thread).
                self.pubsub.close()

    def keep_state(self, state: str) -> None:
        """Remember ``state`` as this worker's state, as ``set_state`` does, without writing it to Redis."""
        # RQ's private ``_state``, which get_state() returns (checked against rq 2.12 and 3.0).
        self._state = state


class LeanExecutionMixin(_WorkerBase):
    """RQ's SimpleWorker with the Redis round trips a `jobs` job does not need cut out.

    RQ's worker sends about 59 Redis commands in some 25 round trips for every job: a heartbeat before
    and after the dequeue and after the job, a suspension check, a state write at every step, three
    separate pipelines to start a job, and on success a watched transaction that first reads the job's
    executions back in order to delete them. Each round trip costs a system call each way and
    redis-py's parsing, which is most of what a short job costs.

    This mixin keeps RQ's data model, so that django-rq's admin, ``rq info`` and RQ's registry cleanup
    read the queues as usual: the job hash, the ``StartedJobRegistry`` entry and execution of a running
    job, the worker's hash with its state, current job and counters, ``FailedJobRegistry``, retries and
    the scheduler. What it changes, for jobs pushed by `jobs` only:

    - a job starts in one pipeline (its execution, the started registry, the job's and worker's fields);
    - a job that succeeds ends in one pipeline that deletes what RQ keeps of it: the ledger holds its
      result, and such a job has no result TTL, callbacks, dependents or repeats in RQ;
    - the worker's heartbeat and the ``rq suspend`` check run at most once per ``heartbeat_interval``
      while the worker is busy, and its state is written only when it changes.

    Any other RQ job on the same queues, and every failure, takes RQ's own path. What RQ writes for a
    job's start and success was checked against rq 2.12 and 3.0 (``compat`` says where they differ).
    """

    #: Seconds during which a repeated heartbeat or suspension check is skipped.
    heartbeat_interval: float = 1.0
    #: RQ logs how long it keeps each result; a `jobs` job's result lives in the ledger.
    log_result_lifespan = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean_job = False
        self._start_pipeline: Pipeline | None = None
        self._heartbeat_at = float("-inf")
        self._suspension_checked_at = float("-inf")

    def takes_fast_path(self, job: RQJob) -> bool:
        """Whether RQ keeps nothing of this job once it succeeds: a `jobs` job with no result TTL."""
        return (
            job.func_name == RUNNER
            and job.get_result_ttl(self.default_result_ttl) == 0
            and job.repeats_left is None
            and job.success_callback is None
            and not job.group_id
        )

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def execute_job(self, job: RQJob, queue: rq.Queue) -> None:
        self._lean_job = self.takes_fast_path(job)
        try:
            super().execute_job(job, queue)
        finally:
            self._lean_job = False
            self._start_pipeline = None

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def prepare_execution(self, job: RQJob) -> Execution:
        if not self._lean_job:
            return super().prepare_execution(job)
        # Written in prepare_job_execution's pipeline, with the job's other start fields. Only this
        # worker writes these keys now, so the pipeline needs no MULTI (whose replies cost CPU to parse).
        self._start_pipeline = self.connection.pipeline(transaction=False)
        ttl = self.get_heartbeat_ttl(job)
        self.execution = Execution.create(job, ttl, pipeline=self._start_pipeline, worker_name=self.name)
        return self.execution

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def prepare_job_execution(self, job: RQJob, remove_from_intermediate_queue: bool = False) -> None:
        if not self._lean_job or self._start_pipeline is None:
            return super().prepare_job_execution(job, remove_from_intermediate_queue)
        pipeline, self._start_pipeline = self._start_pipeline, None
        with pipeline:
            self._write_worker(pipeline, WorkerStatus.BUSY, self.get_heartbeat_ttl(job), job.id)
            # Busy from now on: a SIGTERM that comes while this pipeline runs waits for the job's end.
            self._state = (
                WorkerStatus.BUSY
            )  # RQ's attribute behind get_state(); checked against rq 2.12 and 3.0
            job.prepare_for_execution(self.name, pipeline=pipeline)
            if compat.RQ_3:
                pipeline.persist(job.key)  # rq 3's prepare_job_execution does; 2.12's Job.perform() did
            if remove_from_intermediate_queue:
                queue_key = self.queue_class.redis_queue_namespace_prefix + job.origin
                pipeline.lrem(IntermediateQueue.get_intermediate_queue_key(queue_key), 1, job.id)
            pipeline.execute()

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def handle_execution_ended(self, job: RQJob, queue: rq.Queue, heartbeat_ttl: int) -> None:
        if not self._lean_job:
            return super().handle_execution_ended(job, queue, heartbeat_ttl)
        # RQ also writes the job's heartbeat here; the job's end follows in one pipeline anyway.
        job.ended_at = now()

    # Overrides RQ's; checked against rq 2.12 and 3.0 (rq 3 passes the job's execution).
    def handle_job_success(
        self, job: RQJob, queue: rq.Queue, started_job_registry: Any, execution: Execution | None = None
    ) -> None:
        if not self._lean_job:
            kwargs = compat.execution_kwargs(execution)
            return super().handle_job_success(job, queue, started_job_registry, **kwargs)
        execution = execution or self.execution
        self.execution = None
        # No MULTI: only this worker writes these keys now, and the pipeline reaches Redis in one write.
        with self.connection.pipeline(transaction=False) as pipeline:
            self.increment_successful_job_count(pipeline=pipeline)
            if job.ended_at and job.started_at:
                self.increment_total_working_time(job.ended_at - job.started_at, pipeline)
            self._write_worker(pipeline, WorkerStatus.IDLE, self.worker_ttl + 60, None)
            if execution is not None:
                started_job_registry.remove_execution(execution, pipeline=pipeline)
                pipeline.delete(execution.key)
                if executions_key := compat.worker_executions_key(execution):
                    pipeline.srem(executions_key, execution.composite_key)
            pipeline.delete(job.key, job.dependents_key, job.dependencies_key, job.execution_registry.key)
            pipeline.execute()
        # Idle only once the job's end is written: RQ's SIGTERM handler raises StopRequested at once in
        # an idle worker, which inside this pipeline would cut the job's end short and lose the stop.
        self._state = WorkerStatus.IDLE
        self.log.debug("Worker %s: job %s succeeded; the ledger keeps its result", self.name, job.id)

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and timeout is None and self._recently(self._heartbeat_at):
            return
        self._heartbeat_at = time.monotonic()
        super().heartbeat(timeout, pipeline)

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def check_for_suspension(self, burst: bool) -> None:
        if self._recently(self._suspension_checked_at):
            return
        self._suspension_checked_at = time.monotonic()
        super().check_for_suspension(burst)

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and state == self.get_state():
            return
        super().set_state(state, pipeline)

    def _write_worker(self, pipeline: Pipeline, state: str, ttl: int, current_job: str | None) -> None:
        """What RQ's set_state and heartbeat write, with rq 2.12's set_current_job_id and
        set_current_job_working_time. The worker's own idea of its state is the caller's to change."""
        self.last_heartbeat = now()
        self._heartbeat_at = time.monotonic()
        fields: dict[EncodableT, EncodableT] = {
            "state": state,
            "last_heartbeat": utcformat(self.last_heartbeat),
        }
        # rq 3 reads a worker's current job from its executions (written with the execution) and keeps
        # no working time; rq 2.12 reads these two fields.
        if not compat.RQ_3:
            self.current_job_working_time = 0
            fields["current_job_working_time"] = 0
            if current_job is None:
                pipeline.hdel(self.key, "current_job")
            else:
                fields["current_job"] = current_job
        pipeline.hset(self.key, mapping=fields)
        pipeline.expire(self.key, ttl)

    def _recently(self, moment: float) -> bool:
        return time.monotonic() - moment < self.heartbeat_interval


class OneJobMixin(WorkerMixin):
    """A worker that runs one job at a time: a SIGTERM that comes once it has dequeued a job, before the
    job starts, puts the job back rather than drop it.

    RQ's warm shutdown raises ``StopRequested`` wherever an idle worker is. From its dequeue to the job's
    start (RQ's log line and heartbeat, the checks of a paused queue and a rate limit, the start's
    pipeline) the worker holds a job that RQ's ``BLPOP`` (a worker of several queues) took out of its
    queue: raised there, the stop dropped the job, whose record then waited in no queue until the
    reconciler pushed it again, ``RELAY_GRACE`` and two of its passes later. Now the stop is only asked
    for there, and the job goes back to the front of its queue (or, asked once its start has begun,
    runs first). The dequeue's own round trips (a ``BLPOP`` whose reply is on its way, the read of the
    job) are still cut short by a SIGTERM, as RQ's are. The threaded worker has its own stop
    (``transport.threaded``)."""

    #: Whether the worker holds a job it dequeued, not started yet (or one whose run ends).
    _holding = False

    def dequeue_skipping(
        self, skipped: set[str], timeout: int | None, max_idle_time: int | None = None
    ) -> Any:
        # Not holding a job from here on: a SIGTERM stops an idle worker at once, as RQ's does. (A job held
        # back meanwhile, a paused queue, leaves the flag set until here: the waits before this one
        # look for a stop asked, ``LedgerWorkerMixin._dequeue`` and RQ's suspension.)
        self._holding = False
        return super().dequeue_skipping(skipped, timeout, max_idle_time)

    # Overrides RQ's; checked against rq 2.12 and 3.0: called once a job is dequeued, before RQ logs it.
    def reorder_queues(self, reference_queue: rq.Queue) -> None:
        self._holding = True
        super().reorder_queues(reference_queue)

    # Overrides RQ's; checked against rq 2.12 and 3.0 (the warm shutdown that SIGTERM and SIGINT start;
    # RQ's raises StopRequested unless the worker's state says busy).
    def _shutdown(self) -> None:
        if not self._holding or self.get_state() == WorkerStatus.BUSY:
            return super()._shutdown()
        self._stop_requested = True
        self.log.info("Worker %s: stopping once the job it dequeued is put back, or has run", self.name)

    def execute_job(self, job: RQJob, queue: rq.Queue) -> None:
        try:
            if self._stop_requested:
                self.put_back(job, queue)
                self.log.info("Worker %s: job %s is back in its queue %s", self.name, job.id, queue.name)
                return
            super().execute_job(job, queue)
        finally:
            self._holding = False


class RQForkingWorker(OneJobMixin, rq.Worker):
    """RQ's forking worker: each job runs in a fresh work horse."""


class RQSimpleWorker(OneJobMixin, rq.SimpleWorker):
    """RQ's non-forking worker: jobs run in the worker process itself."""


class RQLeanWorker(OneJobMixin, LeanExecutionMixin, rq.SimpleWorker):
    """RQ's non-forking worker with its per-job bookkeeping trimmed (``LeanExecutionMixin``)."""

"""The threaded worker's fast path in Redis: several waiting jobs taken in one round trip, several ended
in another, with RQ's per-job bookkeeping that the ledger already records left out.

A job taken here goes, in one script, from its queue into its queue's ``StartedJobRegistry`` with an
entry of its own (``<job id>:<execution id>``, scored with the moment it counts as abandoned): from then
on it is the worker's heartbeat (``jobs.worker.liveness``) that keeps it live, and the reaper
(``jobs.upkeep.reaper``) that acts on it if the worker dies, whether the job's record was claimed yet
(pushed again) or not (retried or failed). No RQ execution hash is written, and the RQ job's hash is not
updated to started: the ledger holds who runs it and since when. A job that succeeds ends, with the
others of its batch, in one pipeline that deletes what RQ keeps of it, as the lean worker does.

Checked against rq 2.12 and 3.0: the keys (``Queue.key``, ``StartedJobRegistry.key``,
``Job.key_for``, ``IntermediateQueue.get_intermediate_queue_key``) and ``Job.restore`` of a job hash.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Sequence

import rq
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.executions import ExecutionRegistry
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from ..intervals import failure_ttl
from . import scripts
from .runner import RUNNER, Call, call_of
from .worker import Running

#: The fields of a job hash that the fast path reads: what running a `jobs` job and telling whether it
#: may take the fast path need (checked against rq 2.12 and 3.0: the names ``Job.restore`` reads). The
#: dates are left out (parsing them costs more than the rest); a job that fails is read again whole.
FIELDS = (
    "data",
    "origin",
    "status",
    "timeout",
    "result_ttl",
    "failure_ttl",
    "success_callback_name",
    "failure_callback_name",
    "group_id",
    "retries_left",
    "retry_intervals",
    "number_of_retries",
    "repeats_left",
    "dependency_ids",
)

logger = logging.getLogger("jobs")

# KEYS: the queue, its started registry, its intermediate list, the prefix of job hashes.
# ARGV: the id of a job the worker already took (or ""), how many more to take, the entries' score,
# the first 24 hex digits of the execution ids (the job's number in the call makes the other 8), the
# number of fields to read, then the fields. Returns, per job taken besides the first: its id,
# execution id, and the fields' values.
_TAKE = """
local score, base, taken, number = ARGV[3], ARGV[4], {}, 0
local fields = {unpack(ARGV, 6, 5 + tonumber(ARGV[5]))}
local function enter(id)
  local execution = base .. string.format('%08x', number)
  number = number + 1
  redis.call('ZADD', KEYS[2], score, id .. ':' .. execution)
  return execution
end
if ARGV[1] ~= '' then
  redis.call('LREM', KEYS[3], 1, ARGV[1])
  enter(ARGV[1])
end
local count = tonumber(ARGV[2])
if count > 0 then
  local ids = redis.call('LPOP', KEYS[1], count)
  if ids then
    for _, id in ipairs(ids) do
      taken[#taken + 1] = id
      taken[#taken + 1] = enter(id)
      taken[#taken + 1] = redis.call('HMGET', KEYS[4] .. id, unpack(fields))
    end
  end
end
return taken
"""


class Taken:
    """A job taken on the fast path: its id, its queue, its entry in the started registry, and what the
    fast path read of its hash; RQ's job is made from that only when it is needed (a failure, a job held
    back), since reading a whole job costs more than running a short one."""

    def __init__(
        self, job_id: str, queue: rq.Queue, entry: str, fields: dict[str, bytes], job: RQJob | None = None
    ) -> None:
        self.job_id = job_id
        self.queue = queue
        self.entry = entry
        self.fields = fields
        self._job = job
        self._running: Running | None = None

    @property
    def job(self) -> RQJob:
        if self._job is None:
            self._job = RQJob(self.job_id, connection=self.queue.connection, serializer=JSONSerializer)
            self._job.restore(self.fields)
        return self._job

    def running(self, worker_key: str) -> Running:
        """The keys the heartbeat keeps live while this job runs or waits to be recorded."""
        if self._running is None:
            self._running = Running(self.queue.started_job_registry.key, self.entry, None, worker_key)
        return self._running

    def call(self, default_result_ttl: int) -> Call | None:
        """What the job runs, when it is one for the fast path (``fast_path_eligible``); else None."""
        if self._job is not None:
            return call_of(self._job) if fast_path_eligible(self._job, default_result_ttl) else None
        fields = self.fields
        result_ttl = int(fields["result_ttl"]) if fields.get("result_ttl") else default_result_ttl
        if result_ttl != 0 or any(fields.get(name) for name in _NOT_ON_THE_FAST_PATH):
            return None
        try:
            data = zlib.decompress(fields["data"])
        except zlib.error:
            data = fields["data"]
        func_name, _instance, args, _kwargs = json.loads(data)
        if func_name != RUNNER:
            return None
        job_id, function, call_args, call_kwargs, *alias = args
        return Call(job_id, function, call_args, call_kwargs, alias[0] if alias else "default")

    @property
    def timeout(self) -> float | None:
        if self._job is not None:
            return self._job.timeout
        value = self.fields.get("timeout")
        return int(value) if value else None


#: A job with any of these takes RQ's own path (checked against rq 2.12 and 3.0: the fields behind
#: ``Job.repeats_left``, ``success_callback``, ``failure_callback`` and ``group_id``).
_NOT_ON_THE_FAST_PATH = ("repeats_left", "success_callback_name", "failure_callback_name", "group_id")


def fast_path_eligible(job: RQJob, default_result_ttl: int) -> bool:
    """Whether RQ keeps nothing of this job once it succeeds: a `jobs` job with no result TTL (as the
    lean worker's ``takes_fast_path``)."""
    return (
        job.func_name == RUNNER
        and job.get_result_ttl(default_result_ttl) == 0
        and job.repeats_left is None
        and job.success_callback is None
        and job.failure_callback is None
        and not job.group_id
    )


def take(queue: rq.Queue, first: RQJob | None, more: int, ttl: float) -> list[Taken]:
    """Enter ``first`` (a job this worker dequeued, or None) and up to ``more`` further waiting jobs of
    ``queue`` into its started registry, in one round trip; returns them, ``first`` first. A job whose
    hash Redis no longer holds is dropped."""
    connection: Redis = queue.connection
    base = uuid.uuid4().hex[:24]
    registry_key = queue.started_job_registry.key
    replies = scripts.run(
        connection,
        _TAKE,
        keys=[
            queue.key,
            registry_key,
            IntermediateQueue.get_intermediate_queue_key(queue.key),
            RQJob.redis_job_namespace_prefix,
        ],
        args=[first.id if first else "", more, time.time() + ttl, base, len(FIELDS), *FIELDS],
    )
    taken = [] if first is None else [Taken(first.id, queue, f"{first.id}:{base}{0:08x}", {}, first)]
    for index in range(0, len(replies), 3):
        job_id, values = replies[index].decode(), replies[index + 2]
        entry = f"{job_id}:{replies[index + 1].decode()}"
        if values[0] is None:  # no data: the job hash is gone
            connection.zrem(registry_key, entry)
            continue
        fields = {name: value for name, value in zip(FIELDS, values, strict=True) if value is not None}
        taken.append(Taken(job_id, queue, entry, fields))
    return taken


def leave(taken: Taken) -> None:
    """Take a job, not run, out of the started registry (it went back to its queue or to the scheduled
    registry meanwhile)."""
    taken.queue.connection.zrem(taken.queue.started_job_registry.key, taken.entry)


def put_back(taken: Taken) -> None:
    """Return a job taken, not claimed, to the front of its queue, and take it out of the registry."""
    taken.queue.push_job_id(taken.job_id, at_front=True)
    leave(taken)


def end_successes(
    connection: Redis, worker_key: str, succeeded: Sequence[Taken], working_time: float
) -> None:
    """End jobs that succeeded (or were skipped: their record no longer waited), in one pipeline: their
    entries leave the started registries and RQ's keys of them are deleted; the worker counts them."""
    by_registry: dict[str, list[str]] = defaultdict(list)
    keys: list[str] = []
    for taken in succeeded:
        by_registry[taken.running(worker_key).registry_key].append(taken.entry)
        keys += _keys_of(taken.job_id)
    with connection.pipeline(transaction=False) as pipe:
        for registry_key, entries in by_registry.items():
            pipe.zrem(registry_key, *entries)
        pipe.delete(*keys)
        # RQ's counters of the worker (checked against rq 2.12 and 3.0: field names of Worker.refresh).
        pipe.hincrby(worker_key, "successful_job_count", len(succeeded))
        pipe.hincrbyfloat(worker_key, "total_working_time", working_time)
        pipe.execute()


def _keys_of(job_id: str) -> list[str]:
    """What RQ may keep of a job, as ``Job.key``, ``dependents_key``, ``dependencies_key`` and its
    ``ExecutionRegistry`` name them (checked against rq 2.12 and 3.0), without making the job."""
    return [
        RQJob.key_for(job_id),
        RQJob.dependents_key_for(job_id),
        f"{RQJob.redis_job_namespace_prefix}:{job_id}:dependencies",
        ExecutionRegistry.key_template.format(job_id),
    ]


def end_failure(taken: Taken, exc_string: str, worker_key: str) -> bool:
    """End a job that failed as RQ ends one: retried by RQ's retry machinery while it has retries left
    (checked against rq 2.12 and 3.0: ``Job.retry``, ``Job.should_retry``), else failed into the
    queue's ``FailedJobRegistry``. False when Redis no longer held the job (the end of another copy of
    it, pushed twice, deleted it): nothing retries it then."""
    queue = taken.queue
    try:
        # Read again whole: RQ writes the whole hash back.
        job = RQJob.fetch(taken.job.id, connection=queue.connection, serializer=JSONSerializer)
    except NoSuchJobError:
        queue.connection.zrem(queue.started_job_registry.key, taken.entry)
        return False
    # What the run decided of its retry (``transport.runner``: no_retry, retry_in).
    job.retries_left, job.retry_intervals = taken.job.retries_left, taken.job.retry_intervals
    with queue.connection.pipeline() as pipe:
        pipe.zrem(queue.started_job_registry.key, taken.entry)
        if job.should_retry:
            job.retry(queue, pipe)
        else:
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            queue.failed_job_registry.add(job, ttl=failure_ttl(), exc_string=exc_string, pipeline=pipe)
        pipe.hincrby(worker_key, "failed_job_count", 1)
        pipe.execute()
    return True

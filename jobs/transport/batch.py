"""The threaded worker's fast path in Redis: several waiting jobs taken in one round trip, several ended
in another, with RQ's per-job bookkeeping that the ledger already records left out.

A job taken here goes, in one script, from its queue into its queue's ``StartedJobRegistry`` with an
entry of its own (``<job id>:<execution id>``, scored with the moment it counts as abandoned): from then
on it is the worker's heartbeat (``jobs.worker.liveness``) that keeps it live, and the reaper
(``jobs.upkeep.reaper``) that acts on it if the worker dies, whether the job's record was not claimed
yet (pushed again) or was (retried or failed). A worker of one queue takes the job its dequeue moves in
the same round trip as the move (``Handoff``). No RQ execution hash is written, and the RQ job's hash is not
updated to started: the ledger holds who runs it and since when. A job that succeeds ends, with the
others of its batch, in one pipeline that deletes what RQ keeps of it, as the lean worker does.

Checked against rq 2.12 and 3.0: the keys (``Queue.key``, ``StartedJobRegistry.key``,
``Job.key_for``, ``IntermediateQueue.get_intermediate_queue_key``) and ``Job.restore`` of a job hash.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import rq
from redis import Redis
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.executions import ExecutionRegistry
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.utils import get_version

from .. import keys
from ..intervals import entry_ttl, failure_ttl
from . import priority, scripts
from .runner import RUNNER, Call
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

# KEYS: the queue, its started registry, the list the worker's dequeue moved the job into (RQ's
# intermediate list, or the worker's hand-off list), the prefix of job hashes.
# ARGV: the id of the job the worker dequeued, "*" for every id in its hand-off list, or "" for none; how
# many more to take from the queue; the entries' score ("+<seconds>": that long after Redis' clock reads
# when the script runs); the first 24 hex digits of the execution ids (the job's number in the call makes
# the other 8). The fields read (``FIELDS``) are written into the script. Returns, per job taken (those
# dequeued first): its id, execution id, and the fields' values. A job whose hash is gone is not
# entered, and not returned.
_TAKE = """
local score, base, taken, number = ARGV[3], ARGV[4], {}, 0
if string.sub(score, 1, 1) == '+' then
  local now = redis.call('TIME')
  local seconds = tonumber(now[1]) + tonumber(now[2]) / 1000000
  score = string.format('%.6f', seconds + tonumber(string.sub(score, 2)))
end
local fields = {FIELDS}
local function enter(id)
  local values = redis.call('HMGET', KEYS[4] .. id, unpack(fields))
  if not values[1] then
    return
  end
  local execution = base .. string.format('%08x', number)
  number = number + 1
  redis.call('ZADD', KEYS[2], score, id .. ':' .. execution)
  taken[#taken + 1] = id
  taken[#taken + 1] = execution
  taken[#taken + 1] = values
end
local moved = {}
if ARGV[1] == '*' then
  moved = redis.call('LRANGE', KEYS[3], 0, -1)
elseif ARGV[1] ~= '' then
  moved = {ARGV[1]}
end
for _, id in ipairs(moved) do
  enter(id)
end
local count, ids = tonumber(ARGV[2]), {}
if count > 0 then
  ids = redis.call('LRANGE', KEYS[1], 0, count - 1)
  for _, id in ipairs(ids) do
    enter(id)
  end
end
-- The ids leave their lists only once they are entered: a script that fails part way loses no job (one
-- entered twice is claimed once).
if ARGV[1] == '*' then
  redis.call('DEL', KEYS[3])
elseif ARGV[1] ~= '' then
  redis.call('LREM', KEYS[3], 1, ARGV[1])
end
if #ids > 0 then
  redis.call('LTRIM', KEYS[1], #ids, -1)
end
return taken
""".replace("{FIELDS}", "{" + ", ".join(f"'{name}'" for name in FIELDS) + "}")


class Taken:
    """A job taken on the fast path: its id, its queue, its entry in the started registry, and what the
    fast path read of its hash; RQ's job is made from that only when it is needed (a failure, a job held
    back), since reading a whole job costs more than running a short one."""

    def __init__(
        self, job_id: str, queue: rq.Queue, entry: str, fields: dict[str, bytes], registry_key: str
    ) -> None:
        self.job_id = job_id
        self.queue = queue
        self.entry = entry
        self.fields = fields
        self.registry_key = registry_key  # the queue's StartedJobRegistry's
        self._job: RQJob | None = None
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
            self._running = Running(self.registry_key, self.entry, None, worker_key)
        return self._running

    def call(self, default_result_ttl: int) -> Call | None:
        """What the job runs, when it is one for the fast path: a `jobs` job that RQ keeps nothing of once
        it succeeds (no result TTL, callbacks, repeats or group, as the lean worker's
        ``takes_fast_path``); else None."""
        fields = self.fields
        result_ttl = int(fields["result_ttl"]) if fields.get("result_ttl") else default_result_ttl
        if result_ttl != 0 or any(fields.get(name) for name in _NOT_ON_THE_FAST_PATH):
            return None
        data = fields["data"]
        if not data.startswith(b"["):  # compressed: RQ's, or a long payload (``queues.COMPRESSED_FROM``)
            with contextlib.suppress(zlib.error):
                data = zlib.decompress(data)
        try:
            func_name, _instance, args, _kwargs = json.loads(data)
            if func_name != RUNNER:
                return None
            job_id, function, call_args, call_kwargs, *alias = args
        except (ValueError, TypeError):  # not a job `jobs` pushed: RQ's path fails it as RQ does
            return None
        return Call(job_id, function, call_args, call_kwargs, alias[0] if alias else "default")

    @property
    def timeout(self) -> float | None:
        value = self.fields.get("timeout")
        return int(value) if value else None


#: A job with any of these takes RQ's own path (checked against rq 2.12 and 3.0: the fields behind
#: ``Job.repeats_left``, ``success_callback``, ``failure_callback`` and ``group_id``).
_NOT_ON_THE_FAST_PATH = ("repeats_left", "success_callback_name", "failure_callback_name", "group_id")


@functools.cache
def unread_on_dequeue(queue_class: type[rq.Queue]) -> type[rq.Queue]:
    """``queue_class``, whose ``dequeue_any`` gives the job it pops unread: RQ's job with its id only.
    ``take`` reads what the fast path needs of its hash in the round trip that enters it into the
    started registry, rather than RQ reading the whole hash (and parsing its dates) in one of its own.

    Checked against rq 2.12 and 3.0: ``dequeue_any`` makes the job it popped with ``job_class.fetch``,
    and builds the queue it returns with that job class, which is set back here."""

    class UnreadOnDequeue(queue_class):  # type: ignore[valid-type,misc]
        #: Set for a worker whose dequeue from one queue takes the job in the same round trip.
        handoff: Handoff | None = None

        @classmethod
        def dequeue_any(
            cls,
            queues: Any,
            timeout: int | None,
            connection: Redis,
            job_class: type[RQJob] | None = None,
            serializer: Any = None,
            death_penalty_class: Any = None,
        ) -> tuple[RQJob, rq.Queue] | None:
            job_class = job_class or cls.job_class
            queues = list(queues)
            if cls.handoff is not None and len(queues) == 1 and get_version(connection) >= (6, 2, 0):
                # As RQ's, which moves a job with BLMOVE only then.
                return cls.handoff.dequeue(queues[0], timeout, connection, job_class, serializer)
            result = super().dequeue_any(
                queues,
                timeout,
                connection=connection,
                job_class=_unread(job_class),
                serializer=serializer,
                death_penalty_class=death_penalty_class,
            )
            if result is not None:
                result[1].job_class = job_class
            return result

    UnreadOnDequeue.__qualname__ = UnreadOnDequeue.__name__ = queue_class.__name__
    return UnreadOnDequeue


# KEYS: the hash of hand-off lists, a worker's list. ARGV: the worker's name. The worker leaves the hash
# unless its list still holds a job (left to the reaper).
_UNREGISTER = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def unregister(connection: Redis, worker_name: str) -> None:
    """A worker that stops takes its hand-off list out of the hash, unless the list still holds a job."""
    scripts.run(connection, _UNREGISTER, [keys.handoffs(), keys.handoff(worker_name)], [worker_name])


def handed_over(connection: Redis) -> dict[str, tuple[str, list[str], bool]]:
    """The workers registered in this Redis' hash of hand-off lists: by worker name, the queue, the ids
    in the worker's list, and whether the worker is alive (RQ holds its key)."""
    registered = {_text(name): _text(queue) for name, queue in connection.hgetall(keys.handoffs()).items()}
    names = sorted(registered)
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.lrange(keys.handoff(name), 0, -1)
            pipe.exists(rq.Worker.redis_worker_namespace_prefix + name)
        replies = pipe.execute()
    return {
        name: (registered[name], [_text(job_id) for job_id in ids], bool(alive))
        for name, ids, alive in zip(names, replies[::2], replies[1::2], strict=True)
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def take_back(connection: Redis, worker_name: str, job_ids: Sequence[str]) -> list[str]:
    """Take these ids out of a worker's hand-off list; returns those that were still there."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.lrem(keys.handoff(worker_name), 0, job_id)
        removed = pipe.execute()
    return [job_id for job_id, count in zip(job_ids, removed, strict=True) if count]


def taking_on_dequeue(queue_class: type[rq.Queue], handoff: Handoff) -> type[rq.Queue]:
    """``unread_on_dequeue(queue_class)``, whose dequeue from one queue moves the job into ``handoff``'s
    list and takes it in the same round trip (``Handoff``)."""
    unread = unread_on_dequeue(queue_class)  # type: ignore[arg-type]  # a class is hashable
    return type(unread.__name__, (unread,), {"handoff": handoff, "__qualname__": unread.__qualname__})


#: The job class of each worker's, whose ``fetch`` makes the job unread.
_unread_classes: dict[type[RQJob], type[RQJob]] = {}


def _unread(job_class: type[RQJob]) -> type[RQJob]:
    if job_class not in _unread_classes:

        class Unread(job_class):  # type: ignore[valid-type,misc]
            @classmethod
            def fetch(cls, id: str, connection: Redis | None = None, serializer: Any = None) -> RQJob:
                return job_class(id, connection=connection, serializer=serializer)

        _unread_classes[job_class] = Unread
    return _unread_classes[job_class]


def take(
    queue: rq.Queue, first: str | None, more: int, ttl: float, *, handed_over: str | None = None
) -> list[Taken]:
    """Enter ``first`` (the id of a job this worker dequeued, or None) and up to ``more`` further waiting
    jobs of ``queue`` into its started registry, and read what the fast path needs of their hashes, in
    one round trip; returns them, ``first`` first. With ``handed_over`` (a worker's hand-off list,
    ``Handoff``), every job in that list is taken rather than ``first``. A job whose hash Redis no longer
    holds is dropped."""
    replies = scripts.run(
        queue.connection,
        _TAKE,
        keys=_take_keys(queue, handed_over or IntermediateQueue.get_intermediate_queue_key(queue.key)),
        args=["*" if handed_over else first or "", more, time.time() + ttl, uuid.uuid4().hex[:24]],
    )
    return _taken(queue, replies)


def _take_keys(queue: rq.Queue, moved_into: str) -> list[str]:
    return [queue.key, queue.started_job_registry.key, moved_into, RQJob.redis_job_namespace_prefix]


def _taken(queue: rq.Queue, replies: list[Any]) -> list[Taken]:
    registry_key = queue.started_job_registry.key
    taken = []
    for index in range(0, len(replies), 3):
        job_id, values = replies[index].decode(), replies[index + 2]
        fields = {name: value for name, value in zip(FIELDS, values, strict=True) if value is not None}
        taken.append(Taken(job_id, queue, f"{job_id}:{replies[index + 1].decode()}", fields, registry_key))
    return taken


class Handoff:
    """A worker's own list in Redis that its dequeue moves the next job of its queue into, with the take
    of that job (``take``) sent in the same round trip: an idle worker's job is taken in one round trip,
    where RQ's dequeue (which moves it into the queue's intermediate list) and a take would need two.

    Redis runs one client's commands in order, and runs the take as soon as the move returns, so a job
    sits in the list only for that moment. Should the take fail, the job stays there, and the next take
    of the worker takes it; should the worker die, the reaper finds it (the lists are registered by
    worker in the hash ``jobs.keys.handoffs``, registered again in every round trip, so that a Redis
    that lost its data learns of them again). Used for a worker that listens on one queue, as RQ uses
    its intermediate list only then (checked against rq 2.12 and 3.0: ``Queue.dequeue_any``).
    """

    def __init__(self, worker_name: str, more: Callable[[], int]) -> None:
        self.worker_name = worker_name
        self.key = keys.handoff(worker_name)
        self._more = more  # how many more jobs a take may take from the queue
        self._taken: list[Taken] = []
        self._untaken: str | None = None

    def dequeue(
        self, queue: rq.Queue, timeout: int | None, connection: Redis, job_class: type[RQJob], serializer: Any
    ) -> tuple[RQJob, rq.Queue] | None:
        """``Queue.dequeue_any`` for one queue: the job moved and taken, unread (see ``unread_on_dequeue``);
        raises ``DequeueTimeout`` when the wait timed out, returns None when the queue was empty
        (``timeout`` None)."""
        while True:
            moved, replies = self._move_and_take(queue, timeout, connection)
            if isinstance(moved, Exception):
                raise moved
            if isinstance(replies, Exception):
                logger.warning("The take of a job dequeued from %s failed (%s)", queue.name, replies)
                self._untaken = moved.decode() if moved is not None else None
                taken = []
            else:
                taken = _taken(queue, replies)
            if taken or self._untaken:
                self._taken = taken
                job_id = taken[0].job_id if taken else self._untaken
                return job_class(job_id, connection=connection, serializer=serializer), queue
            if moved is None:
                if timeout is None:
                    return None
                raise DequeueTimeout(timeout, queue.key)
            # The job moved was gone (its hash deleted meanwhile): dequeue again.

    def _move_and_take(self, queue: rq.Queue, timeout: int | None, connection: Redis) -> list[Any]:
        with connection.pipeline(transaction=False) as pipe:
            pipe.hset(keys.handoffs(), self.worker_name, queue.name)
            if timeout is None:
                pipe.lmove(queue.key, self.key)
            else:
                pipe.blmove(queue.key, self.key, timeout)
            # EVAL with the script's text: a pipeline that holds a registered script asks Redis
            # whether it has it first, in a round trip of its own.
            pipe.eval(
                _TAKE,
                4,
                *_take_keys(queue, self.key),
                "*",
                self._more(),
                f"+{entry_ttl()}",
                uuid.uuid4().hex[:24],
            )
            return pipe.execute(raise_on_error=False)[1:]

    def forget(self, connection: Redis, job_id: str) -> None:
        """Take a job that could not be taken out of the list (its record is left to the relay)."""
        connection.lrem(self.key, 0, job_id)

    def taken_with(self, job_id: str, queue: rq.Queue, more: int, ttl: float) -> list[Taken]:
        """The jobs the dequeue of ``job_id`` took with it; when that take failed, a take of them now."""
        taken, self._taken = self._taken, []
        if taken and taken[0].job_id == job_id:
            return taken
        if self._untaken == job_id:
            self._untaken = None
            return take(queue, None, more, ttl, handed_over=self.key)
        return take(queue, job_id, more, ttl)  # dequeued by RQ (a worker of several queues)


def read_whole(taken: Taken) -> RQJob | None:
    """RQ's job of a job taken, read whole, for RQ's own path; None if Redis no longer holds it."""
    queue = taken.queue
    try:
        return queue.job_class.fetch(taken.job_id, connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return None


def leave(taken: Taken) -> None:
    """Take a job, not run, out of the started registry (it went back to its queue or to the scheduled
    registry meanwhile)."""
    taken.queue.connection.zrem(taken.registry_key, taken.entry)


def put_back(taken: Taken) -> None:
    """Return a job taken, not claimed, to the front of its queue (ahead of the waiting jobs of its
    priority, behind those of a higher one, as ``WorkerMixin.put_back``), and take it out of the
    registry."""
    taken.queue.push_job_id(taken.job_id, at_front=True)
    priority.place(taken.queue, [(taken.job_id, None)], front=True)
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
        queue.connection.zrem(taken.registry_key, taken.entry)
        return False
    # What the run decided of its retry (``transport.runner``: no_retry, retry_in).
    job.retries_left, job.retry_intervals = taken.job.retries_left, taken.job.retry_intervals
    with queue.connection.pipeline() as pipe:
        pipe.zrem(taken.registry_key, taken.entry)
        if job.should_retry:
            job.retry(queue, pipe)
        else:
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            queue.failed_job_registry.add(job, ttl=failure_ttl(), exc_string=exc_string, pipeline=pipe)
        pipe.hincrby(worker_key, "failed_job_count", 1)
        pipe.execute()
    return True

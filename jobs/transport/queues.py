"""What `jobs` does to RQ's queues: push records, cancel or delete their RQ jobs, and read what Redis holds.

Every function takes records, ids and queue names, and raises ``RedisError`` when Redis cannot be
reached; the callers decide what an outage means for the ledger.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import rq
from django.utils import timezone
from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.executions import ExecutionRegistry
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now
from rq.utils import utcformat

from ..conf import jobs_settings
from ..exceptions import JobNotRegistered
from ..intervals import failure_ttl
from ..models import Job
from ..options import JobOptions
from ..registry import resolve
from . import compat, connection, priority
from .batch import handed_over
from .runner import RUNNER, runner_args

logger = logging.getLogger("jobs")

#: RQ states in which a job will still run (they differ by RQ version).
ALIVE = compat.STILL_TO_RUN
#: RQ's registries counted for each queue, besides the queue itself.
REGISTRIES = {
    "scheduled": ScheduledJobRegistry,
    "started": StartedJobRegistry,
    "failed": FailedJobRegistry,
    "finished": FinishedJobRegistry,
}


# Pushing records.


def push(records: Sequence[Job], options: JobOptions | None = None) -> list[Job]:
    """Push records to Redis, one pipeline per queue, or one command for a queue's only record that is
    due; returns the records left unpushed, those of a queue no longer in ``RQ_QUEUES``
    (``connection.configured``). Raises ``RedisError`` when Redis cannot be reached.

    ``options`` are those the records were enqueued with; without them (the relay, a retry from the
    admin) each record's job function is looked up in the registry for its backoff. Each id is put in
    its place on its queue by the record's priority (``transport.priority``), in the same pipeline.
    """
    by_queue: dict[str, list[Job]] = defaultdict(list)
    unknown = []
    for record in records:
        if connection.configured(record.queue):
            by_queue[record.queue].append(record)
        else:
            unknown.append(record)
    for queue_name, queued in by_queue.items():
        queue = connection.get_queue(queue_name)
        if len(queued) == 1 and not _later(queued[0]) and queue._is_async:
            [record] = queued
            _push_one(queue, record, options or record_options(record))
            continue
        with queue.connection.pipeline() as pipe:
            # In MULTI from the start: RQ's enqueue_job switches a pipeline it is given to MULTI, which
            # redis-py refuses once commands are queued (a delayed record's before a due one's).
            pipe.multi()
            if (
                options is not None
                and len(queued) > 1
                and not any(_later(record) or record.at_front != queued[0].at_front for record in queued)
            ):
                _add_batch_to_pipeline(queue, queued, pipe, options)
            else:
                for record in queued:
                    _add_to_pipeline(queue, record, pipe, options or record_options(record))
            for front in (False, True):
                waiting = [
                    (str(record.pk), record.priority)
                    for record in queued
                    if bool(record.at_front) == front and not _later(record)
                ]
                priority.place(queue, waiting, front=front, pipeline=pipe)
            pipe.execute()
    return unknown


def _later(record: Job) -> bool:
    return record.scheduled_for is not None and record.scheduled_for > timezone.now()


def _add_batch_to_pipeline(queue: Queue, records: Sequence[Job], pipe: Pipeline, options: JobOptions) -> None:
    """Push many records of one job function at once: the first takes RQ's whole enqueue path, and its
    RQ job, with only its id, arguments, description and retries changed, is written for each of the
    others, whose ids are then pushed to the queue; the fields the jobs share are sent once for all.

    This is what RQ's ``enqueue_job`` writes for each of them, without its per-job Job construction,
    status write and queue-set update, the same for the whole batch (checked against rq 2.12 and 3.0).
    """
    first, *rest = records
    rq_job = _add_to_pipeline(queue, first, pipe, options)
    shared = rq_job.to_dict()
    common = {name: value for name, value in shared.items() if name not in OWN_FIELDS}
    hashes = [
        (
            str(record.pk),
            {
                **common,
                **_own_fields(
                    record, options, rq_job.serializer, shared["created_at"], shared["enqueued_at"]
                ),
            },
        )
        for record in rest
    ]
    _write_batch(queue, shared, hashes, pipe, front=first.at_front)


# Jobs of one batch written and their ids pushed, in one command per ``BATCH_CHUNK`` jobs: the fields
# the jobs share are sent once. KEYS: the queue. ARGV: the prefix of job hashes, '1' for the head, the
# number of shared fields, those fields and values, the number of the jobs' own fields and their names,
# then per job its id and the values of those fields.
_WRITE_BATCH = """
local prefix, shared = ARGV[1], tonumber(ARGV[3])
local at = 4 + 2 * shared
local own = tonumber(ARGV[at])
local names = {unpack(ARGV, at + 1, at + own)}
at = at + own + 1
local ids = {}
while at <= #ARGV do
    local fields = {unpack(ARGV, 4, 3 + 2 * shared)}
    for i = 1, own do
        fields[#fields + 1] = names[i]
        fields[#fields + 1] = ARGV[at + i]
    end
    redis.call('HSET', prefix .. ARGV[at], unpack(fields))
    ids[#ids + 1] = ARGV[at]
    at = at + own + 1
end
local push = ARGV[2] == '1' and 'LPUSH' or 'RPUSH'
for i = 1, #ids, 1000 do
    redis.call(push, KEYS[1], unpack(ids, i, math.min(i + 999, #ids)))
end
return #ids
"""
#: Jobs written by one run of the batch script (which keeps a command's arguments well under Redis' limit).
BATCH_CHUNK = 2000
#: The fields of a batch's RQ jobs that differ from one job to the next (checked against rq 2.12 and 3.0).
OWN_FIELDS = ("data", "description", "created_at", "enqueued_at", "retries_left", "retry_intervals", "meta")


def _write_batch(
    queue: Queue,
    shared: dict[Any, Any],
    hashes: Sequence[tuple[str, dict[Any, Any]]],
    pipe: Pipeline,
    *,
    front: bool,
) -> None:
    """Write the hashes of a batch's jobs (but its first, which RQ wrote) and push their ids, in
    ``pipe``. Should a hash's other fields not be the first's, each hash is written whole."""
    if not hashes:
        return
    own = [name for name in OWN_FIELDS if name in shared]
    common = {name: value for name, value in shared.items() if name not in OWN_FIELDS}
    if not all(
        mapping.keys() == shared.keys() and all(mapping[name] == common[name] for name in common)
        for _, mapping in hashes
    ):
        for job_id, mapping in hashes:
            pipe.hset(queue.job_class.key_for(job_id), mapping=mapping)
        (pipe.lpush if front else pipe.rpush)(queue.key, *(job_id for job_id, _ in hashes))
        return
    head: list[Any] = [queue.job_class.key_for(""), "1" if front else "0", len(common)]
    for name_value in common.items():
        head += name_value
    head += [len(own), *own]
    for start in range(0, len(hashes), BATCH_CHUNK):
        args = list(head)
        for job_id, mapping in hashes[start : start + BATCH_CHUNK]:
            args.append(job_id)
            args += [mapping[name] for name in own]
        pipe.eval(_WRITE_BATCH, 1, queue.key, *args)


#: A job's payload (its function and arguments) is compressed from this size on, as RQ compresses every
#: one: a smaller one costs more to compress (zlib sets up its window on each call, 20 to 60 µs) than it
#: saves. RQ reads both (``Job.restore`` takes data that is not compressed as it is).
COMPRESSED_FROM = 1024


def _payload(data: bytes) -> bytes:
    """A job's payload as its RQ hash holds it (see ``COMPRESSED_FROM``)."""
    return zlib.compress(data) if len(data) >= COMPRESSED_FROM else data


def _retry_intervals(record: Job, options: JobOptions) -> list[int]:
    if record.max_attempts != options.attempts:
        options = options.replace(max_attempts=record.max_attempts)
    return options.retry_intervals()[record.attempts :]


def _push_one(queue: Queue, record: Job, options: JobOptions) -> None:
    """Push one record that is due, in one command (``priority.push_one``), with the hash RQ's
    ``enqueue_job`` writes for its RQ job (``_job_hash``)."""
    job_hash = _job_hash(queue, record, options)
    priority.push_one(queue, str(record.pk), job_hash, record.priority, front=record.at_front)


#: The other fields' values, as RQ writes them, by queue, job class, serializer, timeout and TTLs.
_hash_templates: dict[tuple[Any, ...], tuple[dict[Any, Any], Any]] = {}


def _job_hash(queue: Queue, record: Job, options: JobOptions) -> dict[str, Any]:
    """The hash RQ's ``enqueue_job`` writes for a record's RQ job: the fields that records share as RQ
    made them once (``create_job`` and ``_prepare_for_queue``, then ``Job.to_dict``), the record's
    own as ``Job.to_dict`` makes them (checked against rq 2.12 and 3.0), without making an RQ job
    for every push."""
    result_ttl, failure = jobs_settings.RQ_RESULT_TTL, failure_ttl()
    key = (
        queue.name,
        queue.job_class,
        queue._default_timeout,
        queue.serializer,
        record.timeout,
        result_ttl,
        failure,
    )
    if key not in _hash_templates:
        if len(_hash_templates) >= 1_000:  # timeouts given per call, each different
            _hash_templates.clear()
        template = queue.create_job(
            RUNNER, timeout=record.timeout, result_ttl=result_ttl, failure_ttl=failure, job_id="template"
        )
        queue._prepare_for_queue(template)
        # Encoded once, as redis-py encodes each argument of a command (its encoding costs more than the
        # rest of the push's Python).
        encode = queue.connection.get_encoder().encode
        shared = {
            encode(name): encode(value)
            for name, value in template.to_dict().items()
            if name not in OWN_FIELDS
        }
        _hash_templates[key] = (shared, template.serializer)
    shared, serializer = _hash_templates[key]
    now_text = utcformat(rq_now())
    return {**shared, **_own_fields(record, options, serializer, now_text, now_text)}


def _own_fields(
    record: Job, options: JobOptions, serializer: Any, created_at: str, enqueued_at: str
) -> dict[str, Any]:
    """The fields of a record's RQ job hash that are its own, as ``Job.to_dict`` makes them (checked
    against rq 2.12 and 3.0), but its payload, compressed only from ``COMPRESSED_FROM`` on."""
    own: dict[str, Any] = {
        "created_at": created_at,
        "enqueued_at": enqueued_at,
        "data": _payload(serializer.dumps((RUNNER, None, runner_args(record), {}))),
        "description": f"{record.function} [{record.pk}]",
    }
    if intervals := _retry_intervals(record, options):
        own["retries_left"] = len(intervals)
        own["retry_intervals"] = json.dumps(intervals)
    if job_meta := priority.meta(record.priority):
        own["meta"] = serializer.dumps(job_meta)
    return own


def _add_to_pipeline(queue: Queue, record: Job, pipe: Pipeline, options: JobOptions) -> RQJob:
    rq_job = _rq_job(queue, record, options)
    if record.scheduled_for is not None and record.scheduled_for > timezone.now():
        return queue.schedule_job(rq_job, _whole_second_after(record.scheduled_for), pipeline=pipe)
    return queue.enqueue_job(rq_job, pipeline=pipe, at_front=record.at_front)


def _rq_job(queue: Queue, record: Job, options: JobOptions) -> RQJob:
    # Computed per record, so that jobs that fail together do not retry together. A record pushed again
    # (relay, reaper, reconciler) gets RQ retries only for the attempts it has left.
    intervals = _retry_intervals(record, options)
    return queue.create_job(
        RUNNER,
        args=runner_args(record),
        timeout=record.timeout,
        result_ttl=jobs_settings.RQ_RESULT_TTL,
        failure_ttl=failure_ttl(),
        description=f"{record.function} [{record.pk}]",
        job_id=str(record.pk),
        retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
        meta=priority.meta(record.priority),
    )


def _whole_second_after(moment: datetime) -> datetime:
    """RQ's scheduled registry keeps whole seconds: round up, so that a job never starts early."""
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def record_options(record: Job) -> JobOptions:
    """The options a record is pushed again with (by the relay, a release, a retry): its function's,
    with what the record keeps of its own enqueue (attempts, backoff)."""
    try:
        options = resolve(record.function).options
    except JobNotRegistered:
        options = JobOptions()  # the worker will fail it with a clear error
    except Exception as exc:  # its module fails on import: the worker fails the job with the reason
        logger.warning(
            "Job %s: %s cannot be imported here (%r); pushed as recorded", record.pk, record.function, exc
        )
        options = JobOptions()
    if record.backoff is None:  # written before the record kept its backoff
        return options.replace(max_attempts=record.max_attempts)
    return options.replace(
        max_attempts=record.max_attempts, backoff=record.backoff, backoff_base=record.backoff_base
    )


# The RQ jobs of records.


def _rq_jobs_of(records: Sequence[Job]) -> Iterator[tuple[Redis, list[RQJob]]]:
    """RQ's jobs of these records that Redis still holds, one batch per queue's connection; a queue no
    longer in ``RQ_QUEUES`` names no Redis, and its records are left out."""
    by_queue: dict[str, list[str]] = defaultdict(list)
    for record in records:
        if connection.configured(record.queue):
            by_queue[record.queue].append(str(record.pk))
    for queue_name, ids in by_queue.items():
        redis = connection.get_connection(queue_name)
        found = RQJob.fetch_many(ids, connection=redis, serializer=JSONSerializer)
        yield redis, [rq_job for rq_job in found if rq_job is not None]


def delete(records: Sequence[Job]) -> None:
    """Delete RQ's jobs of these records, with their entries in RQ's registries. A job deleted meanwhile
    (another person's delete or retry of the same record, at the same moment) is left to that delete:
    RQ reads the job's status as it deletes it, and raises ``InvalidJobOperation`` once it is gone."""
    for redis, rq_jobs in _rq_jobs_of(records):
        with redis.pipeline() as pipe:
            for rq_job in rq_jobs:
                try:
                    rq_job.delete(pipeline=pipe)
                except InvalidJobOperation:
                    continue  # deleted since it was read
            pipe.execute()


def cancel(records: Sequence[Job]) -> None:
    """Move RQ's jobs of these records to RQ's canceled registry, so that RQ's tools agree with the ledger."""
    for redis, rq_jobs in _rq_jobs_of(records):
        with redis.pipeline() as pipe:
            for rq_job in rq_jobs:
                try:
                    rq_job.cancel(pipeline=pipe)
                except InvalidJobOperation:
                    continue  # already cancelled in RQ
            pipe.execute()


def _ids_by_queue(batch: Iterable[tuple[Any, str]]) -> dict[str, list[Any]]:
    by_queue: dict[str, list[Any]] = defaultdict(list)
    for pk, queue_name in batch:
        by_queue[queue_name].append(pk)
    return by_queue


#: A queue is searched for the jobs that say they are queued only while it holds at most this many: its
#: ids are read in the round trip that reads their status (a longer queue is searched once it is shorter).
SEARCHED_UP_TO = 1000


def unaccounted(batch: Iterable[tuple[Any, str]]) -> tuple[list[Any], list[Any]]:
    """Among ``(id, queue name)`` pairs: the ids whose RQ job is missing or will not run; and the ids whose
    RQ job says queued while neither its queue, RQ's intermediate list and started registry of it, nor a
    worker's hand-off list holds it (a worker popped it and died before it took it: RQ's ``BLPOP``, for
    a worker of several queues, leaves nothing of the job in Redis but its hash until the worker takes
    it). One round trip per queue, and one per Redis for the hand-off lists; a queue longer than
    ``SEARCHED_UP_TO`` is not searched."""
    lost, nowhere = [], []
    handed: dict[tuple, set[str]] = {}
    for queue_name, pks in _ids_by_queue(batch).items():
        queue = connection.get_queue(queue_name)
        with queue.connection.pipeline(transaction=False) as pipe:
            for pk in pks:
                pipe.hget(queue.job_class.key_for(str(pk)), "status")
            pipe.llen(queue.key)
            pipe.lrange(queue.key, 0, SEARCHED_UP_TO)
            pipe.lrange(queue.intermediate_queue.key, 0, -1)
            pipe.zrange(queue.started_job_registry.key, 0, -1)
            *statuses, length, waiting, intermediate, started = pipe.execute()
        texts = [(status or b"").decode() for status in statuses]
        lost += [pk for pk, status in zip(pks, texts, strict=True) if status not in ALIVE]
        queued = [pk for pk, status in zip(pks, texts, strict=True) if status == JobStatus.QUEUED]
        if not queued or length > SEARCHED_UP_TO:
            continue
        server = connection.server_of(queue_name)
        if server not in handed:
            lists = handed_over(queue.connection).values()
            handed[server] = {job_id for _, job_ids, _ in lists for job_id in job_ids}
        held = {job_id.decode() for job_id in (*waiting, *intermediate)} | handed[server]
        held |= {entry.decode().partition(":")[0] for entry in started}
        nowhere += [pk for pk in queued if str(pk) not in held]
    return lost, nowhere


def overdue(batch: Iterable[tuple[Any, str]], before: datetime) -> list[tuple[Any, str]]:
    """The ``(id, queue name)`` pairs whose RQ job still waits in the queue's ``ScheduledJobRegistry``
    for a time before ``before``: one pipeline per queue."""
    by_queue = _ids_by_queue(batch)
    late = []
    for queue_name, pks in by_queue.items():
        queue = connection.get_queue(queue_name)
        registry = queue.scheduled_job_registry
        with queue.connection.pipeline(transaction=False) as pipe:
            for pk in pks:
                pipe.zscore(registry.key, str(pk))
            scores = pipe.execute()
        late += [
            (pk, queue_name)
            for pk, score in zip(pks, scores, strict=True)
            if score is not None and score < before.timestamp()
        ]
    return late


def intermediate_job_ids(queue_name: str) -> list[str]:
    """The ids in a queue's intermediate list: jobs a worker's dequeue moved there, not yet taken or
    started (RQ moves a job through it when a worker listens on one queue)."""
    return connection.get_queue(queue_name).intermediate_queue.get_job_ids()


def remove_from_intermediate(queue_name: str, job_ids: Sequence[str]) -> None:
    intermediate = connection.get_queue(queue_name).intermediate_queue
    for job_id in job_ids:
        intermediate.remove(job_id)


# RQ's started and failed registries, for the reaper.


def started_entries(queue_name: str) -> dict[str, dict[str, float]]:
    """The entries of a queue's ``StartedJobRegistry``, by job id: each execution's entry and its score,
    the time after which it counts as abandoned (see ``jobs.worker.liveness``)."""
    registry = connection.get_queue(queue_name).started_job_registry
    entries: dict[str, dict[str, float]] = defaultdict(dict)
    for entry, score in registry.connection.zrange(registry.key, 0, -1, withscores=True):
        entry = entry.decode()
        entries[entry.partition(":")[0]][entry] = score
    return entries


def remove_started_entries(queue_name: str, entries: Sequence[str]) -> None:
    """Remove dead executions' entries (as ``started_entries`` gives them) from the started registry."""
    registry = connection.get_queue(queue_name).started_job_registry
    with registry.connection.pipeline() as pipe:
        pipe.zrem(registry.key, *entries)
        # The dead executions leave each job's list of executions too: RQ cannot end another run of
        # the job (the retry's, say) while that list names an execution whose key has expired, and
        # retries it instead. Checked against rq 2.12: ExecutionRegistry(job_id).key, members are
        # execution ids, entries are "<job id>:<execution id>".
        for entry in entries:
            job_id, _, execution_id = entry.partition(":")
            pipe.zrem(ExecutionRegistry(job_id, connection=registry.connection).key, execution_id)
        pipe.execute()


def file_as_failed(queue_name: str, job_id: str, reason: str) -> None:
    """Put a job whose run died in RQ's failed registry with the reason, as RQ does for a failed job.

    Nothing is filed when Redis no longer holds the job.
    """
    queue = connection.get_queue(queue_name)
    try:
        rq_job = RQJob.fetch(job_id, connection=queue.connection, serializer=JSONSerializer)
    except NoSuchJobError:  # gone with Redis's data: nothing to file
        return
    with queue.connection.pipeline() as pipe:
        rq_job.set_status(JobStatus.FAILED, pipeline=pipe)
        registry = queue.failed_job_registry
        registry.add(rq_job, ttl=failure_ttl(), exc_string=reason, pipeline=pipe)
        pipe.execute()


# Live figures, for the admin dashboard.


def counts(queue_name: str) -> dict[str, int]:
    """What RQ holds of a queue, in one pipeline: its length (``queued``) and the size of each registry."""
    queue = connection.get_queue(queue_name)
    with queue.connection.pipeline(transaction=False) as pipe:
        pipe.llen(queue.key)
        for registry_class in REGISTRIES.values():
            pipe.zcard(registry_class(queue=queue).key)
        values = pipe.execute()
    return dict(zip(["queued", *REGISTRIES], values, strict=True))


def workers(queue_names: Iterable[str]) -> list[dict[str, Any]]:
    """The workers RQ knows of, on every Redis that holds one of these queues (one listing per server)."""
    found: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for name in queue_names:
        redis = connection.get_connection(name)
        server = connection.server_of(name)
        if server in seen:
            continue
        seen.add(server)
        for worker in rq.Worker.all(connection=redis, serializer=JSONSerializer):
            found.append(
                {
                    "name": worker.name,
                    "queues": worker.queue_names(),
                    "state": worker.get_state(),
                    "current_job": worker.get_current_job_id(),
                    "last_heartbeat": worker.last_heartbeat,
                    "successful": worker.successful_job_count,
                    "failed": worker.failed_job_count,
                }
            )
    return found

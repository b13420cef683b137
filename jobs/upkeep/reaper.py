"""Finding jobs whose worker died, and retrying or failing them with the reason.

A record is abandoned when it says ``started`` and RQ's ``StartedJobRegistry`` of its queue holds no
live execution of it (see ``jobs.worker.liveness``), on two passes at least two heartbeats apart:

- an entry whose score has passed belongs to a worker that stopped refreshing it, or to a live one whose
  refreshes Redis could not take for a while (it hung past the entry's TTL, or came back from its
  append-only file with the scores it had): a live worker writes it again within a heartbeat or two
  once Redis answers, a dead one never does;
- no entry at all (Redis lost its data, or RQ's own cleanup took the entry): likewise, a live worker
  writes it back within one heartbeat.

The record is then moved by ``jobs.transitions.abandon``, conditional on it still being started with the
same attempt, to ``retrying`` (and pushed again) when attempts remain, else to ``failed``, with a
``FailedAttempt`` that gives the reason. A job that finished meanwhile is left alone. A job failed here
for good is announced with ``jobs.signals.job_failed`` (its ``exception`` a ``JobAbandoned`` with the
reason), as one whose function raised on its last attempt.

A record that another process holds locked (a worker stopped inside a transaction) is skipped, the
others handled: the dead entry stays, and a later pass finds it again (``jobs.upkeep.locks``).

A dead entry of a job whose record has ended (its worker recorded the end, and Redis failed at the end's
own pipeline) goes, with what RQ keeps of the job, as the end would have done: RQ's own cleanup would
otherwise file a job that finished as failed, or retry it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import router
from django.utils import timezone
from redis import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT

from .. import dispatch, intervals, keys, signals, transitions
from ..conf import jobs_settings
from ..exceptions import ABANDONED, JobAbandoned
from ..models import FINAL, Job, Status
from ..transport import batch, connection, queues
from ..transport.runner import Call
from . import locks, rescue

logger = logging.getLogger("jobs")

ERROR_CLASS = ABANDONED
#: What RQ's failed registry says of a job that failed while Redis could not take its end.
FAILED_WITHOUT_ITS_END = "The job failed (its record says why); Redis could not take its end at the time."


def reap(using: str | None = None, limit: int = 500) -> int:
    """One pass over started records; returns how many were found abandoned and handled."""
    alias = using or router.db_for_write(Job)
    now = timezone.now()
    started = list(
        Job.objects.using(alias)
        .started()
        .filter(started_at__lt=now - timedelta(seconds=intervals.entry_ttl()))
        .order_by("started_at")[:limit]
    )
    redis = connection.get_connection(jobs_settings.DEFAULT_QUEUE)
    lock = redis.lock(keys.reaper_lock(), timeout=lock_ttl(), blocking=False)
    if not lock.acquire():
        return 0
    try:
        # Each queue's started registry is read once a pass, for both kinds of dead run. The rescue
        # comes first: a record the reaper moves to retrying would otherwise look taken and unclaimed.
        names = {*settings.RQ_QUEUES, *(record.queue for record in started)}
        entries = _entries_of(names)
        # A queue whose Redis is down tells nothing of its jobs: they wait for it, the others do not.
        started = [record for record in started if record.queue in entries]
        dead = _dead_entries(entries, redis, time.time())
        # First the jobs that had ended before this pass: the records this pass ends are not theirs.
        _drop_ended(alias, dead)
        return (
            _rescue_stranded(alias, entries, redis)
            + _rescue_taken(alias, dead)
            + _reap(started, entries, dead, redis)
        )
    finally:
        with contextlib.suppress(RedisError):
            lock.release()


def lock_ttl() -> float:
    """Seconds the reaper's lock lasts: two of its intervals. A worker killed during a pass leaves the lock
    behind, and the other workers' reapers wait for it to lapse: a quarter of ``ABANDONED_AFTER``, so that
    a job of the killed worker is still found within ``ABANDONED_AFTER``. A pass takes milliseconds; two
    at once, should one take longer, are safe: a record moves once (each change is conditional), and a
    job pushed twice runs once."""
    return 2 * intervals.reap_interval()


Entries = dict[str, dict[str, dict[str, float]]]  # queue -> job id -> entry -> score


def _entries_of(queue_names: set[str]) -> Entries:
    """The started registry's entries of each queue whose Redis answers."""
    entries: Entries = {}
    down: set[tuple] = set()
    for queue_name in sorted(queue_names):
        server = connection.server_of(queue_name)
        if server in down:
            continue
        try:
            entries[queue_name] = queues.started_entries(queue_name)
        except RedisError as exc:
            down.add(server)
            logger.warning(
                "Reaper: the Redis of queue %s does not answer (%s); its jobs wait for it", queue_name, exc
            )
    return entries


class Sightings:
    """Jobs a pass finds in some state (dead-looking, missing, stranded), with when a pass first found each
    so, kept in a Redis hash from one pass to the next: a job is acted on only when found so again long
    enough after, since a live worker mends its own within moments."""

    def __init__(self, redis: Redis, key: str, now: float) -> None:
        self.redis, self.key, self.now = redis, key, now
        self._seen = {
            job_id.decode() if isinstance(job_id, bytes) else job_id: float(at)
            for job_id, at in redis.hgetall(key).items()
        }
        self._kept: dict[EncodableT, EncodableT] = {}

    def for_at_least(self, job_id: str, seconds: float) -> bool:
        """``job_id`` is found so on this pass: whether it was first found so ``seconds`` ago or more
        (it is then forgotten, being acted on); else it is noted."""
        first = self._seen.get(job_id, self.now)
        if self.now - first >= seconds:
            return True
        self._kept[job_id] = first
        return False

    def save(self) -> None:
        """Keep what this pass noted, and only that."""
        with self.redis.pipeline() as pipe:
            pipe.delete(self.key)
            if self._kept:
                pipe.hset(self.key, mapping=self._kept)
                pipe.expire(self.key, int(jobs_settings.ABANDONED_AFTER * 4) + 60)
            pipe.execute()


def _dead_entries(entries_by_queue: Entries, redis: Redis, now: float) -> Entries:
    """The entries whose score had passed on a pass at least two heartbeats ago and still has: the jobs
    of dead workers. The others whose score has passed are noted."""
    expired = Sightings(redis, keys.reaper_expired(), now)
    grace = 2 * intervals.beat_interval()
    dead: Entries = defaultdict(dict)
    for queue_name, entries in entries_by_queue.items():
        for job_id, found in entries.items():
            if max(found.values()) < now and expired.for_at_least(job_id, grace):
                dead[queue_name][job_id] = found
    expired.save()
    return dead


def _reap(started: list[Job], entries_by_queue: Entries, dead_by_queue: Entries, lock_redis: Redis) -> int:
    by_queue: dict[str, list[Job]] = defaultdict(list)
    for record in started:
        by_queue[record.queue].append(record)
    now = time.time()
    dead: list[tuple[Job, dict[str, float]]] = []
    missing: list[Job] = []
    for queue_name, records in by_queue.items():
        entries, dead_entries = entries_by_queue[queue_name], dead_by_queue.get(queue_name, {})
        for record in records:
            found = entries.get(str(record.pk))
            if not found:
                missing.append(record)
            elif str(record.pk) in dead_entries:
                dead.append((record, found))
    handled = 0
    for record, found in dead:
        silent_for = now - max(found.values()) + intervals.entry_ttl()
        reason = (
            f"The worker {record.worker_name or '(unknown)'} stopped sending heartbeats while running this "
            f"job (killed, or its host lost): no sign of life for {silent_for:.0f}s."
        )
        with locks.skip_if_locked("Reaper", f"job {record.pk}"):
            handled += abandon(record, reason, stale_entries=list(found))
    handled += _reap_missing(missing, lock_redis, now)
    return handled


def _rescue_taken(alias: str, dead_by_queue: Entries) -> int:
    """Jobs a worker took from their queue and died with before it claimed their record: RQ counts them
    started, with an entry that its worker stopped refreshing, while the record still waits. RQ's own
    cleanup finds them only every ten minutes; they are pushed again here, their dead entries dropped."""
    rescued = 0
    for queue_name, dead in dead_by_queue.items():
        if not dead:
            continue
        waiting = rescue.still_waiting(alias, dead)
        if not waiting:
            continue
        queues.remove_started_entries(queue_name, [e for record in waiting for e in dead[str(record.pk)]])
        rescued += rescue.push_again(waiting, "taken by a worker that died before starting them")
    return rescued


def _drop_ended(alias: str, dead_by_queue: Entries) -> None:
    """Dead entries of jobs whose record has ended: their worker recorded the end, and Redis failed at
    the end's own pipeline (or the worker died between the two). The entries go, with what RQ keeps of
    the job, as the end would have done; one that failed is filed in RQ's failed registry. Left there,
    RQ's own cleanup would file a job that finished as failed, or retry it."""
    for queue_name, dead in dead_by_queue.items():
        if not dead:
            continue
        ended = list(
            Job.objects.using(alias).filter(pk__in=list(dead), status__in=FINAL).only("pk", "queue", "status")
        )
        if not ended:
            continue
        queues.remove_started_entries(queue_name, [e for record in ended for e in dead[str(record.pk)]])
        for record in ended:
            if record.status == Status.FAILED:
                queues.file_as_failed(queue_name, str(record.pk), FAILED_WITHOUT_ITS_END)
        queues.delete([record for record in ended if record.status != Status.FAILED])
        logger.info(
            "Reaper: %d job(s) of queue %s had ended without Redis taking their end; RQ's record of them "
            "now agrees: %s",
            len(ended),
            queue_name,
            ", ".join(str(record.pk) for record in ended[:20]),
        )


def _rescue_stranded(alias: str, entries_by_queue: Entries, redis: Redis) -> int:
    """Jobs a worker's dequeue moved into RQ's intermediate list, or into the worker's own hand-off list
    (``jobs.transport.batch.Handoff``), and the worker died with before it took or started them: no
    entry in the started registry, and still there ``ABANDONED_AFTER`` seconds after a pass first found
    them so (a live worker takes a job out within moments). RQ's own cleanup finds those of its
    intermediate lists only after a minute, every ten minutes, and knows nothing of hand-off lists;
    they are pushed again here."""
    in_a_list = Sightings(redis, keys.reaper_stranded(), time.time())
    stranded: dict[str, list[str]] = defaultdict(list)
    for queue_name, entries in entries_by_queue.items():
        for job_id in queues.intermediate_job_ids(queue_name):
            if job_id in entries:
                continue  # started (RQ's own path keeps a running job there)
            if in_a_list.for_at_least(job_id, jobs_settings.ABANDONED_AFTER):
                stranded[queue_name].append(job_id)
    handed = _handed_over(entries_by_queue, in_a_list)
    in_a_list.save()
    rescued = 0
    for queue_name, job_ids in stranded.items():
        queues.remove_from_intermediate(queue_name, job_ids)
        why = "left in RQ's intermediate list by a worker that died before taking them"
        rescued += rescue.push_again(rescue.still_waiting(alias, job_ids), why)
    for (queue_name, worker_name), job_ids in handed.items():
        back = batch.take_back(connection.get_connection(queue_name), worker_name, job_ids)
        why = f"left in the hand-off list of the worker {worker_name}, which did not take them"
        rescued += rescue.push_again(rescue.still_waiting(alias, back), why)
    return rescued


def _handed_over(entries_by_queue: Entries, in_a_list: Sightings) -> dict[tuple[str, str], list[str]]:
    """The jobs found in workers' hand-off lists for ``ABANDONED_AFTER`` seconds, by queue and worker,
    in each Redis whose queues answered; the lists of workers that are gone and left none go."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    servers = {connection.server_of(queue_name): queue_name for queue_name in sorted(entries_by_queue)}
    for queue_name in servers.values():
        redis = connection.get_connection(queue_name)
        for worker_name, (worker_queue, job_ids, alive) in batch.handed_over(redis).items():
            if not job_ids and not alive:
                batch.unregister(redis, worker_name)
            entries = entries_by_queue.get(worker_queue, {})
            for job_id in job_ids:
                if job_id not in entries and in_a_list.for_at_least(job_id, jobs_settings.ABANDONED_AFTER):
                    found[(queue_name, worker_name)].append(job_id)
    return found


def _reap_missing(missing: list[Job], redis: Redis, now: float) -> int:
    """Two passes: note when a started job was first found unknown to Redis; reap it on a later pass."""
    unknown = Sightings(redis, keys.reaper_suspects(), now)
    grace = 2 * intervals.beat_interval()
    handled = 0
    for record in missing:
        if unknown.for_at_least(str(record.pk), grace):
            reason = (
                f"Redis holds no execution of this job (its data was lost, or the worker "
                f"{record.worker_name or '(unknown)'} died and RQ's cleanup removed it)."
            )
            with locks.skip_if_locked("Reaper", f"job {record.pk}"):
                handled += abandon(record, reason)
    unknown.save()
    return handled


def abandon(
    record: Job, reason: str, stale_entries: Sequence[str] = (), retrying: bool | None = None
) -> bool:
    """Record that ``record``'s current attempt died; retry it (push it again) or fail it.

    ``retrying`` is decided by the caller when RQ already decided (a killed work horse); otherwise from
    the attempts the record has left, and the record is pushed again here.
    """
    alias = record._state.db or router.db_for_write(Job)
    decided_by_rq = retrying is not None
    if retrying is None:
        retrying = record.attempts < record.max_attempts
    delay = _retry_delay(record) if retrying and not decided_by_rq else 0
    if not transitions.abandon(
        record, reason, error_class=ERROR_CLASS, retrying=retrying, delay=delay, push=dispatch.dispatch
    ):
        return False
    logger.warning(
        "Job %s abandoned during attempt %d (%s): %s",
        record.pk,
        record.attempts,
        "will retry" if retrying else "failed",
        reason,
    )
    if not decided_by_rq:
        _settle_in_redis(record.pk, alias, stale_entries, retrying, reason)
    if not retrying:
        signals.announce_failed(record, JobAbandoned(reason))
    return True


def _retry_delay(record: Job) -> int:
    intervals = queues.record_options(record).retry_intervals()
    index = record.attempts - 1
    return intervals[index] if 0 <= index < len(intervals) else 0


def _settle_in_redis(pk: Any, alias: str, stale_entries: Sequence[str], retrying: bool, reason: str) -> None:
    """Take the dead execution out of RQ's registry, then push the job again or file it as failed."""
    record = Job.objects.using(alias).get(pk=pk)
    try:
        if stale_entries:
            queues.remove_started_entries(record.queue, stale_entries)
        if retrying:
            dispatch.dispatch([record])
            return
        queues.file_as_failed(record.queue, str(pk), reason)
    except RedisError as exc:
        logger.warning("Job %s: could not update Redis after abandoning it: %s", pk, exc)


def horse_killed(call: Call | None, ret_val: int | None, retrying: bool, worker_name: str) -> None:
    """A forking worker saw its work horse die mid-job: record it now; RQ retries or fails the job
    (``retrying`` says which).

    Only an attempt this worker started is abandoned: the record may already be at a newer attempt
    that another worker runs (this worker's horse having been given up as dead before it died).

    The wait for the record's row lock is bounded (``jobs.upkeep.locks``): a record that another process
    holds locked (stopped inside a transaction) raises the lock's ``DatabaseError`` once the bound has
    passed, the worker goes on, and the record, still started, is the reaper's.
    """
    if call is None:
        return
    record = Job.objects.using(call.alias).started().filter(pk=call.job_id, worker_name=worker_name).first()
    if record is None:
        return
    how = f"by signal {os.WTERMSIG(ret_val)}" if ret_val and os.WIFSIGNALED(ret_val) else f"with {ret_val}"
    reason = f"The work horse running this job on {record.worker_name} ended {how} (killed, out of memory?)."
    with locks.bounded_lock_waits([call.alias]):
        abandon(record, reason, retrying=retrying)

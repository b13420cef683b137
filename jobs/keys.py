"""Every Redis key this app writes itself, built in one place under ``JOBS['REDIS_PREFIX']``.

RQ's own keys (``rq:...``) and the cache's keys (Django's ``KEY_PREFIX``) are not built here.
"""

from .conf import jobs_settings


def _key(*parts: str) -> str:
    return jobs_settings.REDIS_PREFIX + ":".join(parts)


def relay_lock() -> str:
    return _key("relay", "lock")


def reaper_lock() -> str:
    return _key("reaper", "lock")


def reaper_suspects() -> str:
    """A hash of started jobs found with no execution in Redis: job id -> when first seen so."""
    return _key("reaper", "suspects")


def reaper_expired() -> str:
    """A hash of jobs whose registry entry was found past its score: job id -> when first found so."""
    return _key("reaper", "expired")


def reaper_stranded() -> str:
    """A hash of jobs found in RQ's intermediate lists or in workers' hand-off lists, not started: job
    id -> when first seen so."""
    return _key("reaper", "stranded")


def handoff(worker_name: str) -> str:
    """The list a threaded worker's dequeue moves a job into (``jobs.transport.batch.Handoff``)."""
    return _key("handoff", worker_name)


def handoffs() -> str:
    """A hash of the workers' hand-off lists: worker name -> the queue its dequeue moves jobs from."""
    return _key("handoffs")


def reconcile_lock() -> str:
    return _key("reconcile", "lock")


def reconcile_popped() -> str:
    """A hash of waiting jobs that RQ says are queued and Redis holds nowhere: job id -> first seen so."""
    return _key("reconcile", "popped")


def due_lock() -> str:
    return _key("due", "lock")


def prune_lock() -> str:
    return _key("prune", "lock")


def paused_queue(queue: str) -> str:
    return _key("paused", queue)


def rate_limit(function: str, bucket: str) -> str:
    return _key("rate", function, bucket)


def stats(kind: str, minute: int) -> str:
    return _key("stats", kind, str(minute))


def scheduling_role() -> str:
    """Who fires the schedules' ticks: the holder's worker name, with a TTL renewed at each pass."""
    return _key("schedules", "role")

"""Due jobs: moving delayed jobs, retries after their backoff and rate-limited jobs to their queues on time.

Every worker's maintenance runs this every ``DUE_INTERVAL`` seconds, one worker at a time under a short
lock, for its own queues. A due job therefore starts within seconds of the latest of its due time, Redis
coming back and the death of any one worker, whether or not RQ's scheduler process runs anywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from redis.exceptions import RedisError

from .. import keys
from ..conf import jobs_settings
from ..transport import connection, scheduling

#: Seconds the lock outlives a worker that dies holding it; a pass takes milliseconds.
LOCK_TIMEOUT = 5


def enqueue_due(queue_names: Iterable[str]) -> bool:
    """Move the due jobs of these queues to the queues; False when another worker is doing it now."""
    redis = connection.get_connection(jobs_settings.DEFAULT_QUEUE)
    lock = redis.lock(keys.due_lock(), timeout=LOCK_TIMEOUT, blocking=False)
    if not lock.acquire():
        return False
    try:
        scheduling.enqueue_due(queue_names)
    finally:
        with contextlib.suppress(RedisError):
            lock.release()
    return True

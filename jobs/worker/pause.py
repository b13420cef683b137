"""What a worker knows of the paused queues (``jobs.pause``), read at most once a second."""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from ..pause import paused

logger = logging.getLogger("jobs")

#: Seconds a worker trusts what it last read of the paused queues.
CHECK_INTERVAL = 1.0


class PausedQueues:
    """What a worker knows of the paused queues, read again when older than ``CHECK_INTERVAL``."""

    def __init__(self, queue_names: list[str]) -> None:
        self.queue_names = queue_names
        self._paused: set[str] = set()
        self._read_at = float("-inf")

    def current(self) -> set[str]:
        """The paused queues; while Redis cannot say, what it said last (a blip must not stop a job)."""
        if time.monotonic() - self._read_at >= CHECK_INTERVAL:
            self._read_at = time.monotonic()
            try:
                self._paused = paused(self.queue_names)
            except RedisError as exc:
                logger.warning("Paused queues could not be read (%s); keeping %s", exc, sorted(self._paused))
        return self._paused

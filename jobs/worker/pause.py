"""What a worker knows of the paused queues (``jobs.pause``), read at most once a second."""

from __future__ import annotations

import time

from ..pause import paused

#: Seconds a worker trusts what it last read of the paused queues.
CHECK_INTERVAL = 1.0


class PausedQueues:
    """What a worker knows of the paused queues, read again when older than ``CHECK_INTERVAL``."""

    def __init__(self, queue_names: list[str]) -> None:
        self.queue_names = queue_names
        self._paused: set[str] = set()
        self._read_at = float("-inf")

    def current(self) -> set[str]:
        if time.monotonic() - self._read_at >= CHECK_INTERVAL:
            self._paused = paused(self.queue_names)
            self._read_at = time.monotonic()
        return self._paused

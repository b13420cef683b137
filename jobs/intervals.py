"""Durations derived from the ``JOBS`` setting that the worker, the upkeep and the push all agree on."""

from __future__ import annotations

import math

from .conf import jobs_settings

#: RQ needs a number of seconds: "never" is ten years.
NEVER = 10 * 365 * 24 * 3600


def entry_ttl() -> int:
    """Seconds a running job's registry entry stays live without a refresh."""
    return max(1, math.ceil(jobs_settings.ABANDONED_AFTER / 2))


def beat_interval() -> float:
    """Seconds between two refreshes: four per TTL, so a slow moment does not look like a death."""
    return entry_ttl() / 4


def reap_interval() -> float:
    """Seconds between two passes of the reaper, so that detection stays within ABANDONED_AFTER: an entry
    lapses within a TTL (half of it) of its worker's death, a pass finds it within an eighth, and a pass
    at least two heartbeats (a quarter) and at most an eighth later confirms it."""
    return max(0.5, jobs_settings.ABANDONED_AFTER / 8)


def failure_ttl() -> int:
    """Seconds RQ keeps a failed job, the same as the ledger keeps its record."""
    retain = jobs_settings.RETAIN_FAILED
    return int(retain) if retain else NEVER

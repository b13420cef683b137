"""The options of a job, as an immutable value checked when it is made."""

from __future__ import annotations

import dataclasses
import random
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from django.utils import timezone

from .conf import jobs_settings
from .exceptions import InvalidJobDefinition
from .intervals import NEVER

Backoff = Literal["exponential", "fixed"] | Sequence[int]
UniqueKey = str | Callable[..., str] | None

UNITS = {"s": 1, "m": 60, "h": 3600}
#: The range of ``priority``, Django's own (``django.tasks``): higher runs first, 0 is the default.
PRIORITY_MIN, PRIORITY_MAX = -100, 100
_FORMAT = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*$")


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """At most ``count`` runs per ``seconds``."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"10/s"``, ``"100/m"``, ``"1000/h"``, or with a number of units: ``"5/10s"``."""
        match = _FORMAT.match(text) if isinstance(text, str) else None
        count = seconds = 0
        if match is not None and len(match[1]) <= 18 and len(match[2]) <= 18:  # ints, not 4,300 digits
            count, seconds = int(match[1]), int(match[2] or 1) * UNITS[match[3]]
        if count < 1 or not 1 <= seconds <= NEVER:
            raise InvalidJobDefinition(
                f"rate_limit must look like '10/s', '100/m', '1000/h' or '5/10s' (a count >= 1, over a "
                f"window from 1 second to {NEVER} seconds, ten years), not {text!r}"
            )
        return cls(count=count, seconds=seconds)


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One job that a job depends on (``depends_on``), by id, and whether it may fail."""

    job_id: uuid.UUID
    allow_failure: bool = False


def allow_failure(*jobs: Any) -> tuple[Requirement, ...]:
    """Dependencies that may fail (or be cancelled): the dependent runs once they have ended, however
    they ended. ``depends_on=[fetch_a, allow_failure(fetch_b, fetch_c)]``."""
    return tuple(Requirement(req.job_id, allow_failure=True) for req in requirements_of(jobs))


def requirements_of(value: Any) -> tuple[Requirement, ...]:
    """What ``depends_on`` names, as requirements: a job record, a job id (a UUID or its text), a
    requirement from ``allow_failure()``, or any iterable of these. A job named twice is one dependency,
    allowed to fail only if every mention allows it."""
    found: dict[uuid.UUID, bool] = {}
    for item in _flatten(value):
        if isinstance(item, Requirement):
            job_id, may_fail = item.job_id, item.allow_failure
        else:
            job_id, may_fail = _job_id(item), False
        found[job_id] = found.get(job_id, True) and may_fail
    return tuple(Requirement(job_id, may_fail) for job_id, may_fail in found.items())


def _flatten(value: Any) -> Iterable[Any]:
    if value is None:
        return
    if isinstance(value, Requirement | str | uuid.UUID) or hasattr(value, "_meta"):
        yield value
        return
    if not isinstance(value, Iterable):
        raise InvalidJobDefinition(f"depends_on takes job records, job ids or lists of them, not {value!r}")
    for item in value:
        yield from _flatten(item)


def _job_id(item: Any) -> uuid.UUID:
    if getattr(getattr(item, "_meta", None), "label", None) == "jobs.Job":
        item = item.pk
    if isinstance(item, uuid.UUID):
        return item
    if isinstance(item, str):
        try:
            return uuid.UUID(item)
        except ValueError:
            pass
    raise InvalidJobDefinition(f"depends_on takes job records or job ids, not {item!r}")


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """How a job is run: where, how long, how often, and when.

    ``None`` means "the ``JOBS`` setting's default". Variants are made with ``replace()``.
    """

    queue: str | None = None
    timeout: int | None = None
    max_attempts: int | None = None
    backoff: Backoff = "exponential"
    backoff_base: int | None = None
    unique_key: UniqueKey = None
    delay: timedelta | None = None
    at: datetime | None = None
    at_front: bool = False
    priority: int = 0
    using: str | None = None
    rate_limit: str | None = None
    rate_key: Callable[..., str] | None = None
    #: The jobs this one runs after (``using(depends_on=...)``), normalised to requirements.
    depends_on: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:  # noqa: C901 - one rule per option
        _check_positive_int("timeout", self.timeout)
        _check_positive_int("max_attempts", self.max_attempts)
        _check_positive_int("backoff_base", self.backoff_base)
        if isinstance(self.backoff, str):
            if self.backoff not in ("exponential", "fixed"):
                raise InvalidJobDefinition(
                    f"backoff must be 'exponential', 'fixed' or a list of seconds, not {self.backoff!r}"
                )
        else:
            intervals = tuple(self.backoff)
            if not intervals or any(
                not isinstance(i, int) or isinstance(i, bool) or not 0 <= i <= NEVER for i in intervals
            ):
                raise InvalidJobDefinition(
                    f"a backoff list must hold one or more whole numbers of seconds from 0 to {NEVER}"
                )
            object.__setattr__(self, "backoff", intervals)
        if self.queue is not None and (not isinstance(self.queue, str) or not self.queue):
            raise InvalidJobDefinition(f"queue must be a queue name from RQ_QUEUES, not {self.queue!r}")
        if self.unique_key is not None and not (
            isinstance(self.unique_key, str) or callable(self.unique_key)
        ):
            raise InvalidJobDefinition("unique_key must be a string or a callable that returns one")
        if isinstance(self.unique_key, str):
            _check_unique_key(self.unique_key, "unique_key")
        if self.delay is not None and self.at is not None:
            raise InvalidJobDefinition("give either delay or at, not both")
        if self.delay is not None:
            delay = self.delay
            if isinstance(delay, int | float) and not isinstance(delay, bool) and 0 <= delay <= NEVER:
                delay = timedelta(seconds=delay)
                object.__setattr__(self, "delay", delay)
            if not isinstance(delay, timedelta) or not timedelta(0) <= delay <= timedelta(seconds=NEVER):
                raise InvalidJobDefinition(
                    f"delay must be a timedelta or a number of seconds from 0 to {NEVER} (ten years), "
                    f"not {self.delay!r}"
                )
        if self.at is not None and (not isinstance(self.at, datetime) or timezone.is_naive(self.at)):
            raise InvalidJobDefinition("at must be a timezone-aware datetime")
        if self.at is not None and self.at - timezone.now() > timedelta(seconds=NEVER):
            raise InvalidJobDefinition(f"at must be at most ten years ahead, as a delay is, not {self.at!r}")
        _check_rate_limit(self.rate_limit, self.rate_key)
        object.__setattr__(self, "depends_on", requirements_of(self.depends_on))
        _check_priority(self.priority)

    def replace(self, **changes: Any) -> JobOptions:
        unknown = set(changes) - {field.name for field in dataclasses.fields(self)}
        if unknown:
            raise InvalidJobDefinition(f"unknown job option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    # Values resolved against the JOBS setting at enqueue time.

    @property
    def queue_name(self) -> str:
        return self.queue or jobs_settings.DEFAULT_QUEUE

    @property
    def attempts(self) -> int:
        return self.max_attempts or jobs_settings.DEFAULT_MAX_ATTEMPTS

    @property
    def job_timeout(self) -> int | None:
        return self.timeout or jobs_settings.DEFAULT_TIMEOUT

    def run_at(self) -> datetime | None:
        if self.at is not None:
            return self.at
        if self.delay:
            return timezone.now() + self.delay
        return None

    def retry_intervals(self) -> list[int]:
        """Seconds before each retry; exponential steps are jittered within [base*2^n/2, base*2^n]."""
        retries = self.attempts - 1
        if retries <= 0:
            return []
        if not isinstance(self.backoff, str):
            listed = list(self.backoff)
            return (listed + [listed[-1]] * retries)[:retries]
        base = self.backoff_base or jobs_settings.BACKOFF_BASE
        if self.backoff == "fixed":
            return [base] * retries
        ceiling = jobs_settings.BACKOFF_MAX
        intervals = []
        for n in range(retries):
            step = min(ceiling, base * 2**n)
            intervals.append(int(random.uniform(step / 2, step)))  # noqa: S311 - jitter, not security
        return intervals

    def rate_bucket_for(self, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
        """The rate-limit window this call counts against: ``rate_key``'s value, or one for all calls."""
        if self.rate_key is None:
            return "*"
        bucket = self.rate_key(*args, **kwargs)
        if not isinstance(bucket, str | int) or isinstance(bucket, bool) or not (0 < len(str(bucket)) <= 200):
            raise InvalidJobDefinition(
                f"rate_key must return a string (or int) of 1 to 200 characters, not {bucket!r}"
            )
        return str(bucket)

    def unique_key_for(self, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
        if self.unique_key is None or isinstance(self.unique_key, str):
            return self.unique_key
        key = self.unique_key(*args, **kwargs)
        if not isinstance(key, str):
            raise InvalidJobDefinition(f"unique_key callable must return a string, not {key!r}")
        _check_unique_key(key, "the unique_key callable's key")
        return key


def _check_unique_key(key: str, what: str) -> None:
    """1 to 255 characters that every supported database stores (PostgreSQL refuses NUL, and any refuses
    a lone surrogate)."""
    if not 0 < len(key) <= 255:
        raise InvalidJobDefinition(f"{what} must be 1 to 255 characters long")
    if "\x00" in key:
        raise InvalidJobDefinition(f"{what} must not hold a NUL character")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidJobDefinition(f"{what} is not valid Unicode text: {exc.reason}") from None


def _check_rate_limit(rate_limit: str | None, rate_key: Any) -> None:
    if rate_limit is not None:
        RateLimit.parse(rate_limit)
    if rate_key is not None:
        if rate_limit is None:
            raise InvalidJobDefinition("rate_key needs a rate_limit")
        if not callable(rate_key):
            raise InvalidJobDefinition("rate_key must be a callable of the job's arguments")


def _check_priority(priority: Any) -> None:
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not PRIORITY_MIN <= priority <= PRIORITY_MAX
    ):
        raise InvalidJobDefinition(
            f"priority must be a whole number from {PRIORITY_MIN} to {PRIORITY_MAX}, not {priority!r}"
        )


#: The largest whole number every supported database stores in the record's integer columns.
MAX_INT = 2**31 - 1


def _check_positive_int(name: str, value: Any) -> None:
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_INT
    ):
        raise InvalidJobDefinition(f"{name} must be a whole number from 1 to {MAX_INT}, not {value!r}")

"""The exceptions `jobs` raises."""

from django.core.exceptions import ImproperlyConfigured


class JobsError(Exception):
    """Base class of every error raised by `jobs`."""


class JobsConfigurationError(JobsError, ImproperlyConfigured):
    """The ``JOBS``, ``RQ_QUEUES`` or ``CACHES`` settings cannot work as given."""


class InvalidJobDefinition(JobsError, ValueError):
    """A job's decorator or ``using()`` options are invalid."""


class InvalidArguments(JobsError, ValueError):
    """The arguments given to ``enqueue()`` do not fit the job's signature or the bounds on arguments.

    ``field`` is ``"args"`` or ``"kwargs"``: the part of the call the refused argument is in.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ArgumentNotSerializable(InvalidArguments, TypeError):
    """An argument given to ``enqueue()`` cannot be stored as JSON on every database."""


class JobNotRegistered(JobsError, LookupError):
    """A job names a function that is not registered with ``@job``."""


class JobAbandoned(JobsError):
    """The worker running a job died or was stopped before the job ended (recorded, never raised)."""


class DependencyFailed(JobsError):
    """A job's dependency failed for good or was cancelled, so the job will not run (recorded on the
    waiting job, never raised)."""


def qualified_name(cls: type) -> str:
    """The dotted path of an exception class, as a job's record names the error it failed with."""
    return f"{cls.__module__}.{cls.__qualname__}"


#: The error class recorded for an attempt whose worker died or was stopped mid-job.
ABANDONED = qualified_name(JobAbandoned)
#: The error class recorded on a job failed or cancelled because of one of its dependencies.
DEPENDENCY_FAILED = qualified_name(DependencyFailed)


class InvalidCacheDefinition(JobsError, ValueError):
    """A ``@cached`` or ``@cache_view`` decorator is given options that cannot work."""


class UncacheableArgument(JobsError, TypeError):
    """An argument of a cached function cannot be part of a cache key."""


class PermanentFailure(JobsError):
    """Raise it in a job to fail the job for good now, whatever attempts it has left."""


class ArgumentUnavailable(PermanentFailure):
    """A job's argument cannot be rebuilt in the worker: the row or the model it names no longer exists."""


class RetryLater(JobsError):
    """Raise it in a job to end this attempt and run the next one in ``delay`` seconds.

    It counts as an attempt: when none is left, the job fails with this error as its reason.
    """

    def __init__(self, delay: float, message: str = "") -> None:
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 366 * 24 * 3600:
            raise ValueError(f"RetryLater needs a delay of 0 seconds to a year, not {delay!r}")
        self.delay = delay
        super().__init__(message or f"retry asked for in {delay:g}s")


class InvalidSchedule(JobsError, ValueError):
    """A schedule's cron expression, interval, time zone, function or arguments cannot work.

    ``field`` names the part of the schedule at fault (``"cron"``, ``"every"``, ``"timezone"``,
    ``"function"``, ``"args"``, ``"kwargs"``, ``"name"``) when one is.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

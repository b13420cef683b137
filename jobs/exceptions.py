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


def qualified_name(cls: type) -> str:
    """The dotted path of an exception class, as a job's record names the error it failed with."""
    return f"{cls.__module__}.{cls.__qualname__}"


#: The error class recorded for an attempt whose worker died or was stopped mid-job.
ABANDONED = qualified_name(JobAbandoned)


class InvalidCacheDefinition(JobsError, ValueError):
    """A ``@cached`` or ``@cache_view`` decorator is given options that cannot work."""


class UncacheableArgument(JobsError, TypeError):
    """An argument of a cached function cannot be part of a cache key."""

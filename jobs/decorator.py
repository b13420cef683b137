"""The ``@job`` decorator: a function registered as a job, with its options and its ``enqueue()``."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from . import declarations, registry
from . import enqueue as _enqueue
from .exceptions import InvalidArguments, InvalidJobDefinition, JobsError
from .options import JobOptions

if TYPE_CHECKING:
    from .models import Job

#: The longest job name: the length of the record's ``function`` column.
MAX_NAME_LENGTH = 255

P = ParamSpec("P")
#: Options that the worker reads from the registered job, whatever the call gave: refused by ``using()``.
PER_FUNCTION = frozenset({"rate_limit", "rate_key"})
R = TypeVar("R")


class JobFunction(Generic[P, R]):
    """A function registered as a job. Calling it runs it here; ``enqueue()`` runs it on a worker."""

    def __init__(self, func: Callable[P, R], name: str, options: JobOptions) -> None:
        self.func = func
        self.name = name
        self.options = options
        functools.update_wrapper(self, func)

    def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<JobFunction {self.name}>"

    def run(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Run the function in the worker with the job's decoded arguments; what it returns is the
        job's result."""
        return self.func(*args, **kwargs)

    def using(self, **options: Any) -> JobFunction[P, R]:
        """The same job with some options changed, for one enqueue: ``send.using(delay=60).enqueue(...)``."""
        per_function = sorted(PER_FUNCTION & set(options))
        if per_function:
            raise InvalidJobDefinition(
                f"{' and '.join(per_function)} cannot be given per call: a rate limit holds for every call "
                f"of {self.name}, in windows shared by all workers; give it to the @job decorator"
            )
        variant = copy.copy(self)
        variant.options = self.options.replace(**options)
        return variant

    def enqueue(self, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Record the job and push it to its queue when the current transaction commits."""
        self.check_arguments(args, kwargs)
        return _enqueue.enqueue(self, args, kwargs)

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Refuse, naming the argument, a call the function cannot take or its ``rate_key`` cannot key.

        The worker would fail such a call on every attempt; refused here, the mistake is reported where
        it is made and nothing is recorded.
        """
        try:
            _signature(self.func).bind(*args, **kwargs)
        except TypeError as exc:
            field = "args" if not kwargs or _too_many_positional(self.func, args) else "kwargs"
            raise InvalidArguments(f"the arguments do not fit {self.name}: {exc}", field) from exc
        try:
            self.options.rate_bucket_for(args, dict(kwargs))
        except JobsError:
            raise
        except Exception as exc:
            raise InvalidArguments(
                f"the rate_key of {self.name} cannot key these arguments: {exc!r}"
            ) from exc

    def enqueue_many(
        self, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[Job]:
        """Record many jobs in one statement and push them in one pipeline.

        Each call is a sequence of positional arguments, or an ``(args, kwargs)`` pair.
        """
        split = [_split_call(call) for call in calls]
        for args, kwargs in split:
            self.check_arguments(args, kwargs)
        return _enqueue.enqueue_many(self, split)


@functools.cache
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(func)


def _too_many_positional(func: Callable[..., Any], args: Sequence[Any]) -> bool:
    try:
        _signature(func).bind_partial(*args)
    except TypeError:
        return True
    return False


def _split_call(call: Any) -> tuple[Sequence[Any], Mapping[str, Any]]:
    if (
        isinstance(call, tuple)
        and len(call) == 2
        and isinstance(call[0], list | tuple)
        and isinstance(call[1], Mapping)
    ):
        return call[0], call[1]
    if isinstance(call, list | tuple):
        return call, {}
    raise InvalidJobDefinition(
        "each call given to enqueue_many() must be a list of arguments or an (args, kwargs) pair, "
        f"not {call!r}"
    )


@overload
def job(func: Callable[P, R], /) -> JobFunction[P, R]: ...
@overload
def job(
    *, name: str | None = None, schedule: str | timedelta | None = None, **options: Any
) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...


def job(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    schedule: str | timedelta | None = None,
    **options: Any,
) -> Any:
    """Register a function as a job: ``@job`` or ``@job(queue="mail", max_attempts=5)``.

    ``schedule`` also runs it, without arguments, at each tick of a cron expression (a string, read in
    settings.TIME_ZONE) or every interval (a timedelta): ``@job(schedule="0 9 * * 1-5")``. For
    arguments, a zone or several schedules, use ``jobs.schedule()``.
    """
    if "depends_on" in options:
        raise InvalidJobDefinition("depends_on names other jobs' records: give it per call, with using()")
    job_options = JobOptions().replace(**options)

    def register(f: Callable[P, R]) -> JobFunction[P, R]:
        if not callable(f) or isinstance(f, JobFunction):
            raise InvalidJobDefinition(f"@job decorates a plain function, not {f!r}")
        if "<locals>" in f.__qualname__ or f.__name__ == "<lambda>":
            raise InvalidJobDefinition(
                f"{f.__qualname__} is not importable by a worker: define job functions at module level"
            )
        job_name = name or f"{f.__module__}.{f.__qualname__}"
        if not isinstance(job_name, str) or not 0 < len(job_name) <= MAX_NAME_LENGTH:
            raise InvalidJobDefinition(
                f"a job's name must be a string of 1 to {MAX_NAME_LENGTH} characters, not {job_name!r}"
            )
        job_function = registry.register(JobFunction(f, job_name, job_options))
        if isinstance(schedule, str):
            declarations.schedule(job_function, cron=schedule)
        elif schedule is not None:
            declarations.schedule(job_function, every=schedule)
        return job_function

    return register(func) if func is not None else register

"""The RQ worker class that ``jobs.worker.ThreadedWorker`` is built on: the lean worker, made safe to run
several jobs at once in threads of one process.

RQ's worker object holds what it knows of *the* running job in attributes (the execution, in rq 2.12;
whether the job takes the lean path and its start pipeline, in ``LeanExecutionMixin``). Here those
attributes are per thread, so that each thread that runs a job through RQ's own ``execute_job`` sees
its own; everything else RQ does for a job (its pipelines, the registries, the worker's counters) goes
through Redis commands that are atomic on their own. A job's timeout raises RQ's ``JobTimeoutException``
in the job's thread, as RQ's ``TimerDeathPenalty`` does (a ``SIGALRM`` reaches the main thread only),
but from one watchdog thread for all the jobs rather than a timer thread started for each.

The worker's state in Redis says busy while any job runs; a SIGTERM stops the worker at once only while
its main thread waits for a job or a free thread, and otherwise lets the running jobs end first.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import heapq
import itertools
import threading
import time
from typing import Any

import rq
from redis.exceptions import RedisError
from rq.timeouts import BaseDeathPenalty, JobTimeoutException
from rq.worker import WorkerStatus

from . import compat
from .worker import LeanExecutionMixin, StopRequested, WorkerMixin, _WorkerBase

__all__ = ["JobTimeoutException", "RQThreadedWorker", "ThreadedExecutionMixin", "WatchdogDeathPenalty"]


@functools.cache
def _timeout_exception(exception: type[BaseException], timeout: float) -> type[BaseException]:
    """``exception`` with RQ's message for ``timeout``: an exception raised in another thread is given
    as a class, and created there without arguments. It keeps its name, so the record names RQ's."""

    def __init__(self: BaseException, *args: Any) -> None:
        exception.__init__(self, f"Task exceeded maximum timeout value ({timeout} seconds)")

    return type(
        exception.__name__,
        (exception,),
        {"__init__": __init__, "__module__": exception.__module__, "__qualname__": exception.__qualname__},
    )


class _Watchdog:
    """One daemon thread that raises each armed timeout's exception in its thread when it is due."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, int, type[BaseException]]] = []
        self._armed: set[int] = set()
        self._changed = threading.Condition()
        self._numbers = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, exception: type[BaseException]) -> int:
        number = next(self._numbers)
        due = time.monotonic() + seconds
        with self._changed:
            # The thread sleeps until the earliest deadline: woken only when this one comes first.
            earliest = not self._due or due < self._due[0][0]
            heapq.heappush(self._due, (due, number, threading.get_ident(), exception))
            self._armed.add(number)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="jobs-timeouts", daemon=True)
                self._thread.start()
            if earliest:
                self._changed.notify()
        return number

    def disarm(self, number: int) -> None:
        with self._changed:
            self._armed.discard(number)
            if len(self._due) > 2 * len(self._armed) + 64:
                # Drop the disarmed deadlines, which otherwise stay until they are due.
                self._due = [due for due in self._due if due[1] in self._armed]
                heapq.heapify(self._due)

    def _loop(self) -> None:
        while True:
            with self._changed:
                while self._due and self._due[0][1] not in self._armed:
                    heapq.heappop(self._due)  # disarmed
                if not self._due:
                    self._changed.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                _, number, thread_id, exception = heapq.heappop(self._due)
                self._armed.discard(number)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread_id), ctypes.py_object(exception)
                )


_watchdog = _Watchdog()


class WatchdogDeathPenalty(BaseDeathPenalty):
    """RQ's death penalty for a job that runs in a thread: its exception raised in that thread once the
    timeout has passed (when the thread next runs Python code: a call blocked in C gets it on return)."""

    def setup_death_penalty(self) -> None:
        self._number = None
        if self._timeout is not None and self._timeout > 0:
            self._number = _watchdog.arm(self._timeout, _timeout_exception(self._exception, self._timeout))

    def cancel_death_penalty(self) -> None:
        if self._number is not None:
            _watchdog.disarm(self._number)


class _PerThread:
    """An attribute of a worker object with a value per thread, ``default`` until a thread sets it."""

    def __init__(self, default: Any = None) -> None:
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, worker: Any, owner: type | None = None) -> Any:
        if worker is None:
            return self
        return getattr(_locals(worker), self.name, self.default)

    def __set__(self, worker: Any, value: Any) -> None:
        setattr(_locals(worker), self.name, value)


def _locals(worker: Any) -> threading.local:
    try:
        return worker.__dict__["_per_thread"]
    except KeyError:
        return worker.__dict__.setdefault("_per_thread", threading.local())


class ThreadedExecutionMixin(_WorkerBase):
    """What lets several threads run RQ's ``execute_job`` on one worker object (see the module)."""

    death_penalty_class = WatchdogDeathPenalty

    # What RQ and the lean worker hold of the running job, per thread (checked against rq 2.12 and
    # 3.0: rq 2.12 reads ``self.execution`` when it ends a job; rq 3 is passed the execution, and keeps
    # the worker's executions in ``self.executions`` besides).
    _lean_job = _PerThread(False)
    _start_pipeline = _PerThread(None)
    _narrowed = _PerThread(False)
    current_job_working_time = _PerThread(0)
    _execution = _PerThread(None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._running_jobs = 0
        self._running_changed = threading.Condition()
        self._wake_below = 0  # what the main thread waits for (fewer jobs than this), 0 when it does not
        self._waiting_for_work = False
        super().__init__(*args, **kwargs)

    @property
    def execution(self) -> Any:
        return self._execution

    @execution.setter
    def execution(self, execution: Any) -> None:
        previous = self._execution
        self._execution = execution
        if compat.RQ_3:
            if execution is not None:
                self.executions[execution.id] = execution
            elif previous is not None:
                self.executions.pop(previous.id, None)

    @property
    def running_jobs(self) -> int:
        """How many jobs this worker's threads are running now."""
        return self._running_jobs

    def job_began(self) -> None:
        with self._running_changed:
            self._running_jobs += 1

    def job_ended(self) -> None:
        with self._running_changed:
            self._running_jobs -= 1
            # Only the main thread waits, and only for its threshold: no wake-up for every job.
            if self._running_jobs < self._wake_below:
                self._running_changed.notify_all()

    def wait_for_fewer_jobs(self, than: int, timeout: float) -> bool:
        """In the main thread: wait at most ``timeout`` seconds for fewer than ``than`` jobs to be
        running; returns whether they are."""
        with self._running_changed:
            self._wake_below = than
            try:
                return self._running_changed.wait_for(lambda: self._running_jobs < than, timeout)
            finally:
                self._wake_below = 0

    def waiting_for_work(self, waiting: bool) -> None:
        """Whether the main thread waits for a job or a free thread: a SIGTERM then stops it at once."""
        self._waiting_for_work = waiting

    # Overrides RQ's; checked against rq 2.12 and 3.0 (the warm shutdown that SIGTERM and SIGINT start).
    def _shutdown(self) -> None:
        if self._running_jobs:
            # As RQ tells of a busy worker: the worker's hash says since when it is stopping.
            with contextlib.suppress(RedisError):
                self.set_shutdown_requested_date()
        if self._waiting_for_work:
            raise StopRequested()
        # Jobs are running, or the main thread is handing one to a thread: stop taking jobs, let them end.
        self._stop_requested = True
        self.log.info("Worker %s: stopping once its %d running job(s) end", self.name, self._running_jobs)

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def set_state(self, state: str, pipeline: Any = None) -> None:
        if state == WorkerStatus.IDLE and self._running_jobs:
            state = WorkerStatus.BUSY
        super().set_state(state, pipeline)

    # Overrides the lean worker's.
    def _write_worker(self, pipeline: Any, state: str, ttl: int, current_job: str | None) -> None:
        # The job ending here is still counted: the worker stays busy if another one runs.
        if state == WorkerStatus.IDLE and self._running_jobs > 1:
            state = WorkerStatus.BUSY
        super()._write_worker(pipeline, state, ttl, current_job)  # type: ignore[misc]


class RQThreadedWorker(WorkerMixin, ThreadedExecutionMixin, LeanExecutionMixin, rq.SimpleWorker):
    """RQ's non-forking worker, trimmed as the lean worker is, whose jobs may run in several threads."""

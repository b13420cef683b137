"""The threaded worker: one ``manage.py rqworker`` process that runs up to N jobs at once, in threads.

``manage.py rqworker --worker-class jobs.worker.ThreadedWorker`` with ``JOBS["WORKER_CONCURRENCY"]``
(or a subclass's ``concurrency``). The main thread waits for room, takes jobs from Redis and hands them
to the job threads; it also sends the worker's heartbeats and runs the maintenance.

The fast path, for every `jobs` job that RQ keeps nothing of once it succeeds (no result TTL, no
callbacks; ``transport.batch``):

- Taking: the main thread takes the job it dequeued and, when the queue holds more, as many more as
  there is room for, in one round trip: for a worker of one queue, the round trip of the dequeue itself,
  which moves the job into the worker's hand-off list (``batch.Handoff``); for a worker of several, one
  after RQ's dequeue, which gives the job unread (the take reads it). Room is the free threads
  plus the jobs the threads will get through in about ``TAKE_AHEAD_SECONDS`` (by the run time measured
  so far), so that a deep queue of short jobs is taken in batches.
- Claiming: the records of the jobs taken are claimed in one statement once a thread is free for them,
  and a few before that, so that a thread that ends a job finds its next one claimed and waiting rather
  than waiting for the main thread: as many as the threads will get to in about ``CLAIM_AHEAD_SECONDS``
  by the run time measured so far, at most a quarter of the threads (none for fewer than four). Those
  count as started. The other jobs taken ahead wait unclaimed, so that a long job is not marked started
  long before it runs. A queue's pause and a function's rate limit are checked just before the claim,
  and a worker asked to stop claims no more and puts back the jobs it took ahead. The only job of an
  idle worker is started by its thread while the main thread waits for it to do so.
- Recording: a recorder thread records the jobs that succeeded in one statement and one pipeline:
  those that ended while it recorded the batch before them and, while other jobs run, those that end
  within ``RECORD_WAIT_SECONDS`` of the first; each with the moment it ended. While the database
  fails, it keeps them and tries again for ``RECORD_PATIENCE_SECONDS``. A job that fails is recorded
  at once, and RQ retries or fails it as usual.

Every job taken (waiting, claimed, running, or waiting to be recorded) has its entry in its queue's
started registry, kept live by the worker's heartbeat thread (``jobs.worker.liveness``), so that the
reaper finds every one of them if the worker dies: a taken job whose record still waits is pushed
again, a started one (claimed ahead included) is retried or failed.

Any other job (an RQ job that `jobs` did not push, or one with a result TTL) runs in a job thread
through RQ's own path, as the lean worker runs it.

Each job thread has its own database connections (Django's are per thread), closed or kept around
each job as Django does around a request (``close_old_connections``, ``CONN_MAX_AGE``), and closed
when the thread ends.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import queue as queue_module
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

from .. import signals, transitions
from ..conf import jobs_settings
from ..dispatch import dispatch
from ..intervals import entry_ttl
from ..models import Job
from ..transport import batch
from ..transport.batch import Taken
from ..transport.runner import Call
from ..transport.threaded import JobTimeoutException, RQThreadedWorker
from ..transport.worker import Queue, RQJob, StopRequested
from ..upkeep import locks, rescue
from . import execution, ratelimit, reconnect, refusal
from .base import REDIS_DOWN, LedgerWorkerMixin
from .logs import HeldLog

logger = logging.getLogger("jobs")
T = TypeVar("T")

#: Seconds between two heartbeats (and maintenance turns) of a main thread that waits for room.
WAIT_TICK = 1.0
#: Jobs are taken ahead of the free threads for about this many seconds of the threads' work.
TAKE_AHEAD_SECONDS = 0.05
#: And at most this many.
MAX_AHEAD = 64
#: Seconds under which a job counts as short: claimed once half the threads are free, not one by one.
SHORT_JOB = 0.005
#: Finished jobs recorded in one statement at most.
MAX_RECORDED = 500
#: Jobs are claimed ahead of the free threads for about this many seconds of the threads' work.
CLAIM_AHEAD_SECONDS = 0.01
#: While other jobs run, a job that succeeded waits this long for others to end, to be recorded with them.
RECORD_WAIT_SECONDS = 0.01
#: While the database fails, the record of jobs that succeeded is tried again for this many seconds.
RECORD_PATIENCE_SECONDS = 30
#: An idle worker's main thread waits at most this long for a job thread to take the job it handed over.
HAND_OVER_WAIT = 0.005


def _bounded(alias: str, statement: Callable[[], T]) -> Callable[[], T]:
    """``statement`` on a connection that waits a bounded time for a row lock (``locks.keep_bounded``):
    the main thread and the recorder run no job's code, and a record locked by a stopped process would
    otherwise hold up every job after it."""

    def call() -> T:
        locks.keep_bounded(alias)
        return statement()

    return call


class JobThreads:
    """N threads that each run the calls handed to them, one at a time, and outlive what they run."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._calls: queue_module.SimpleQueue[tuple[Callable[[], object], threading.Event | None] | None] = (
            queue_module.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []

    def submit(self, call: Callable[[], object], until_taken: bool = False) -> None:
        """Hand ``call`` to the next free thread. With ``until_taken``, return once a thread has it (for
        ``HAND_OVER_WAIT`` seconds at most): the caller then holds no lock that the thread must wait for
        before it starts (Python's: a thread woken while the caller runs Python waits for the caller's
        next blocking call)."""
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._loop, name=f"{self.name}-{n}", daemon=True)
                for n in range(1, self.size + 1)
            ]
            for thread in self._threads:
                thread.start()
        taken = threading.Event() if until_taken else None
        self._calls.put((call, taken))
        if taken is not None:
            taken.wait(HAND_OVER_WAIT)

    def stop(self) -> None:
        """Let each thread end once the calls handed to it are done, and wait for them."""
        for _ in self._threads:
            self._calls.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _loop(self) -> None:
        try:
            while (item := self._calls.get()) is not None:
                call, taken = item
                if taken is not None:
                    taken.set()
                try:
                    call()
                except BaseException:  # a job's sys.exit(), KeyboardInterrupt or CancelledError too
                    logger.exception("%s: a job's run ended in an error; taking the next job", self.name)
        finally:
            connections.close_all()


#: A job's end to record: its record, the attempt that ran, its result and when it ended.
End = tuple[Job, int, Any, datetime | None]


@dataclass
class Run:
    """A job on the fast path: what was taken, its record and the attempt it runs, and its outcome."""

    taken: Taken
    call: Call
    record: Job
    attempt: int | None = None  # None: the record no longer waited, the job is skipped
    result: Any = None
    seconds: float = 0.0
    ended_at: datetime | None = None


@dataclass
class Held:
    """How many of the jobs the main thread counted as held are not handed over yet, and the jobs it
    took that are not settled yet (kept ahead, handed over, or out of the registry)."""

    count: int = 1
    unsettled: dict[str, Taken] = field(default_factory=dict)

    def drop_entries(self, worker: ThreadedWorker) -> None:
        """After an error: the unsettled jobs' entries are no longer kept live, so the reaper finds them."""
        for taken in self.unsettled.values():
            worker.heartbeat_thread.discard(taken.running(worker.key))


class Recorder:
    """The thread that records the jobs that succeeded on the fast path, in batches (see the module)."""

    def __init__(self, worker: ThreadedWorker) -> None:
        self.worker = worker
        self._runs: queue_module.SimpleQueue[Run | None] = queue_module.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Condition()
        #: Runs handed over and not recorded yet: a burst does not end before their end is written (and
        #: the jobs waiting for them are pushed).
        self.pending = 0

    def put(self, run: Run) -> None:
        """Hand over a run to record (from any thread)."""
        with self._starting:
            self.pending += 1
            if self._thread is None:
                name = f"{self.worker.name}-recorder"
                self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
                self._thread.start()
        self._runs.put(run)

    def _recorded(self, count: int) -> None:
        with self._starting:
            self.pending -= count
            if not self.pending:
                self._starting.notify_all()

    def wait_recorded(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for every run handed over to be recorded."""
        with self._starting:
            return self._starting.wait_for(lambda: not self.pending, timeout)

    def stop(self) -> None:
        """Record what is left, and end the thread."""
        if self._thread is not None:
            self._runs.put(None)
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        try:
            while True:
                first = self._runs.get()
                if first is None:
                    return
                runs = [first]
                if self.worker.running_jobs:
                    time.sleep(RECORD_WAIT_SECONDS)
                while len(runs) < MAX_RECORDED:
                    try:
                        run = self._runs.get_nowait()
                    except queue_module.Empty:
                        break
                    if run is None:
                        self._record(runs)
                        self._recorded(len(runs))
                        return
                    runs.append(run)
                self._record(runs)
                self._recorded(len(runs))
        finally:
            connections.close_all()

    def _record(self, runs: list[Run]) -> None:
        close_old_connections()
        try:
            self._finish(runs)
        except DatabaseError as exc:
            # Their entries are no longer kept live: the reaper retries those whose record says started.
            logger.warning(
                "%d finished job(s) could not be recorded (%s); left to the reaper", len(runs), exc
            )
        except REDIS_DOWN as exc:
            # Recorded; their entries lapse, and the reaper ends what RQ keeps of them.
            logger.warning(
                "%d finished job(s) recorded; Redis could not take their end (%s), left to the reaper",
                len(runs),
                exc,
            )
        except BaseException:  # a job_finished receiver's sys.exit() too: the recorder goes on
            logger.exception("%d finished job(s) could not be recorded; left to the reaper", len(runs))
        finally:
            for run in runs:  # those that could not be recorded, too: the reaper sees to them
                self.worker.heartbeat_thread.discard(run.taken.running(self.worker.key))
            close_old_connections()

    def _write(self, alias: str, ends: list[End]) -> tuple[set[str], set[str]]:
        """Finish the records of one database (``_write_patiently``). A record that another process holds
        locked (stopped inside a transaction) fails the batch's one statement after ``ROW_LOCK_TIMEOUT``
        (``locks.keep_bounded``): the batch's records are then finished one by one, so that the others do
        not wait with it. Returns the ids of the records finished, and of those left to the reaper."""
        try:
            return self._write_patiently(alias, ends, split_when_locked=len(ends) > 1), set()
        except DatabaseError as exc:
            if len(ends) == 1 or not locks.is_lock_timeout(exc):
                raise
        won: set[str] = set()
        left: set[str] = set()
        for end in ends:
            try:
                won |= self._write_patiently(alias, [end])
            except DatabaseError as exc:
                left.add(str(end[0].pk))
                logger.warning(
                    "Job %s finished; its end could not be recorded (%s), left to the reaper", end[0].pk, exc
                )
        return won, left

    def _write_patiently(self, alias: str, ends: list[End], split_when_locked: bool = False) -> set[str]:
        """Finish the records (``transitions.finish_many``); while the database fails, again for
        ``RECORD_PATIENCE_SECONDS``, on a new connection each time: the jobs ran, and their entries stay
        live meanwhile (with ``split_when_locked``, a lock not obtained is raised at once). Returns the
        ids of the records finished."""
        # Sent again (a new connection, or the next try), a batch first asks which of its finishes the
        # send before wrote: that send's answer may have been lost with its connection.
        again = _bounded(alias, functools.partial(transitions.finish_many_again, ends, push=dispatch))
        finish = _bounded(alias, functools.partial(transitions.finish_many, ends, push=dispatch))
        deadline, wait, failed = time.monotonic() + RECORD_PATIENCE_SECONDS, 0.25, False
        while True:
            try:
                won = reconnect.once_more_if_the_connection_died(alias, again if failed else finish, again)
            except DatabaseError as exc:
                if time.monotonic() + wait > deadline or (split_when_locked and locks.is_lock_timeout(exc)):
                    raise
                if not failed:
                    logger.warning(
                        "%d finished job(s) could not be recorded yet (%s); trying again for %d s",
                        len(ends),
                        exc,
                        RECORD_PATIENCE_SECONDS,
                    )
                failed = True
                time.sleep(wait)
                wait = min(2 * wait, 5.0)
                connections[alias].close()
                continue
            if failed:
                logger.info("%d finished job(s) recorded once the database answered", len(ends))
            return won

    def _finish(self, runs: list[Run]) -> None:
        by_alias: dict[str, list[Run]] = defaultdict(list)
        for run in runs:
            if run.attempt is not None:
                by_alias[run.call.alias].append(run)
        finished: list[Run] = []
        left: set[str] = set()
        for alias, alias_runs in by_alias.items():
            won, alias_left = self._write(
                alias, [(run.record, run.attempt or 0, run.result, run.ended_at) for run in alias_runs]
            )
            left |= alias_left
            for run in alias_runs:
                if str(run.record.pk) in won:
                    finished.append(run)
                elif str(run.record.pk) not in alias_left:
                    execution.log_stale_success(run.record, run.attempt or 0)
        if left:  # as when the whole batch could not be recorded: RQ's job is left to the reaper too
            runs = [run for run in runs if str(run.record.pk) not in left]
        for run in runs:  # before the entries go: a heartbeat must not write one back
            self.worker.heartbeat_thread.discard(run.taken.running(self.worker.key))
        try:
            batch.end_successes(
                self.worker.connection,
                self.worker.key,
                [run.taken for run in runs],
                sum(r.seconds for r in runs),
            )
        finally:  # the records are finished, whether Redis took the end or not
            for run in finished:
                signals.announce(signals.job_finished, run.record)


class ThreadedWorker(LedgerWorkerMixin, RQThreadedWorker):
    """The lean worker, running up to ``concurrency`` jobs at once in threads of one process."""

    #: How many jobs run at once; None: ``JOBS["WORKER_CONCURRENCY"]``.
    concurrency: int | None = None
    #: Seconds of the threads' work that are taken ahead of the free threads.
    take_ahead = TAKE_AHEAD_SECONDS
    #: Seconds of the threads' work that are claimed ahead of the free threads.
    claim_ahead = CLAIM_AHEAD_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The job dequeued is read with its take, in the round trip of the dequeue for a worker of one
        # queue (``batch.Handoff``); RQ logs its id, not its description.
        self._handoff = batch.Handoff(self.name, more=lambda: max(0, self.room - self.running_jobs))
        self.queue_class = batch.taking_on_dequeue(self.queue_class, self._handoff)
        self.log_job_description = False
        self._held_log = HeldLog(self.log)
        # RQ logs through it as through its logger: RQ's calls are the methods a LoggerAdapter has.
        self.log = self._held_log  # type: ignore[assignment]
        self.slots = int(self.concurrency or jobs_settings.WORKER_CONCURRENCY)
        self._threads = JobThreads(self.slots, name=f"{self.name}-job")
        self._recorder = Recorder(self)
        #: Seconds a fast-path job ran, on average of late (a moving average); pessimistic at first.
        self._run_time = 1.0
        #: Jobs taken ahead of the free threads, not claimed yet (the main thread's own).
        self._ahead: collections.deque[Run] = collections.deque()
        #: The databases on which the main thread's connection waits a bounded time for row locks.
        self._bounded_aliases: set[str] = set()

    @property
    def heartbeat_thread(self) -> Any:
        return self._heartbeat

    @property
    def room(self) -> int:
        """How many jobs this worker holds at most: one per thread, those claimed ahead of the threads,
        and those taken ahead unclaimed."""
        ahead = int(self.slots * self.take_ahead / max(self._run_time, 1e-4))
        return self.slots + self.claimed_ahead + min(MAX_AHEAD, ahead)

    @property
    def claimed_ahead(self) -> int:
        """How many jobs are claimed ahead of the free threads at most (see the module)."""
        ahead = int(self.slots * self.claim_ahead / max(self._run_time, 1e-4))
        return min(self.slots // 4, ahead)

    # Overrides LedgerWorkerMixin's (and RQ's): jobs are taken only when there is room for them.
    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        self.waiting_for_work(True)
        try:
            while True:
                # A Redis that does not answer meanwhile (a heartbeat, a job held back) is waited out.
                self.until_it_goes(self._wait_for_room, "handing over jobs")
                if self._stop_requested:  # asked while the main thread claimed: no new job is taken
                    raise StopRequested()
                # A job that runs, or whose end is being recorded, while the queues are read may push
                # one (a retry due at once, a job that waited for it).
                busy = self.running_jobs or self._recorder.pending
                self.job_began()
                try:
                    result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
                except BaseException:
                    self._held_log.release()
                    self.job_ended()
                    raise
                if result is not None:
                    return result  # whoever runs it ends its count
                self.job_ended()
                if timeout is not None or not busy:
                    return None
                # Burst: the queues look empty, but a running job may still push one (a retry due at
                # once), and so may the record of a job's end (the jobs that waited for it); the burst
                # ends once nothing runs, nothing is left to record and nothing waits.
                if self.running_jobs:
                    self.wait_for_fewer_jobs(self.running_jobs, WAIT_TICK)
                else:
                    self._recorder.wait_recorded(WAIT_TICK)
        finally:
            self.waiting_for_work(False)

    # Overrides RQ's; checked against rq 2.12 and 3.0: called once a job is dequeued, before RQ logs it.
    def reorder_queues(self, reference_queue: Queue) -> None:
        super().reorder_queues(reference_queue)
        # RQ's line about the job is written once the job is handed over (``execute_job``).
        self._held_log.hold()

    def _wait_for_room(self) -> None:
        # The jobs taken ahead go to the threads as they free up; then, with room ahead, more jobs are
        # taken once the worker holds about half of what it has room for, so that a deep queue is taken
        # in batches; without, once a thread is free.
        # The jobs handed to the threads at most: one per thread, and those claimed ahead of them.
        room, handed = self.room, self.slots + self.claimed_ahead
        below = handed if room == handed else max(handed, room // 2 + 1)
        while True:
            if self._stop_requested:
                raise StopRequested()
            self._hand_over_ahead()
            # Fewer jobs than this held: threads are free for the next jobs taken ahead (for short jobs,
            # half the threads, so that their claims go in batches; with jobs claimed ahead, half of
            # those), or there is room for more.
            batched = max(1, (handed - self.slots + 1) // 2)
            if self._run_time < SHORT_JOB:
                batched = max(batched, self.slots // 2)
            than = handed + len(self._ahead) - min(batched, len(self._ahead)) + 1 if self._ahead else below
            if self.wait_for_fewer_jobs(than, WAIT_TICK):
                if not self._ahead:
                    return
                continue
            if self._stop_requested:
                raise StopRequested()
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()

    def _hand_over_ahead(self) -> None:
        """Claim, in one statement, as many of the jobs taken ahead as there are free threads and jobs
        claimed ahead of them (see the module), and hand them over. A job that waits here unclaimed
        when the worker dies has not started: the reaper pushes it again rather than giving up on it.

        Whether a job may start (its queue not paused, its rate limit not reached) is decided here,
        just before its claim, however long it waited ahead; once the worker is asked to stop, none is
        claimed (``finish_running`` puts them back)."""
        free = self.slots + self.claimed_ahead - (self.running_jobs - len(self._ahead))
        if free <= 0 or not self._ahead or self._stop_requested:
            return
        # A SIGTERM from here on asks the worker to stop (``_shutdown``) rather than raising where the
        # main thread is: the jobs it took out of ``_ahead`` would be neither handed over, put back, nor
        # counted down, and the stop would wait for them for ever.
        waiting, self._waiting_for_work = self._waiting_for_work, False
        try:
            self._put_back_paused()
            runs = self._may_start(free)
            if runs:
                self._hand_over(runs)
        finally:
            self._waiting_for_work = waiting

    def _may_start(self, free: int) -> list[Run]:
        """Up to ``free`` of the jobs taken ahead that may start now, taken out of ``_ahead``; those held
        back meanwhile (``_held``) leave the worker. Should anything raise, the jobs taken out go back."""
        runs: list[Run] = []
        try:
            while self._ahead and len(runs) < free:
                run = self._ahead[0]
                held = self._held(run.taken, run.call)  # put back, or set to run later, by _held_back
                self._ahead.popleft()
                if held:
                    self._leave(run.taken)
                else:
                    runs.append(run)
        except BaseException:
            self._ahead.extendleft(reversed(runs))
            raise
        return runs

    def _leave(self, taken: Taken) -> None:
        """A job taken ahead and held back leaves the worker: its entry leaves the started registry."""
        self._heartbeat.discard(taken.running(self.key))
        try:
            batch.leave(taken)
        except REDIS_DOWN as exc:
            # Its entry, no longer kept live, goes stale: the reaper pushes the job again, which runs
            # once, should it also be pushed where it was held back to.
            logger.warning("Job %s was held back; Redis could not take its entry out (%s)", taken.job_id, exc)
        finally:
            self.job_ended()

    def _hand_over(self, runs: list[Run]) -> None:
        """Claim ``runs`` and hand the claimed ones to the job threads."""
        held = Held(len(runs), {run.taken.entry: run.taken for run in runs})
        # The worker's only job: its thread starts it at once (``JobThreads.submit``).
        alone = len(runs) == 1 and self.running_jobs == 1
        try:
            for run in self._claim(runs):
                if run.attempt is None:
                    logger.info("Job %s is no longer waiting (cancelled or already run)", run.call.job_id)
                    self._recorder.put(run)
                else:
                    self._threads.submit(functools.partial(self._perform, run), until_taken=alone)
                    held.count -= 1
                held.unsettled.pop(run.taken.entry, None)
            held.unsettled.clear()  # those _claim left are out of the registry
        except Exception:
            logger.exception("Worker %s: handing over jobs failed; the reaper sees to them", self.name)
            held.drop_entries(self)
        finally:
            for _ in range(held.count):
                self.job_ended()

    def _put_back_ahead(self) -> None:
        """A stopping worker's jobs taken ahead, not claimed: back to the front of their queues."""
        ahead, self._ahead = list(self._ahead), collections.deque()
        self._put_back(ahead)

    def _put_back_paused(self) -> None:
        """The jobs taken ahead whose queue is paused now: back to the front of their queue."""
        paused = self._paused.current()
        back = [run for run in self._ahead if run.taken.queue.name in paused] if paused else []
        if back:
            self._ahead = collections.deque(run for run in self._ahead if run.taken.queue.name not in paused)
            self._put_back(back)

    def _put_back(self, runs: list[Run]) -> None:
        # The last first, so that they are at the front of their queues in the order they were taken.
        for run in reversed(runs):
            taken = run.taken
            self._heartbeat.discard(taken.running(self.key))
            try:
                batch.put_back(taken)
            except REDIS_DOWN as exc:
                logger.warning("Job %s could not be put back (%s); the reaper will", taken.job_id, exc)
            self.job_ended()

    # Overrides LedgerWorkerMixin's (and RQ's): the main thread hands jobs to the job threads.
    def execute_job(self, job: RQJob, queue: Queue) -> None:
        # ``job`` is unread (``batch.taking_on_dequeue``): its take reads it, or has read it.
        held = Held()
        try:
            self._take(job, queue, held)
        except StopRequested:
            raise
        except Exception:
            # The entries of the jobs taken and not settled go stale: the reaper pushes them again.
            logger.exception("Worker %s: taking jobs with %s failed; taking the next ones", self.name, job.id)
            held.drop_entries(self)
        finally:
            self._held_log.release()
            for _ in range(held.count):
                self.job_ended()

    def _take(self, job: RQJob, queue: Queue, held: Held) -> None:
        """Take ``job`` and the jobs there is room for; claim those there are free threads for and hand
        them over, and keep the others ahead."""
        try:
            room = max(0, self.room - self.running_jobs)
            taken = self._handoff.taken_with(job.id, queue, room, entry_ttl())
        except REDIS_DOWN as exc:
            self._take_failed(job, queue, exc)
            return
        # Without the job dequeued when its hash is gone: it stays counted in ``held`` until the end.
        more = taken[1:] if taken and taken[0].job_id == job.id else taken
        for _ in more:
            self.job_began()
            held.count += 1
        for item in taken:
            self._heartbeat.add(item.running(self.key))
            held.unsettled[item.entry] = item
        for item in taken:
            run = self._ready(item)
            del held.unsettled[item.entry]
            held.count -= 1  # counted from now on by the jobs taken ahead, or by RQ's path
            if run is not None:
                self._ahead.append(run)
        self._hand_over_ahead()

    def _take_failed(self, job: RQJob, queue: Queue, exc: Exception) -> None:
        """Redis failed at the take of the job dequeued: its record is left to the relay (a job that was
        entered all the same, its reply lost, is not kept live: the reaper finds it too)."""
        logger.warning("Job %s could not start (Redis: %s); its record is left to the relay", job.id, exc)
        try:
            refusal.leave_id_to_relay(job.id)
        except DatabaseError as db_exc:
            logger.warning("Job %s: the database could not take it either (%s)", job.id, db_exc)
        with contextlib.suppress(*REDIS_DOWN):
            self.forget_taken(job, queue)
            self._handoff.forget(self.connection, job.id)

    def _ready(self, taken: Taken) -> Run | None:
        """The run of a job just taken; None for a job not for the fast path, handed to RQ's own path."""
        call = taken.call(self.default_result_ttl)
        if call is not None:
            return Run(taken, call, execution.unclaimed(call))
        self._heartbeat.discard(taken.running(self.key))
        batch.leave(taken)
        job = batch.read_whole(taken)
        if job is None:  # gone meanwhile
            self.job_ended()
            return None
        self._through_rq(job, taken.queue, narrowed=False)
        return None

    def _held(self, taken: Taken, call: Call) -> bool:
        """``_held_back``, with RQ's job read only for a job of a paused queue or a rate-limited function."""
        if taken.queue.name not in self._paused.current() and not ratelimit.limited(call):
            return False
        return self._held_back(taken.job, taken.queue)

    def _claim(self, runs: list[Run]) -> list[Run]:
        """Claim the records of ``runs`` (one statement per database); returns the runs still to run or
        to skip, each with the attempt it won (None: its record no longer waits)."""
        by_alias: dict[str, list[Run]] = defaultdict(list)
        for run in runs:
            by_alias[run.call.alias].append(run)
        claimed = []
        close_old_connections()
        for alias, alias_runs in by_alias.items():
            records = [run.record for run in alias_runs]
            started_at = timezone.now()
            try:
                self._bounded_aliases.add(alias)
                won = reconnect.once_more_if_the_connection_died(
                    alias,
                    _bounded(
                        alias, functools.partial(transitions.claim_many, records, self.name, started_at)
                    ),
                    again=_bounded(
                        alias, functools.partial(transitions.claim_many_again, records, self.name, started_at)
                    ),
                )
            except DatabaseError as exc:
                for run in alias_runs:
                    self._heartbeat.discard(run.taken.running(self.key))
                    self._after_database_failed(run.taken.job, run.taken.queue, exc)
                    batch.leave(run.taken)
                continue
            for run in alias_runs:
                # A job pushed twice (two movers) may be taken twice in one batch: one claim, one run.
                run.attempt = won.pop(str(run.record.pk), None)
                claimed.append(run)
        return claimed

    def _perform(self, run: Run) -> None:
        """In a job thread: run a claimed job; a success goes to the recorder, a failure ends at once."""
        taken = run.taken
        started = time.monotonic()
        try:
            close_old_connections()
            timeout = taken.timeout or taken.queue.DEFAULT_TIMEOUT
            with self.death_penalty_class(timeout, JobTimeoutException, job_id=taken.job_id):
                run.result = execution.perform(
                    run.record, run.attempt or 0, run.call.args, run.call.kwargs, lambda: taken.job
                )
        except BaseException as exc:  # whatever the job raised (sys.exit() too) ends the job, not the thread
            self._heartbeat.discard(run.taken.running(self.key))
            try:
                if not batch.end_failure(run.taken, "".join(traceback.format_exception(exc)), self.key):
                    self._push_again(run)
            except REDIS_DOWN as redis_exc:
                self._leave_retry_to_relay(run, redis_exc)
        else:
            run.ended_at = timezone.now()
            run.seconds = time.monotonic() - started
            self._run_time = 0.9 * self._run_time + 0.1 * run.seconds
            self._recorder.put(run)
        finally:
            close_old_connections()
            self.job_ended()

    def _leave_retry_to_relay(self, run: Run, exc: Exception) -> None:
        """A failed job that Redis could not take: its record, when it waits for a retry, is left to the
        relay, which pushes it once Redis answers (the record said retrying before Redis was asked)."""
        try:
            left = refusal.leave_to_relay(run.call)
        except DatabaseError as db_exc:
            logger.warning(
                "Job %s failed; neither Redis (%s) nor the database (%s) took its retry",
                run.call.job_id,
                exc,
                db_exc,
            )
            return
        if left:
            logger.warning(
                "Job %s failed; Redis could not take its retry (%s), left to the relay", run.call.job_id, exc
            )
        else:
            logger.warning("Job %s failed; Redis could not take it (%s)", run.call.job_id, exc)

    def _push_again(self, run: Run) -> None:
        """A failed job whose RQ job another copy's end deleted: its retry, if the record waits for one, is
        pushed from the record (RQ has nothing left to retry), not left to the reconciler's next pass."""
        try:
            waiting = rescue.still_waiting(run.call.alias, [run.record.pk])
        except DatabaseError as exc:
            logger.warning("Job %s failed; its retry is left to the reconciler (%s)", run.call.job_id, exc)
            return
        rescue.push_again(waiting, "lost their RQ job while they ran (a copy of it, pushed twice, ended)")

    def _through_rq(self, job: RQJob, queue: Queue, narrowed: bool) -> None:
        self._threads.submit(lambda: self._run(job, queue, narrowed))

    def _run(self, job: RQJob, queue: Queue, narrowed: bool) -> None:
        # Whether the job came through its queue's intermediate list, as the main thread took it.
        self._narrowed = narrowed
        try:
            super().execute_job(job, queue)
        finally:
            self._narrowed = False
            self.job_ended()

    # Overrides LedgerWorkerMixin's.
    def finish_running(self) -> None:
        self._put_back_ahead()
        if self.running_jobs:
            logger.info("Worker %s: waiting for its %d job(s) to end", self.name, self.running_jobs)
        while not self.wait_for_fewer_jobs(1, WAIT_TICK):
            self.heartbeat()
        self._threads.stop()
        self._recorder.stop()
        for alias in self._bounded_aliases:
            with contextlib.suppress(DatabaseError):
                locks.release(alias)
        with contextlib.suppress(*REDIS_DOWN):
            batch.unregister(self.connection, self.name)

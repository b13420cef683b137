"""The threaded worker: one ``manage.py rqworker`` process that runs up to N jobs at once, in threads.

``manage.py rqworker --worker-class jobs.worker.ThreadedWorker`` with ``JOBS["WORKER_CONCURRENCY"]``
(or a subclass's ``concurrency``). The main thread waits for a free thread, takes one job from Redis,
hands it over, and takes the next; it also sends the worker's heartbeats and runs the maintenance.
Each job thread runs the job exactly as the lean worker would (``LeanWorker``): the held-back checks
(pause, rate limit), RQ's start and end, the ledger's claim and finish; a job's registry entry is kept
live by the worker's heartbeat thread (``jobs.worker.liveness``) for as long as its thread runs it.

Each job thread has its own database connections (Django's are per thread), closed or kept around
each job as Django does around a request (``close_old_connections``, ``CONN_MAX_AGE``), and closed
when the thread ends.
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

from ..conf import jobs_settings
from ..transport.threaded import RQThreadedWorker
from ..transport.worker import Queue, RQJob, StopRequested
from .base import LedgerWorkerMixin

logger = logging.getLogger("jobs")

#: Seconds between two heartbeats (and maintenance turns) of a main thread that waits for a free thread.
WAIT_TICK = 1.0


class JobThreads:
    """N threads that each run the calls handed to them, one at a time, and outlive what they run."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._calls: queue_module.SimpleQueue[Callable[[], object] | None] = queue_module.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, call: Callable[[], object]) -> None:
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._loop, name=f"{self.name}-{n}", daemon=True)
                for n in range(1, self.size + 1)
            ]
            for thread in self._threads:
                thread.start()
        self._calls.put(call)

    def stop(self) -> None:
        """Let each thread end once the calls handed to it are done, and wait for them."""
        for _ in self._threads:
            self._calls.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _loop(self) -> None:
        try:
            while (call := self._calls.get()) is not None:
                try:
                    call()
                except Exception:
                    logger.exception("%s: a job's run ended in an error; taking the next job", self.name)
        finally:
            connections.close_all()


class ThreadedWorker(LedgerWorkerMixin, RQThreadedWorker):
    """The lean worker, running up to ``concurrency`` jobs at once in threads of one process."""

    #: How many jobs run at once; None: ``JOBS["WORKER_CONCURRENCY"]``.
    concurrency: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slots = int(self.concurrency or jobs_settings.WORKER_CONCURRENCY)
        self._threads = JobThreads(self.slots, name=f"{self.name}-job")

    # Overrides LedgerWorkerMixin's (and RQ's): a job is taken only once a thread is free to run it.
    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        self.waiting_for_work(True)
        try:
            while True:
                self._wait_for_a_free_thread()
                self.job_began()
                try:
                    result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
                except BaseException:
                    self.job_ended()
                    raise
                if result is not None:
                    return result  # the thread that runs it ends its count
                self.job_ended()
                if timeout is not None or not self.running_jobs:
                    return None
                # Burst: the queues look empty, but a running job may still push one (a retry due at
                # once); the burst ends once nothing runs and nothing waits.
                self.wait_for_fewer_jobs(self.running_jobs, WAIT_TICK)
        finally:
            self.waiting_for_work(False)

    def _wait_for_a_free_thread(self) -> None:
        while not self.wait_for_fewer_jobs(self.slots, WAIT_TICK):
            if self._stop_requested:
                raise StopRequested()
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()

    # Overrides LedgerWorkerMixin's (and RQ's): the main thread hands the job to a job thread.
    def execute_job(self, job: RQJob, queue: Queue) -> None:
        narrowed = self._narrowed
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
        if self.running_jobs:
            logger.info("Worker %s: waiting for its %d running job(s) to end", self.name, self.running_jobs)
        while not self.wait_for_fewer_jobs(1, WAIT_TICK):
            self.heartbeat()
        self._threads.stop()

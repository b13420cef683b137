"""How a running job shows that its worker is alive: its entry in RQ's ``StartedJobRegistry``.

RQ scores each running execution in the queue's ``StartedJobRegistry`` with the time after which it
counts as abandoned. RQ refreshes that score only from a forking worker's monitor loop, every 30 s, with
90 s of slack; a non-forking worker does not refresh it at all while a job runs. The ``jobs`` workers
keep it within ``ABANDONED_AFTER`` instead: the entry is written with a TTL of half that bound and a
thread of the worker process refreshes it (and the worker's own key) a few times per TTL. A worker that
is killed stops refreshing, its entry's score passes, and the reaper (``jobs.upkeep.reaper``) acts on the job.

The thread only runs a pipeline every few seconds while a job is running; it adds nothing per job. A
worker that runs several jobs at once (``jobs.worker.ThreadedWorker``) has one entry per running job,
each begun and ended by the thread that runs it, and all of them refreshed in that one pipeline.
"""

from __future__ import annotations

import logging
import threading
import time

from redis import ConnectionPool, Redis
from redis.exceptions import RedisError

from ..intervals import beat_interval, entry_ttl
from ..transport.worker import Running

logger = logging.getLogger("jobs")


class Heartbeat:
    """A daemon thread that keeps the running jobs' registry entries live while the worker process lives.

    It talks to Redis through a connection pool of its own, so that a fork (the forking worker's work
    horse) never inherits a connection or a lock that this thread holds.
    """

    def __init__(self, connection: Redis) -> None:
        pool = connection.connection_pool
        self._redis = Redis(
            connection_pool=ConnectionPool(connection_class=pool.connection_class, **pool.connection_kwargs)
        )
        self._lock = threading.Lock()
        # The running job of each thread that runs one, by thread id; and the jobs of the threaded
        # worker's fast path (taken, running, or waiting to be recorded), by entry.
        self._running: dict[int | str, Running] = {}
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self, running: Running) -> None:
        """The calling thread's job is running: keep its entry live."""
        self._keep(threading.get_ident(), running)

    def end(self) -> None:
        """Called before RQ removes the calling thread's entry, so that it is never written back later."""
        with self._lock:
            self._running.pop(threading.get_ident(), None)

    def add(self, running: Running) -> None:
        """Keep ``running``'s entry live until ``discard``, whichever thread handles it."""
        self._keep(running.entry, running)

    def discard(self, running: Running) -> None:
        """Called before the entry is removed, as ``end``."""
        with self._lock:
            self._running.pop(running.entry, None)

    def _keep(self, key: int | str, running: Running) -> None:
        with self._lock:
            self._running[key] = running
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="jobs-heartbeat", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            self._running.clear()

    def _loop(self) -> None:
        failing, wait = False, beat_interval()
        while not self._stopped.wait(wait):
            began = time.monotonic()
            try:
                self.beat()
                failing = False
            except RedisError as exc:
                if not failing:
                    logger.warning("Heartbeat: Redis unreachable (%s); retrying", exc)
                failing = True
            except Exception:
                # The thread outlives what it meets: a job without heartbeats would look abandoned.
                logger.exception("Heartbeat failed; retrying")
            # A beat that took longer than the interval (Redis hung, or the connection timed out) wrote
            # scores reckoned before the wait, which may have lapsed meanwhile: the next beat goes at once.
            wait = 0 if time.monotonic() - began > beat_interval() else beat_interval()

    def beat(self) -> None:
        with self._lock:
            if not self._running:
                return
            ttl = entry_ttl()
            # A plain ZADD (not XX): an entry lost with Redis's data comes back while the job runs.
            with self._redis.pipeline(transaction=False) as pipe:
                for running in self._running.values():
                    pipe.zadd(running.registry_key, {running.entry: time.time() + ttl})
                    if running.execution_key:
                        pipe.expire(running.execution_key, ttl + 60)
                    if running.worker_executions_key:
                        pipe.expire(running.worker_executions_key, ttl + 60)
                pipe.expire(running.worker_key, ttl + 60)
                pipe.execute()

"""Helpers shared by the tests: waiting on a condition with a bound, draining queues with a worker in the
test's own process, and real worker processes for the tests that are about a process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from django.db import connection, connections

from tests import spawner

ROOT = Path(__file__).resolve().parent.parent
QUEUES = ("default", "high", "low")

#: For a test that runs a project on a SQLite database of its own (the quick start's, the demo's): on the
#: PostgreSQL run it would run the very same thing again.
OWN_SQLITE_DATABASE = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="runs a project on a SQLite database of its own, as on SQLite"
)


def staff_user(*codenames: str, username: str = "staff") -> Any:
    """A staff user holding the given permissions of the ``jobs`` app (password ``pw``)."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames)
    )
    return user


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 20,
    interval: float = 0.2,
    message: str | Callable[[], str] = "",
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds.

    The polls start 10 ms apart and back off to ``interval``: a condition met at once is seen at once, and
    a long wait (a worker's start, a reaper's pass) does not query the database twenty times a second on
    a machine that the other test processes share."""
    deadline = time.monotonic() + timeout
    pause = min(0.01, interval)
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            what = message() if callable(message) else message  # a callable says what it found then
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(pause)
        pause = min(pause * 1.5, interval)


@contextlib.contextmanager
def within(seconds: int, what: str) -> Iterator[None]:
    """Fail, rather than hang, if the block (a burst worker in this process) runs over ``seconds``."""

    def over(signum: int, frame: Any) -> None:
        raise AssertionError(f"{what} did not end within {seconds} s")

    previous = signal.signal(signal.SIGALRM, over)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["JOBS_TEST_DB_NAME"] = str(connection.settings_dict["NAME"])
    # Django 6.1's commands run the database checks on every database, so "other" needs a name there too.
    env["JOBS_TEST_OTHER_DB_NAME"] = str(connections["other"].settings_dict["NAME"] or ":memory:")
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def worker_command(*options: str, queues: tuple[str, ...] = QUEUES) -> list[str]:
    """``manage.py rqworker`` with ``options``, without the system checks: a third of a worker's start in CPU,
    a hundred and more times a run, for settings that ``manage.py check`` and ``test_checks`` cover."""
    return [sys.executable, str(ROOT / "manage.py"), "rqworker", "--skip-checks", *options, *queues]


FORKING_WORKER = "jobs.worker.Worker"


def drain(
    worker_class: str = "jobs.worker.SimpleWorker", queues: tuple[str, ...] = QUEUES, name: str | None = None
) -> None:
    """Drain the queues in burst mode with ``worker_class``, built as ``manage.py rqworker`` builds it.

    A non-forking worker runs here, in the test's process, against the test's Redis, database and
    settings: it skips a second Django start per run. The forking worker's horse is a fork of the worker,
    so that one runs as a real ``manage.py rqworker --burst`` process, given the test's ``JOBS`` setting.
    """
    if worker_class == FORKING_WORKER:
        from django.conf import settings

        options = ("--worker-class", worker_class, *(("--name", name) if name else ()))
        run_worker(*options, queues=queues, JOBS_TEST_JOBS=json.dumps(settings.JOBS))
        return
    from django_rq.workers import get_worker

    worker = get_worker(*queues, worker_class=worker_class, name=name)
    # RQ installs its own SIGINT and SIGTERM handlers for the run; the test process keeps its own.
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.work(burst=True)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def run_worker(*options: str, queues: tuple[str, ...] = QUEUES, timeout: float = 120, **env: str) -> str:
    """Drain the queues with ``manage.py rqworker --burst`` in a real process; return its output."""
    returncode, output = spawner.run(
        worker_command("--burst", *options, queues=queues),
        env=worker_env(**env),
        cwd=str(ROOT),
        timeout=timeout,
    )
    assert returncode == 0, f"rqworker exited with {returncode}:\n{output}"
    return output


class WorkerProcess:
    """A long-running ``manage.py rqworker`` that a test starts, signals and stops."""

    def __init__(self, *options: str, queues: tuple[str, ...] = QUEUES, **env: str) -> None:
        self.process = spawner.popen(
            worker_command(*options, queues=queues), env=worker_env(**env), cwd=str(ROOT), new_session=True
        )
        #: The worker's output so far, line by line: read as it comes, so that a worker that logs much
        #: never blocks on a full pipe.
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        if self.process.stdout is not None:
            self.lines.extend(self.process.stdout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 10) -> str:
        """SIGTERM (after a SIGCONT, for a worker a test stopped), then SIGKILL to the whole process group
        if the worker is still there after ``timeout``; returns the worker's output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        return "".join(self.lines)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Heard(NamedTuple):
    """One lifecycle signal as a receiver got it."""

    signal: Any
    sender: Any
    job: Any
    exception: BaseException | None


@contextlib.contextmanager
def hearing(*signals: Any, broken_first: bool = False) -> Iterator[list[Heard]]:
    """What ``signals`` send while the block runs, in order; with ``broken_first``, a receiver that
    raises ``RuntimeError("a receiver broke")`` is connected ahead of the one that listens."""
    heard: list[Heard] = []

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("a receiver broke")

    def receiver(signal: Any, sender: Any, job: Any, **kwargs: Any) -> None:
        heard.append(Heard(signal, sender, job, kwargs.get("exception")))

    for each in signals:
        if broken_first:
            each.connect(broken, dispatch_uid="test-broken")
        each.connect(receiver, dispatch_uid="test-heard")
    try:
        yield heard
    finally:
        for each in signals:
            each.disconnect(dispatch_uid="test-broken")
            each.disconnect(dispatch_uid="test-heard")


def receiver_errors(caplog: Any) -> list[str]:
    """The log lines of lifecycle-signal receivers that raised (``jobs.signals.announce``)."""
    return [
        entry.getMessage()
        for entry in caplog.records
        if "a receiver of a lifecycle signal" in entry.getMessage()
    ]


def not_final(records: dict[str, Any]) -> list[tuple]:
    """Of ``records`` (by name), those not final: their function, arguments, status, attempts, worker."""
    from jobs.models import FINAL, Job

    pks = {record.pk for record in records.values()}
    return list(
        Job.objects.filter(pk__in=pks)
        .exclude(status__in=FINAL)
        .values_list("function", "args", "status", "attempts", "worker_name")
    )


def tracebacks(output: str) -> list[tuple[str, str]]:
    """Each traceback in a worker's output: the line before it (what logged it) and its last line (the
    exception)."""
    found = []
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = index + 1
            while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
                end += 1
            found.append((lines[index - 1] if index else "", lines[end] if end < len(lines) else ""))
    return found

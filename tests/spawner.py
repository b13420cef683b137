"""A fork server for the tests' ``manage.py`` processes.

Starting ``manage.py rqworker`` costs about a second of CPU, most of it importing Django, RQ and redis-py;
the suite starts about a hundred of them per run on a 2-core machine. The fork server is a Python process
that imports those libraries once, without settings, and forks a child per request. The child takes the
request's environment, working directory, arguments and output file, and runs ``manage.py`` as ``python
manage.py ...`` would, as ``__main__``: Django reads its settings, starts, checks and runs the command in
the child, from the test's environment. The child is a real process of its own: it gets real signals, can
be stopped, killed and leave orphans, and forks its own work horses.

What the server imports is limited to modules that load without settings (it checks that the settings are
still unconfigured before it serves), so no value of one test's settings reaches another's process.

``JOBS_TEST_SPAWN=exec`` starts every process with ``subprocess`` instead (as the quick start, the demo and
the process-pool tests always do); ``JOBS_TEST_SPAWN_LOG=<file>`` appends each child's CPU seconds to it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import IO, Any

# Imported once by the server; each must import without Django settings.
PRELOAD = (
    "django.core.management",
    "django.core.checks",
    "django.db.models",
    "django.db.backends.sqlite3.base",
    "django.db.backends.postgresql.base",
    "django.contrib.admin",
    "django.contrib.admin.options",
    "django.contrib.auth.checks",
    "django.contrib.auth.hashers",
    "django.contrib.messages.views",
    "django.template.defaulttags",
    "django.template.defaultfilters",
    "django.template.loader_tags",
    "django.views.generic",
    "django.urls",
    "django.http",
    "django.tasks",
    "django_tasks",
    "rq",
    "rq.worker",
    "rq.scheduler",
    "rq.cron",
    "redis",
    "redis.asyncio",
    "redis.sentinel",
    "django_redis.client",
    "django_redis.cache",
    "croniter",
    "prometheus_client",
    "psycopg",
    "psycopg2",
)
MESSAGE_SIZE = 1 << 16


# The server's side.


def _preload() -> None:
    for name in PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    from django.conf import settings

    if settings.configured:
        raise RuntimeError("the fork server's imports configured Django's settings")


def _run_child(request: dict[str, Any], output: int) -> None:
    """In the forked child: become the requested ``python manage.py ...`` and exit with its code."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if request["new_session"]:
        os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    script, *arguments = request["argv"][1:]
    sys.argv = [script, *arguments]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        if stop.code is None:
            code = 0
        elif isinstance(stop.code, int):
            code = stop.code
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def serve(channel: socket.socket) -> None:
    """Fork a child per request; tell the client each child's pid, and its exit code once it ends."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    children: dict[int, bool] = {}
    try:
        while True:
            for key, _ in selector.select():
                if key.fileobj is channel:
                    message, fds, _, _ = socket.recv_fds(channel, MESSAGE_SIZE, 1)
                    if not message:
                        return
                    request = json.loads(message)
                    pid = os.fork()
                    if pid == 0:
                        _run_child(request, fds[0])
                    os.close(fds[0])
                    children[pid] = request["new_session"]
                    channel.send(json.dumps({"spawned": pid}).encode())
                else:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_read, 4096)
            while children:
                try:
                    pid, status, usage = os.wait4(-1, os.WNOHANG)
                    if pid and os.environ.get("JOBS_TEST_SPAWN_LOG"):
                        with open(os.environ["JOBS_TEST_SPAWN_LOG"], "a") as log:
                            log.write(f"{usage.ru_utime + usage.ru_stime:.3f} {children.get(pid)}\n")
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                children.pop(pid, None)
                channel.send(
                    json.dumps({"exited": pid, "returncode": os.waitstatus_to_exitcode(status)}).encode()
                )
    finally:
        for pid, own_group in children.items():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL) if own_group else os.kill(pid, signal.SIGKILL)


# The tests' side.


class Spawner:
    """The client of one fork server, started on first use by the test process that uses it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channel: socket.socket | None = None
        self._server: subprocess.Popen | None = None
        self._exits: dict[int, int] = {}

    def _connect(self) -> socket.socket:
        if self._channel is None:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
            self._server = subprocess.Popen(
                [sys.executable, "-m", "tests.spawner", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=env,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # not a terminal, as the tests' pipes are not (RQ checks)
                start_new_session=True,
            )
            theirs.close()
            self._channel = ours
            atexit.register(self.close)
        return self._channel

    def _receive(self, timeout: float | None) -> dict[str, Any] | None:
        channel = self._connect()
        channel.settimeout(timeout)
        try:
            message = channel.recv(MESSAGE_SIZE)
        except (TimeoutError, BlockingIOError):
            return None
        if not message:
            raise RuntimeError("the fork server ended")
        reply = json.loads(message)
        if "exited" in reply:
            self._exits[reply["exited"]] = reply["returncode"]
        return reply

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, output: int, new_session: bool) -> int:
        request = {"argv": argv, "env": env, "cwd": cwd, "new_session": new_session}
        with self._lock:
            socket.send_fds(self._connect(), [json.dumps(request).encode()], [output])
            while True:
                reply = self._receive(timeout=30)
                if reply is None:
                    raise RuntimeError("the fork server did not answer")
                if "spawned" in reply:
                    return int(reply["spawned"])

    def returncode(self, pid: int, timeout: float | None = 0) -> int | None:
        """The child's exit code once it has ended (as ``Popen.returncode``), waiting up to ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while pid not in self._exits:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if self._receive(timeout=remaining) is None:
                    return None
            return self._exits[pid]

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._server is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._server.wait(timeout=10)
            self._server = None


_spawner = Spawner()


def forking_enabled() -> bool:
    return os.environ.get("JOBS_TEST_SPAWN", "fork") != "exec"


class ForkedProcess:
    """The parts of ``subprocess.Popen`` the tests use, for a child of the fork server."""

    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: str, output: int, new_session: bool = False
    ) -> None:
        self.pid = _spawner.spawn(argv, env, cwd, output, new_session)
        self.returncode: int | None = None
        self.stdout: IO[str] | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = _spawner.returncode(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = _spawner.returncode(self.pid, timeout=timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.pid, timeout or 0)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def popen(argv: list[str], env: dict[str, str], cwd: str, new_session: bool) -> Any:
    """``Popen(argv, stdout=PIPE, stderr=STDOUT, text=True)``, forked from the server when it can be."""
    if not forking_enabled():
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=new_session,
        )
    read_end, write_end = os.pipe()
    try:
        process = ForkedProcess(argv, env, cwd, write_end, new_session)
    finally:
        os.close(write_end)
    process.stdout = open(read_end)  # noqa: SIM115
    return process


def run(argv: list[str], env: dict[str, str], cwd: str, timeout: float) -> tuple[int, str]:
    """``subprocess.run(argv, capture_output=True)``, forked from the server when it can be: the exit code
    and the output (stdout and stderr together)."""
    if not forking_enabled():
        completed = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        return completed.returncode, completed.stdout + completed.stderr
    with tempfile.TemporaryFile() as output:
        process = ForkedProcess(argv, env, cwd, output.fileno())
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            raise
        output.seek(0)
        return code, output.read().decode(errors="replace")


if __name__ == "__main__":
    _channel = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    serve(_channel)

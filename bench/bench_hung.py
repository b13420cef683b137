"""Enqueue latency of a view while Redis hangs (SIGSTOP): ``python -m bench.bench_hung``.

A view that enqueues one job is called through Django's test client: first with Redis answering, then
with its redis-server stopped. The first request after the stop waits out the socket timeout; the
requests after it skip Redis (``ENQUEUE_RETRY_AFTER``) and leave their records to the relay. The bench
prints the median and p99 of each phase, then resumes Redis (SIGCONT) and checks that every record is
pushed by the relay. It starts its own redis-server and uses a SQLite database of its own.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

from bench import environment
from tests.redis_server import RedisServer


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _line(name: str, values: list[float]) -> str:
    ms = [value * 1000 for value in values]
    median, p99 = statistics.median(ms), _percentile(ms, 0.99)
    return f"{name:<28} n={len(ms):<4} median {median:8.2f} ms   p99 {p99:8.2f} ms"


def measure(requests: int, redis_pid: int) -> None:
    """Runs in the child process, with the bench's settings."""
    import django

    django.setup()
    from django.test import Client
    from django.test.utils import override_settings, setup_test_environment
    from django.urls import path

    from jobs.models import Job
    from jobs.upkeep.relay import relay

    setup_test_environment()
    urls = type(sys)("bench_hung_urls")
    urls.urlpatterns = [path("enqueue", _enqueue_view)]  # type: ignore[attr-defined]
    sys.modules["bench_hung_urls"] = urls
    client = Client()
    with override_settings(ROOT_URLCONF="bench_hung_urls", ALLOWED_HOSTS=["*"]):
        answering = [_timed(client) for _ in range(requests)]
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            first = _timed(client)
            hung = [_timed(client) for _ in range(requests)]
        finally:
            os.kill(redis_pid, signal.SIGCONT)
    print(_line("Redis answering", answering))
    print(f"{'Redis hung, first request':<28} {first * 1000:8.0f} ms")
    print(_line("Redis hung, after the first", hung))
    left = Job.objects.undispatched().count()
    deadline = time.monotonic() + 30
    while Job.objects.undispatched().exists() and time.monotonic() < deadline:
        relay()
    still = Job.objects.undispatched().count()
    print(f"records left to the relay: {left}; still undispatched after SIGCONT and the relay: {still}")


def _enqueue_view(request):  # type: ignore[no-untyped-def]
    from django.http import JsonResponse

    from bench.jobs import noop

    record = noop.enqueue()
    return JsonResponse({"id": str(record.pk)}, status=202)


def _timed(client) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    response = client.get("/enqueue")
    elapsed = time.monotonic() - started
    if response.status_code != 202:
        raise RuntimeError(f"the view answered {response.status_code}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_hung", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per phase (default 200)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        measure(options.requests, options.child)
        return
    server = RedisServer()
    server.start()
    try:
        with environment.sqlite_database() as database_url:
            env = environment.child_env(database_url, server.url)
            environment.migrate(env)
            assert server.process is not None
            command = [sys.executable, "-m", "bench.bench_hung", "--requests", str(options.requests)]
            subprocess.run(
                [*command, "--child", str(server.process.pid)], cwd=environment.ROOT, env=env, check=True
            )
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()

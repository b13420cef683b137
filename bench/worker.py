"""``manage.py rqworker`` as the benchmarks run it: timed from inside, with its DB statements counted.

``python -m bench.worker RESULT_FILE rqworker-options...`` runs the very command ``manage.py rqworker``
runs and writes to RESULT_FILE, as JSON, the seconds it took (Python's and Django's start-up left
out), the CPU seconds of the process, and the database statements it sent. With ``BENCH_PROFILE=FILE``
it also writes a profile of the run there (pyinstrument if installed, else cProfile).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def profiled(report_file: str) -> Iterator[None]:
    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.enable()
        yield
        profile.disable()
        with open(report_file, "w") as out:
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(80)
        return
    profiler = Profiler(interval=0.0005)
    profiler.start()
    yield
    profiler.stop()
    show_all = bool(os.environ.get("BENCH_PROFILE_ALL"))
    Path(report_file).write_text(profiler.output_text(unicode=False, color=False, show_all=show_all))


def main(result_file: str, options: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.core.management import execute_from_command_line
    from django.db import connections
    from django.db.backends.signals import connection_created

    statements = 0

    def count(execute, sql, params, many, context):
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    # Every connection of every thread (a threaded worker's job threads and recorder have their own).
    def watch(sender, connection, **kwargs):
        if count not in connection.execute_wrappers:
            connection.execute_wrappers.append(count)

    connection_created.connect(watch, weak=False)
    connections["default"].execute_wrappers.append(count)
    profile_file = os.environ.get("BENCH_PROFILE")
    with profiled(profile_file) if profile_file else contextlib.nullcontext():
        started, cpu_started = time.perf_counter(), time.process_time()
        execute_from_command_line(["manage.py", "rqworker", *options])
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    result = {"seconds": elapsed, "cpu_seconds": cpu, "statements": statements}
    Path(result_file).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])

"""``python -m bench`` (or ``make bench``): every benchmark, on SQLite and on PostgreSQL, in one run.

It starts its own redis-server on a free port and makes (and drops) its own databases: a SQLite file in
a temporary folder, and a database on the PostgreSQL server at ``--postgres`` (``BENCH_PG_URL``). Each
benchmark runs our path and its baseline in turn, ``--runs`` times, and prints the medians and ratios;
Redis commands and database statements per job do not depend on the machine's noise. The cache
benchmark (``bench/bench_cache.py``), when present, runs against the same Redis; the hung-Redis benchmark
(``bench/bench_hung.py``) last, with a Redis of its own that it stops.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import environment, report
from tests.redis_server import RedisServer

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each case (default 3)")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per non-forking drain (default 1000)")
    parser.add_argument("--forking-jobs", type=int, default=200, help="jobs per forking drain (default 200)")
    parser.add_argument("--single", type=int, default=500, help="jobs enqueued one by one (default 500)")
    parser.add_argument("--bulk", type=int, default=10_000, help="jobs in one enqueue_many (default 10000)")
    parser.add_argument("--samples", type=int, default=100, help="latency samples per run (default 100)")
    parser.add_argument(
        "--slow-jobs", type=int, default=2000, help="50 ms jobs per concurrent drain (default 2000)"
    )
    parser.add_argument(
        "--databases", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=["enqueue", "drain", "concurrency", "latency", "cache", "hung"],
        choices=["enqueue", "drain", "concurrency", "latency", "cache", "hung"],
    )
    parser.add_argument("--postgres", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--profile-dir", help="also write profiles of one drain per worker class here")
    return parser.parse_args(argv)


def run_suite(name: str, database_url: str, redis_url: str, options: argparse.Namespace) -> dict:
    env = environment.child_env(database_url, redis_url)
    environment.migrate(env)
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        command = [
            sys.executable, "-m", "bench.suite", str(result_file),
            "--runs", str(options.runs), "--jobs", str(options.jobs),
            "--forking-jobs", str(options.forking_jobs), "--single", str(options.single),
            "--bulk", str(options.bulk), "--samples", str(options.samples),
            "--slow-jobs", str(options.slow_jobs),
            "--only", *[part for part in options.only if part not in ("cache", "hung")],
        ]  # fmt: skip
        if options.profile_dir:
            command += ["--profile-dir", str(Path(options.profile_dir) / name)]
        subprocess.run(command, cwd=environment.ROOT, env=env, check=True)
        return json.loads(result_file.read_text())


def run_cache_bench(redis_url: str) -> None:
    if not (environment.ROOT / "bench" / "bench_cache.py").exists():
        return
    with environment.sqlite_database() as database_url:
        env = environment.child_env(database_url, redis_url)
        environment.migrate(env)
        print("\n## cache\n", flush=True)
        subprocess.run([sys.executable, "-m", "bench.bench_cache"], cwd=environment.ROOT, env=env, check=True)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    started = time.monotonic()
    server = RedisServer()
    server.start()
    try:
        print(
            f"# jobs benchmarks: {options.runs} runs each, medians; drains of {options.jobs:,} jobs "
            f"({options.forking_jobs:,} for forking workers), {options.single:,} single enqueues, "
            f"a batch of {options.bulk:,}, {options.samples} latency samples per run\n",
            flush=True,
        )
        job_benches = [part for part in options.only if part not in ("cache", "hung")]
        for name in options.databases if job_benches else []:
            database = environment.database_for(name, options.postgres)
            if database is None:
                continue
            with database as database_url:
                results = run_suite(name, database_url, server.url, options)
            title = "SQLite (WAL)" if name == "sqlite" else "PostgreSQL"
            print(report.table(title, results["comparisons"]) + "\n", flush=True)
            for profile in results["profiles"]:
                print(f"profile: {profile}")
        if "cache" in options.only:
            run_cache_bench(server.url)
        if "hung" in options.only:
            print("\n## enqueue while Redis hangs (SIGSTOP)\n", flush=True)
            subprocess.run([sys.executable, "-m", "bench.bench_hung"], cwd=environment.ROOT, check=True)
    finally:
        server.cleanup()
    print(f"\ntotal time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()

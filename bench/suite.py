"""One database's benchmarks, run in a process of their own with the bench's settings.

``python -m bench`` starts this once per database (``python -m bench.suite RESULT_FILE OPTIONS``);
the results are written to RESULT_FILE as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("result_file")
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--forking-jobs", type=int, required=True)
    parser.add_argument("--single", type=int, required=True)
    parser.add_argument("--bulk", type=int, required=True)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--slow-jobs", type=int, default=2000)
    parser.add_argument("--only", nargs="*", default=["enqueue", "drain", "concurrency", "latency"])
    parser.add_argument("--profile-dir")
    options = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    import redis

    from bench import bench_concurrency, bench_drain, bench_enqueue, bench_latency

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    comparisons = []
    if "enqueue" in options.only:
        comparisons += bench_enqueue.run(client, options.runs, options.single, options.bulk)
    if "drain" in options.only:
        comparisons += bench_drain.run(client, options.runs, options.jobs, options.forking_jobs)
    if "concurrency" in options.only:
        comparisons += bench_concurrency.run(client, options.runs, options.slow_jobs)
    if "latency" in options.only:
        with tempfile.TemporaryDirectory() as log_dir:
            comparisons += bench_latency.run(client, options.runs, options.samples, Path(log_dir))
    profiles = []
    if options.profile_dir:
        profiles = [str(p) for p in bench_drain.profile(client, options.jobs, Path(options.profile_dir))]
    Path(options.result_file).write_text(
        json.dumps({"comparisons": [c.as_dict() for c in comparisons], "profiles": profiles})
    )


if __name__ == "__main__":
    main()

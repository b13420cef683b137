"""The cache: a hit through ``@cached`` against a bare django-redis ``cache.get`` of the same value, and a
view hit through ``@cache_view`` against the same view under Django's ``cache_page``, in the same run.

``python -m bench`` runs it last (``python -m bench --only cache`` runs it alone). Each run times
``--ops`` calls of each side in alternating chunks of 250, each side first in every other chunk, so
that both see the same load on a shared machine; ``--runs`` runs; the medians, their ratio, this
process's CPU time per call (which other load disturbs less) and the Redis commands of one call (from
``INFO commandstats``) are printed. Requests for the view benchmark are built before the timing
starts: building one is no part of either cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

VALUE = {"id": 42, "name": "widget", "tags": ["a", "b", "c"], "price": "19.99", "stock": 1234}
PAGE = "<!doctype html><title>bench</title>" + "<p>lorem ipsum dolor sit amet</p>" * 60
URL = "/products/?sort=name&page=2"


@dataclass
class Side:
    label: str
    call: Callable[[object], object]  # one call, given what prepare() made for it
    prepare: Callable[[int], list] = lambda n: [None] * n


@dataclass
class Row:
    bench: str
    ours: Side
    baseline: Side
    target: str


def timed(side: Side, ops: int) -> tuple[float, float]:
    """Seconds for ``ops`` calls: wall time, and this process's CPU time (which other load disturbs less)."""
    inputs = side.prepare(ops)
    call = side.call
    wall, cpu = time.perf_counter(), time.process_time()
    for item in inputs:
        call(item)
    return time.perf_counter() - wall, time.process_time() - cpu


def one_run(ours: Side, baseline: Side, ops: int, chunk: int = 250) -> dict[str, float]:
    """Microseconds per call of each side, timed in alternating chunks so that both see the same load."""
    totals = dict.fromkeys(("ours", "ours_cpu", "baseline", "baseline_cpu"), 0.0)
    chunks = max(1, ops // chunk)
    for index in range(chunks):
        # Whichever side runs second in a chunk pays a little more (about 5% in an A/A run): alternate.
        order = (("baseline", baseline), ("ours", ours))
        for name, side in order if index % 2 else order[::-1]:
            wall, cpu = timed(side, chunk)
            totals[name] += wall
            totals[f"{name}_cpu"] += cpu
    return {name: seconds / (chunks * chunk) * 1e6 for name, seconds in totals.items()}


def commands_per_call(client, side: Side, ops: int = 100) -> float:
    from bench.measure import CommandCounter

    inputs = side.prepare(ops)
    counter = CommandCounter(client)
    counter.reset()
    for item in inputs:
        side.call(item)
    return counter.total() / ops


def build_rows() -> list[Row]:
    from django.core.cache import cache
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.views.decorators.cache import cache_page

    from jobs.cache import cache_view, cached

    @cached(ttl=3600, namespace="bench.value")
    def product(pk):
        return VALUE

    def page(request):
        return HttpResponse(PAGE)

    ours_view = cache_view(ttl=3600, namespace="bench.page")(page)
    django_view = cache_page(3600, key_prefix="bench-page")(page)
    factory = RequestFactory()

    def requests(n: int) -> list:
        return [factory.get(URL) for _ in range(n)]

    cache.set("bench:value", VALUE, 3600)
    assert cache.get("bench:value") == product(42) == product(42) == VALUE
    for view in (ours_view, django_view):
        view(factory.get(URL))
        assert view(factory.get(URL)).content == PAGE.encode()
    return [
        Row(
            "function hit: `@cached` vs django-redis `cache.get`",
            Side("@cached", lambda _: product(42)),
            Side("cache.get", lambda _: cache.get("bench:value")),
            "<= 1.1x",
        ),
        Row(
            "view hit: `@cache_view` vs Django's `cache_page`",
            Side("@cache_view", ours_view, requests),
            Side("cache_page", django_view, requests),
            "<= 0.5x, 1 round trip",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_cache")
    parser.add_argument("--runs", type=int, default=7, help="repetitions of each side (default 7)")
    parser.add_argument("--ops", type=int, default=3000, help="calls per run (default 3000)")
    options = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    import redis

    from jobs.cache import stats

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.flushdb()
    print(f"{options.runs} runs of {options.ops:,} calls each, medians (time per call; lower is better)\n")
    print(
        "| benchmark | ours | baseline | ours / baseline | CPU of this process: ours / baseline (ratio) "
        "| Redis cmds/call (ours / baseline) | target |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in build_rows():
        one_run(row.ours, row.baseline, 500)
        runs = [one_run(row.ours, row.baseline, options.ops) for _ in range(options.runs)]
        m = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
        cmds = f"{commands_per_call(client, row.ours):.2f} / {commands_per_call(client, row.baseline):.2f}"
        ratio, cpu_ratio = m["ours"] / m["baseline"], m["ours_cpu"] / m["baseline_cpu"]
        print(
            f"| {row.bench} | {m['ours']:.1f} µs | {m['baseline']:.1f} µs | **{ratio:.2f}x** "
            f"| {m['ours_cpu']:.1f} / {m['baseline_cpu']:.1f} µs ({cpu_ratio:.2f}x) "
            f"| {cmds} | {row.target} |",
            flush=True,
        )
    stats.flush()


if __name__ == "__main__":
    main()

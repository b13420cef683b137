"""System checks of the cache settings (jobs.E040-E044, jobs.W040-W042)."""

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

from jobs.cache import cached
from jobs.cache.store import store


def ids(**overrides):
    with override_settings(**overrides):
        return sorted({m.id for m in run_checks(databases=[]) if m.id.startswith(("jobs.E04", "jobs.W04"))})


def caches(**changes):
    return {"CACHES": {"default": {**settings.CACHES["default"], **changes}}}


def test_demo_settings_pass():
    assert ids() == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"JOBS": {"CACHE_TTL": 0}}, "jobs.E040"),
        ({"JOBS": {"CACHE_LOCK_WAIT": "5"}}, "jobs.E040"),
        ({"JOBS": {"CACHE_RETRY_AFTER": True}}, "jobs.E040"),
        ({"JOBS": {"CACHE_JITTER": 1}}, "jobs.E041"),
        ({"JOBS": {"CACHE_JITTER": -0.1}}, "jobs.E041"),
        ({"JOBS": {"CACHE_STALE": -1}}, "jobs.E042"),
        # The decorators' bounds: finite, at most ten years (what Redis can expire an entry by).
        ({"JOBS": {"CACHE_TTL": float("inf")}}, "jobs.E040"),
        ({"JOBS": {"CACHE_TTL": 10**20}}, "jobs.E040"),
        ({"JOBS": {"CACHE_LOCK_TIMEOUT": float("inf")}}, "jobs.E040"),
        ({"JOBS": {"CACHE_LOCK_WAIT": float("nan")}}, "jobs.E040"),
        ({"JOBS": {"CACHE_STALE": float("inf")}}, "jobs.E042"),
        ({"JOBS": {"CACHE_STALE": 10**20}}, "jobs.E042"),
        ({"JOBS": {"CACHE_PREFIX": "my cache"}}, "jobs.E043"),
        ({"JOBS": {"CACHE_PREFIX": ""}}, "jobs.E043"),
        ({"JOBS": {"CACHE_ALIAS": "nope"}}, "jobs.E044"),
        (caches(BACKEND="django.core.cache.backends.locmem.LocMemCache"), "jobs.W040"),
        (caches(OPTIONS={}), "jobs.W041"),
    ],
)
def test_cache_misconfiguration_is_reported(overrides, expected):
    assert ids(**overrides) == [expected]


def ten_years_of(x):
    return str(x)


def test_the_longest_settings_that_pass_work(redis):
    """Ten years, and a lock timeout in a fraction of a second: what passes the checks works on a miss."""
    ten_years = 10 * 365 * 24 * 3600
    jobs = {"CACHE_TTL": ten_years, "CACHE_STALE": ten_years, "CACHE_LOCK_TIMEOUT": 2.5}
    assert ids(JOBS=jobs) == []
    with override_settings(JOBS=jobs):
        long_lived = cached(namespace="ten-years")(ten_years_of)
        assert long_lived(1) == long_lived(1) == "1"
        assert store().claim_refresh("an entry") is True
    (key,) = redis.keys("*jobs-cache:2:entry:ten-years:*")
    assert redis.ttl(key) > ten_years  # fresh for ten years less the jitter, then stale for ten years


def test_cache_view_middleware_must_come_first():
    ours, middleware = "jobs.cache.middleware.CacheViewMiddleware", list(settings.MIDDLEWARE)
    assert ids(MIDDLEWARE=[ours, *middleware]) == []
    assert ids(MIDDLEWARE=[*middleware[:1], ours, *middleware[1:]]) == ["jobs.W042"]

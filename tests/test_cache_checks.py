"""System checks of the cache settings (jobs.E040-E044, jobs.W040-W042)."""

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings


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
        ({"JOBS": {"CACHE_PREFIX": "my cache"}}, "jobs.E043"),
        ({"JOBS": {"CACHE_PREFIX": ""}}, "jobs.E043"),
        ({"JOBS": {"CACHE_ALIAS": "nope"}}, "jobs.E044"),
        (caches(BACKEND="django.core.cache.backends.locmem.LocMemCache"), "jobs.W040"),
        (caches(OPTIONS={}), "jobs.W041"),
    ],
)
def test_cache_misconfiguration_is_reported(overrides, expected):
    assert ids(**overrides) == [expected]


def test_cache_view_middleware_must_come_first():
    ours, middleware = "jobs.cache.middleware.CacheViewMiddleware", list(settings.MIDDLEWARE)
    assert ids(MIDDLEWARE=[ours, *middleware]) == []
    assert ids(MIDDLEWARE=[*middleware[:1], ours, *middleware[1:]]) == ["jobs.W042"]

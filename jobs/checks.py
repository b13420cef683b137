"""System checks: a setting that cannot work fails ``manage.py check``, not the first enqueue."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from . import declarations
from .conf import DEFAULTS, jobs_settings
from .exceptions import InvalidSchedule
from .intervals import NEVER
from .transport import DJANGO_APP, JSON_SERIALIZER

JSON_SERIALIZERS = {JSON_SERIALIZER}
NUMERIC_SETTINGS = (
    "REDIS_CONNECT_TIMEOUT",
    "REDIS_SOCKET_TIMEOUT",
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "DUE_INTERVAL",
    "RELAY_INTERVAL",
    "RELAY_GRACE",
    "ABANDONED_AFTER",
    "DEFAULT_MAX_ATTEMPTS",
    "RECONCILE_INTERVAL",
    "PRUNE_INTERVAL",
    "ENQUEUE_RETRY_AFTER",
    "SCHEDULE_GRACE",
    "ROW_LOCK_TIMEOUT",
)
#: Retention settings: a positive number, or None for "keep for ever".
RETENTION_SETTINGS = ("RETAIN_FINISHED", "RETAIN_FINISHED_PER_QUEUE", "RETAIN_FAILED")


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list:
    errors: list = []
    user = getattr(settings, "JOBS", None)
    if user is not None and not isinstance(user, dict):
        return [
            Error("JOBS must be a dict.", hint="See the README for the keys and defaults.", id="jobs.E001")
        ]
    for key in sorted(set(user or {}) - set(DEFAULTS)):
        errors.append(
            Warning(
                f"JOBS has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(DEFAULTS)}.",
                id="jobs.W001",
            )
        )
    for key in NUMERIC_SETTINGS:
        value = getattr(jobs_settings, key)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            errors.append(Error(f"JOBS[{key!r}] must be a positive number, not {value!r}.", id="jobs.E002"))
    for key in RETENTION_SETTINGS:
        value = getattr(jobs_settings, key)
        valid = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        if value is not None and not valid:
            errors.append(
                Error(
                    f"JOBS[{key!r}] must be a positive number or None, not {value!r}.",
                    hint="None keeps those records for ever.",
                    id="jobs.E020",
                )
            )
    bound = jobs_settings.MAX_ARGUMENTS_BYTES
    if bound is not None and not (isinstance(bound, int) and not isinstance(bound, bool) and bound > 0):
        errors.append(
            Error(
                f"JOBS['MAX_ARGUMENTS_BYTES'] must be a whole number of bytes or None, not {bound!r}.",
                hint="None accepts arguments of any size.",
                id="jobs.E070",
            )
        )
    concurrency = jobs_settings.WORKER_CONCURRENCY
    if not (isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency >= 1):
        errors.append(
            Error(
                f"JOBS['WORKER_CONCURRENCY'] must be a whole number of jobs, 1 or more, not {concurrency!r}.",
                hint="It is how many jobs one jobs.worker.ThreadedWorker process runs at once.",
                id="jobs.E090",
            )
        )
    return errors


@register(Tags.compatibility)
def check_queues(app_configs: Any = None, **kwargs: Any) -> list:
    errors: list = []
    if DJANGO_APP not in settings.INSTALLED_APPS:
        errors.append(
            Error(f"{DJANGO_APP!r} must be in INSTALLED_APPS.", hint="Add it before 'jobs'.", id="jobs.E003")
        )
    queues = getattr(settings, "RQ_QUEUES", None)
    if not isinstance(queues, dict) or not queues:
        return [*errors, Error("RQ_QUEUES must define at least one queue.", id="jobs.E004")]
    if jobs_settings.DEFAULT_QUEUE not in queues:
        errors.append(
            Error(
                f"JOBS['DEFAULT_QUEUE'] is {jobs_settings.DEFAULT_QUEUE!r}, which is not in RQ_QUEUES.",
                hint=f"Use one of: {', '.join(sorted(queues))}.",
                id="jobs.E005",
            )
        )
    for name, config in sorted(queues.items()):
        serializer = config.get("SERIALIZER") if isinstance(config, dict) else None
        if _dotted(serializer) not in JSON_SERIALIZERS:
            errors.append(
                Warning(
                    f"RQ_QUEUES[{name!r}] does not use the JSON serializer.",
                    hint=f"Set 'SERIALIZER': {JSON_SERIALIZER!r} so django-rq's pages can read "
                    "the jobs; this app never unpickles what it reads from Redis.",
                    id="jobs.W002",
                )
            )
    return errors


@register(Tags.compatibility)
def check_worker_class(app_configs: Any = None, **kwargs: Any) -> list:
    configured = (getattr(settings, "RQ", None) or {}).get("WORKER_CLASS")
    try:
        worker_class = import_string(configured) if isinstance(configured, str) else configured
    except ImportError as exc:
        return [Error(f"RQ['WORKER_CLASS'] cannot be imported: {exc}.", id="jobs.E006")]
    # A mark read from the class: the top of the app never imports the worker side.
    if not (isinstance(worker_class, type) and getattr(worker_class, "records_in_ledger", False)):
        return [
            Warning(
                "manage.py rqworker does not use a `jobs` worker class.",
                hint="Set RQ = {'WORKER_CLASS': 'jobs.worker.ThreadedWorker'} (or 'jobs.worker.Worker'), "
                "or pass --worker-class; other workers unpickle payloads and do not run the relay.",
                id="jobs.W003",
            )
        ]
    return []


def _dotted(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return f"{value.__module__}.{getattr(value, '__qualname__', type(value).__qualname__)}"


CACHE_POSITIVE_SETTINGS = (
    "CACHE_TTL",
    "CACHE_LOCK_TIMEOUT",
    "CACHE_LOCK_WAIT",
    "CACHE_RETRY_AFTER",
    "CACHE_WARN_INTERVAL",
    "CACHE_STATS_INTERVAL",
)


def _cache_seconds(value: Any, allow_zero: bool = False) -> bool:
    """As the cache decorators bound their seconds: finite, at most ten years (what Redis can expire by)."""
    return _number(value) and (value >= 0 if allow_zero else value > 0) and value <= NEVER


@register(Tags.caches)
def check_cache(app_configs: Any = None, **kwargs: Any) -> list:
    """The settings of the cache decorators (``jobs.cache``), and the cache they use."""
    errors: list = []
    for key in CACHE_POSITIVE_SETTINGS:
        value = getattr(jobs_settings, key)
        if not _cache_seconds(value):
            message = f"JOBS[{key!r}] must be a number of seconds above 0 and at most {NEVER} (ten years)"
            errors.append(Error(f"{message}, not {value!r}.", id="jobs.E040"))
    jitter, stale = jobs_settings.CACHE_JITTER, jobs_settings.CACHE_STALE
    if not (_number(jitter) and 0 <= jitter < 1):
        message = f"JOBS['CACHE_JITTER'] must be from 0 to below 1, not {jitter!r}."
        errors.append(Error(message, id="jobs.E041"))
    if not _cache_seconds(stale, allow_zero=True):
        message = f"JOBS['CACHE_STALE'] must be from 0 to {NEVER} seconds (ten years), not {stale!r}."
        errors.append(Error(message, id="jobs.E042"))
    prefix = jobs_settings.CACHE_PREFIX
    if not isinstance(prefix, str) or not prefix or not prefix.isascii() or any(c.isspace() for c in prefix):
        errors.append(
            Error(f"JOBS['CACHE_PREFIX'] must be ASCII text without spaces, not {prefix!r}.", id="jobs.E043")
        )
    alias = jobs_settings.CACHE_ALIAS
    config = getattr(settings, "CACHES", {}).get(alias)
    if config is None:
        return [*errors, Error(f"JOBS['CACHE_ALIAS'] is {alias!r}, which is not in CACHES.", id="jobs.E044")]
    if config.get("BACKEND") != "django_redis.cache.RedisCache":
        errors.append(
            Warning(
                f"CACHES[{alias!r}] does not use django-redis, which the jobs.cache decorators need.",
                hint="Set its BACKEND to 'django_redis.cache.RedisCache', or JOBS['CACHE_ALIAS'] to a cache "
                "that does; silence jobs.W040 if you do not use jobs.cache.",
                id="jobs.W040",
            )
        )
    elif not {"SOCKET_TIMEOUT", "SOCKET_CONNECT_TIMEOUT"} <= set(config.get("OPTIONS", {})):
        errors.append(
            Warning(
                f"CACHES[{alias!r}] sets no SOCKET_TIMEOUT or SOCKET_CONNECT_TIMEOUT.",
                hint="Without them a Redis that hangs hangs every cached request; set both in OPTIONS "
                "(e.g. 0.5 seconds).",
                id="jobs.W041",
            )
        )
    return errors


CACHE_MIDDLEWARE = "jobs.cache.middleware.CacheViewMiddleware"


@register(Tags.caches)
def check_cache_middleware(app_configs: Any = None, **kwargs: Any) -> list:
    """CacheViewMiddleware decides to store once the whole response is built: only the outermost can."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if CACHE_MIDDLEWARE not in middleware or middleware.index(CACHE_MIDDLEWARE) == 0:
        return []
    return [
        Warning(
            f"{CACHE_MIDDLEWARE} is not the first entry of MIDDLEWARE.",
            hint="Move it to the top: the middleware above it can still set cookies or add Vary headers "
            "after it has stored a page.",
            id="jobs.W042",
        )
    ]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


@register(Tags.compatibility)
def check_ledger_commit(app_configs: Any = None, **kwargs: Any) -> list:
    value = jobs_settings.LEDGER_ASYNC_COMMIT
    if not isinstance(value, bool):
        return [Error(f"JOBS['LEDGER_ASYNC_COMMIT'] must be True or False, not {value!r}.", id="jobs.E060")]
    return []


@register(Tags.compatibility)
def check_schedules(app_configs: Any = None, **kwargs: Any) -> list:
    """Each schedule of ``JOBS["SCHEDULES"]`` names a registered job, reads as a cron expression or an
    interval, in a known zone, with arguments the job takes; no name is declared twice."""
    try:
        declarations.declared()
    except InvalidSchedule as exc:
        return [
            Error(
                str(exc),
                hint="See the README, Recurring jobs: a 'function' registered with @job, and a 'cron' "
                "(croniter's syntax) or an 'every' (seconds or a timedelta).",
                id="jobs.E080",
            )
        ]
    return []


# The check that runs each TASKS backend's check() (JobsBackend's among them) is registered by Django's
# task framework when it is imported; a project whose code has not imported it yet still gets it here.
with contextlib.suppress(ImportError):
    from .tasks import framework as _tasks_framework  # noqa: F401


#: The shortest bearer token the metrics endpoint accepts as its setting.
METRICS_TOKEN_MIN_LENGTH = 16
#: What a bearer token may hold (RFC 6750, ``b64token``): a token with spaces around it (a file's final
#: newline) or other characters could never arrive in an ``Authorization`` header as it is set.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


@register(Tags.security)
def check_metrics(app_configs: Any = None, **kwargs: Any) -> list:
    errors = []
    token = jobs_settings.METRICS_TOKEN
    if token is not None and not (
        isinstance(token, str) and len(token) >= METRICS_TOKEN_MIN_LENGTH and BEARER_TOKEN.fullmatch(token)
    ):
        errors.append(
            Error(
                f"JOBS['METRICS_TOKEN'] must be None or a string of at least {METRICS_TOKEN_MIN_LENGTH} "
                "characters, each a letter, a digit or one of - . _ ~ + / (then = at the end): a bearer "
                "token (RFC 6750), with no space or newline around it.",
                hint="Make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                id="jobs.E087",
            )
        )
    if not _positive(jobs_settings.METRICS_WINDOW):
        errors.append(
            Error(
                f"JOBS['METRICS_WINDOW'] must be a positive number of seconds, not "
                f"{jobs_settings.METRICS_WINDOW!r}.",
                id="jobs.E088",
            )
        )
    return errors

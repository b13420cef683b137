"""Settings of the benchmark runs: the demo's, pointed at the database and Redis the bench made.

BENCH_DATABASE_URL  the database the bench created (a SQLite file or a PostgreSQL database)
REDIS_URL           the redis-server the bench started
BENCH_JOBS          JOBS settings of one case, as JSON, over the demo's
"""

import json
import os

import dj_database_url

from jobsite.settings import *  # noqa: F403
from jobsite.settings import RQ_QUEUES

# A worker keeps its database connection between jobs, as the README recommends for workers.
DATABASES = {"default": dj_database_url.parse(os.environ["BENCH_DATABASE_URL"], conn_max_age=None)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Write-ahead log, synced at checkpoints: what the README recommends for SQLite in production.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEBUG = False
# Extra JOBS settings of one benchmark case (e.g. a worker with LEDGER_ASYNC_COMMIT), as JSON. Without the
# demo's schedule: its runs would be counted among a drain's records.
JOBS = {key: value for key, value in JOBS.items() if key != "SCHEDULES"}  # noqa: F405
JOBS = {**JOBS, **json.loads(os.environ.get("BENCH_JOBS", "{}"))}
RQ_QUEUES = {name: {**config, "URL": os.environ["REDIS_URL"]} for name, config in RQ_QUEUES.items()}
# A queue of its own for each worker of the latency benchmark, which runs them side by side.
RQ_QUEUES.update({f"latency-{n}": RQ_QUEUES["default"] for n in range(8)})
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ["REDIS_URL"],
        "KEY_PREFIX": "bench",
        # As in production (and the demo): a hung Redis must not hang requests (system check jobs.W041).
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
    }
}
LOGGING = {"version": 1, "disable_existing_loggers": False}

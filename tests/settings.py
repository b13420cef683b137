"""The demo's settings, with a database of the test run's own and a Redis the tests start themselves."""

import os
import tempfile

from jobsite.settings import *  # noqa: F403
from jobsite.settings import DATABASES, JOBS

# The demo's every-minute schedule would add jobs to every test that runs a worker.
JOBS = {key: value for key, value in JOBS.items() if key != "SCHEDULES"}

# Every test process (each pytest-xdist process too) creates databases named after its pid; a worker
# subprocess started by a test is told which one its test created.
if os.environ.get("JOBS_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["JOBS_TEST_DB_NAME"]
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that worker processes see the same database.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"jobs-test-{os.getpid()}.sqlite3")
    }
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_jobs_{os.getpid()}"}

# A second database, to show that a job is pushed when *its* database's transaction commits.
DATABASES["other"] = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": os.environ.get("JOBS_TEST_OTHER_DB_NAME", ""),
    "TEST": {"NAME": os.path.join(tempfile.gettempdir(), f"jobs-test-other-{os.getpid()}.sqlite3")},
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {"version": 1, "disable_existing_loggers": False}

# A worker subprocess started by a fault test gets the test's JOBS overrides (small intervals) as JSON.
if os.environ.get("JOBS_TEST_JOBS"):
    import json

    JOBS = {**JOBS, **json.loads(os.environ["JOBS_TEST_JOBS"])}

# A worker subprocess started by a test of a Redis deployment (password, TLS, Sentinel) gets that test's
# RQ_QUEUES and CACHES as JSON.
if os.environ.get("JOBS_TEST_REDIS_SETTINGS"):
    import json

    globals().update(json.loads(os.environ["JOBS_TEST_REDIS_SETTINGS"]))

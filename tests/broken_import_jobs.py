"""A job module that fails on import in a process started with ``JOBS_TEST_BREAK_IMPORT`` set."""

import os

from jobs import job

if os.environ.get("JOBS_TEST_BREAK_IMPORT"):
    raise RuntimeError("this module cannot be imported here")


@job(max_attempts=1)
def never_imported():
    return "imported"

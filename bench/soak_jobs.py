"""The soak's job: it writes a row per run in a table of its own, in the soak's database, with the
moment the run started and, for a delayed job, the moment it was due."""

import time

from django.db import connection

from jobs import current_job, job

TABLE = "soak_runs"


def create_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} "
            "(job_id VARCHAR(36) NOT NULL, started DOUBLE PRECISION NOT NULL, due DOUBLE PRECISION NULL)"
        )


@job(max_attempts=5, backoff=[0])
def counted(due: float | None = None) -> None:
    """``due``: the Unix time a delayed job was due, given by its enqueuer (a retry moves the record's
    own ``scheduled_for``)."""
    started = time.time()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (job_id, started, due) VALUES (%s, %s, %s)",
            [str(current_job().pk), started, due],
        )

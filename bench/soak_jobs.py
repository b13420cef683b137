"""The soak's job: it counts its own runs in a table of its own, in the soak's database."""

from django.db import connection

from jobs import current_job, job

TABLE = "soak_runs"


def create_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (job_id VARCHAR(36) NOT NULL)")


@job(max_attempts=5, backoff=[0])
def counted() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (job_id) VALUES (%s)", [str(current_job().pk)])

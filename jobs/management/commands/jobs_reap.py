"""``manage.py jobs_reap``: retry or fail the started jobs whose worker is gone.

Workers do this on their own every ``ABANDONED_AFTER / 8`` seconds; run this from cron where every
worker may be busy with long jobs, or none runs. A run notes the dead-looking jobs, and a later run (at
least two heartbeats later, as cron's minute is) retries or fails those still so. A record that another
process holds locked is left for a later run, and named in the command's error.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS
from redis.exceptions import RedisError

from jobs.upkeep import locks
from jobs.upkeep.reaper import reap


class Command(BaseCommand):
    help = "Retry or fail started jobs whose worker died (no heartbeat within JOBS['ABANDONED_AFTER'])."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias holding the records."
        )

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        with locks.for_command(database):
            try:
                found = reap(using=database)
            except RedisError as exc:
                raise CommandError(f"Redis is unreachable ({exc}); nothing was reaped.") from exc
            self.stdout.write(f"{found} abandoned job(s) retried or failed.")

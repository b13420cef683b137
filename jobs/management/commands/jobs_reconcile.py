"""``manage.py jobs_reconcile``: push again the waiting records that Redis no longer holds (and catch up
on workflows, see ``jobs.upkeep.workflows``).

After a FLUSHALL, or a failover to an empty replica. Workers do this every
``JOBS["RECONCILE_INTERVAL"]`` seconds; run it at once after such an event. Started jobs that Redis
lost are handled by ``jobs_reap``. A record that another process holds locked is left for a later run,
and named in the command's error.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS
from redis.exceptions import RedisError

from jobs.upkeep import locks
from jobs.upkeep.reaper import reap
from jobs.upkeep.reconcile import reconcile


class Command(BaseCommand):
    help = "Push again waiting job records that Redis lost, and reap started ones it lost."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias holding the records."
        )

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        with locks.for_command(database):
            try:
                pushed = reconcile(using=database)
                reaped = reap(using=database)
            except RedisError as exc:
                raise CommandError(f"Redis is unreachable ({exc}); nothing was reconciled.") from exc
            self.stdout.write(
                f"{pushed} waiting record(s) pushed again or released; {reaped} abandoned job(s) handled."
            )

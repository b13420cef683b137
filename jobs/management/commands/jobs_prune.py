"""``manage.py jobs_prune``: delete the records that retention says are due (see ``JOBS["RETAIN_*"]``).

A record that another process holds locked is left for a later run; one whose attempts or links it
holds locked is named in the command's error.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS

from jobs.upkeep import locks
from jobs.upkeep.retention import prune


class Command(BaseCommand):
    help = "Delete old finished and failed job records, as JOBS['RETAIN_*'] says."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias holding the records."
        )

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        with locks.for_command(database):
            pruned = prune(using=database)
            self.stdout.write(
                f"Deleted {pruned.total} record(s): {pruned.finished} finished past their age, "
                f"{pruned.over_count} finished beyond the per-queue count, {pruned.failed} failed."
            )

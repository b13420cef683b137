"""``manage.py jobs_relay``: push the records that could not reach Redis when their transaction committed.

Workers run the relay on their own every ``JOBS["RELAY_INTERVAL"]`` seconds; this command is for a
deployment where no worker runs yet, or for a cron job. A record that another process holds locked is
pushed, left waiting, and named in the command's error (``jobs.upkeep.locks.for_command``).
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS
from redis.exceptions import RedisError

from jobs.models import Job
from jobs.upkeep import locks
from jobs.upkeep.relay import relay


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


class Command(BaseCommand):
    help = "Push job records that are waiting to be dispatched to Redis."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias holding the records."
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=500,
            help="Records pushed per Redis pipeline (default 500).",
        )

    def handle(self, *args: Any, database: str, batch_size: int, **options: Any) -> None:
        pushed = 0
        with locks.for_command(database):
            try:
                while count := relay(limit=batch_size, using=database):
                    pushed += count
            except RedisError as exc:
                waiting = Job.objects.using(database).undispatched().count()
                raise CommandError(
                    f"Redis is unreachable ({exc}); pushed {pushed}, {waiting} record(s) still waiting."
                ) from exc
            left = Job.objects.using(database).undispatched().count()
            self.stdout.write(f"Pushed {pushed} record(s) to Redis; {left} still waiting.")

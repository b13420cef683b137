"""``manage.py jobs_schedule list|sync|tick|run [name]``: the recurring jobs, seen and run from a shell.

A schedule that another process holds locked is not waited for: ``tick`` fires the others and names
it in the command's error; ``sync`` and ``run`` change nothing and say so.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from redis.exceptions import RedisError

from jobs import schedules
from jobs.exceptions import JobsError
from jobs.models import Job, Schedule
from jobs.upkeep import locks
from jobs.upkeep.schedules import fire_due, holder


class Command(BaseCommand):
    help = (
        "list: the schedules with their next tick and last run. sync: write the schedules code and "
        "settings declare to the database. tick: fire the ticks that have come (safe beside running "
        "workers: one job per tick). run NAME: run a schedule once now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "sync", "tick", "run"])
        parser.add_argument("name", nargs="?", help="The schedule to run.")

    def handle(self, *args: Any, action: str, name: str | None, **options: Any) -> None:
        try:
            if action == "list":
                self._list()
                return
            with locks.for_command():
                if action == "sync":
                    outcome = schedules.sync()
                    for kind in ("created", "updated", "deleted"):
                        self.stdout.write(f"{kind}: {', '.join(getattr(outcome, kind)) or '-'}")
                elif action == "tick":
                    fired = fire_due()
                    self.stdout.write(f"Fired {len(fired)} tick(s).")
                else:
                    self._run(name)
        except JobsError as exc:
            raise CommandError(str(exc)) from exc

    def _run(self, name: str | None) -> None:
        if not name:
            raise CommandError("Name the schedule to run (manage.py jobs_schedule list shows them).")
        try:
            schedule = Schedule.objects.get(name=name)
        except Schedule.DoesNotExist:
            raise CommandError(f"No schedule is named {name!r}.") from None
        record = schedules.run_now(schedule)
        self.stdout.write(f"Schedule {name!r}: job {record.pk} enqueued.")

    def _list(self) -> None:
        last = Job.objects.filter(schedule=OuterRef("pk")).order_by("-enqueued_at")
        rows = Schedule.objects.annotate(
            last_run_at=Subquery(last.values("enqueued_at")[:1]),
            last_run_status=Subquery(last.values("status")[:1]),
        )
        for row in rows:
            state = "enabled" if row.enabled else "disabled"
            next_tick = (
                timezone.localtime(row.next_tick).isoformat() if row.next_tick and row.enabled else "-"
            )
            last_run = (
                f"{timezone.localtime(row.last_run_at).isoformat()} {row.last_run_status}"
                if row.last_run_at
                else "-"
            )
            self.stdout.write(
                f"{row.name}: {row.function} {row.cadence}, {state}, from {row.source}; "
                f"next {next_tick}; last run {last_run}"
            )
        try:
            self.stdout.write(f"Scheduling role: {holder() or 'free (no worker holds it)'}")
        except RedisError as exc:  # the listing is still worth having without Redis
            self.stdout.write(f"Scheduling role: unknown (Redis: {exc})")

"""``manage.py jobs_queue pause|resume|status [queue]``: stop workers taking jobs from a queue, or resume."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobs import pause


class Command(BaseCommand):
    help = "Pause or resume a queue (its jobs wait; workers skip it), or show which queues are paused."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["pause", "resume", "status"])
        parser.add_argument("queue", nargs="?", help="A queue of RQ_QUEUES (status: all when omitted).")

    def handle(self, *args: Any, action: str, queue: str | None, **options: Any) -> None:
        if queue is not None and queue not in settings.RQ_QUEUES:
            raise CommandError(
                f"{queue!r} is not a queue of RQ_QUEUES (known: {', '.join(sorted(settings.RQ_QUEUES))})."
            )
        try:
            if action == "status":
                self._status([queue] if queue else sorted(settings.RQ_QUEUES))
            elif queue is None:
                raise CommandError(f"Name the queue to {action}.")
            elif action == "pause":
                changed = pause.pause(queue)
                self.stdout.write(
                    f"Queue {queue!r} paused." if changed else f"Queue {queue!r} was already paused."
                )
            else:
                changed = pause.resume(queue)
                self.stdout.write(
                    f"Queue {queue!r} resumed." if changed else f"Queue {queue!r} was not paused."
                )
        except RedisTimeoutError as exc:
            if action == "status":
                raise CommandError(f"Redis did not answer in time ({exc}).") from exc
            # Sent, and not answered: Redis carries the command out when it answers again.
            raise CommandError(
                f"Redis did not answer in time ({exc}); queue {queue!r} may be {action}d once it does: "
                f"check with `jobs_queue status {queue}`."
            ) from exc
        except RedisError as exc:
            raise CommandError(f"Redis is unreachable ({exc}).") from exc

    def _status(self, names: list[str]) -> None:
        paused = pause.paused(names)
        for name in names:
            self.stdout.write(f"{name}: {'paused' if name in paused else 'active'}")

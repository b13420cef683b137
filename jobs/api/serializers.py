"""The JSON shape of a job record, shared by the API and the demo's status pages."""

from __future__ import annotations

from typing import Any

from ..codec import plain
from ..models import Job


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_as_dict(record: Job) -> dict[str, Any]:
    duration = record.duration
    return {
        "id": str(record.pk),
        "function": record.function,
        "queue": record.queue,
        "status": record.status,
        "dispatched": record.is_dispatched,
        "priority": record.priority,
        "attempts": record.attempts,
        "max_attempts": record.max_attempts,
        "progress": record.progress,
        "progress_message": record.progress_message,
        "result": plain(record.result),
        "error": (
            {"class": record.error_class, "message": record.error_message} if record.error_class else None
        ),
        "worker": record.worker_name or None,
        "enqueued_at": _iso(record.enqueued_at),
        "scheduled_for": _iso(record.scheduled_for),
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "duration": duration.total_seconds() if duration is not None else None,
        "dependencies": {"total": record.dependencies_total, "pending": record.dependencies_pending},
        "released_at": _iso(record.released_at),
    }

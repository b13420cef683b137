"""How the admin shows a job's fields: status colours, progress bars, durations, JSON and tracebacks.

Everything a job carries was written by its code or its caller, so every value is escaped (format_html).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..models import Status

STATUS_COLOURS: dict[str, str] = {
    Status.QUEUED: "#417690",
    Status.SCHEDULED: "#6f42c1",
    Status.STARTED: "#b8860b",
    Status.RETRYING: "#d2691e",
    Status.FINISHED: "#2e7d32",
    Status.FAILED: "#c62828",
    Status.CANCELLED: "#6c757d",
    Status.DEFERRED: "#5f7d95",
}


def status_badge(status: str, label: str) -> SafeString:
    return format_html(
        '<span class="jobs-status jobs-status-{}" style="color:#fff;background:{};padding:1px 6px;'
        'border-radius:3px;white-space:nowrap">{}</span>',
        status,
        STATUS_COLOURS.get(status, "#444"),
        label,
    )


def progress_bar(percent: float) -> SafeString:
    percent = max(0.0, min(100.0, float(percent or 0)))
    return format_html(
        '<span style="white-space:nowrap"><span class="jobs-progress" title="{}%" '
        'style="display:inline-block;width:50px;height:10px;background:#e0e0e0;border-radius:3px;'
        'overflow:hidden;vertical-align:middle">'
        '<span style="display:block;height:100%;width:{}%;background:#417690"></span></span> {}%</span>',
        f"{percent:.0f}",
        f"{percent:.1f}",
        f"{percent:.0f}",
    )


def duration_text(duration: timedelta | None) -> str:
    if duration is None:
        return "-"
    seconds = duration.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


def pretty_json(value: Any) -> SafeString:
    return format_html("<pre class='jobs-json'>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


def traceback_block(text: str) -> SafeString | str:
    if not text:
        return "-"
    return format_html(
        "<pre class='jobs-traceback' style='white-space:pre-wrap;max-height:30em;overflow:auto'>{}</pre>",
        text,
    )


def waiting_note(badge: SafeString, waiting_for: str) -> SafeString:
    """A status badge, with "waiting for 3 of 100" under it while the job waits for dependencies."""
    if not waiting_for:
        return badge
    return format_html('{}<br><small class="jobs-waiting-for">{}</small>', badge, waiting_for)


def call_text(job: Any, limit: int = 60) -> str:
    """``function(arguments)`` in short, as a job's link reads: the arguments tell jobs of one function
    apart."""
    parts = [json.dumps(value, ensure_ascii=False) for value in job.args or []]
    parts += [f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in (job.kwargs or {}).items()]
    arguments = ", ".join(parts)
    if len(arguments) > limit:
        arguments = arguments[: limit - 1] + "…"
    return f"{job.function}({arguments})"


def job_links(links: Iterable[tuple[str, str, str, str, str]], more: int, more_url: str) -> SafeString | str:
    """A list of jobs linked to their pages: (url, function, status, status label, note) each, then a
    link to the rest when there are ``more``."""
    items = format_html_join(
        "",
        '<li><a href="{}">{}</a> {} <small>{}</small></li>',
        ((url, function, status_badge(status, label), note) for url, function, status, label, note in links),
    )
    if not items:
        return "-"
    rest = format_html('<li><a href="{}">{}</a></li>', more_url, f"… {more} more") if more > 0 else ""
    return format_html('<ul class="jobs-links" style="margin:0;padding-left:1.2em">{}{}</ul>', items, rest)

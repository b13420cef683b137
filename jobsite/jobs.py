"""The demo's jobs: one that reports progress, one that fails a given number of times, one that a
schedule runs every minute (``JOBS["SCHEDULES"]`` in the settings), and a fan-out whose parts a callback
adds up once they have all finished."""

import time

from django.utils import timezone

from jobs import current_job, dependency_results, job, set_progress

ECHO_STEPS = 10


@job
def echo(msg: str, ms: int = 1000) -> str:
    """Report progress from 0 to 100 over ``ms`` milliseconds, then return the message."""
    set_progress(0, "starting")
    for step in range(1, ECHO_STEPS + 1):
        time.sleep(ms / 1000 / ECHO_STEPS)
        set_progress(100 * step / ECHO_STEPS, f"step {step} of {ECHO_STEPS}")
    return msg


class PlannedFailure(RuntimeError):
    """Raised on purpose by the retry demo."""


@job(max_attempts=5, backoff="fixed", backoff_base=1)
def flaky(msg: str, fail: int) -> str:
    """Fail on the first ``fail`` attempts, then succeed: automatic retries at work."""
    record = current_job()
    attempt = record.attempts if record is not None else 1
    if attempt <= fail:
        raise PlannedFailure(f"planned failure {attempt} of {fail}")
    return f"{msg} (after {attempt - 1} failure(s))"


@job
def heartbeat() -> str:
    """Run every minute by the demo's schedule: says when it ran."""
    return f"alive at {timezone.now():%H:%M:%S}"


@job
def fan_out_part(part: int, ms: int) -> int:
    """One part of the fan-out: works for about ``ms`` milliseconds (parts differ), returns part squared."""
    duration = ms * (0.5 + (part % 5) / 4) / 1000
    for step in range(1, ECHO_STEPS + 1):
        time.sleep(duration / ECHO_STEPS)
        set_progress(100 * step / ECHO_STEPS, f"part {part}, step {step} of {ECHO_STEPS}")
    return part * part


@job
def fan_in_total() -> dict:
    """The fan-out's callback: runs once, after every part has finished, and adds up their results."""
    results = dependency_results()
    return {"parts": len(results), "total": sum(results)}

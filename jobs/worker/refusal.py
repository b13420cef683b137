"""Ending a job that a worker took but cannot start, with the reason on its record.

A job whose rate key raises, or whose arguments no longer decode (a model argument deleted before the
run), is failed here without running; one that met a Redis outage before it started is left to the relay.
"""

from __future__ import annotations

import functools
import logging
import traceback as tb

from django.core.exceptions import ValidationError
from django.db import router
from django.utils import timezone

from .. import signals, transitions
from ..dispatch import dispatch
from ..exceptions import qualified_name
from ..models import Job
from ..transport.runner import Call
from . import reconnect
from .execution import message_of, unclaimed, unread_record

logger = logging.getLogger("jobs")


def fail_before_run(call: Call, worker_name: str, exc: BaseException) -> bool:
    """Record a failed attempt, for good, for a job that cannot start; False when the record no longer
    waits (cancelled, or run by another worker)."""
    record = unclaimed(call)
    started_at = timezone.now()
    claim = functools.partial(transitions.claim, record, worker_name=worker_name, started_at=started_at)
    attempt = reconnect.once_more_if_the_connection_died(
        call.alias,
        claim,
        again=lambda: transitions.attempt_claimed_by(record, worker_name, started_at) or claim(),
    )
    if attempt is None:
        return False
    if not transitions.fail_attempt(
        record,
        attempt,
        error_class=qualified_name(type(exc)),
        error_message=message_of(exc),
        traceback="".join(tb.format_exception(exc)),
        retrying=False,
        push=dispatch,
    ):
        return False
    logger.error("Job %s failed before it could start: %r", call.job_id, exc)
    signals.announce_failed(record, exc)
    return True


def leave_to_relay(call: Call) -> bool:
    """Mark a waiting record undispatched, so that the relay pushes it again once Redis answers."""
    return bool(transitions.mark_undispatched([unclaimed(call)], timezone.now()))


def leave_id_to_relay(job_id: str) -> bool:
    """``leave_to_relay`` for a job known by its id only (Redis failed before RQ's job, which names the
    record's database, was read): its waiting record on the default database, if any."""
    try:
        record = unread_record(router.db_for_write(Job), job_id, "")
    except ValidationError:  # not an id of the ledger's: another RQ job
        return False
    return bool(transitions.mark_undispatched([record], timezone.now()))

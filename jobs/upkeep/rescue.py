"""Pushing again the waiting records whose jobs Redis lost or a dead worker left behind (the reaper's and
the reconciler's rescues)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .. import dispatch
from ..models import Job

logger = logging.getLogger("jobs")


def still_waiting(alias: str, pks: Iterable[Any]) -> list[Job]:
    """The records of ``pks`` that wait, read now: one that ran meanwhile is not pushed again."""
    return list(Job.objects.using(alias).waiting().filter(pk__in=list(pks), undispatched_since=None))


def push_again(records: list[Job], why: str) -> int:
    """Push ``records`` again, saying ``why`` in one line; returns how many."""
    if records:
        logger.warning(
            "%d waiting job(s) %s: pushing them again: %s",
            len(records),
            why,
            ", ".join(str(record.pk) for record in records[:20]),
        )
        dispatch.dispatch(records)
    return len(records)

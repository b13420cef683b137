"""Log lines written from signal handlers, kept.

RQ logs from its SIGINT and SIGTERM handlers ("warm shut down requested", "cold shut down"). A signal
handler runs between two bytecodes of the main flow; when that is inside a write of the same stream (a
``StreamHandler`` flushing ``sys.stdout``), Python refuses the nested write with ``RuntimeError: reentrant
call``, and ``logging`` prints a traceback in place of the line. The worker's handlers keep a line emitted
while they are already emitting, and write it as soon as the interrupted write ends.
"""

from __future__ import annotations

import logging
from typing import Any

_MARK = "_jobs_keeps_reentrant_lines"


def _keep_reentrant_lines(handler: logging.Handler) -> None:
    if getattr(handler, _MARK, False):
        return
    emit = handler.emit
    deferred: list[logging.LogRecord] = []
    emitting = False

    # ``Handler.handle`` calls ``emit`` holding the handler's reentrant lock, so another thread waits at
    # the lock: only a signal handler of the emitting thread gets here while ``emitting`` is set.
    def emit_once(record: logging.LogRecord) -> None:
        nonlocal emitting
        if emitting:
            deferred.append(record)
            return
        emitting = True
        try:
            emit(record)
            while deferred:
                emit(deferred.pop(0))
        finally:
            emitting = False

    handler.emit = emit_once  # type: ignore[method-assign]
    setattr(handler, _MARK, True)


def keep_signal_handler_lines(logger: Any) -> None:
    """Make every handler that ``logger``'s records reach keep the lines a signal handler logs."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            _keep_reentrant_lines(handler)
        current = current.parent if current.propagate else None

"""Log lines written from signal handlers, kept, and what signal handlers raise, not swallowed.

RQ logs from its SIGINT and SIGTERM handlers ("warm shut down requested", "cold shut down"). A signal
handler runs between two bytecodes of the main flow; when that is inside a write of the same stream (a
``StreamHandler`` flushing ``sys.stdout``), Python refuses the nested write with ``RuntimeError: reentrant
call``, and ``logging`` prints a traceback in place of the line. The worker's handlers keep a line emitted
while they are already emitting, and write it as soon as the interrupted write ends.

RQ's handlers also raise: ``StopRequested`` stops an idle worker (SIGTERM), ``JobTimeoutException`` a job
over its timeout (SIGALRM). Raised during a write, ``logging`` would take either for a failed write,
print it and go on: the stop, or the timeout, would be lost. The worker's handlers let them through.

``HeldLog`` holds a thread's INFO lines for a moment: the threaded worker writes RQ's line about a job it
dequeued once the job is handed over to its thread.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from ..transport.worker import BaseTimeoutException, StopRequested

_MARK = "_jobs_keeps_reentrant_lines"
#: What a signal handler of the worker raises to stop it, or to end a job: never a failed write.
_FROM_SIGNAL_HANDLERS = (StopRequested, BaseTimeoutException)


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

    handle_error = handler.handleError

    # Called by ``emit`` inside its ``except Exception``: the exception being handled is the write's.
    def handle_error_unless_from_a_signal_handler(record: logging.LogRecord) -> None:
        raised = sys.exc_info()[1]
        if isinstance(raised, _FROM_SIGNAL_HANDLERS):
            raise raised
        handle_error(record)

    handler.emit = emit_once  # type: ignore[method-assign]
    handler.handleError = handle_error_unless_from_a_signal_handler  # type: ignore[method-assign]
    setattr(handler, _MARK, True)


def keep_signal_handler_lines(logger: Any) -> None:
    """Make every handler that ``logger``'s records reach keep the lines a signal handler logs."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            _keep_reentrant_lines(handler)
        current = current.parent if current.propagate else None


class HeldLog(logging.LoggerAdapter):
    """A worker's logger whose INFO and DEBUG lines from one thread are held while it says so, and
    written, in their order, once released (a warning or an error is written at once).

    The threaded worker holds RQ's line about a job it dequeued ("default: <id>") until the job has
    started: making the line and writing it to the console is not on the path from enqueue to start.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self._thread: int | None = None
        self._held: list[tuple[int, object, tuple, dict[str, Any]]] = []

    @property
    def level(self) -> int:
        """The logger's own level (RQ reads it to start its scheduler)."""
        return self.logger.level

    def hold(self) -> None:
        """Hold the INFO and DEBUG lines this thread logs from now on, until ``release``."""
        self._thread = threading.get_ident()

    def release(self) -> None:
        """Write the lines held, and hold no more."""
        self._thread = None
        held, self._held = self._held, []
        for level, msg, args, kwargs in held:
            self.logger.log(level, msg, *args, **kwargs)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level <= logging.INFO and self._thread == threading.get_ident():
            if self.isEnabledFor(level):
                self._held.append((level, msg, args, kwargs))
            return
        # The line names the caller, not this method.
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        super().log(level, msg, *args, **kwargs)

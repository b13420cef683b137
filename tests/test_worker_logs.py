"""A line that a signal handler logs while the worker is writing another is kept (RQ logs its warm and cold
shut downs from its SIGTERM and SIGINT handlers)."""

from __future__ import annotations

import io
import logging
import signal
import threading

import pytest
from rq.exceptions import StopRequested
from rq.timeouts import JobTimeoutException

from jobs.worker.logs import HeldLog, keep_signal_handler_lines


class OneWriteAtATime(io.StringIO):
    """A stream that refuses a write nested in another, as Python's buffered files do, and that can be
    interrupted by a signal in the middle of its flush."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = False
        self.signal_in_flush: int | None = None

    def _enter(self) -> None:
        if self.busy:
            raise RuntimeError("reentrant call inside the stream")
        self.busy = True

    def write(self, text: str) -> int:
        self._enter()
        try:
            return super().write(text)
        finally:
            self.busy = False

    def flush(self) -> None:
        self._enter()
        try:
            if self.signal_in_flush is not None:
                signum, self.signal_in_flush = self.signal_in_flush, None
                signal.raise_signal(signum)  # runs the Python handler before it returns
        finally:
            self.busy = False


@pytest.fixture
def worker(restore_signal_handlers):
    from django_rq.workers import get_worker

    stream = OneWriteAtATime()
    handler = logging.StreamHandler(stream)
    rq_log = logging.getLogger("rq.worker")
    rq_log.addHandler(handler)
    level = rq_log.level
    rq_log.setLevel(logging.INFO)
    worker = get_worker("default", worker_class="jobs.worker.SimpleWorker")
    yield worker, stream
    rq_log.removeHandler(handler)
    rq_log.setLevel(level)


def test_the_warm_shut_down_line_logged_during_another_write_is_written_after_it(worker):
    worker, stream = worker
    worker.set_state("busy")  # in the middle of a job: RQ's handler asks for a stop after it
    signal.signal(signal.SIGTERM, worker.request_stop)
    stream.signal_in_flush = signal.SIGTERM
    worker.log.info("job done")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "job done"
    assert "warm shut down requested" in lines[1]
    assert worker._stop_requested


def test_without_it_the_line_is_lost_to_a_reentrant_write(capsys):
    stream = OneWriteAtATime()
    log = logging.getLogger("tests.reentrant")
    log.propagate = False
    log.addHandler(logging.StreamHandler(stream))
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: log.warning("from the signal handler"))
    try:
        stream.signal_in_flush = signal.SIGUSR1
        log.warning("main flow")
        assert stream.getvalue().splitlines() == ["main flow"]
        assert "reentrant call" in capsys.readouterr().err
        keep_signal_handler_lines(log)
        stream.signal_in_flush = signal.SIGUSR1
        log.warning("main flow again")
        assert stream.getvalue().splitlines()[1:] == ["main flow again", "from the signal handler"]
    finally:
        signal.signal(signal.SIGUSR1, previous)
        log.handlers.clear()


def test_a_stop_asked_during_a_write_of_an_idle_worker_is_not_swallowed_by_logging(worker, capsys):
    # RQ's handler stops an idle worker by raising StopRequested in whatever runs: here, the write of a
    # line (RQ's "Job OK", once the job's end is written). Logging would take it for a failed write.
    worker, stream = worker
    worker.set_state("idle")
    signal.signal(signal.SIGTERM, worker.request_stop)
    stream.signal_in_flush = signal.SIGTERM
    with pytest.raises(StopRequested):
        worker.log.info("job done")
    assert "Logging error" not in capsys.readouterr().err


def test_a_job_timeout_during_a_write_is_not_swallowed_by_logging(capsys):
    stream = OneWriteAtATime()
    log = logging.getLogger("tests.timeout_in_write")
    log.propagate = False
    log.addHandler(logging.StreamHandler(stream))
    keep_signal_handler_lines(log)

    def timed_out(signum, frame):
        raise JobTimeoutException("Task exceeded maximum timeout value (1 seconds)")

    previous = signal.signal(signal.SIGALRM, timed_out)  # as RQ's UnixSignalDeathPenalty raises it
    try:
        stream.signal_in_flush = signal.SIGALRM
        with pytest.raises(JobTimeoutException):
            log.warning("a job's line")
        assert "Logging error" not in capsys.readouterr().err
    finally:
        signal.signal(signal.SIGALRM, previous)
        log.handlers.clear()


def test_held_lines_of_one_thread_are_written_once_released_in_their_order():
    stream = io.StringIO()
    logger = logging.getLogger("tests.held")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(funcName)s"))
    logger.addHandler(handler)
    log = HeldLog(logger)
    try:
        log.hold()
        log.info("dequeued %s", "job-1")
        log.debug("details")
        log.warning("Redis is slow")  # not held
        other = threading.Thread(target=log.info, args=("from another thread",))
        other.start()
        other.join()
        assert stream.getvalue().splitlines() == [
            "WARNING Redis is slow test_held_lines_of_one_thread_are_written_once_released_in_their_order",
            "INFO from another thread run",
        ]
        log.release()
        assert stream.getvalue().splitlines()[2:] == ["INFO dequeued job-1 release", "DEBUG details release"]
        log.info("after")  # no longer held
        assert stream.getvalue().splitlines()[4] == (
            "INFO after test_held_lines_of_one_thread_are_written_once_released_in_their_order"
        )
        assert log.level == logging.DEBUG
    finally:
        logger.handlers.clear()


@pytest.mark.django_db(transaction=True)
def test_the_threaded_worker_writes_rqs_line_about_each_job_it_dequeued(redis):
    from tests import jobs
    from tests.helpers import drain

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    rq_log = logging.getLogger("rq.worker")
    rq_log.addHandler(handler)
    level = rq_log.level
    rq_log.setLevel(logging.INFO)
    try:
        records = [jobs.add.enqueue(n, 1) for n in range(3)]
        drain("jobs.worker.ThreadedWorker", queues=("default",), name="threaded-logs")
    finally:
        rq_log.removeHandler(handler)
        rq_log.setLevel(level)
    lines = stream.getvalue().splitlines()
    # The first job is dequeued by RQ and logged by it; the others, taken with it, are not dequeued.
    assert [line for line in lines if str(records[0].pk) in line] == [
        f"Worker threaded-logs: default: {records[0].pk}"
    ]

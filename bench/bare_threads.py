"""The ceiling of the concurrency benchmark: ``python -m bench.bare_threads THREADS JOBS`` runs the 50 ms
job's function (``bench.marks.sleep_and_mark``) JOBS times in THREADS plain threads that take their next
run from memory, with no framework, no queue in Redis and no record."""

from __future__ import annotations

import queue
import sys
import threading

from bench.marks import sleep_and_mark


def main(threads: int, jobs: int) -> None:
    runs: queue.SimpleQueue[None] = queue.SimpleQueue()
    for _ in range(jobs):
        runs.put(None)

    def work() -> None:
        while True:
            try:
                runs.get_nowait()
            except queue.Empty:
                return
            sleep_and_mark()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))

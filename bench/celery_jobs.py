"""The 50 ms job for Celery (the concurrency benchmark's baseline): ``celery -A bench.celery_jobs worker``."""

import os

from celery import Celery

from bench.marks import sleep_and_mark

app = Celery("bench", broker=os.environ["REDIS_URL"])
app.conf.update(task_ignore_result=True, task_default_queue="bench", worker_hijack_root_logger=False)


@app.task
def sleepy() -> None:
    sleep_and_mark()

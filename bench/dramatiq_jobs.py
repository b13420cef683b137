"""The 50 ms job for Dramatiq (the concurrency benchmark's baseline): ``dramatiq bench.dramatiq_jobs``."""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.marks import sleep_and_mark

dramatiq.set_broker(RedisBroker(url=os.environ["REDIS_URL"]))


@dramatiq.actor(max_retries=0, queue_name="bench")
def sleepy() -> None:
    sleep_and_mark()

"""The no-op job for Huey (the drain benchmark's baseline): ``huey_consumer bench.huey_jobs.huey -w 1``."""

import os

from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ["REDIS_URL"], results=False)


@huey.task()
def noop() -> None:
    """Huey's no-op job."""

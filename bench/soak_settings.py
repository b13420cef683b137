"""The bench's settings, with the soak's ``JOBS`` overrides (JSON in ``SOAK_JOBS``)."""

import json
import os

from bench.settings import *  # noqa: F403
from bench.settings import JOBS

JOBS = {**JOBS, **json.loads(os.environ.get("SOAK_JOBS", "{}"))}

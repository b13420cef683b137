"""What every benchmark shares: one measured case, the comparison of two, and Redis's command counts."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import redis


@dataclass
class Case:
    """One side of a comparison: a figure per run, and the costs that do not depend on the machine."""

    label: str
    runs: list[float] = field(default_factory=list)
    redis_commands: float | None = None  # per job, from INFO commandstats
    db_statements: float | None = None  # per job

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")


@dataclass
class Comparison:
    """Our path against its baseline, measured in the same run."""

    bench: str
    unit: str
    jobs: int
    ours: Case
    baseline: Case
    higher_is_better: bool = True
    target: str = ""

    @property
    def ratio(self) -> float:
        """How many times better ours is than the baseline (above 1: ours is better)."""
        if not self.ours.runs or not self.baseline.runs:
            return float("nan")
        if self.higher_is_better:
            return self.ours.median / self.baseline.median
        return self.baseline.median / self.ours.median

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


class CommandCounter:
    """Counts the commands a Redis server runs between ``reset()`` and ``total()``."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def reset(self) -> None:
        self.client.config_resetstat()

    def by_command(self) -> dict[str, int]:
        stats = self.client.info("commandstats")
        counts = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
        # Our own bookkeeping: the reset and this read.
        counts.pop("config|resetstat", None)
        counts.pop("info", None)
        return counts

    def total(self) -> int:
        return sum(self.by_command().values())


class StatementCounter:
    """Counts the statements Django sends to a database while it is active (a context manager)."""

    def __init__(self, alias: str = "default") -> None:
        from django.db import connections

        self.connection = connections[alias]
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)

    def __enter__(self) -> StatementCounter:
        self.count = 0
        self._wrapper = self.connection.execute_wrapper(self)
        self._wrapper.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._wrapper.__exit__(*exc)


def clear(client: redis.Redis) -> None:
    """An empty Redis and an empty ledger, between two runs."""
    from django.db import connection

    from jobs.models import FailedAttempt, Job

    client.flushdb()
    with connection.cursor() as cursor:
        for model in (FailedAttempt, Job):
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)}")

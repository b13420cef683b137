"""The results of a run as Markdown tables: one row per comparison, medians and the ratio."""

from __future__ import annotations

from typing import Any


def _number(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _costs(ours: float | None, baseline: float | None) -> str:
    return f"{_number(ours)} / {_number(baseline)}"


def table(database: str, comparisons: list[dict[str, Any]]) -> str:
    lines = [
        f"### {database}",
        "",
        "| benchmark | n | jobs | baseline | ratio | Redis cmds/job (jobs / baseline) "
        "| DB statements/job (jobs) | target |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for c in comparisons:
        unit, ours, baseline = c["unit"], c["ours"], c["baseline"]
        ours_median = _median(ours["runs"])
        baseline_median = _median(baseline["runs"])
        lines.append(
            f"| {c['bench']} | {c['jobs']:,} "
            f"| {ours['label']}: **{_number(ours_median, 2)} {unit}** "
            f"| {baseline['label']}: {_number(baseline_median, 2)} {unit} "
            f"| {_number(c['ratio'], 2)}x "
            f"| {_costs(ours['redis_commands'], baseline['redis_commands'])} "
            f"| {_statements(ours['db_statements'], c['jobs'])} "
            f"| {c['target']} |"
        )
    return "\n".join(lines)


def _statements(per_job: float | None, jobs: int) -> str:
    """Per job, or per run when fewer than one a job (a bulk INSERT)."""
    if per_job is not None and 0 < per_job < 0.5:
        return f"{per_job * jobs:,.0f} per {jobs:,}"
    return _number(per_job, 2)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

"""The figures the page shows, from what `collect.ReportCounts` counted: small, whatever
the log's size."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from betty_otel._entry import ERROR_STATUSES, STATUSES
from betty_otel._report.buckets import DisplayUnit, choose_unit, prefix_start
from betty_otel._report.collect import Cell, Health, ReportCounts
from betty_otel.query.groups import SortedValues

__all__ = ["ReportData", "SkillRow", "TrendPoint", "percentiles", "summarize"]

_STATUS_ORDER: Final = {status: index for index, status in enumerate(STATUSES)}


@dataclass(frozen=True)
class SkillRow:
    """One skill's figures over the selection (percentiles exact, as `stats` computes them)."""

    skill: str
    count: int
    failures: int
    failure_rate: float
    p50: float | None
    p95: float | None
    p99: float | None
    statuses: dict[str, int]


@dataclass(frozen=True)
class TrendPoint:
    """One skill's figures in one time bucket."""

    start: float
    count: int
    failure_rate: float
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass
class ReportData:
    """Everything the page shows."""

    health: Health
    matched: int
    unit: DisplayUnit
    timeline: dict[str, list[tuple[float, int]]]
    """Per status (canonical first, then most common): (bucket start, executions) with any."""
    skills: list[SkillRow]
    trends: dict[str, list[TrendPoint]]
    """Per skill of the most executed ones: its figures per time bucket."""
    failures: list[dict[str, Any]]
    """The newest failures, newest first."""
    slowest: list[dict[str, Any]]
    """The slowest executions, slowest first."""


def percentiles(values: array[float]) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 by linear interpolation between the closest ranks: `stats`'s own."""
    found = SortedValues([], values)
    return found.percentile(50), found.percentile(95), found.percentile(99)


def summarize(counts: ReportCounts, trend_skills: int = 8) -> ReportData:
    """Regroup the counted raw buckets into display buckets and compute every figure."""
    health = counts.health
    unit = choose_unit(counts.prefix, health.first, health.last)
    starts: dict[bytes, float | None] = {}
    cells: dict[tuple[float | None, str, str], Cell] = {}
    for (raw, skill, status), cell in counts.cells().items():
        start = None
        if raw is not None:
            if raw not in starts:
                moment = prefix_start(raw)
                starts[raw] = None if moment is None else unit.start(moment)
            start = starts[raw]
        cells.setdefault((start, skill, status), Cell()).merge(cell)
    health.untimed = sum(cell.count for (start, _, _), cell in cells.items() if start is None)
    skills = _skill_rows(cells)
    return ReportData(
        health=health,
        matched=counts.matched,
        unit=unit,
        timeline=_timeline(cells),
        skills=skills,
        trends={row.skill: _trend(cells, row.skill) for row in skills[:trend_skills]},
        failures=counts.failures(),
        slowest=counts.slowest_entries(),
    )


def _timeline(
    cells: dict[tuple[float | None, str, str], Cell],
) -> dict[str, list[tuple[float, int]]]:
    per: dict[str, Counter[float]] = {}
    for (start, _, status), cell in cells.items():
        if start is not None:
            per.setdefault(status, Counter())[start] += cell.count
    totals = {status: sum(counts.values()) for status, counts in per.items()}
    order = sorted(per, key=lambda s: (_STATUS_ORDER.get(s, len(STATUSES)), -totals[s], s))
    return {status: sorted(per[status].items()) for status in order}


def _skill_rows(cells: dict[tuple[float | None, str, str], Cell]) -> list[SkillRow]:
    merged: dict[str, Cell] = {}
    statuses: dict[str, Counter[str]] = {}
    for (_, skill, status), cell in cells.items():
        merged.setdefault(skill, Cell()).merge(cell)
        statuses.setdefault(skill, Counter())[status] += cell.count
    rows = []
    for skill, cell in merged.items():
        failures = sum(n for status, n in statuses[skill].items() if status in ERROR_STATUSES)
        p50, p95, p99 = percentiles(cell.durations)
        rows.append(
            SkillRow(
                skill=skill,
                count=cell.count,
                failures=failures,
                failure_rate=failures / cell.count if cell.count else 0.0,
                p50=p50,
                p95=p95,
                p99=p99,
                statuses=dict(statuses[skill].most_common()),
            )
        )
    rows.sort(key=lambda row: (-row.count, row.skill))
    return rows


def _trend(cells: dict[tuple[float | None, str, str], Cell], skill: str) -> list[TrendPoint]:
    buckets: dict[float, Cell] = {}
    failures: Counter[float] = Counter()
    for (start, name, status), cell in cells.items():
        if name != skill or start is None:
            continue
        buckets.setdefault(start, Cell()).merge(cell)
        if status in ERROR_STATUSES:
            failures[start] += cell.count
    points = []
    for start in sorted(buckets):
        cell = buckets[start]
        p50, p95, p99 = percentiles(cell.durations)
        rate = failures[start] / cell.count if cell.count else 0.0
        points.append(TrendPoint(start, cell.count, rate, p50, p95, p99))
    return points

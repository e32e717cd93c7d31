"""The figures the page shows, from what `collect.ReportCounts` counted: small, whatever
the log's size."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from betty_otel._entry import ERROR_STATUSES, STATUSES
from betty_otel._report.buckets import DisplayUnit, choose_unit, prefix_start
from betty_otel._report.collect import Cell, Health, ReportCounts
from betty_otel.query.groups import SortedValues, ordered

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
    """One skill's figures in one time bucket (no rate or percentile when it has no execution)."""

    start: float
    count: int
    failure_rate: float | None
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
    """Per status (canonical first, then most common): (bucket start, executions) for every
    bucket from the first selected entry's to the last's, 0 when the status has none there."""
    skills: list[SkillRow]
    trends: dict[str, list[TrendPoint]]
    """Per skill of the most executed ones: its figures in every bucket of the timeline."""
    failures: list[dict[str, Any]]
    """The newest failures, newest first."""
    slowest: list[dict[str, Any]]
    """The slowest executions, slowest first."""


def percentiles(values: array[float]) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 by linear interpolation between the closest ranks: `stats`'s own."""
    found = SortedValues([], values)
    return found.percentile(50), found.percentile(95), found.percentile(99)


def summarize(counts: ReportCounts, trend_skills: int = 8) -> ReportData:
    """Regroup the counted raw buckets into display buckets and compute every figure.

    The bucket size fits the selected entries' span; the charts over time get every
    bucket of it, the empty ones too (no executions: a count of 0, no rate or percentile).
    """
    health = counts.health
    raw_cells = counts.cells()
    moments = {
        raw: prefix_start(raw) for raw in {raw for raw, _, _ in raw_cells} if raw is not None
    }
    seen = [moment.timestamp() for moment in moments.values() if moment is not None]
    unit = choose_unit(counts.prefix, min(seen, default=None), max(seen, default=None))
    starts = {
        raw: None if moment is None else unit.start(moment) for raw, moment in moments.items()
    }
    cells: dict[tuple[float | None, str, str], Cell] = {}
    for (raw, skill, status), cell in raw_cells.items():
        where = (None if raw is None else starts[raw], skill, status)
        found = cells.get(where)
        if found is None:
            cells[where] = cell  # handed over by counts.cells(): taken, not copied
        else:
            found.merge(cell)
    health.untimed = sum(cell.count for (start, _, _), cell in cells.items() if start is None)
    timed = [start for start, _, _ in cells if start is not None]
    buckets = unit.starts(min(timed), max(timed)) if timed else []
    per_skill = _per_skill(cells)
    skills = _skill_rows(per_skill)
    return ReportData(
        health=health,
        matched=counts.matched,
        unit=unit,
        timeline=_timeline(cells, buckets),
        skills=skills,
        trends={row.skill: _trend(per_skill[row.skill], buckets) for row in skills[:trend_skills]},
        failures=counts.failures(),
        slowest=counts.slowest_entries(),
    )


def _timeline(
    cells: dict[tuple[float | None, str, str], Cell], buckets: list[float]
) -> dict[str, list[tuple[float, int]]]:
    per: dict[str, Counter[float]] = {}
    for (start, _, status), cell in cells.items():
        if start is not None:
            per.setdefault(status, Counter())[start] += cell.count
    totals = {status: sum(counts.values()) for status, counts in per.items()}
    order = sorted(per, key=lambda s: (_STATUS_ORDER.get(s, len(STATUSES)), -totals[s], s))
    return {status: [(start, per[status][start]) for start in buckets] for status in order}


@dataclass
class _SkillCells:
    """One skill's entries per bucket (durations sorted), its failures per bucket and its
    count per status (in the order the cells came)."""

    buckets: dict[float | None, Cell] = field(default_factory=dict)
    failures: Counter[float | None] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)


def _per_skill(cells: dict[tuple[float | None, str, str], Cell]) -> dict[str, _SkillCells]:
    """The cells regrouped per skill and bucket, each bucket's durations sorted once: its
    trend point's percentiles read them as they are, and the skill's sort over all its
    buckets only merges these sorted runs."""
    found: dict[str, _SkillCells] = {}
    for (start, skill, status), cell in cells.items():
        mine = found.get(skill)
        if mine is None:
            mine = found[skill] = _SkillCells()
        bucket = mine.buckets.get(start)
        if bucket is None:
            bucket = mine.buckets[start] = Cell()
        bucket.merge(cell)
        mine.statuses[status] += cell.count
        if status in ERROR_STATUSES:
            mine.failures[start] += cell.count
    for mine in found.values():
        for bucket in mine.buckets.values():
            bucket.durations = array("d", ordered(bucket.durations))
    return found


def _skill_rows(per_skill: dict[str, _SkillCells]) -> list[SkillRow]:
    rows = []
    for skill, mine in per_skill.items():
        count = sum(bucket.count for bucket in mine.buckets.values())
        failures = sum(mine.failures.values())
        durations = array("d")
        for bucket in mine.buckets.values():
            durations.extend(bucket.durations)
        p50, p95, p99 = percentiles(durations)
        rows.append(
            SkillRow(
                skill=skill,
                count=count,
                failures=failures,
                failure_rate=failures / count if count else 0.0,
                p50=p50,
                p95=p95,
                p99=p99,
                statuses=dict(mine.statuses.most_common()),
            )
        )
    rows.sort(key=lambda row: (-row.count, row.skill))
    return rows


def _trend(mine: _SkillCells, buckets: list[float]) -> list[TrendPoint]:
    points = []
    for start in buckets:
        bucket = mine.buckets.get(start)
        if bucket is None or not bucket.count:
            points.append(TrendPoint(start, 0, None, None, None, None))
            continue
        p50, p95, p99 = percentiles(bucket.durations)
        rate = mine.failures[start] / bucket.count
        points.append(TrendPoint(start, bucket.count, rate, p50, p95, p99))
    return points

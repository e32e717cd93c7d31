"""The log's durations as an OpenMetrics histogram: metrics from the file, no collector needed.

`openmetrics` reads every entry that passes the filters (the rotated files too) and
counts its duration into ``betty_execution_duration_seconds``, the histogram the live
metric ``betty.execution.duration`` becomes in Prometheus: the same name, labels
(``betty_skill``, ``betty_status`` as its canonical status, ``betty_caller``) and buckets
(`betty_otel._metrics.conventions`). The text ends in ``# EOF``, ready for
node_exporter's textfile collector. What the log cannot say stays out: ``error_type``
(an entry keeps the error's message, not its class) and the active count.

Label values are bounded as the live ones are (`betty_otel._metrics.series`): the most
frequent skills and callers keep their own series, the rest is counted as ``other``, with
one warning. An entry without a usable duration (missing, negative, not a number) is
left out of the counts, with one warning saying how many. A label value is written as
it is, except characters that are not printable (controls, bidirectional marks, lone
surrogates), which are written as the text ``\\uXXXX``: the output is valid UTF-8 and
safe on a terminal.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from betty_otel._entry import canonical_status
from betty_otel._metrics.conventions import (
    BUCKETS,
    DURATION_DESCRIPTION,
    PROMETHEUS_DURATION,
    PROMETHEUS_LABELS,
)
from betty_otel._metrics.series import OTHER, most_frequent
from betty_otel._metrics.series import max_series as series_bound
from betty_otel._store import resolve_path, telemetry_file_of
from betty_otel.query.filters import FilterArgs, Filters, PathArg, filters_of
from betty_otel.query.groups import MISSING
from betty_otel.query.scan import iter_query

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["openmetrics"]

logger = logging.getLogger(__name__)

Key = tuple[str, str, str]
"""A series: (skill, status, caller)."""
_SHORT: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n"}


class _Series:
    """One series of the histogram: counts per bucket (not cumulative), count and sum."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1  # le: bound >= value
        self.count += 1
        self.total += seconds

    def merge(self, other: _Series) -> None:
        pairs = zip(self.buckets, other.buckets, strict=True)
        self.buckets = [mine + theirs for mine, theirs in pairs]
        self.count += other.count
        self.total += other.total


def _label(value: Any) -> str:
    """A key's value as label text: strings as they are, JSON text for other values."""
    if value is None:
        return MISSING
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError):  # a circular or unencodable value
        return repr(value)


def _seconds(value: Any) -> float | None:
    """duration_ms in seconds; None unless a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        return None
    try:
        seconds = value / 1000 + 0.0  # + 0.0: a -0.0 is counted as 0.0
    except OverflowError:  # an integer beyond any float
        return None
    return seconds if math.isfinite(seconds) else None


def _escape(value: str) -> str:
    """A label value in OpenMetrics text: escaped, unprintable characters as ``\\uXXXX``."""
    if value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return "".join(
        _SHORT.get(char) or (char if char.isprintable() else f"\\\\u{ord(char):04x}")
        for char in value
    )


def _number(value: float) -> str:
    """A float as OpenMetrics writes one (``1.0``, ``2.5e-05``, ``+Inf``)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _fold(series: dict[Key, _Series], limit: int) -> dict[Key, _Series]:
    """The series with skills and callers beyond the limit counted as ``other``."""
    skills: Counter[str] = Counter()
    callers: Counter[str] = Counter()
    for (skill, _, caller), each in series.items():
        skills[skill] += each.count
        callers[caller] += each.count
    kept_skills = most_frequent(skills, limit)
    kept_callers = most_frequent(callers, limit)
    if len(kept_skills) == len(skills) and len(kept_callers) == len(callers):
        return series
    logger.warning(
        "betty_otel: more than %d skills or callers in the log; the less frequent ones are "
        "counted as %r (see BETTY_TELEMETRY_METRICS_MAX_SERIES)",
        limit,
        OTHER,
    )
    folded: dict[Key, _Series] = {}
    for (skill, status, caller), each in series.items():
        key = (
            skill if skill in kept_skills else OTHER,
            status,
            caller if caller in kept_callers else OTHER,
        )
        folded.setdefault(key, _Series()).merge(each)
    return folded


def _lines(series: dict[Key, _Series]) -> Iterable[str]:
    name = PROMETHEUS_DURATION
    yield f"# TYPE {name} histogram"
    yield f"# UNIT {name} seconds"
    yield f"# HELP {name} {DURATION_DESCRIPTION}"
    for key in sorted(series):
        each = series[key]
        pairs = zip(PROMETHEUS_LABELS, key, strict=True)
        labels = ",".join(f'{label}="{_escape(value)}"' for label, value in pairs)
        cumulative = 0
        for bound, count in zip((*BUCKETS, math.inf), each.buckets, strict=True):
            cumulative += count
            yield f'{name}_bucket{{{labels},le="{_number(bound)}"}} {cumulative}'
        yield f"{name}_count{{{labels}}} {each.count}"
        yield f"{name}_sum{{{labels}}} {_number(each.total)}"
    yield "# EOF"


def openmetrics(
    telemetry_file: PathArg = None,
    *,
    filters: Filters | None = None,
    max_series: int | None = None,
    **filter_args: Unpack[FilterArgs],
) -> str:
    """The histogram of durations of the entries that pass the filters, as OpenMetrics text.

    Reads the whole log (rotated files included), oldest first. The filters are the
    keywords of `query` (``filters``, from `make_filters`, replaces them). max_series
    bounds the skills and callers that keep series of their own (default as the live
    metric's: $BETTY_TELEMETRY_METRICS_MAX_SERIES, else 100).

    Raises:
        ValueError / TypeError: an invalid filter or max_series.
        StoreError: a file of the log is not a regular file or cannot be read.
    """
    limit = series_bound(max_series)
    chosen = filters_of(filters, filter_args)
    log = resolve_path(telemetry_file_of(telemetry_file, None))
    series: dict[Key, _Series] = {}
    unusable = 0
    for entry in iter_query(log, filters=chosen, newest_first=False):
        seconds = _seconds(entry.get("duration_ms"))
        if seconds is None:
            unusable += 1
            continue
        status = entry.get("status")
        key = (
            _label(entry.get("skill")),
            canonical_status(status) if isinstance(status, str) else _label(status),
            _label(entry.get("caller")),
        )
        each = series.get(key)
        if each is None:
            each = series[key] = _Series()
        each.add(seconds)
    if unusable:
        logger.warning(
            "betty_otel: %d entr%s without a usable duration_ms left out of the histogram",
            unusable,
            "y" if unusable == 1 else "ies",
        )
    return "\n".join(_lines(_fold(series, limit))) + "\n"

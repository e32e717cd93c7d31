"""Reading the log back: filters, newest-first queries, per-group stats and trace trees.

Everything here reads the log; nothing writes or locks it (stats keeps its own
summary beside it, ``telemetry.json.stats``: `betty_otel.query.summary`).
Entries are returned exactly as they are in the file: entries of other tools
(missing keys, extra keys, statuses such as ``"failed"``) are never dropped or
rejected, and a filter on a key an entry lacks simply does not match it.
Statuses are compared and counted by their canonical status (``"failed"`` is a
failure); the entries keep their own words.
Errors reading the file are `betty_otel.StoreError`.

- `query` returns the newest entries by timestamp, reading from the end of the
  file and stopping just past the limit; `iter_query` streams in the order the
  entries were written, the last written first (`betty_otel.query.scan`).
- `stats` reads every entry once, canonical lines by regex in C
  (`betty_otel.query.tally`); then only what was appended since, through its
  summary (`betty_otel.query.stats`, `betty_otel.query.summary`).
- `trace` builds the tree of one trace's executions (`betty_otel.query.trace`), with
  the executions still in flight (status ``pending``).
- `running` lists the executions in flight beside the log and their state
  (`betty_otel._inflight.view`).
- `openmetrics` counts the durations into the live metric's histogram, as OpenMetrics
  text (`betty_otel.query.openmetrics`).

All of them take the log as ``telemetry_file`` (first argument) and the same
filter keywords (`FilterArgs`, with ``ignore_case``), turned into one `Filters`
value by `make_filters`, so the CLI's ``query``, ``stats``, ``report`` and
``export`` select entries identically.
"""

from betty_otel._inflight.view import running
from betty_otel.query.filters import (
    FilterArgs,
    FilterOptions,
    Filters,
    PathArg,
    TextFilter,
    TimeArg,
    make_filters,
    parse_time,
)
from betty_otel.query.openmetrics import openmetrics
from betty_otel.query.scan import ORDER_WINDOW, iter_query, query
from betty_otel.query.stats import GROUP_KEYS, MISSING, GroupBy, GroupStats, stats
from betty_otel.query.trace import TraceNode, trace

__all__ = [
    "GROUP_KEYS",
    "MISSING",
    "ORDER_WINDOW",
    "FilterArgs",
    "FilterOptions",
    "Filters",
    "GroupBy",
    "GroupStats",
    "PathArg",
    "TextFilter",
    "TimeArg",
    "TraceNode",
    "iter_query",
    "make_filters",
    "openmetrics",
    "parse_time",
    "query",
    "running",
    "stats",
    "trace",
]

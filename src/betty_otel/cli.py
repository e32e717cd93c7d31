"""betty-telemetry: record, read, check and export the Betty telemetry log from a shell.

Every command takes ``--file`` (default: $BETTY_TELEMETRY_FILE, else
./registry/telemetry.json). Exit status: 0 success, 1 an error (printed as
``Error: ...`` on stderr, never a traceback), 2 a usage error. Heavy modules (the
query engine, the OpenTelemetry SDK pieces, the OTLP exporters) are imported
inside the commands that use them, so ``capture`` starts quickly and never
loads the OTLP stack unless OTLP is configured.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from betty_otel.query import Filters, GroupStats, TraceNode

__all__ = ["main"]

logger = logging.getLogger("betty_otel")

PROG: Final = "betty-telemetry"
FORMATS: Final = ("table", "json", "jsonl")
_MAX_WIDTH: Final = {"skill": 40, "caller": 28, "error": 60, "status": 12}


class UsageError(Exception):
    """A command line that parses but makes no sense: exit status 2."""


# ---------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _dumps(value: Any, *, indent: bool = False) -> str:
    import orjson  # noqa: PLC0415 - a dependency of the package; loaded when printing

    option = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(value, option=option | orjson.OPT_NON_STR_KEYS, default=str).decode()


def _text(value: object) -> str:
    """A cell: strings as they are, missing as ``-``, anything else as JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return _dumps(value)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split()) if ("\n" in text or "\t" in text) else text
    return text if len(text) <= width else text[: width - 1] + "…"


def _time_cell(value: object) -> str:
    from datetime import timezone  # noqa: PLC0415

    from betty_otel._entry import entry_time  # noqa: PLC0415 - one timestamp parser

    moment = entry_time(value)
    if moment is None:
        return _text(value)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _number_cell(value: object, digits: int = 1) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,.{digits}f}"
    return _text(value)


def _entry_cells(entry: dict[str, Any]) -> list[str]:
    error = entry.get("error_message")
    return [
        _time_cell(entry.get("timestamp")),
        _clip(_text(entry.get("skill")), _MAX_WIDTH["skill"]),
        _clip(_text(entry.get("status")), _MAX_WIDTH["status"]),
        _number_cell(entry.get("duration_ms")),
        _clip(_text(entry.get("caller")), _MAX_WIDTH["caller"]),
        "" if error is None else _clip(_text(error), _MAX_WIDTH["error"]),
    ]


_ENTRY_HEADERS: Final = ["time (UTC)", "skill", "status", "duration_ms", "caller", "error"]
_ENTRY_RIGHT: Final = frozenset({3})


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int]) -> str:
    """Aligned columns, two spaces apart; columns in right are right-aligned."""
    aligned = set(right)
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if index in aligned else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = ["-" * width for width in widths]
    return "\n".join([line(headers), line(rule), *(line(row) for row in rows)])


def _default_format(given: str | None, tty_default: str, pipe_default: str) -> str:
    if given:
        return given
    return tty_default if sys.stdout.isatty() else pipe_default


def _print_entries(entries: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        _out(_dumps(entries, indent=True))
    elif fmt == "jsonl":
        for entry in entries:
            _out(_dumps(entry))
    elif entries:
        rows = [_entry_cells(entry) for entry in entries]
        _out(_table(_ENTRY_HEADERS, rows, _ENTRY_RIGHT))
    else:
        _out("No entries.")


# ---------------------------------------------------------------------------
# Argument types and shared options
# ---------------------------------------------------------------------------


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"expected a whole number, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 0:
        msg = f"must be >= 0, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return min(value, sys.maxsize)  # more than can exist: all of them


def _limit(text: str) -> int | None:
    if text.strip().lower() in ("all", "none"):
        return None
    return _non_negative_int(text)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"expected a number, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not math.isfinite(value):
        msg = f"expected a finite number, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _add_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file",
        metavar="PATH",
        help="the telemetry file (default: $BETTY_TELEMETRY_FILE, else ./registry/telemetry.json)",
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (repeat an option to allow several values)")
    group.add_argument("--skill", action="append", metavar="NAME", help="only this skill")
    group.add_argument("--status", action="append", metavar="STATUS", help="only this status")
    group.add_argument("--caller", action="append", metavar="NAME", help="only this caller")
    group.add_argument("--trace-id", action="append", metavar="ID", help="only this trace")
    group.add_argument(
        "--since",
        metavar="TIME",
        help="at or after TIME: ISO 8601 (UTC if no offset) or relative: 30s, 15m, 2h, 7d, 1w",
    )
    group.add_argument("--until", metavar="TIME", help="before TIME (same forms as --since)")
    group.add_argument(
        "--min-duration",
        type=_number,
        metavar="MS",
        help="only executions that took at least MS milliseconds",
    )


def _filters(args: argparse.Namespace) -> Filters:
    from betty_otel.query import make_filters  # noqa: PLC0415

    return make_filters(
        skill=args.skill,
        status=args.status,
        caller=args.caller,
        trace_id=args.trace_id,
        since=args.since,
        until=args.until,
        min_duration_ms=args.min_duration,
    )


def _path(args: argparse.Namespace) -> Path:
    from betty_otel._store import resolve_path  # noqa: PLC0415

    return resolve_path(args.file)


# ---------------------------------------------------------------------------
# capture
# ---------------------------------------------------------------------------


def _json_object(name: str, text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"Invalid JSON for {name}: {exc}"
        raise ValueError(msg) from None
    except RecursionError:
        msg = f"Invalid JSON for {name}: nested too deeply"
        raise ValueError(msg) from None
    if not isinstance(value, dict):
        msg = f"{name} must be a JSON object, got {type(value).__name__}: {text}"
        raise ValueError(msg)
    return value


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"Invalid duration_ms: {text!r} is not a number"
        raise ValueError(msg) from None
    if not math.isfinite(value) or value < 0:
        msg = f"Invalid duration_ms: {text!r} must be a finite number >= 0"
        raise ValueError(msg)
    return value


def _cmd_capture(args: argparse.Namespace) -> int:
    from betty_otel._entry import validate_status  # noqa: PLC0415

    # Everything is checked before anything is written.
    status = validate_status(args.status)
    duration = _duration(args.duration_ms)
    inputs = _json_object("inputs", args.inputs)
    metadata = _json_object("metadata", args.metadata)
    from betty_otel.capture import TelemetryCapture  # noqa: PLC0415

    capture = TelemetryCapture(args.file)
    entry = capture.capture(
        args.skill,
        status,
        duration,
        args.caller,
        inputs=inputs,
        error_message=args.error_message,
        metadata=metadata,
    )
    _out(json.dumps(entry, indent=2, ensure_ascii=False))
    _out(f"✓ Telemetry captured to {capture.path}")
    return 0


# ---------------------------------------------------------------------------
# query, stats, trace
# ---------------------------------------------------------------------------


def _cmd_query(args: argparse.Namespace) -> int:
    from itertools import islice  # noqa: PLC0415

    from betty_otel.query import iter_query  # noqa: PLC0415

    fmt = _default_format(args.format, "table", "json")
    entries = iter_query(args.file, filters=_filters(args))
    found = list(entries if args.limit is None else islice(entries, args.limit))
    _print_entries(found, fmt)
    return 0


def _stats_rows(groups: Iterable[GroupStats]) -> list[list[str]]:
    return [
        [
            _clip(_text(group.key), _MAX_WIDTH["skill"]),
            f"{group.count:,}",
            f"{group.failures:,}",
            f"{group.failure_rate * 100:.1f}%",
            _number_cell(group.p50),
            _number_cell(group.p95),
            _number_cell(group.p99),
            _number_cell(group.max),
            _number_cell(group.mean),
            ", ".join(f"{name} {count:,}" for name, count in group.statuses.items()),
        ]
        for group in groups
    ]


def _cmd_stats(args: argparse.Namespace) -> int:
    import dataclasses  # noqa: PLC0415

    from betty_otel.query import stats  # noqa: PLC0415

    result = stats(args.file, by=args.by, filters=_filters(args))
    fmt = _default_format(args.format, "table", "json")
    if fmt == "json":
        _out(_dumps([dataclasses.asdict(group) for group in result.values()], indent=True))
        return 0
    if not result:
        _out("No entries.")
        return 0
    headers = [args.by, "count", "failures", "fail rate", "p50 ms", "p95 ms", "p99 ms"]
    headers += ["max ms", "mean ms", "statuses"]
    _out(_table(headers, _stats_rows(result.values()), range(1, 9)))
    total = sum(group.count for group in result.values())
    _out(f"\n{total:,} entries in {len(result):,} groups (percentiles: linear interpolation)")
    return 0


def _node_json(node: TraceNode) -> dict[str, Any]:
    return {"entry": node.entry, "children": [_node_json(child) for child in node.children]}


def _tree_lines(root: TraceNode) -> Iterator[str]:
    """The root, then its descendants drawn as a tree (iteratively: chains can be long)."""
    yield _node_text(root)
    stack: list[tuple[str, TraceNode, bool]] = [
        ("", child, index == len(root.children) - 1)
        for index, child in reversed(list(enumerate(root.children)))
    ]
    while stack:
        prefix, node, last = stack.pop()
        yield f"{prefix}{'└── ' if last else '├── '}{_node_text(node)}"
        inner = prefix + ("    " if last else "│   ")
        stack.extend(
            (inner, child, index == len(node.children) - 1)
            for index, child in reversed(list(enumerate(node.children)))
        )


def _node_text(node: TraceNode) -> str:
    entry = node.entry
    parts = [
        _text(entry.get("skill")),
        _text(entry.get("status")),
        f"{_number_cell(entry.get('duration_ms'))} ms",
        f"caller={_text(entry.get('caller'))}",
        f"span={_text(entry.get('span_id'))}",
    ]
    error = entry.get("error_message")
    if error is not None:
        parts.append(f"error={_clip(_text(error), _MAX_WIDTH['error'])}")
    return "  ".join(parts)


def _cmd_trace(args: argparse.Namespace) -> int:
    from betty_otel.query import trace  # noqa: PLC0415

    roots = trace(args.trace_id, args.file)
    if not roots:
        _err(f"Error: no entries with trace id {args.trace_id} in {_path(args)}")
        return 1
    if args.format == "json":
        _out(_dumps([_node_json(root) for root in roots], indent=True))
        return 0
    for root in roots:
        for line in _tree_lines(root):
            _out(line)
    return 0


# ---------------------------------------------------------------------------
# tail
# ---------------------------------------------------------------------------


def _signature(entry: dict[str, Any]) -> bytes:
    import orjson  # noqa: PLC0415

    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)


_TAIL_SCAN: Final = 100_000
"""At most this many entries are read back per poll to find where we left off."""


def _newer_than(path: Path, marker: bytes | None) -> tuple[list[dict[str, Any]], bool]:
    """Entries recorded after marker, oldest first, and whether marker was found.

    Reads back from the end (rotated backups included) until it meets the marker;
    without one, every entry is new. At most _TAIL_SCAN entries are read.
    """
    from betty_otel.query import iter_query  # noqa: PLC0415

    found: list[dict[str, Any]] = []
    for entry in iter_query(path):
        if marker is not None and _signature(entry) == marker:
            found.reverse()
            return found, True
        found.append(entry)
        if len(found) >= _TAIL_SCAN:
            break
    found.reverse()
    return found, marker is None


def _file_state(path: Path) -> tuple[int, int, int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _cmd_tail(args: argparse.Namespace) -> int:
    path = _path(args)
    fmt = _default_format(args.format, "table", "jsonl")
    show: Callable[[dict[str, Any]], None]
    if fmt == "table":

        def show(entry: dict[str, Any]) -> None:
            cells = _entry_cells(entry)
            widths = (19, 28, 8, 12, 18)
            text = "  ".join(
                cell.rjust(width) if index == 3 else cell.ljust(width)
                for index, (cell, width) in enumerate(zip(cells, widths, strict=False))
            )
            _out(f"{text}  {cells[5]}".rstrip())

    else:

        def show(entry: dict[str, Any]) -> None:
            _out(_dumps(entry))

    try:
        from betty_otel.query import query  # noqa: PLC0415

        state = _file_state(path)
        newest = query(path, limit=max(args.lines, 1))
        for entry in reversed(newest[: args.lines]):
            show(entry)
        sys.stdout.flush()
        marker = _signature(newest[0]) if newest else None
        if args.follow:
            _err(f"{PROG}: following {path} (Ctrl-C to stop)")
        while args.follow:
            time.sleep(args.interval)
            current = _file_state(path)
            if current == state:
                continue
            state = current
            entries, found = _newer_than(path, marker)
            if not found:
                _err(f"{PROG}: {path} was replaced; showing its newest entries")
                entries = entries[-args.lines :] if args.lines else []
            for entry in entries:
                show(entry)
            if entries:
                marker = _signature(entries[-1])
            sys.stdout.flush()
    except KeyboardInterrupt:
        # Ctrl-C is how one stops following: a clean exit, not an error.
        sys.stdout.flush()
        return 0
    return 0


# ---------------------------------------------------------------------------
# check, repair
# ---------------------------------------------------------------------------


def _report_lines(report: Any) -> list[str]:
    problems = []
    if report.not_array:
        problems.append("not a JSON array (a writer would move it aside and start a new log)")
    if report.torn_tail:
        problems.append("torn tail: an interrupted append after the last complete entry")
    for item in report.damage:
        problems.append(
            f"damaged region at byte offset {item.offset}, {item.length} bytes: {item.reason}"
        )
    return problems


def _cmd_check(args: argparse.Namespace) -> int:
    from betty_otel._store import check_file, log_files  # noqa: PLC0415

    path = _path(args)
    if not path.exists():
        _err(f"Error: {path} does not exist")
        return 1
    failed = False
    for file in log_files(path):
        report = check_file(file)
        problems = _report_lines(report)
        verdict = "OK" if not problems else f"{len(problems)} problem(s)"
        _out(f"{file}: {report.entries:,} entries, {verdict}")
        for problem in problems:
            _out(f"  - {problem}")
        failed = failed or bool(problems)
    if failed:
        _out(f"Run `{PROG} repair` to fix a torn tail; readers skip damaged regions.")
    return 1 if failed else 0


def _cmd_repair(args: argparse.Namespace) -> int:
    from betty_otel._store import TelemetryStore, check_file  # noqa: PLC0415

    path = _path(args)
    if not path.exists():
        _err(f"Error: {path} does not exist")
        return 1
    before = check_file(path)
    store = TelemetryStore(path)
    try:
        removed = store.repair()
    finally:
        store.close()
    after = check_file(path)
    if before.not_array:
        _out(f"{path} was not a JSON array: moved it aside and started a new, empty log")
    elif removed:
        _out(
            f"Repaired {path}: removed a torn tail of {removed:,} bytes after the last "
            f"complete entry (saved beside the file as {path.name}.torn-*); "
            f"kept all {after.entries:,} complete entries"
        )
    else:
        _out(f"Nothing to repair: {path} ends with a complete JSON array")
    problems = _report_lines(after)
    for problem in problems:
        _out(f"  - still: {problem}")
    if problems:
        _out("Damaged regions in the middle are left as they are; readers skip them.")
    return 1 if problems else 0


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------

_HEX32: Final = frozenset("0123456789abcdef")


def _hex_id(value: object, digits: int) -> int | None:
    """A non-zero id from its lowercase hex text of exactly digits digits, else None."""
    if not isinstance(value, str) or len(value) != digits or not set(value) <= _HEX32:
        return None
    number = int(value, 16)
    return number or None


def _derived_ids(entry: dict[str, Any]) -> tuple[int, int]:
    """Stable ids for an entry without its own: the same entry always gets the same ids."""
    import hashlib  # noqa: PLC0415

    digest = hashlib.blake2b(_signature(entry), digest_size=24).digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:], "big") or 1


def _to_span(
    entry: dict[str, Any], resource: Resource, scope: InstrumentationScope
) -> ReadableSpan | None:
    """The span of one entry, as the live pipeline would have sent it; None without a time."""
    from datetime import datetime, timezone  # noqa: PLC0415

    from opentelemetry.sdk.trace import ReadableSpan  # noqa: PLC0415
    from opentelemetry.trace import (  # noqa: PLC0415
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
    )

    from betty_otel._entry import (  # noqa: PLC0415
        ATTR_CALLER,
        ATTR_ERROR,
        ATTR_INPUTS,
        ATTR_METADATA,
        ATTR_SKILL,
        ATTR_STATUS,
        ERROR_STATUSES,
        entry_time,
        is_number,
    )
    from betty_otel._sanitize import default_sanitizer, to_json_text  # noqa: PLC0415

    moment = entry_time(entry.get("timestamp"))
    if moment is None:
        return None
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    delta = moment - epoch
    end = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    duration = entry.get("duration_ms")
    start = end
    if is_number(duration) and duration >= 0:
        # A duration longer than the time since 1970 (a bad entry) starts at 0.
        start = max(0, end - round(min(duration, end / 1_000_000) * 1_000_000))
    trace_id = _hex_id(entry.get("trace_id"), 32)
    span_id = _hex_id(entry.get("span_id"), 16)
    parent_id = _hex_id(entry.get("parent_span_id"), 16)
    if trace_id is None or span_id is None:
        derived_trace, derived_span = _derived_ids(entry)
        if trace_id is None:
            trace_id, parent_id = derived_trace, None
        span_id = span_id or derived_span
    flags = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)
    parent = (
        SpanContext(trace_id, parent_id, is_remote=False, trace_flags=flags)
        if parent_id is not None
        else None
    )
    sanitizer = default_sanitizer()
    skill = entry.get("skill")
    status = entry.get("status")
    attributes: dict[str, Any] = {}
    if skill is not None:
        attributes[ATTR_SKILL] = _text(skill)
    if status is not None:
        attributes[ATTR_STATUS] = _text(status)
    if entry.get("caller") is not None:
        attributes[ATTR_CALLER] = _text(entry.get("caller"))
    for key, name in (("inputs", ATTR_INPUTS), ("metadata", ATTR_METADATA)):
        value = entry.get(key)
        if value not in (None, {}):
            attributes[name] = to_json_text(sanitizer.sanitize(value))
    error = entry.get("error_message")
    if error is not None:
        attributes[ATTR_ERROR] = _text(sanitizer.sanitize(error))
    span_status = (
        Status(StatusCode.ERROR, attributes.get(ATTR_ERROR))
        if status in ERROR_STATUSES
        else Status(StatusCode.UNSET)
    )
    return ReadableSpan(
        name=_text(skill) if skill is not None else "unknown",
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        kind=SpanKind.INTERNAL,
        status=span_status,
        start_time=start,
        end_time=end,
        instrumentation_scope=scope,
    )


def _otlp_exporter(protocol: str, endpoint: str | None, timeout: float) -> Any:
    """The OTLP span exporter for protocol; endpoint None means the OTEL_* variables."""
    from betty_otel._setup import otlp_exporter  # noqa: PLC0415 - keeps capture's start-up light

    try:
        return otlp_exporter(endpoint, protocol=protocol, timeout=timeout)
    except ImportError as exc:
        raise RuntimeError(str(exc)) from None


class _LastMessage(logging.Handler):
    """Keeps the last message the OTLP exporter logged, to explain a failed export."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.message = record.getMessage().splitlines()[0]
        except Exception:  # noqa: BLE001 - a logging handler must never raise
            self.message = str(record.msg)


def _cmd_export(args: argparse.Namespace) -> int:
    if not args.otlp:
        msg = "choose a destination: --otlp (the only one so far)"
        raise UsageError(msg)
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import SpanExportResult  # noqa: PLC0415
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope  # noqa: PLC0415

    import betty_otel  # noqa: PLC0415
    from betty_otel._setup import TRACER_NAME  # noqa: PLC0415
    from betty_otel.query import iter_query  # noqa: PLC0415

    path = _path(args)
    filters = _filters(args)
    if not path.exists():
        _err(f"Error: {path} does not exist")
        return 1
    attributes = {"service.name": args.service_name} if args.service_name else {}
    resource = Resource.create(attributes)
    scope = InstrumentationScope(TRACER_NAME, betty_otel.__version__)
    exporter = _otlp_exporter(args.protocol, args.endpoint, args.timeout)
    where = args.endpoint or "the endpoint of the OTEL_EXPORTER_OTLP_* variables"
    quiet = _LastMessage()
    otel_logger = logging.getLogger("opentelemetry")
    otel_logger.addHandler(quiet)
    otel_logger.propagate = False
    exported = skipped = 0
    batch: list[ReadableSpan] = []

    def flush() -> bool:
        nonlocal exported
        if not batch:
            return True
        result = exporter.export(batch)
        if result is not SpanExportResult.SUCCESS:
            return False
        exported += len(batch)
        batch.clear()
        return True

    try:
        for entry in iter_query(path, filters=filters, newest_first=False):
            span = _to_span(entry, resource, scope)
            if span is None:
                skipped += 1
                continue
            batch.append(span)
            if len(batch) >= args.batch_size and not flush():
                break
        ok = flush()
    finally:
        exporter.shutdown()
        otel_logger.removeHandler(quiet)
        otel_logger.propagate = True
    note = f" ({skipped} entries without a readable timestamp skipped)" if skipped else ""
    if not ok:
        detail = f": {quiet.message}" if quiet.message else ""
        _err(
            f"Error: the collector at {where} rejected the spans or did not answer{detail}; "
            f"exported {exported} before that{note}"
        )
        return 1
    _out(f"Exported {exported} spans from {path} to {where} over OTLP ({args.protocol}){note}")
    return 0


# ---------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------

_EXAMPLES: Final = {
    "main": f"""examples:
  {PROG} capture api.validate success 412.5 CLI '{{"path": "skills/x"}}'
  {PROG} query --status failure --limit 10
  {PROG} stats --by caller --since 7d
  {PROG} trace 3a0809d08b85eb88aa2c0a7e32c9e85d
  {PROG} tail -f
  {PROG} check || {PROG} repair
  {PROG} export --otlp --endpoint http://localhost:4318

Run '{PROG} COMMAND --help' for a command's options.
Exit status: 0 success, 1 error, 2 usage error.""",
    "capture": f"""examples:
  {PROG} capture api.validate success 412.5 CLI
  {PROG} capture api.validate failure 80 workflow.compose '{{"path": "x.yaml"}}' 'missing name'
  {PROG} capture docs.build success 1200 CLI '{{}}' --metadata '{{"attempt": 2}}'

STATUS is one of: success, failure, timeout, error, pending. Nothing is written
when an argument is invalid.""",
    "query": f"""examples:
  {PROG} query                              # the 20 newest entries
  {PROG} query --status failure --limit 10  # the 10 newest failures
  {PROG} query --skill api.validate --since 2h --format jsonl
  {PROG} query --status failure --status error --min-duration 1000 --limit all

Newest first, in recording order. --format defaults to a table on a terminal
and to JSON when the output is piped.""",
    "stats": f"""examples:
  {PROG} stats                       # per skill
  {PROG} stats --by caller --since 1d
  {PROG} stats --skill api.validate --by status --format json

Per group: count, failures (failure + error + timeout), failure rate, and
duration percentiles by linear interpolation between the nearest ranks.""",
    "trace": f"""examples:
  {PROG} trace 3a0809d08b85eb88aa2c0a7e32c9e85d
  {PROG} trace 3a0809d08b85eb88aa2c0a7e32c9e85d --format json

Prints the executions of one trace as a tree (parent -> children by
parent_span_id), siblings in order of start time.""",
    "tail": f"""examples:
  {PROG} tail               # the 10 newest entries, oldest first
  {PROG} tail -n 50 -f      # then follow new entries until Ctrl-C
  {PROG} tail -f --format jsonl | jq .skill

Following survives rotation and replacement of the file; Ctrl-C exits with 0.""",
    "check": f"""examples:
  {PROG} check
  {PROG} check --file registry/telemetry.json

Checks the file and its rotated backups: entry count, torn tail, damaged
regions (with byte offsets), not a JSON array. Exit status 1 on any problem.""",
    "repair": f"""examples:
  {PROG} repair
  {PROG} repair --file registry/telemetry.json

Cuts a torn tail (an interrupted append) back to the last complete entry
under the file lock, saving the removed bytes beside the file. Never removes
a complete entry. Exit status 1 if problems remain.""",
    "export": f"""examples:
  {PROG} export --otlp --endpoint http://localhost:4318
  {PROG} export --otlp --protocol grpc --endpoint http://localhost:4317 --since 7d
  OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 {PROG} export --otlp

Replays entries (oldest first) as spans with their original times (end =
timestamp, start = end - duration), ids and parent links (entries without ids
get stable ids derived from their content), ERROR status for failure / error /
timeout, and the betty.* attributes. Exit status 1 if the collector rejects
the spans or cannot be reached.""",
}


def _subparser(commands: Any, name: str, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=_EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    _add_file(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of betty-telemetry (every command, with examples)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Record, read, check and export the Betty telemetry log (telemetry.json).",
        epilog=_EXAMPLES["main"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    capture = _subparser(commands, "capture", "record one execution")
    capture.add_argument("skill", metavar="SKILL")
    capture.add_argument("status", metavar="STATUS")
    capture.add_argument("duration_ms", metavar="DURATION_MS")
    capture.add_argument("caller", metavar="CALLER")
    capture.add_argument("inputs", nargs="?", metavar="INPUTS_JSON", help="a JSON object")
    capture.add_argument("error_message", nargs="?", metavar="ERROR_MESSAGE")
    capture.add_argument("--metadata", metavar="JSON", help="a JSON object of metadata")
    capture.set_defaults(run=_cmd_capture)

    query = _subparser(commands, "query", "list entries, newest first")
    _add_filters(query)
    query.add_argument(
        "--limit",
        type=_limit,
        default=20,
        metavar="N",
        help="at most N entries (default 20; 'all': no limit)",
    )
    query.add_argument("--format", choices=FORMATS, help="table, json or jsonl")
    query.set_defaults(run=_cmd_query)

    stats = _subparser(commands, "stats", "counts, failure rates and duration percentiles")
    stats.add_argument("--by", choices=("skill", "caller", "status"), default="skill")
    _add_filters(stats)
    stats.add_argument("--format", choices=("table", "json"), help="table or json")
    stats.set_defaults(run=_cmd_stats)

    trace = _subparser(commands, "trace", "the tree of executions of one trace")
    trace.add_argument("trace_id", metavar="TRACE_ID")
    trace.add_argument("--format", choices=("tree", "json"), default="tree")
    trace.set_defaults(run=_cmd_trace)

    tail = _subparser(commands, "tail", "the newest entries, then (-f) new ones as they come")
    tail.add_argument(
        "-n", "--lines", type=_non_negative_int, default=10, metavar="N", help="default 10"
    )
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    tail.add_argument(
        "--interval", type=_number, default=0.5, metavar="SECONDS", help="poll interval"
    )
    tail.add_argument("--format", choices=("table", "jsonl"), help="table or jsonl")
    tail.set_defaults(run=_cmd_tail)

    check = _subparser(commands, "check", "validate the file without changing it")
    check.set_defaults(run=_cmd_check)

    repair = _subparser(commands, "repair", "fix a torn tail, keeping every complete entry")
    repair.set_defaults(run=_cmd_repair)

    export = _subparser(commands, "export", "replay entries to an OTLP collector as spans")
    export.add_argument("--otlp", action="store_true", help="export over OTLP")
    export.add_argument(
        "--endpoint", metavar="URL", help="collector URL (default: OTEL_EXPORTER_OTLP_* settings)"
    )
    export.add_argument("--protocol", choices=("http/protobuf", "grpc"), default="http/protobuf")
    export.add_argument("--service-name", metavar="NAME", help="resource service.name")
    export.add_argument(
        "--batch-size", type=_non_negative_int, default=512, metavar="N", help="spans per request"
    )
    export.add_argument(
        "--timeout", type=_number, default=10.0, metavar="SECONDS", help="per request"
    )
    _add_filters(export)
    export.set_defaults(run=_cmd_export)
    return parser


def _setup_logging() -> None:
    """Library warnings (damaged regions, files moved aside) go to stderr, plainly."""
    package = logging.getLogger("betty_otel")
    if any(getattr(handler, "_betty_cli", False) for handler in package.handlers):
        return  # main() called again in the same process
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    handler._betty_cli = True  # type: ignore[attr-defined]
    package.addHandler(handler)
    package.setLevel(logging.WARNING)
    package.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run betty-telemetry with argv (default sys.argv[1:]); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    _setup_logging()
    if isinstance(sys.stdout, io.TextIOWrapper):  # never fail on a non-UTF-8 terminal
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        code: int = args.run(args)
        sys.stdout.flush()
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        _err(f"{PROG}: error: {exc}")
        return 2
    except KeyboardInterrupt:
        _err("Interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (| head): not an error. Keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # a CLI reports errors; it does not dump tracebacks
        logger.debug("%s failed", args.command, exc_info=True)
        message = str(exc) or type(exc).__name__
        _err(f"Error: {message}")
        return 1
    return code

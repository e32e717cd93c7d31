"""Trace trees: the executions of one trace, linked by ``parent_span_id``.

Only the canonical lines that contain the trace id (or an escape) are parsed. The
tree is built without recursion, in time linear in the number of executions, so a
chain of 100,000 nested calls reads like a flat trace. Links that cannot form a
tree are broken and said, on the execution (`TraceNode.note`) and, for damage
(an execution that is its own parent, a cycle of parents, a span id two
executions share), in one logged warning per trace.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from betty_otel._entry import is_finite_number, value_text
from betty_otel._inflight.view import pending_entries
from betty_otel._logs import logger
from betty_otel._store import resolve_path, telemetry_file_of
from betty_otel._timestamps import entry_time
from betty_otel.query.filters import PathArg, make_filters
from betty_otel.query.needles import scan_entries

__all__ = [
    "INDENT_LEVELS",
    "TraceNode",
    "depth_mark",
    "is_trace_id",
    "looks_like_path",
    "read_trace",
    "read_traces",
    "span_bounds",
    "trace",
    "trace_entries",
    "trace_trees",
]

INDENT_LEVELS: Final = 16
"""Levels of a trace a display indents (the CLI's tree and JSON, the report's waterfall):
deeper executions stay at this indentation and say their depth (`depth_mark`), so a
display grows linearly with the number of executions, whatever the depth."""

_TRACE_ID: Final = re.compile(r"[0-9a-fA-F]{32}")
_DAMAGE: Final = ("cycle", "self-parent", "duplicate span id")
"""Kinds of note that mean damaged data (a parent outside the log is normal: a remote caller)."""


@dataclass(eq=False, repr=False)
class TraceNode:
    """One execution in a trace and the executions it called (children in time order).

    ``note`` says why the execution is not where its ``parent_span_id`` puts it, or
    that another execution has its span id; None when its links are sound. Each
    note starts with its kind: ``cycle:``, ``self-parent:``, ``orphan:`` or
    ``duplicate span id:``.
    """

    entry: dict[str, Any]
    children: list[TraceNode] = field(default_factory=list)
    note: str | None = None

    def __repr__(self) -> str:
        # Not the dataclass repr: it would recurse through every descendant.
        note = "" if self.note is None else f", note={self.note!r}"
        return (
            f"TraceNode(skill={self.skill!r}, span_id={self.span_id!r}, "
            f"children={len(self.children)}{note})"
        )

    @property
    def skill(self) -> Any:
        """The entry's skill (None when missing)."""
        return self.entry.get("skill")

    @property
    def status(self) -> Any:
        """The entry's status (None when missing)."""
        return self.entry.get("status")

    @property
    def duration_ms(self) -> Any:
        """The entry's duration in milliseconds (None when missing)."""
        return self.entry.get("duration_ms")

    @property
    def span_id(self) -> Any:
        """The entry's span id (None when missing)."""
        return self.entry.get("span_id")

    def walk(self, depth: int = 0) -> Iterator[tuple[int, TraceNode]]:
        """(depth, node) for this node and its descendants, depth first, in order."""
        stack: list[tuple[int, TraceNode]] = [(depth, self)]
        while stack:
            level, node = stack.pop()
            yield level, node
            stack.extend((level + 1, child) for child in reversed(node.children))


def depth_mark(depth: int) -> str:
    """``[depth N] `` for an execution shown at depth but indented no further (from
    INDENT_LEVELS on), else nothing."""
    return f"[depth {depth:,}] " if depth >= INDENT_LEVELS else ""


def is_trace_id(value: object) -> bool:
    """True for a trace id as W3C writes it: a string of 32 hex digits."""
    return isinstance(value, str) and _TRACE_ID.fullmatch(value) is not None


def looks_like_path(value: str) -> bool:
    """True for a trace id that is no W3C id and looks like a file's name (``a/b``,
    ``telemetry.json``): a wrong call, while other foreign ids (``gggg...``, 31 or 64
    characters, ``123``), which ``--trace-id`` finds, are read."""
    return not is_trace_id(value) and (
        "/" in value or "\\" in value or value.lower().endswith(".json")
    )


def span_bounds(entry: Mapping[str, Any]) -> tuple[float, float] | None:
    """(start, end) of an execution in epoch seconds; None when its time is unreadable.

    The end is the timestamp; the start is the end minus the duration, or the end
    itself when the duration is not a number a float can hold.
    """
    moment = entry_time(entry.get("timestamp"))
    if moment is None:
        return None
    end = moment.timestamp()
    duration = entry.get("duration_ms")
    start = end - float(duration) / 1000 if is_finite_number(duration) else end
    return (start if math.isfinite(start) else end), end


def _start_key(index: int, entry: Mapping[str, Any]) -> tuple[int, float, int]:
    """Sort key: start time, unreadable times last, then recording order."""
    bounds = span_bounds(entry)
    return (1, 0.0, index) if bounds is None else (0, bounds[0], index)


def _call_parts(
    given: tuple[PathArg, ...], telemetry_file: PathArg, trace_id: object
) -> tuple[PathArg, object, bool]:
    """(log, trace id, whether the id came positionally) of a call to `trace`.

    The forms: ``(log, id)``, ``(id)``, ``(id, log)`` (earlier versions' order), each
    argument also by keyword. A trace id is told from a log only where the call leaves
    both places open (two positional arguments); any other combination that gives an
    argument twice, or a trace id where the log goes, raises.
    """
    if len(given) > 2:
        msg = f"trace() takes at most 2 positional arguments ({len(given)} given)"
        raise TypeError(msg)
    positional = trace_id is None
    if not positional:  # the id by keyword: what is positional is the log
        if len(given) == 2:
            msg = "trace() got the trace id twice: positionally and as trace_id="
            raise TypeError(msg)
        log = given[0] if given else None
    elif not given:
        msg = "trace() needs a trace id: trace(telemetry_file, trace_id)"
        raise TypeError(msg)
    elif len(given) == 1:
        log, trace_id = None, given[0]
    elif is_trace_id(given[0]) and is_trace_id(given[1]):
        msg = (
            "trace() got two trace ids: name them, "
            "trace(telemetry_file=..., trace_id=...), if the log's name is one"
        )
        raise ValueError(msg)
    elif is_trace_id(given[0]):  # the order of earlier versions: (trace_id, telemetry_file)
        trace_id, log = given
    else:
        log, trace_id = given
    if log is None:  # not given (None stands for the default log)
        return telemetry_file, trace_id, positional
    if telemetry_file is not None:
        msg = "trace() got the log twice: positionally and as telemetry_file="
        raise TypeError(msg)
    return _log_argument(log), trace_id, positional


def _log_argument(value: PathArg) -> PathArg:
    """value, given positionally where the log goes, unless it is text that reads as a
    trace id (hex digits only): the call is then wrong, or ambiguous."""
    if isinstance(value, str) and value and all(char in string.hexdigits for char in value):
        msg = (
            f"trace() got {value[:200]!r} where the log goes, which reads as a trace id: "
            "trace(telemetry_file, trace_id), or telemetry_file=... if that is the log's name"
        )
        raise TypeError(msg)
    return value


def _checked_trace_id(trace_id: object, positional: bool) -> str:
    """trace_id if it is a trace id, else the error that says what was passed instead
    (positional: it came where a log may go, so a path there is a log in the wrong place)."""
    if not isinstance(trace_id, str):
        msg = f"trace_id must be a string of 32 hex digits, got {type(trace_id).__name__}"
        raise TypeError(msg)
    if not trace_id or looks_like_path(trace_id):
        msg = f"trace_id must be a trace's id (32 hex digits for W3C), got {trace_id[:200]!r}"
        if trace_id and positional:
            msg += ", which looks like a path: the log comes first, trace(telemetry_file, trace_id)"
        raise ValueError(msg)
    return trace_id


def trace(
    *log_and_trace_id: PathArg,
    telemetry_file: PathArg = None,
    trace_id: str | None = None,
    path: PathArg = None,
) -> list[TraceNode]:
    """The tree of executions of one trace in the log: its roots, each with its children.

    Called ``trace(telemetry_file, trace_id)``, the log first as in every reader;
    ``trace(trace_id)`` reads the default log, and the order of earlier versions,
    ``trace(trace_id, telemetry_file)``, still works (a trace id is 32 hex digits,
    which tells it from the log). Either may be given by keyword; ``path`` is the
    deprecated name of ``telemetry_file``. Any other call raises: one that gives an
    argument twice, or text that reads as a trace id (hex digits only) where the log
    goes, as in ``trace(trace_id, trace_id=trace_id)``.

    A child's ``parent_span_id`` is its parent's ``span_id``; executions without a
    parent, or whose parent is not in the log, are roots. Siblings are in order of
    start time. Executions of the trace still in flight are there too, as entries
    with status ``pending`` (see `running`). Links that would not make a tree are
    broken and noted (see `TraceNode`). Returns [] when no entry has this trace id;
    the ids are compared exactly, as ``--trace-id`` compares them.

    Raises:
        TypeError: no trace id, a trace id that is not a string, an argument twice,
            a trace id where the log goes.
        ValueError: an empty trace id, or one that is no W3C id and looks like a path (a
            path where the id belongs), two trace ids; any other foreign id is read, as
            ``--trace-id`` reads it.
    """
    log, wanted, positional = _call_parts(log_and_trace_id, telemetry_file, trace_id)
    checked = _checked_trace_id(wanted, positional)
    return read_trace(resolve_path(telemetry_file_of(log, path)), checked)


def read_trace(base: Path, trace_id: str) -> list[TraceNode]:
    """The roots of trace_id's tree in the log at base (any id: the report's come from the log).

    Without recursion and in time linear in the number of executions (after a sort
    by start time), however deep the tree; see `trace`.
    """
    return read_traces(base, [trace_id])[trace_id]


def read_traces(base: Path, trace_ids: Iterable[str]) -> dict[str, list[TraceNode]]:
    """The roots of each trace's tree (as `read_trace`), all found in one read of the log."""
    return trace_trees(base, trace_entries(base, trace_ids))


def trace_entries(base: Path, trace_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """The entries in the log of each trace (in log order), all found in one read of it."""
    wanted = list(dict.fromkeys(trace_ids))
    found: dict[str, list[dict[str, Any]]] = {trace_id: [] for trace_id in wanted}
    if wanted:
        for entry in scan_entries(base, make_filters(trace_id=wanted)):
            found[value_text(entry["trace_id"])].append(entry)  # as the filter compares it
    return found


def trace_trees(base: Path, found: dict[str, list[dict[str, Any]]]) -> dict[str, list[TraceNode]]:
    """The roots of each trace's tree, from its entries in the log (`trace_entries`) and
    its running parents."""
    return {trace_id: _tree(base, trace_id, entries) for trace_id, entries in found.items()}


def _tree(base: Path, trace_id: str, entries: list[dict[str, Any]]) -> list[TraceNode]:
    """The roots of one trace's tree from its entries in the log (and its running parents)."""
    entries += pending_entries(base, trace_id=trace_id, known=entries)  # running parents
    order = sorted(range(len(entries)), key=lambda i: _start_key(i, entries[i]))
    nodes = [TraceNode(entries[i]) for i in order]
    kinds: Counter[str] = Counter()
    parents = _parents(nodes, kinds)
    _break_cycles(nodes, parents, kinds)
    roots: list[TraceNode] = []
    for node, parent in zip(nodes, parents, strict=True):
        (roots if parent < 0 else nodes[parent].children).append(node)
    found = [f"{kinds[kind]:,} {kind}" for kind in _DAMAGE if kinds[kind]]
    if found:
        logger(__name__).warning(
            "trace %s: broken links in the log (%s); each is noted on its execution",
            trace_id,
            ", ".join(found),
        )
    return roots


def _note(node: TraceNode, kind: str, text: str, kinds: Counter[str]) -> None:
    """Add ``kind: text`` to the node's note, and count the kind."""
    note = f"{kind}: {text}"
    node.note = note if node.note is None else f"{node.note}; {note}"
    kinds[kind] += 1


def _shown(value: object) -> str:
    """A value from the log in a note: as text, cut short (a note is one line)."""
    shown = value_text(value)
    return shown if len(shown) <= 100 else shown[:99] + "…"


def _parents(nodes: list[TraceNode], kinds: Counter[str]) -> list[int]:
    """The index of each node's parent (-1: a root), noting every link that cannot hold.

    A span id shared by several executions belongs to the earliest; the others are noted.
    """
    first: dict[str, int] = {}
    for index, node in enumerate(nodes):
        span = node.span_id
        if isinstance(span, str) and span:
            if span in first:
                text = f"{_shown(span)} is also an earlier execution's; its children are there"
                _note(node, "duplicate span id", text, kinds)
            else:
                first[span] = index
    parents: list[int] = []
    for node in nodes:
        link = node.entry.get("parent_span_id")
        parent = first.get(link, -1) if isinstance(link, str) else -1
        if link is None or link == "":
            pass
        elif not isinstance(link, str):
            _note(node, "orphan", f"parent_span_id {_shown(link)} is not a span id", kinds)
        elif link == node.span_id:
            parent = -1
            _note(node, "self-parent", "its parent_span_id is its own span_id", kinds)
        elif parent < 0:
            _note(node, "orphan", f"its parent {_shown(link)} is not in the log", kinds)
        parents.append(parent)
    return parents


def _break_cycles(nodes: list[TraceNode], parents: list[int], kinds: Counter[str]) -> None:
    """Make the earliest execution of each cycle of parent links a root, noted.

    Follows each chain of parents once (a node is left for good when its chain ends
    at a root or at a node already settled): linear in the number of nodes.
    """
    state = bytearray(len(nodes))  # 0: not seen, 1: on the chain followed now, 2: settled
    for start in range(len(nodes)):
        chain: list[int] = []
        index = start
        while index >= 0 and state[index] == 0:
            state[index] = 1
            chain.append(index)
            index = parents[index]
        if index >= 0 and state[index] == 1:  # the chain came back to itself: a cycle
            cycle = chain[chain.index(index) :]
            first = min(cycle)  # nodes are in start order: the cycle's earliest execution
            parent = nodes[parents[first]].span_id
            text = f"its parent {_shown(parent)} descends from it ({len(cycle)} in the cycle)"
            _note(nodes[first], "cycle", text, kinds)
            parents[first] = -1
        for item in chain:
            state[item] = 2

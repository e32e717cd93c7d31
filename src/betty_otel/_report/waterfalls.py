"""The traces the page draws as waterfalls, read while the rest of the page is built.

The report's read indexes where each trace's entries are (`traceindex`): when that
index holds the whole log, the traces are read from the few blocks that hold them.
Else finding a trace's entries is one more read of the whole log (`betty_otel.query.trace`).
Where a helper may be forked (`betty_otel.query.parallel.start_method`), a forked child
does that read while this process computes the figures and charts, and hands the
entries over through a pipe; the trees are built here, as `read_traces` builds them.
A child that fails to start, dies or hands over anything but the entries only means
that this process reads them itself, as does one still reading when its time is up
(twice the time the main read took, and 5 s): nothing hangs on it. The child is
always killed and reaped before `TraceRead` is left.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from betty_otel._report.traceindex import Found
from betty_otel.query.children import fork_child, stop_child
from betty_otel.query.parallel import start_method
from betty_otel.query.trace import TraceNode, trace_entries, trace_trees

__all__ = ["MAX_TRACES", "TraceRead", "slowest_traces"]

MAX_TRACES: Final = 3
"""Waterfalls of this many of the slowest traces (every trace asked for with trace_id)."""


def slowest_traces(slowest: Iterable[Mapping[str, Any]]) -> list[str]:
    """The trace ids of the slowest executions (slowest first), at most MAX_TRACES."""
    found: list[str] = []
    for entry in slowest:
        trace_id = entry.get("trace_id")
        if isinstance(trace_id, str) and trace_id and trace_id not in found:
            found.append(trace_id)
    return found[:MAX_TRACES]


class TraceRead:
    """The trees of trace_ids in the log at base (`result`), read aside when it can be.

    found: the traces' entries when already known (the report's trace index found
    them): then nothing is read. Use as a context manager: on leaving, the child (if
    any) is killed and reaped.
    """

    def __init__(
        self, base: Path, trace_ids: list[str], seconds: float, found: Found | None = None
    ) -> None:
        self.base = base
        self.trace_ids = trace_ids
        self.found = found
        self.deadline = time.monotonic() + seconds
        """When a child still reading is given up (this process reads instead)."""
        self.pid = 0
        self.fd = -1
        if found is None and trace_ids and start_method() == "fork":
            with contextlib.suppress(OSError):  # no child: read here
                self.pid, self.fd = fork_child(self._work)

    def _work(self, out: int) -> None:
        """The child's: every trace's entries, pickled to out."""
        view = memoryview(pickle.dumps(trace_entries(self.base, self.trace_ids)))
        while view:
            view = view[os.write(out, view) :]

    def __enter__(self) -> TraceRead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def result(self) -> dict[str, list[TraceNode]]:
        """The roots of each trace's tree, as `betty_otel.query.trace.read_traces` finds them."""
        found = self.found
        if found is None and self.fd >= 0:
            found = self._handed_over()
        self.close()
        if found is None:
            found = trace_entries(self.base, self.trace_ids)
        return trace_trees(self.base, found)

    def _handed_over(self) -> Found | None:
        """What the child wrote (waits for it to end); None when it is not the entries."""
        chunks = []
        try:
            while select.select([self.fd], [], [], max(0.0, self.deadline - time.monotonic()))[0]:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            else:
                return None  # still reading when its time is up
            found = pickle.loads(b"".join(chunks))  # noqa: S301 - our own forked child's
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError):
            return None  # the child failed: read here
        wanted = dict.fromkeys(self.trace_ids)
        if not isinstance(found, dict) or list(found) != list(wanted):
            return None
        return found

    def close(self) -> None:
        """Kill and reap the child (whatever it is doing)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.pid > 0:
            with contextlib.suppress(OSError):
                stop_child(self.pid)
            self.pid = 0

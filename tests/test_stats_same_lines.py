"""stats reads each line the same way however a read of the file is split.

A whole read in this process, a read shared with a helper (`betty_otel.query.parallel`:
which parts the helper does depends on the two processes' speeds), and a read of only
the bytes after a summary's offset must count the very same lines. The lines that
could tell them apart are damaged ones: a canonical line damaged after the fields
stats reads (counted, as the README says), and a line whose duration is not a number
JSON allows (parsed whole: skipped as damage, or counted when JSON after all). Which
parts the helper does is set here by making the parent wait for it, or never.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import psutil
import pytest

from betty_otel.query import stats
from betty_otel.query.parallel import ENV_MIN_BYTES, ENV_PARALLEL, Helper
from betty_otel.query.summary import read_summary
from helpers import append_entries
from test_stats_fresh import BIG, entry, overwrite
from test_stats_summary import figures, recount

READY = Helper.ready
SCAN_BLOCK = 1 << 20
"""The scanner's block size (`betty_otel.query.blocks`): a line across it was read apart."""


def damage_after_the_fields(path: Path, at: int) -> int:
    """Write a NUL byte into the prompt of the entry line at or after offset at (after the
    fields stats reads, in place, times kept); the line's start."""
    data = path.read_bytes()
    start = data.index(b"\n{", at) + 1
    overwrite(path, data.index(b'"prompt":"', start) + 12, b"\x00")
    return start


def leading_zero_duration(path: Path, at: int) -> None:
    """Make the first duration 30 at or after offset at read 00: not a JSON number."""
    data = path.read_bytes()
    overwrite(path, data.index(b'"duration_ms":30,', at) + len(b'"duration_ms":'), b"0")


def tab_in_the_skill(path: Path, at: int) -> None:
    """Make the first skill "a" at or after offset at a raw tab: not a JSON string."""
    data = path.read_bytes()
    overwrite(path, data.index(b'"skill":"a"', at) + len(b'"skill":"'), b"\t")


NOT_JSON = {"a duration 00": leading_zero_duration, "a tab in a skill": tab_in_the_skill}


def read_alone(path: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The figures of a whole read of a copy of the log by this process alone."""
    with monkeypatch.context() as alone:
        alone.setenv(ENV_PARALLEL, "0")
        return recount(path, tmp, by="caller")


def with_helper(monkeypatch: pytest.MonkeyPatch, *, parent_waits: bool) -> None:
    """Read with a forked helper; the parent reads part 0 and then waits until the helper
    has done every other part (a slow parent), or never takes a part of it (a slow helper)."""
    monkeypatch.setenv(ENV_PARALLEL, "fork")
    monkeypatch.setenv(ENV_MIN_BYTES, "0")

    def ready(self: Helper, index: int) -> bool:
        if not parent_waits:
            return False
        assert self.pid > 0, "no forked helper"
        with contextlib.suppress(psutil.TimeoutExpired):  # a bound that only catches a hang
            psutil.Process(self.pid).wait(60)  # it exits once every part is written
        return READY(self, index)

    monkeypatch.setattr(Helper, "ready", ready)


@pytest.mark.parametrize("parent_waits", [True, False], ids=["slow parent", "slow helper"])
@pytest.mark.parametrize("damage", NOT_JSON.values(), ids=NOT_JSON.keys())
def test_damaged_lines_count_the_same_whichever_process_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parent_waits: bool, damage: Any
) -> None:
    """The history Hypothesis found: a NUL byte after the fields of an early entry (part 0,
    read by the parent) and, much later, a captured field that is not JSON (a duration 00,
    as found, or a skill with a raw tab; in a part the helper may read). Whoever reads
    what, stats counts the NUL line and skips the other, as a whole read by this process
    alone does."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [entry(i) for i in range(BIG)])
    damage_after_the_fields(path, 500)
    damage(path, path.stat().st_size * 6 // 7)
    expected = read_alone(path, tmp_path, monkeypatch)
    assert sum(group[0] for group in expected.values()) == BIG - 1
    with_helper(monkeypatch, parent_waits=parent_waits)
    assert figures(stats(path, by="caller")) == expected


def test_a_damaged_line_across_a_block_boundary_counts_as_anywhere_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line damaged after its fields that spans the scanner's first block boundary in
    a whole read, but not in the helper's part that holds it: counted both ways."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [entry(i) for i in range(BIG)])
    start = damage_after_the_fields(path, path.read_bytes().rindex(b"\n", 0, SCAN_BLOCK))
    assert start < SCAN_BLOCK < path.read_bytes().index(b"\n", start)
    expected = read_alone(path, tmp_path, monkeypatch)
    assert sum(group[0] for group in expected.values()) == BIG
    with_helper(monkeypatch, parent_waits=True)
    assert figures(stats(path, by="caller")) == expected


def test_a_number_read_only_by_the_parser_after_the_summary_keeps_damaged_lines_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A summary that counted a line damaged after its fields, then an entry appended
    (by another writer) whose duration 1e400 only the tolerant parser reads: the next
    stats reads only the appended bytes, and equals a whole read of the file."""
    monkeypatch.setenv(ENV_PARALLEL, "0")
    path = tmp_path / "telemetry.json"
    append_entries(path, [entry(i) for i in range(BIG)])
    damage_after_the_fields(path, 500)
    stats(path, by="caller")
    summarised = read_summary(path)[0].end
    data = path.read_bytes()
    last = data[data.rindex(b"\n{", 0, len(data) - 3) + 1 : -3]
    line = re.sub(rb'"duration_ms":[^,]*', b'"duration_ms":1e400', last, count=1)
    assert line != last
    with path.open("r+b") as handle:  # the closing bracket moved on, as writers do
        handle.seek(len(data) - 3)
        handle.write(b",\n" + line + b"\n]\n")
    assert figures(stats(path, by="caller")) == recount(path, tmp_path, by="caller")
    assert read_summary(path)[0].end == summarised  # the summary was used, not rebuilt

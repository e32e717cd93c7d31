"""The telemetry file store's damage handling and repair.

Damage in the middle is skipped and reported by both readers, never rewritten; a torn
tail is skipped silently by readers and cut (and saved beside the file) by repair and by
the next append; data after the closing bracket is removed. Hypothesis: truncation at any
offset reads a prefix and repairs to it, a crash inside an append keeps every
acknowledged entry, garbage after a valid file is removed by repair.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel._store import (
    TelemetryStore,
    check_file,
    iter_entries,
)
from helpers import (
    Entry,
    append_entries,
    canonical,
    indent2,
    is_betty_record,
    load_strict,
    make_entry,
    read_backward,
    read_forward,
)
from store_helpers import LAYOUTS, TORN_NAME, assert_readers_agree, collect_damage, tricky_entries

# ---------------------------------------------------------------------------
# damage in the middle, torn tails, repair
# ---------------------------------------------------------------------------


def damaged_file(path: Path, position: str) -> tuple[list[Entry], int, int]:
    """Five canonical entries with one bit of the middle line flipped: (others, start, end)."""
    entries = [make_entry(n) for n in range(5)]
    data = bytearray(canonical(entries))
    lines = bytes(data).split(b"\n")
    start = sum(len(line) + 1 for line in lines[:3])  # "[", entry 0, entry 1
    middle = lines[3]
    assert middle.endswith(b"},")
    index = {
        "open_brace": 0,
        "first_quote": 1,
        "colon": middle.index(b":"),
        "comma_inside": middle.index(b","),
        "close_brace": len(middle) - 2,
        "separator": len(middle) - 1,
        "digit": middle.index(b'"n":') + 4,
    }[position]
    data[start + index] ^= 0x01
    path.write_bytes(bytes(data))
    return entries[:2] + entries[3:], start, start + len(middle)


DAMAGE_POSITIONS = [
    "open_brace",
    "first_quote",
    "colon",
    "comma_inside",
    "close_brace",
    "separator",
]


@pytest.mark.parametrize("position", DAMAGE_POSITIONS)
def test_damaged_line_is_skipped_and_reported_by_both_readers(
    log_path: Path, position: str
) -> None:
    """A bit flip in a middle entry: readers return every other entry and report the damage."""
    others, start, end = damaged_file(log_path, position)
    before = log_path.read_bytes()
    for newest_first in (False, True):
        damage, report = collect_damage()
        got = list(iter_entries(log_path, newest_first=newest_first, on_damage=report))
        assert got == (others[::-1] if newest_first else others)
        assert damage, f"no damage reported (newest_first={newest_first})"
        assert all(d.offset >= 0 for d in damage)
        assert any(d.offset <= end and start <= d.offset + d.length for d in damage)
    result = check_file(log_path)
    assert not result.ok
    assert result.damage
    assert not result.torn_tail
    assert result.entries == len(others)
    assert log_path.read_bytes() == before  # reading never writes


def test_any_single_bit_flip_in_a_line_loses_only_that_line(tmp_path: Path) -> None:
    """Flip each bit (0x01, 0x20) of a middle line: readers agree and keep every other entry."""
    path = tmp_path / "telemetry.json"
    entries = [make_entry(n) for n in range(5)]
    clean = canonical(entries)
    lines = clean.split(b"\n")
    start = sum(len(line) + 1 for line in lines[:3])
    others = entries[:2] + entries[3:]
    for index in range(len(lines[3]) + 1):  # + 1: the line's newline too
        for mask in (0x01, 0x20):
            data = bytearray(clean)
            data[start + index] ^= mask
            path.write_bytes(bytes(data))
            damage, report = collect_damage()
            oldest = read_forward(path, on_damage=report)
            assert read_backward(path, on_damage=report) == oldest[::-1], (index, mask)
            if index < len(lines[3]):
                assert [e for e in oldest if e in others] == others, (index, mask)
                assert len(oldest) == 5 or damage, (index, mask)
            # Appends still work and are read back.
            append_entries(path, [{"new": index}])
            after = read_forward(path, on_damage=report)
            assert after[-1] == {"new": index}
            assert after[:-1] == oldest
            assert read_backward(path, on_damage=report) == after[::-1]
            for extra in tmp_path.iterdir():
                if extra != path:
                    extra.unlink()


def test_damage_in_a_string_value_changes_only_that_value(log_path: Path) -> None:
    """A bit flip that keeps the JSON valid (a digit) is not damage; the entry just differs."""
    others, _, _ = damaged_file(log_path, "digit")
    got = read_forward(log_path)
    assert len(got) == 5
    assert [got[0], got[1], got[3], got[4]] == others
    assert check_file(log_path).ok


def test_default_damage_report_is_a_logged_warning(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without on_damage, readers log a warning on the betty_otel logger for each damaged region."""
    damaged_file(log_path, "colon")
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        assert len(read_forward(log_path)) == 4
    assert any("damaged" in r.getMessage() for r in caplog.records if is_betty_record(r))


@pytest.mark.parametrize("position", DAMAGE_POSITIONS)
def test_append_after_damage_works_and_keeps_the_damaged_region(
    log_path: Path, position: str
) -> None:
    """Appends go after the damage without rewriting it; the damaged bytes stay for forensics."""
    others, _, _ = damaged_file(log_path, position)
    before = log_path.read_bytes()
    append_entries(log_path, [make_entry(10)])
    after = log_path.read_bytes()
    assert after.startswith(before[: -len(b"\n]\n")])
    assert after == before[: -len(b"\n]\n")] + b",\n" + orjson.dumps(make_entry(10)) + b"\n]\n"
    damage, report = collect_damage()
    assert read_forward(log_path, on_damage=report) == [*others, make_entry(10)]
    assert read_backward(log_path, on_damage=report) == [make_entry(10), *others[::-1]]
    assert damage
    assert not list(log_path.parent.glob("*.torn-*"))


TORN_TAILS = [
    b',\n{"skill": "x", "inp',  # cut inside a string
    b',\n{"skill": "x", "args": [1, 2]',  # cut right after a nested ]
    b',\n{"a": {"b": 1}',  # cut after a nested }
    b',\n{"a": "null]',  # cut inside a string ending like a value and a bracket
    b",\n",  # cut after the separator
    b",",  # cut after the comma
    b',\n{"a": 1},\n{"b": [',  # two entries, the second one torn
]


@pytest.mark.parametrize("tail", TORN_TAILS)
def test_torn_tail_is_skipped_silently_and_reading_never_writes(
    log_path: Path, tail: bytes
) -> None:
    """A torn tail is invisible to readers (no damage reported); reading leaves the file as is."""
    entries = [make_entry(n) for n in range(3)]
    log_path.write_bytes(canonical(entries)[: -len(b"\n]\n")] + tail)
    before = log_path.read_bytes()
    mtime = log_path.stat().st_mtime_ns
    expected = entries + ([{"a": 1}] if tail.startswith(b',\n{"a": 1},') else [])
    assert_readers_agree(log_path, expected)
    report = check_file(log_path)
    assert report.torn_tail
    assert not report.damage
    assert report.entries == len(expected)
    assert log_path.read_bytes() == before
    assert log_path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("tail", TORN_TAILS)
def test_repair_cuts_the_torn_tail_and_saves_it(
    log_path: Path, tail: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """repair() keeps every complete entry, closes the array, saves removed bytes to .torn-<UTC>."""
    entries = [make_entry(n) for n in range(3)]
    if tail.startswith(b',\n{"a": 1},'):
        entries.append({"a": 1})
        tail = tail[len(b',\n{"a": 1}') :]
    body = canonical(entries)[: -len(b"\n]\n")]
    log_path.write_bytes(body + tail)
    store = TelemetryStore(log_path)
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        removed = store.repair()
    assert removed == len(tail)
    assert log_path.read_bytes() == canonical(entries)
    torn = [p for p in log_path.parent.iterdir() if TORN_NAME.match(p.name)]
    assert len(torn) == 1
    assert torn[0].read_bytes() == tail
    assert any("torn" in r.getMessage() for r in caplog.records)
    assert store.repair() == 0  # nothing left to repair
    store.append([make_entry(9)])
    store.close()
    assert load_strict(log_path) == [*entries, make_entry(9)]


@pytest.mark.parametrize("tail", TORN_TAILS)
def test_append_repairs_a_torn_tail_first(log_path: Path, tail: bytes) -> None:
    """The next append repairs a torn tail under the lock and then appends normally."""
    entries = [make_entry(n) for n in range(3)]
    log_path.write_bytes(canonical(entries)[: -len(b"\n]\n")] + tail)
    append_entries(log_path, [make_entry(9)])
    data = load_strict(log_path)
    assert data[:3] == entries
    assert data[-1] == make_entry(9)
    assert len(data) in (4, 5)
    assert check_file(log_path).ok


def test_repair_of_a_healthy_file_changes_nothing(log_path: Path) -> None:
    """repair() on a valid file returns 0, writes nothing and saves nothing."""
    for layout in ("canonical", "indent2", "compact_one_line", "crlf"):
        log_path.write_bytes(LAYOUTS[layout](tricky_entries()))
        before = log_path.read_bytes()
        store = TelemetryStore(log_path)
        assert store.repair() == 0
        store.close()
        assert log_path.read_bytes() == before, layout
    assert [p.name for p in log_path.parent.iterdir()] == ["telemetry.json"]


def test_repair_of_a_missing_closing_bracket_saves_nothing(log_path: Path) -> None:
    """A file cut just before ``]`` loses only whitespace: repaired without a .torn file."""
    entries = [make_entry(1), make_entry(2)]
    log_path.write_bytes(canonical(entries)[:-2])
    store = TelemetryStore(log_path)
    assert store.repair() == 1
    store.close()
    assert log_path.read_bytes() == canonical(entries)
    assert [p.name for p in log_path.parent.iterdir()] == ["telemetry.json"]


@pytest.mark.parametrize("cut", ["inside_last", "after_last_brace", "after_last_brace_newline"])
def test_repair_of_a_torn_legacy_file_keeps_complete_elements(log_path: Path, cut: str) -> None:
    """An old writer killed mid-dump (indent=2 prefix): readers and repair keep every complete
    element, including one whose closing brace arrived but not its comma or the bracket."""
    entries = tricky_entries()
    full = indent2(entries)
    brace = full.rindex(b"}") + 1  # the last element's closing brace
    end, complete = {
        "inside_last": (full.rindex(b'"args"'), entries[:-1]),
        "after_last_brace": (brace, entries),
        "after_last_brace_newline": (brace + 1, entries),
    }[cut]
    log_path.write_bytes(full[:end])
    assert_readers_agree(log_path, complete)
    report = check_file(log_path)
    assert report.torn_tail
    assert report.entries == len(complete)
    store = TelemetryStore(log_path)
    store.repair()
    assert load_strict(log_path) == complete
    store.append([make_entry(7)])
    store.close()
    assert load_strict(log_path) == [*complete, make_entry(7)]


def test_data_after_the_closing_bracket_is_removed_by_repair(log_path: Path) -> None:
    """Bytes after the array's end (e.g. ``]`` twice) are a torn tail that repair removes."""
    entries = [make_entry(1), make_entry(2)]
    for junk in (b"]", b"\n]\n", b"}\n]", b"\n  1]", b"x", b"\x00\x00", b"\n{"):
        log_path.write_bytes(canonical(entries) + junk)
        assert_readers_agree(log_path, entries)
        append_entries(log_path, [make_entry(3)])
        assert load_strict(log_path) == [*entries, make_entry(3)], junk


@pytest.mark.parametrize(
    "junk", [b"{}", b"\n{}", b'\n{"x":1}\n{"y":2}\n', b"\n{}\n]\n", b'{"a":1}\n]\n']
)
def test_entry_lines_after_the_end_are_removed_not_kept_as_entries(
    log_path: Path, junk: bytes
) -> None:
    """Lines that look like entries after a complete array (JSON Lines appended to it) are not
    mistaken for its tail: repair and the next append leave strict JSON with the real entries."""
    entries = [make_entry(1), make_entry(2)]
    log_path.write_bytes(canonical(entries) + junk)
    append_entries(log_path, [make_entry(3)])
    assert load_strict(log_path) == [*entries, make_entry(3)]
    saved = [p.read_bytes() for p in log_path.parent.glob("telemetry.json.torn-*")]
    assert saved == [b"\n]\n" + junk]


# ---------------------------------------------------------------------------
# Hypothesis: truncation at any offset, garbage after a valid file
# ---------------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
entries_strategy = st.dictionaries(st.text(max_size=8), json_value, max_size=4)
batches_strategy = st.lists(
    st.lists(entries_strategy, min_size=1, max_size=4), min_size=1, max_size=5
)
START_LAYOUTS = ["missing", "canonical", "indent2", "compact_one_line", "crlf", "bom"]

HYPOTHESIS = settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _is_prefix(got: list[Any], appended: list[Any]) -> bool:
    return got == appended[: len(got)]


@HYPOTHESIS
@given(
    start=st.sampled_from(START_LAYOUTS),
    initial=st.lists(entries_strategy, min_size=1, max_size=3),
    batches=batches_strategy,
    data=st.data(),
)
def test_truncation_anywhere_reads_a_prefix_and_repairs_to_it(
    start: str, initial: list[Entry], batches: list[list[Entry]], data: st.DataObject
) -> None:
    """Cut the file anywhere: readers give a prefix of the appends; repair() leaves strict JSON."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "telemetry.json"
        appended: list[Entry] = []
        if start != "missing":
            path.write_bytes(LAYOUTS[start](initial))
            appended.extend(initial)
        for batch in batches:
            append_entries(path, batch)
            appended.extend(batch)
        full = path.read_bytes()
        assert json.loads(full) == appended
        cut = data.draw(st.integers(min_value=0, max_value=len(full)), label="cut")
        path.write_bytes(full[:cut])

        damage, report = collect_damage()
        oldest_first = read_forward(path, on_damage=report)
        newest_first = read_backward(path, on_damage=report)
        assert damage == []
        assert _is_prefix(oldest_first, appended)
        assert newest_first == oldest_first[::-1]
        assert path.read_bytes() == full[:cut]  # reading never writes

        store = TelemetryStore(path)
        try:
            store.repair()
            repaired = path.read_bytes()
            if repaired.strip():
                assert json.loads(repaired) == oldest_first
            else:
                assert oldest_first == []
            store.append([{"next": True}])
        finally:
            store.close()
        assert load_strict(path) == [*oldest_first, {"next": True}]
        assert check_file(path).ok


@HYPOTHESIS
@given(
    start=st.sampled_from(START_LAYOUTS),
    initial=st.lists(entries_strategy, min_size=1, max_size=3),
    batches=batches_strategy,
    last=st.lists(entries_strategy, min_size=1, max_size=4),
    data=st.data(),
)
def test_crash_inside_an_append_keeps_every_acknowledged_entry(
    start: str,
    initial: list[Entry],
    batches: list[list[Entry]],
    last: list[Entry],
    data: st.DataObject,
) -> None:
    """A writer dies after k bytes of its write (old bytes beyond them intact): every entry of
    an append that returned survives in both readers and in repair(), which leaves strict JSON."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "telemetry.json"
        acknowledged: list[Entry] = []
        if start != "missing":
            path.write_bytes(LAYOUTS[start](initial))
            acknowledged.extend(initial)
        for batch in batches:
            append_entries(path, batch)
            acknowledged.extend(batch)
        old = path.read_bytes()
        append_entries(path, last)
        new = path.read_bytes()
        pos = next(
            (i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
            min(len(old), len(new)),
        )
        written = data.draw(st.integers(min_value=0, max_value=len(new) - pos), label="written")
        crashed = new[: pos + written] + old[pos + written :]
        path.write_bytes(crashed)

        damage, report = collect_damage()
        oldest_first = read_forward(path, on_damage=report)
        assert read_backward(path, on_damage=report) == oldest_first[::-1]
        assert damage == []
        assert oldest_first[: len(acknowledged)] == acknowledged
        assert _is_prefix(oldest_first, acknowledged + last)
        assert path.read_bytes() == crashed

        store = TelemetryStore(path)
        try:
            store.repair()
            assert load_strict(path) == oldest_first
            store.append([{"next": True}])
        finally:
            store.close()
        assert load_strict(path) == [*oldest_first, {"next": True}]
        assert check_file(path).ok


@HYPOTHESIS
@given(
    entries=st.lists(entries_strategy, min_size=1, max_size=6),
    garbage=st.binary(min_size=1, max_size=4096) | st.integers(1, 4096).map(lambda n: b"\0" * n),
    layout=st.sampled_from(["canonical", "indent2", "no_final_newline", "compact_one_line"]),
)
def test_garbage_after_a_valid_file_is_removed_by_repair(
    entries: list[Entry], garbage: bytes, layout: str
) -> None:
    """Random bytes or NULs after a complete array: repair removes them and every entry remains."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "telemetry.json"
        path.write_bytes(LAYOUTS[layout](entries) + garbage)
        store = TelemetryStore(path)
        try:
            store.repair()
            assert load_strict(path) == entries
            store.append([{"next": True}])
        finally:
            store.close()
        assert load_strict(path) == [*entries, {"next": True}]

"""A closed array whose last element is damaged: damage, not a torn tail, everywhere.

A flipped bit, an edit, or a power loss that kept the closing bracket can break the
last element of a closed array. That is no append still landing (our bracket is written
last, and so is an old writer's), so every reader skips it and reports it as it reports
damage anywhere else in the array, `check` says so and `repair` leaves it, and an append
goes after it. The log, with every entry in it, is neither cut nor moved aside: it was
moved aside whole before, its entries out of every reader's sight. A torn append that
ends in a (nested) bracket is still cut, and a file that is no array of entries is still
moved aside.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

import betty_otel
from betty_otel._store import Damage, TelemetryStore, check_file, iter_entries
from betty_otel.query import stats
from helpers import INVALID_NAME, canonical, indent2, make_entry, read_backward, repair_file

KEPT = [make_entry(number) for number in range(5)]
LAST = make_entry(5)
WARNING = re.compile(r"skipped (\d+) damaged bytes at offset (\d+) \((.+)\)")


def _cut_canonical() -> bytes:
    """Our layout, the last entry line cut inside a string, then the closing bracket."""
    whole = canonical([*KEPT, LAST])
    return whole[: whole.rindex(b'"skill"') + 12] + b"\n]\n"


def _flipped_canonical() -> bytes:
    """Our layout, a bit flipped in the last entry (a colon now a semicolon): its braces
    still balance, so the bracket closes the array as usual."""
    whole = canonical([*KEPT, LAST])
    at = whole.rindex(b'"status":')
    return whole[: at + 8] + b";" + whole[at + 9 :]


def _cut_indent2() -> bytes:
    """The old tools' layout (json.dump indent=2), the last element cut inside a string."""
    whole = indent2([*KEPT, LAST])
    return whole[: whole.rindex(b'"caller"') + 5] + b"\n]"


def _cut_after_comma() -> bytes:
    """Our layout, the last entry line cut just after a comma (at a key's end)."""
    whole = canonical([*KEPT, LAST])
    return whole[: whole.rindex(b'"status"')] + b"\n]\n"


def _cut_indent2_after_comma() -> bytes:
    """The old tools' layout cut at the end of a line: nearly all of them end in a comma."""
    whole = indent2([*KEPT, LAST])
    return whole[: whole.rindex(b'"caller"')].rstrip(b" ") + b"]"


def _brace_too_many() -> bytes:
    """Our layout, the last entry line with one closing brace too many (the entry reads)."""
    return canonical(KEPT)[:-3] + b"}\n]\n"


def _one_line_prefix() -> bytes:
    """A one-line legacy log (json.dump, no indent), then our append cut inside a string."""
    cut = _cut_canonical()
    return json.dumps(KEPT).encode()[:-1] + b",\n" + cut[cut.rindex(b"\n{") + 1 :]


LAYOUTS = {
    "cut canonical": _cut_canonical,
    "flipped": _flipped_canonical,
    "cut indent2": _cut_indent2,
    "cut after a comma": _cut_after_comma,
    "cut indent2 at a line end": _cut_indent2_after_comma,
    "after a one-line prefix": _one_line_prefix,
}


def _reported(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int, str]]:
    found = [WARNING.search(record.getMessage()) for record in caplog.records]
    caplog.clear()
    return [(int(m[2]), int(m[1]), m[3]) for m in found if m]


def _regions(damage: list[Damage]) -> list[tuple[int, int, str]]:
    return [(item.offset, item.length, item.reason) for item in damage]


@pytest.fixture(params=list(LAYOUTS))
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / "telemetry.json"
    path.write_bytes(LAYOUTS[request.param]())
    return path


def test_every_reader_and_check_report_the_same_damage_and_keep_every_entry(
    damaged: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    report = check_file(damaged)
    assert not report.torn_tail
    assert report.entries == len(KEPT)
    (region,) = _regions(report.damage)
    assert region[2] in ("element is not valid JSON", "unbalanced brace")
    caplog.set_level(logging.WARNING)
    for newest_first in (True, False):
        found: list[Damage] = []
        entries = list(iter_entries(damaged, newest_first=newest_first, on_damage=found.append))
        assert entries == (KEPT[::-1] if newest_first else KEPT)
        assert _regions(found) == [region]
    assert [entry["skill"] for entry in read_backward(damaged)] == [e["skill"] for e in KEPT[::-1]]
    assert _reported(caplog) == [region]
    assert sum(group.count for group in stats(damaged).values()) == len(KEPT)
    assert _reported(caplog) == [region]
    betty_otel.report(damaged, tmp_path / "report.html")
    assert _reported(caplog) == [region]


def test_an_append_goes_after_the_damage_and_neither_cuts_nor_moves_the_log(
    damaged: Path,
) -> None:
    before = damaged.read_bytes()
    (region,) = _regions(check_file(damaged).damage)
    store = TelemetryStore(damaged)
    store.append([make_entry(99)])
    store.close()
    assert sorted(item.name for item in damaged.parent.iterdir()) == [damaged.name]
    after = damaged.read_bytes()
    assert after.startswith(before[: region[0] + region[1]].rstrip())
    found: list[Damage] = []
    assert list(iter_entries(damaged, newest_first=False, on_damage=found.append)) == [
        *KEPT,
        make_entry(99),
    ]
    assert [item.offset for item in found] == [region[0]]


def test_repair_leaves_it_and_says_there_is_nothing_to_cut(damaged: Path) -> None:
    before = damaged.read_bytes()
    assert repair_file(damaged) == 0
    assert damaged.read_bytes() == before
    assert sorted(item.name for item in damaged.parent.iterdir()) == [damaged.name]


@pytest.mark.parametrize("after", [b"\0" * 64, b"bytes added\n"], ids=["NULs", "bytes added"])
def test_what_follows_the_bracket_of_such_a_log_is_cut_and_the_log_kept(
    after: bytes, tmp_path: Path
) -> None:
    """NULs after the bracket (a crash extended the file, not its data) or bytes added
    after it are cut, the bytes saved beside the file: the log with its damaged last
    element stays, and so does every entry (the whole log was moved aside)."""
    path = tmp_path / "telemetry.json"
    path.write_bytes(_cut_canonical() + after)
    store = TelemetryStore(path)
    store.append([make_entry(99)])
    store.close()
    assert list(iter_entries(path, newest_first=False)) == [*KEPT, make_entry(99)]
    aside = [item for item in tmp_path.iterdir() if item != path]
    if after.strip(b"\0"):
        (saved,) = aside
        assert saved.name.startswith("telemetry.json.torn-")
        assert saved.read_bytes().strip() == after.strip()
    else:
        assert aside == []


def test_a_brace_too_many_after_the_last_entry_is_damage_and_appended_after(
    tmp_path: Path,
) -> None:
    """One closing brace too many after the last entry: the entry reads, the brace is
    damage for check and both directions (stats and the report, reading canonical lines
    by their captures, count the entry without a word), repair leaves it, and an append
    goes after it (check called it a torn tail that repair would cut, repair left it)."""
    path = tmp_path / "telemetry.json"
    path.write_bytes(_brace_too_many())
    report = check_file(path)
    assert (report.entries, report.torn_tail) == (len(KEPT), False)
    (region,) = _regions(report.damage)
    assert region == (len(canonical(KEPT)) - 3, 1, "unbalanced brace")
    for newest_first in (True, False):
        found: list[Damage] = []
        entries = list(iter_entries(path, newest_first=newest_first, on_damage=found.append))
        assert entries == (KEPT[::-1] if newest_first else KEPT)
        assert _regions(found) == [region]
    assert repair_file(path) == 0
    TelemetryStore(path).append([make_entry(99)])
    assert list(iter_entries(path, newest_first=False)) == [*KEPT, make_entry(99)]
    assert sorted(item.name for item in tmp_path.iterdir()) == [path.name]


TORN = {
    "cut, no bracket": canonical(KEPT)[:-3] + b',\n{"timestamp":"2025-1',
    "comma glued to the bracket": canonical(KEPT)[:-3] + b",]\n",
    "a nested bracket last": canonical(KEPT)[:-3] + b',\n{"skill": "x", "args": [1,\n]\n',
    "a nested bracket last, after a one-line prefix": json.dumps(KEPT).encode()[:-1]
    + b',\n{"skill": "x", "args": [1,\n]\n',
}


@pytest.mark.parametrize("name", list(TORN))
def test_a_torn_append_ending_anyhow_is_still_skipped_quietly_and_cut(
    name: str, tmp_path: Path
) -> None:
    path = tmp_path / "telemetry.json"
    path.write_bytes(TORN[name])
    found: list[Damage] = []
    assert list(iter_entries(path, on_damage=found.append)) == KEPT[::-1]
    assert list(iter_entries(path, newest_first=False, on_damage=found.append)) == KEPT
    assert found == []
    assert check_file(path).torn_tail
    TelemetryStore(path).append([make_entry(99)])
    assert list(iter_entries(path, newest_first=False)) == [*KEPT, make_entry(99)]
    assert [item.name.split("-")[0] for item in tmp_path.iterdir() if item != path] == [
        "telemetry.json.torn"
    ]


def test_a_file_that_is_no_array_of_entries_but_ends_in_a_bracket_is_still_moved_aside(
    tmp_path: Path,
) -> None:
    path = tmp_path / "telemetry.json"
    content = b"[section]\nkey=value\n]\n"
    path.write_bytes(content)
    TelemetryStore(path).append([make_entry(99)])
    (aside,) = (item for item in tmp_path.iterdir() if item != path)
    assert INVALID_NAME.match(aside.name)
    assert aside.read_bytes() == content
    assert list(iter_entries(path)) == [make_entry(99)]


def _readers_agree(path: Path) -> tuple[list[dict[str, object]], list[Damage]]:
    """Every reader's entries and damage, checked equal; those of the oldest-first read."""
    found: dict[bool, list[Damage]] = {True: [], False: []}
    newest = list(iter_entries(path, on_damage=found[True].append))
    oldest = list(iter_entries(path, newest_first=False, on_damage=found[False].append))
    report = check_file(path)
    assert newest == oldest[::-1]
    assert _regions(found[True]) == _regions(found[False]) == _regions(report.damage)
    assert report.entries == len(oldest)
    assert sum(group.count for group in stats(path).values()) == len(oldest)
    return oldest, found[False]


def _indented_bracket() -> bytes:
    """The old tools' layout, the last element's closing ``  }`` flipped to ``  [``."""
    whole = indent2(KEPT)
    at = whole.rindex(b"\n  }")
    return whole[:at] + b"\n  [" + whole[at + 4 :]


ODD = {
    "a comma flipped to a space": (
        canonical(KEPT).replace(b"},\n", b"} \n", 2).replace(b"} \n", b"},\n", 1),
        KEPT,
    ),
    "NULs after a torn append": (canonical(KEPT)[:-3] + b"\0" * 64, KEPT),
    "an indented bracket line": (_indented_bracket(), KEPT[:-1]),
}


@pytest.mark.parametrize("name", list(ODD))
def test_every_reader_reads_odd_endings_alike(name: str, tmp_path: Path) -> None:
    """A whole entry that only lacks its comma reads (it did newest first only), NULs
    after a torn append hide no entry from stats (they hid the last), and an indented
    ``[`` line is no opening bracket (newest first read nothing)."""
    path = tmp_path / "telemetry.json"
    content, expected = ODD[name]
    path.write_bytes(content)
    entries, _ = _readers_agree(path)
    assert entries == expected


def test_a_second_bracket_line_is_cut_and_new_entries_stay_in_the_array(tmp_path: Path) -> None:
    """Damage before the bracket, then another bracket line: the array closes at the
    first, so the second is cut (and saved), and an append goes inside the array (it went
    after the first bracket, out of the array, for good)."""
    path = tmp_path / "telemetry.json"
    path.write_bytes(_flipped_canonical() + b"]\n")
    TelemetryStore(path).append([make_entry(99)])
    entries, damage = _readers_agree(path)
    assert entries == [*KEPT, make_entry(99)]
    assert len(damage) == 1
    (saved,) = tmp_path.glob("telemetry.json.torn-*")
    assert saved.read_bytes().strip() == b"]"


def test_check_says_when_a_repair_moves_the_file_aside(tmp_path: Path) -> None:
    """A tail no interrupted append leaves (a stray byte before the bracket): check says
    a repair moves the file aside, as it does (it said a repair cut it, keeping every entry)."""
    path = tmp_path / "telemetry.json"
    path.write_bytes(canonical(KEPT)[:-3] + b"\n\\]\n")
    report = check_file(path)
    assert report.torn_tail
    assert report.tail_moves_aside
    assert repair_file(path) >= 0
    (aside,) = (item for item in tmp_path.iterdir() if item != path)
    assert INVALID_NAME.match(aside.name)

"""Faults: hostile files, flipped bits, symlinks and a zero umask (issue 5, cases 15-18).

Case 15: hostile files at the telemetry path (empty, ``[``, ``[]``, a BOM, CRLF, no final
newline, JSON Lines, a JSON object, random bytes, a PNG header, a valid array on one 20 MB
line, a 20 MB line of garbage), each through the store, the decorator, the readers and
the CLI: never an exception to the caller; foreign content is moved aside to
``telemetry.json.invalid-<UTC>`` byte for byte and never overwritten; valid arrays keep
every element.
Case 16: a bit flipped in an entry in the middle of a canonical or an indent=2 file: the
readers skip and report it (with its offset), ``check`` exits non-zero and names the
offset, appends continue without rewriting the damaged bytes, every other entry is kept.
Case 17: a symlink at the path (live or dangling): nothing is written through it, by the
store, the decorator (which still returns; the drop is logged and counted) or the CLI.
Case 18: under umask 000 the file is created 0600 and every folder we create 0700.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import betty_otel
from betty_otel import TelemetryCapture, capture_telemetry
from betty_otel._store import Damage, StoreError, TelemetryStore, check_file, iter_entries
from betty_otel.query import query, stats
from betty_otel.query.summary import summary_path
from helpers import (
    BOM,
    INVALID_NAME,
    Entry,
    betty_errors,
    canonical,
    indent2,
    is_betty_record,
    load_strict,
    make_entry,
    stop_the_clock,
    umask_zero,  # noqa: F401 - a fixture, used by name
)

pytestmark = pytest.mark.faults

CLI = Path(sys.executable).parent / "betty-telemetry"
TRACEBACK = "Traceback (most recent call last)"
HUGE = 20 * 1024 * 1024


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


NEW = make_entry(999_999)


def side_files(path: Path) -> list[Path]:
    """Everything beside the log in its folder."""
    return sorted(p for p in path.parent.iterdir() if p.name != path.name)


def run_cli(*args: str, timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The installed console script; its output must never hold a traceback."""
    result = subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        check=False,
        **kwargs,
    )
    assert TRACEBACK not in result.stderr, result.stderr[-3000:]
    assert TRACEBACK not in result.stdout, result.stdout[-3000:]
    return result


@capture_telemetry(skill_name="faults.hostile", caller="faults", capture_inputs=True)
def decorated(number: int) -> int:
    return number * 2


@dataclass(frozen=True)
class Hostile:
    """A file to put at the telemetry path, and what it holds."""

    make: Callable[[], bytes]
    entries: list[Entry] | None
    """The elements of a valid (or recoverable) array, oldest first; None for foreign content
    and for the huge array (built lazily: see expected_entries)."""
    healthy: bool
    """check passes on it (a complete, valid array; not an empty file, which json.load and
    the original Betty writer reject)."""


SMALL = [make_entry(n) for n in range(5)]


def _random_binary() -> bytes:
    data = bytearray(random.Random(15).randbytes(64 * 1024))
    data[0] = 0x00  # random, but never by chance the start of an array
    return bytes(data)


def _png() -> bytes:
    header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06"
    return header + random.Random(16).randbytes(4096)


def _big_entry(number: int) -> Entry:
    """An entry with a long text input (~2 KB): a big file of fewer elements."""
    entry = make_entry(number)
    entry["inputs"]["text"] = f"{number} " + "lorem ipsum dolor sit amet " * 70
    return entry


@functools.lru_cache(maxsize=1)
def _huge_entries() -> list[Entry]:
    """Enough entries for a JSON array of just over 20 MB on one line."""
    size = len(json.dumps(_big_entry(1), separators=(",", ":")))
    return [_big_entry(n) for n in range(HUGE // size + 1)]


@functools.lru_cache(maxsize=1)
def _huge_line() -> bytes:
    data = json.dumps(_huge_entries(), separators=(",", ":")).encode()
    assert b"\n" not in data
    assert len(data) >= HUGE
    return data


@functools.lru_cache(maxsize=1)
def _huge_garbage() -> bytes:
    alphabet = b'abcdefghij{}[],:"0123 \\'
    rng = random.Random(20)
    return b"x" + bytes(rng.choice(alphabet) for _ in range(64 * 1024)) * (HUGE // (64 * 1024))


@functools.lru_cache(maxsize=1)
def _bracket_then_binary() -> bytes:
    return b"[" + random.Random(17).randbytes(64 * 1024)


HOSTILE: dict[str, Hostile] = {
    "empty": Hostile(lambda: b"", [], healthy=False),  # json.load fails on it
    "open_bracket": Hostile(lambda: b"[", [], healthy=False),
    "empty_array": Hostile(lambda: b"[]", [], healthy=True),
    "bom_array": Hostile(lambda: BOM + indent2(SMALL), SMALL, healthy=True),
    "crlf": Hostile(lambda: indent2(SMALL).replace(b"\n", b"\r\n") + b"\r\n", SMALL, True),
    "crlf_canonical": Hostile(lambda: canonical(SMALL).replace(b"\n", b"\r\n"), SMALL, True),
    "no_final_newline": Hostile(lambda: canonical(SMALL)[:-1], SMALL, healthy=True),
    "json_lines": Hostile(lambda: b"".join(orjson.dumps(e) + b"\n" for e in SMALL), None, False),
    "json_object": Hostile(lambda: json.dumps({"entries": SMALL}).encode(), None, False),
    "random_binary": Hostile(_random_binary, None, healthy=False),
    "png": Hostile(_png, None, healthy=False),
    "bracket_then_binary": Hostile(_bracket_then_binary, [], healthy=False),
    "huge_valid_line": Hostile(_huge_line, None, healthy=True),  # entries: _huge_entries()
    "huge_garbage_line": Hostile(_huge_garbage, None, healthy=False),
}
FOREIGN = {"json_lines", "json_object", "random_binary", "png", "huge_garbage_line"}
MOVED_ASIDE = FOREIGN | {"bracket_then_binary"}
"""Moved aside whole by writers: foreign content, and a ``[`` that no array of entries
follows (issue 9: such a file is not a torn append and is never cut)."""


def expected_entries(kind: str) -> list[Entry] | None:
    if kind == "huge_valid_line":
        return _huge_entries()
    return HOSTILE[kind].entries


@pytest.fixture
def hostile_path(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path, bytes]:
    """(kind, path, original bytes): the hostile file written at a fresh telemetry path."""
    kind: str = request.param
    path = tmp_path / "logs" / "telemetry.json"
    path.parent.mkdir()
    original = HOSTILE[kind].make()
    path.write_bytes(original)
    return kind, path, original


def assert_appended(
    kind: str, path: Path, original: bytes, caplog: pytest.LogCaptureFixture, *, count: int
) -> list[Entry]:
    """After count appends to the hostile file: a strict JSON array holding the old elements
    then the new ones; foreign content moved aside byte for byte. Returns the new ones."""
    data = load_strict(path)
    assert isinstance(data, list)
    moved = [p for p in side_files(path) if p.name.startswith("telemetry.json.invalid-")]
    if kind in MOVED_ASIDE:
        assert len(moved) == 1, side_files(path)
        assert INVALID_NAME.match(moved[0].name), moved[0].name
        assert moved[0].read_bytes() == original  # byte for byte
        messages = [r.getMessage() for r in caplog.records if is_betty_record(r)]
        assert any(moved[0].name in m and "not a JSON array" in m for m in messages), messages
        assert len(data) == count
        return list(data)
    assert moved == [], side_files(path)
    old = expected_entries(kind)
    assert old is not None
    assert data[: len(old)] == old  # every original element, in order
    assert len(data) == len(old) + count
    after = path.read_bytes()
    # Nothing before the old closing bracket is rewritten (a BOM becomes spaces).
    head = original.rstrip(b" \t\r\n")
    keep = head[:-1].rstrip(b" \t\r\n") if head.endswith(b"]") else head
    if keep.startswith(BOM):
        assert after.startswith(b"   ")
        keep, after = keep[len(BOM) :], after[len(BOM) :]
    assert after.startswith(keep)
    return list(data[len(old) :])


@pytest.mark.parametrize("hostile_path", sorted(HOSTILE), indirect=True)
def test_hostile_file_through_the_store_is_handled_and_never_destroyed(
    hostile_path: tuple[str, Path, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """TelemetryStore.append on a hostile file never raises: valid arrays keep every element,
    foreign content is moved aside byte for byte, the result is a strict JSON array, and a
    second writer (another store) appends after it."""
    kind, path, original = hostile_path
    caplog.set_level(logging.WARNING, logger="betty_otel")
    second = make_entry(1_000_000)
    for entry in (NEW, second):
        store = TelemetryStore(path)
        try:
            store.append([entry])
        finally:
            store.close()
    assert assert_appended(kind, path, original, caplog, count=2) == [NEW, second]


@pytest.mark.parametrize("hostile_path", sorted(HOSTILE), indirect=True)
def test_hostile_file_through_the_decorator_is_handled_and_never_destroyed(
    hostile_path: tuple[str, Path, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """configure(path) then decorated calls on a hostile file: the calls return normally,
    nothing is dropped, and the file ends as the old elements plus the new entries."""
    kind, path, original = hostile_path
    caplog.set_level(logging.WARNING, logger="betty_otel")
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    assert decorated(1) == 2
    assert decorated(2) == 4
    assert exporter.dropped == 0
    assert betty_errors(caplog.records) == []
    new = assert_appended(kind, path, original, caplog, count=2)
    assert [(e["skill"], e["status"], e["inputs"]) for e in new] == [
        ("faults.hostile", "success", {"number": 1}),
        ("faults.hostile", "success", {"number": 2}),
    ]


@pytest.mark.parametrize("hostile_path", sorted(HOSTILE), indirect=True)
def test_hostile_file_through_the_readers_never_raises_or_writes(
    hostile_path: tuple[str, Path, bytes],
) -> None:
    """iter_entries (both directions), query and stats on a hostile file: the elements of a
    valid array, nothing from foreign content (reported as damage), and the file untouched."""
    kind, path, original = hostile_path
    expected = expected_entries(kind)
    want = [] if expected is None else expected
    damage: dict[bool, list[Damage]] = {True: [], False: []}
    oldest = list(iter_entries(path, newest_first=False, on_damage=damage[False].append))
    newest = list(iter_entries(path, newest_first=True, on_damage=damage[True].append))
    if kind == "huge_valid_line":
        assert len(oldest) == len(want)  # cheap first, for a readable failure
    assert oldest == want
    assert newest == want[::-1]
    assert query(path, limit=3) == want[::-1][:3]
    assert sum(group.count for group in stats(path).values()) == len(want)
    if kind in FOREIGN:
        for found in damage.values():
            assert found == [Damage(0, len(original), "not a JSON array")]
    elif kind != "bracket_then_binary":
        assert damage == {True: [], False: []}
    assert path.read_bytes() == original
    # Nothing beside it but stats' own summary (issue 11: telemetry.json.stats).
    assert side_files(path) in ([], [summary_path(path)])


@pytest.mark.parametrize("hostile_path", sorted(HOSTILE), indirect=True)
def test_hostile_file_through_the_cli_check_and_query(
    hostile_path: tuple[str, Path, bytes],
) -> None:
    """check_file and `check` on a hostile file pass exactly on healthy files (and name the
    problem otherwise); `query` lists the newest elements; no traceback; the file untouched."""
    kind, path, original = hostile_path
    expected = expected_entries(kind)
    want = [] if expected is None else expected
    report = check_file(path)
    assert report.ok is HOSTILE[kind].healthy
    assert report.not_array is (kind in FOREIGN)
    assert report.entries == len(want)
    result = run_cli("check", "--file", str(path))
    if HOSTILE[kind].healthy:
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{path}: {len(want):,} entries, OK" in result.stdout
    else:
        assert result.returncode == 1, result.stdout + result.stderr
        assert "problem" in result.stdout
        if kind in FOREIGN:
            assert "not a JSON array" in result.stdout
    result = run_cli("query", "--file", str(path), "--format", "jsonl", "--limit", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [json.loads(line) for line in result.stdout.splitlines()] == want[::-1][:5]
    if kind in FOREIGN:
        assert "not a JSON array" in result.stderr
    assert path.read_bytes() == original
    assert side_files(path) == []


@pytest.mark.parametrize("damage", ["foreign", "torn"])
def test_files_moved_or_saved_aside_are_never_overwritten_even_when_the_clock_stands_still(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two foreign files (or two torn tails) set aside at the same clock reading: both are
    kept, byte for byte, and every append succeeds."""
    stop_the_clock(monkeypatch)
    path = tmp_path / "telemetry.json"
    originals = [b'{"first": "foreign"}\n', b'{"second": "foreign"}\n']
    torn_tails = [b',\n{"first": "torn', b',\n{"second": "torn']
    for index in range(2):
        if damage == "foreign":
            path.write_bytes(originals[index])
        else:
            path.write_bytes(canonical([make_entry(index)])[: -len(b"\n]\n")] + torn_tails[index])
        store = TelemetryStore(path)
        try:
            store.append([make_entry(10 + index)])
        finally:
            store.close()
        assert load_strict(path)[-1] == make_entry(10 + index)
    kept = sorted(p.read_bytes() for p in side_files(path))
    if damage == "foreign":
        assert kept == sorted(originals)
    else:
        assert kept == sorted(torn_tails)  # each cut torn tail, from just after the last entry


# ---------------------------------------------------------------------------
# Case 16: a bit flipped in an entry in the middle
# ---------------------------------------------------------------------------

FLIP_ENTRIES = [make_entry(n) for n in range(5)]
FLIP_OTHERS = FLIP_ENTRIES[:2] + FLIP_ENTRIES[3:]
DAMAGE_LINE = re.compile(r"damaged region at byte offset (\d+), (\d+) bytes")


def flip_layout(layout: str) -> tuple[bytes, int, int]:
    """(file, start, end): a 5-entry file and the byte span of its middle entry's ``{...}``."""
    if layout == "canonical":
        data = canonical(FLIP_ENTRIES)
        lines = data.split(b"\n")
        start = sum(len(line) + 1 for line in lines[:3])
        return data, start, start + len(lines[3]) - 1  # without the separating comma
    data = indent2(FLIP_ENTRIES)
    starts = [match.start() + 3 for match in re.finditer(rb"\n  \{\n", data)]
    start = starts[2]
    return data, start, data.index(b"\n  }", start) + len(b"\n  }")


def flipped(layout: str, position: int, bit: int) -> tuple[bytes, int]:
    """The file with one bit flipped at position (an offset into the middle entry)."""
    data, start, _ = flip_layout(layout)
    damaged = bytearray(data)
    damaged[start + position] ^= 1 << bit
    return bytes(damaged), start + position


def covers(regions: list[Damage], offset: int) -> bool:
    return any(d.offset <= offset < d.offset + d.length for d in regions)


def flip_problems(path: Path, data: bytes, offset: int, *, append: bool) -> list[str]:
    """What goes wrong reading, checking and (with append) appending to data."""
    problems: list[str] = []
    path.write_bytes(data)
    found: dict[bool, list[Damage]] = {True: [], False: []}
    oldest = list(iter_entries(path, newest_first=False, on_damage=found[False].append))
    newest = list(iter_entries(path, newest_first=True, on_damage=found[True].append))
    if [e for e in oldest if e in FLIP_OTHERS] != FLIP_OTHERS or len(oldest) > 5:
        problems.append(f"oldest-first returned {len(oldest)} entries, not every other one")
    if newest != oldest[::-1]:
        problems.append("newest-first and oldest-first disagree")
    report = check_file(path)
    if len(oldest) < 5:  # the entry no longer parses: it must be reported where it is
        for newest_first, regions in found.items():
            if not covers(regions, offset):
                problems.append(f"newest_first={newest_first}: no damage at {offset}: {regions}")
        if report.ok or not covers(report.damage, offset):
            problems.append(f"check_file does not name offset {offset}: {report}")
    if not append:
        return problems
    # An append goes after the damage and rewrites none of it.
    store = TelemetryStore(path)
    try:
        store.append([NEW])
    except Exception as exc:
        problems.append(f"append raised {exc!r}")
        return problems
    finally:
        store.close()
    keep = data.rstrip()[:-1].rstrip()
    if not path.read_bytes().startswith(keep):
        problems.append("the append rewrote bytes before the old closing bracket")
    after = list(iter_entries(path, newest_first=False, on_damage=lambda _: None))
    if after != [*oldest, NEW]:
        problems.append(f"after the append: {len(after)} entries, not the old ones + the new one")
    return problems


@pytest.mark.parametrize("layout", ["canonical", "indent2"])
def test_any_bit_flip_in_a_middle_entry_is_skipped_and_reported_and_nothing_else_is_lost(
    layout: str, tmp_path: Path
) -> None:
    """A bit of every byte of the middle entry (every bit of the structural ones) flipped in
    turn: both readers return every other entry (and the flipped one, if it still parses),
    report the damaged region at its offset, check_file names it, and an append continues
    without rewriting the damage."""
    path = tmp_path / "telemetry.json"
    clean, start, end = flip_layout(layout)
    rng = random.Random(16)
    failures: list[str] = []
    for position in range(end - start):
        chosen = rng.randrange(8)
        structural = clean[start + position] in b'{}[]:,"\n'
        for bit in range(8) if structural else [chosen]:
            data, offset = flipped(layout, position, bit)
            for problem in flip_problems(path, data, offset, append=bit == chosen):
                snippet = data[max(0, offset - 12) : offset + 12]
                failures.append(f"byte {position} bit {bit} ({snippet!r}): {problem}")
            for extra in side_files(path):
                extra.unlink()
    assert not failures, f"{len(failures)} failures, e.g.:\n" + "\n".join(failures[:12])


CLI_FLIPS = {
    # (layout, the bytes before the flipped one in the middle entry, bit)
    "canonical-colon": ("canonical", b'{"timestamp"', 0),
    "canonical-brace": ("canonical", b"", 0),
    "indent2-colon": ("indent2", b'{\n    "timestamp"', 0),
    "indent2-brace": ("indent2", b"", 0),
    "indent2-nested-brace": ("indent2", b'{\n    "timestamp"', -1),
}


def cli_flip(name: str) -> tuple[bytes, int]:
    layout, before, bit = CLI_FLIPS[name]
    data, start, end = flip_layout(layout)
    if bit < 0:  # the opening brace of the nested "opts" object
        position = data.index(b'"opts": {', start) + len(b'"opts": ') - start
        bit = 0
    else:
        position = len(before)
    assert start + position < end
    return flipped(layout, position, bit)


@pytest.mark.parametrize("name", sorted(CLI_FLIPS))
def test_check_exits_non_zero_and_names_the_offset_of_a_flipped_bit(
    name: str, tmp_path: Path
) -> None:
    """`betty-telemetry check --file F` on a file with a flipped bit: exit 1, and the damaged
    region it prints holds the flipped byte; the file is left as it is."""
    path = tmp_path / "telemetry.json"
    data, offset = cli_flip(name)
    path.write_bytes(data)
    result = run_cli("check", "--file", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    regions = [
        Damage(int(m.group(1)), int(m.group(2)), "") for m in DAMAGE_LINE.finditer(result.stdout)
    ]
    assert covers(regions, offset), (offset, result.stdout)
    assert path.read_bytes() == data


@pytest.mark.parametrize("name", sorted(CLI_FLIPS))
def test_appends_after_a_flipped_bit_continue_and_keep_every_other_entry(
    name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Decorated calls and `betty-telemetry capture` append after the damage: they succeed,
    the damaged bytes stay as they were, and readers and query return every other entry."""
    path = tmp_path / "telemetry.json"
    data, _ = cli_flip(name)
    path.write_bytes(data)
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    assert decorated(7) == 14
    assert exporter.dropped == 0
    betty_otel.shutdown()
    result = run_cli("capture", "cli.skill", "success", "5", "CLI", "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert path.read_bytes().startswith(data.rstrip()[:-1].rstrip())
    oldest = list(iter_entries(path, newest_first=False, on_damage=lambda _: None))
    assert [e for e in oldest if e in FLIP_OTHERS] == FLIP_OTHERS
    assert [(e["skill"], e["inputs"]) for e in oldest[-2:]] == [
        ("faults.hostile", {"number": 7}),
        ("cli.skill", {}),
    ]
    assert len(oldest) in (len(FLIP_OTHERS) + 2, len(FLIP_OTHERS) + 3)
    assert query(path) == oldest[::-1]
    assert betty_errors(caplog.records) == []


@pytest.mark.parametrize("name", sorted(CLI_FLIPS))
def test_repairing_a_torn_tail_after_a_flipped_bit_never_removes_a_complete_entry(
    name: str, tmp_path: Path
) -> None:
    """A flipped bit in the middle, then a writer killed mid-append (a torn tail): repair cuts
    only the torn tail; every complete entry after the damage stays in the log."""
    path = tmp_path / "telemetry.json"
    data, _ = cli_flip(name)
    body = data.rstrip()[:-1].rstrip()  # without the closing bracket
    torn = b',\n{"skill": "torn", "inp'
    path.write_bytes(body + torn)
    store = TelemetryStore(path)
    try:
        removed = store.repair()
    finally:
        store.close()
    assert removed == len(torn)
    assert path.read_bytes().startswith(body)
    oldest = list(iter_entries(path, newest_first=False, on_damage=lambda _: None))
    assert [e for e in oldest if e in FLIP_OTHERS] == FLIP_OTHERS


# ---------------------------------------------------------------------------
# Case 17: a symlink at the file's path
# ---------------------------------------------------------------------------

TARGET_BYTES = canonical([make_entry(1)])


def plant_symlink(kind: str, tmp_path: Path) -> tuple[Path, Path]:
    """(path, target): a symlink at the telemetry path, to a file (live) or to nothing."""
    path = tmp_path / "logs" / "telemetry.json"
    path.parent.mkdir()
    target = tmp_path / "elsewhere" / "target.json"
    target.parent.mkdir()
    if kind == "live":
        target.write_bytes(TARGET_BYTES)
    path.symlink_to(target)
    return path, target


def assert_not_written_through(kind: str, path: Path, target: Path) -> None:
    assert path.is_symlink()
    if kind == "dangling":
        assert not target.exists()
    else:
        assert target.read_bytes() == TARGET_BYTES
    assert sorted(p.name for p in target.parent.iterdir()) == (
        [] if kind == "dangling" else ["target.json"]
    )
    assert [p.name for p in path.parent.iterdir()] == ["telemetry.json"]


@pytest.mark.parametrize("kind", ["live", "dangling"])
def test_symlink_at_the_path_is_never_written_through_by_the_store_or_capture(
    kind: str, tmp_path: Path
) -> None:
    """TelemetryStore.append / repair and TelemetryCapture.capture refuse the symlink with
    an OSError naming it; its target is byte-identical (or still absent)."""
    path, target = plant_symlink(kind, tmp_path)
    store = TelemetryStore(path)
    try:
        with pytest.raises(StoreError, match="symbolic link"):
            store.append([NEW])
        with pytest.raises(OSError, match="symbolic link"):
            store.repair()
    finally:
        store.close()
    with pytest.raises(OSError, match="symbolic link"):
        TelemetryCapture(path).capture("faults.symlink", "success", 1.0, "faults")
    assert_not_written_through(kind, path, target)


@pytest.mark.parametrize("kind", ["live", "dangling", "swapped_in"])
def test_symlink_at_the_path_is_never_written_through_by_the_decorator(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Decorated calls with a symlink at the path (there from the start, or swapped in for
    the file after a first write) return normally; each drop is counted, the error is logged
    and names the path, and nothing reaches the target."""
    caplog.set_level(logging.WARNING, logger="betty_otel")
    if kind == "swapped_in":
        path = tmp_path / "logs" / "telemetry.json"
        path.parent.mkdir()
        exporter = betty_otel.configure(path, otlp=False)
        assert exporter is not None
        assert decorated(1) == 2
        first = path.read_bytes()
        path.rename(tmp_path / "old.json")
        target = tmp_path / "elsewhere" / "target.json"
        target.parent.mkdir()
        target.write_bytes(TARGET_BYTES)
        path.symlink_to(target)
        kind_written = "live"
    else:
        path, target = plant_symlink(kind, tmp_path)
        exporter = betty_otel.configure(path, otlp=False)
        assert exporter is not None
        kind_written = kind
    assert [decorated(n) for n in range(3)] == [0, 2, 4]
    assert exporter.dropped == 3
    errors = [r.getMessage() for r in betty_errors(caplog.records)]
    assert errors, "the drop was not logged"
    assert any(str(path) in message and "symbolic link" in message for message in errors)
    assert_not_written_through(kind_written, path, target)
    if kind == "swapped_in":
        assert (tmp_path / "old.json").read_bytes() == first


@pytest.mark.parametrize("kind", ["live", "dangling"])
def test_symlink_at_the_path_is_never_written_through_by_the_cli(kind: str, tmp_path: Path) -> None:
    """`betty-telemetry capture` and `repair` with a symlink at --file: exit 1 with one clear
    `Error:` line naming the symlink, no traceback, the target untouched."""
    path, target = plant_symlink(kind, tmp_path)
    result = run_cli("capture", "faults.symlink", "success", "1.5", "CLI", "--file", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: "), result.stderr
    assert "symbolic link" in result.stderr
    assert str(path) in result.stderr
    result = run_cli("repair", "--file", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: "), result.stderr
    assert_not_written_through(kind, path, target)


# ---------------------------------------------------------------------------
# Case 18: umask 000
# ---------------------------------------------------------------------------


def assert_private(path: Path, created: list[Path]) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    for folder in created:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, (folder, oct(folder.stat().st_mode))


@pytest.mark.usefixtures("umask_zero")
def test_under_umask_zero_the_decorator_creates_the_file_0600_and_folders_0700(
    tmp_path: Path,
) -> None:
    """configure(path) with three missing folders, then a decorated call, under umask 000."""
    path = tmp_path / "a" / "b" / "c" / "telemetry.json"
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    assert decorated(1) == 2
    assert exporter.dropped == 0
    assert_private(path, [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"])
    assert len(load_strict(path)) == 1


@pytest.mark.usefixtures("umask_zero")
def test_under_umask_zero_capture_creates_the_file_0600_and_folders_0700(
    tmp_path: Path,
) -> None:
    """TelemetryCapture(path).capture() with missing folders, under umask 000."""
    path = tmp_path / "x" / "y" / "telemetry.json"
    TelemetryCapture(path).capture("faults.umask", "success", 1.0, "faults")
    assert_private(path, [tmp_path / "x", tmp_path / "x" / "y"])


@pytest.mark.parametrize("where", ["--file", "default"])
def test_under_umask_zero_the_cli_capture_creates_the_file_0600_and_folders_0700(
    where: str, tmp_path: Path
) -> None:
    """`betty-telemetry capture` run with umask 000: with --file in missing nested folders,
    and at the default ./registry/telemetry.json (no --file, no $BETTY_TELEMETRY_FILE)."""
    env = {k: v for k, v in os.environ.items() if k != "BETTY_TELEMETRY_FILE"}
    args = ["capture", "faults.umask", "success", "2.5", "CLI", '{"k": 1}']
    if where == "--file":
        path = tmp_path / "p" / "q" / "r" / "telemetry.json"
        created = [tmp_path / "p", tmp_path / "p" / "q", tmp_path / "p" / "q" / "r"]
        args += ["--file", str(path)]
    else:
        path = tmp_path / "registry" / "telemetry.json"
        created = [tmp_path / "registry"]
    result = run_cli(*args, cwd=tmp_path, env=env, preexec_fn=lambda: os.umask(0))
    assert result.returncode == 0, result.stderr
    # The default is resolved once to an absolute path (issue 9), as the original skill printed.
    assert f"Telemetry captured to {path}" in result.stdout
    assert_private(path, created)
    assert [e["inputs"] for e in load_strict(path)] == [{"k": 1}]

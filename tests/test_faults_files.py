"""Faults: hostile files at the telemetry path are never destroyed (issue 5, case 15).

Case 15: hostile files at the telemetry path (empty, ``[``, ``[]``, a BOM, CRLF, no final
newline, JSON Lines, a JSON object, random bytes, a PNG header, a valid array on one 20 MB
line, a 20 MB line of garbage), each through the store, the decorator, the readers and
the CLI: never an exception to the caller; foreign content is moved aside to
``telemetry.json.invalid-<UTC>`` byte for byte and never overwritten; valid arrays keep
every element. Flipped bits (case 16): test_faults_bitflips.py; symlinks and a zero
umask (cases 17, 18): test_faults_symlinks_umask.py.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

import betty_otel
from betty_otel._store import Damage, TelemetryStore, check_file, iter_entries
from betty_otel.query import query, stats
from betty_otel.query.summary import summary_path
from files_helpers import NEW, decorated, run_cli, side_files
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
)

pytestmark = pytest.mark.faults

HUGE = 20 * 1024 * 1024


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


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

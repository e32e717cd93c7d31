"""Faults: a bit flipped in an entry in the middle of the file (issue 5, case 16).

In a canonical or an indent=2 file: the readers skip and report it (with its offset),
``check`` exits non-zero and names the offset, appends continue without rewriting the
damaged bytes, repairing a torn tail after it never removes a complete entry, and every
other entry is kept.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

import betty_otel
from betty_otel._store import Damage, TelemetryStore, check_file, iter_entries
from betty_otel.query import query
from files_helpers import NEW, decorated, run_cli, side_files
from helpers import (
    betty_errors,
    canonical,
    indent2,
    make_entry,
)

pytestmark = pytest.mark.faults


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

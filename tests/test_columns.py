"""The column reader: stats and the report read a canonical line's captures by one rule.

Every canonical line is read from its regex captures or, when a capture is not exact
JSON text (an escape, a raw control character, bytes that are no UTF-8, a duration that
is no strict JSON number), parsed whole; a line that is no JSON is damage. Whichever way,
`stats` and the report count, name and damage the very same lines, as a parse of every
line would.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from betty_otel._report.figures import summarize
from betty_otel._report.ingest import read_log
from betty_otel.query import make_filters, stats
from betty_otel.query.columns import (
    InexactCapture,
    capture_durations,
    capture_text,
    capture_texts,
    key_text,
    span_texts,
)
from helpers import make_entry

ODD_SKILLS = ["caf\\u00e9", 'a\\"b', "back\\\\slash", "lone\\ud800", "tab\\tescaped", "plain"]
"""Skill captures as a canonical line holds them (JSON escapes kept)."""


def canonical_line(number: int, skill: str, duration: str = "1.5") -> bytes:
    """A canonical entry line with the raw skill capture and duration text given."""
    entry = make_entry(number)
    head = (
        f'{{"timestamp":"{entry["timestamp"]}","skill":"{skill}","status":"success",'
        f'"duration_ms":{duration},"caller":"CLI"}}'
    )
    return head.encode()


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    return path


def test_a_capture_is_decoded_exactly_as_a_json_parser_reads_it() -> None:
    """Escapes are read as JSON reads them; a raw control character or bad UTF-8 is not
    exact JSON text, so its line is parsed whole."""
    for raw in ODD_SKILLS:
        assert capture_text(raw.encode()) == json.loads(f'"{raw}"')
    assert capture_texts([b"a", b"caf\\u00e9"]) == ["a", "café"]
    assert span_texts(b'x\\n","status":"ok') == ("x\n", "ok")
    for bad in (b"raw\ttab", b"\xff\xfe", b"broken\\q"):
        with pytest.raises(InexactCapture):
            capture_text(bad)
    with pytest.raises(InexactCapture):
        span_texts(b"no status here")


def test_durations_are_decoded_strictly_in_one_call() -> None:
    """Numbers only: flagged so no value needs a check; null or true kept as they are;
    NaN, an overflow or half a value send the lines to a whole parse."""
    assert capture_durations([b"1.5", b"2"]) == ([1.5, 2], True)
    assert capture_durations([b"1.5", b"null", b"true"]) == ([1.5, None, True], False)
    for bad in ([b"NaN"], [b"1e400"], [b"1", b"2,3"]):
        with pytest.raises(InexactCapture):
            capture_durations(bad)


def test_a_value_that_is_not_text_is_named_by_the_one_rule() -> None:
    assert key_text(None) is None
    assert key_text("x") == "x"
    assert key_text({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'
    assert key_text(1.0) == "1.0"


def test_stats_and_the_report_read_odd_captures_as_a_whole_parse_does(tmp_path: Path) -> None:
    """Escaped skills, odd durations and lines that are no JSON (a raw tab, bytes that are
    no UTF-8): each skill named as JSON reads it, the same groups and counts in stats and
    the report, the broken lines damage in both."""
    good = [canonical_line(n, skill) for n, skill in enumerate(ODD_SKILLS * 3)]
    durations = [canonical_line(100 + n, "timed", text) for n, text in enumerate(
        ["null", "true", "1e400", "NaN", "-0.0", "2"]
    )]  # fmt: skip
    broken = [canonical_line(200, "raw\ttab"), canonical_line(201, "bad").replace(b"bad", b"\xff")]
    path = write(tmp_path / "telemetry.json", [*good, *durations, *broken])
    expected = Counter(json.loads(f'"{skill}"') for skill in ODD_SKILLS * 3)
    expected["timed"] = 6
    assert {key: group.count for key, group in stats(path).items()} == expected
    data = summarize(read_log(path, make_filters()))
    assert {row.skill: row.count for row in data.skills} == expected
    assert data.health.damaged == 2
    assert data.health.no_duration == 4


@pytest.mark.parametrize(
    "cut",
    [
        '"timestamp":"2025-10-24',
        '"skill":"phan',
        '"status":"succ',
        '"duration_ms":1',
        '"caller":"CL',
    ],
)
def test_two_lines_the_first_cut_inside_a_value_are_damage_not_an_entry(
    tmp_path: Path, cut: str
) -> None:
    """A newline inside a value (a write cut there, then the rest of the line): the two
    lines are no JSON, so stats, stats by caller and the report count no entry of them,
    as `query` reads them; the damage is told."""
    line = canonical_line(1, "phantom").decode()
    at = line.index(cut) + len(cut)
    broken = (line[:at] + "\n" + line[at:]).encode()
    path = write(
        tmp_path / "telemetry.json", [canonical_line(0, "ok"), broken, canonical_line(2, "ok")]
    )
    assert {key: group.count for key, group in stats(path).items()} == {"ok": 2}
    assert {key: group.count for key, group in stats(path, by="caller").items()} == {"CLI": 2}
    assert {key: group.count for key, group in stats(path, caller="CLI").items()} == {"ok": 2}
    data = summarize(read_log(path, make_filters()))
    assert {row.skill: row.count for row in data.skills} == {"ok": 2}
    assert data.health.damaged >= 1
    selected = summarize(read_log(path, make_filters(caller="CLI")))
    assert {row.skill: row.count for row in selected.skills} == {"ok": 2}

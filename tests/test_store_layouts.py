"""The fast read and repair paths agree with the careful ones, whatever the file's layout.

Files are built from random mixes of layouts: the old tools' ``json.dump`` with indent=2
or on one line, followed or not by canonical entry lines the store appended, a BOM, CRLF
line ends, damage between entry lines, a torn last append, a NUL-filled tail (written
zeros, or a hole as a power loss leaves), and strings holding ``]``, ``}``, quotes and
escaped newlines. For each: newest-first is oldest-first reversed, and the next append
keeps every entry and leaves a strict JSON array.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel._store import Damage, TelemetryStore, iter_entries
from helpers import (
    BOM,
    append_entries,
    make_entry,
    read_backward,
    read_forward,
    strict_entries,
)

TRICKY = st.text(alphabet=st.sampled_from('ab]}[{,"\\\n \t:'), max_size=30)


@st.composite
def logs(draw: st.DrawFn) -> tuple[bytes, int, int, bool]:
    """(file bytes, entries in it, NUL bytes to add as a hole, damaged in the middle)."""
    count = draw(st.integers(0, 6))
    legacy = [make_entry(n, inputs={"s": draw(TRICKY)}) for n in range(count)]
    layout = draw(st.sampled_from(["indent2", "single", "canonical"]))
    if layout == "indent2":
        text = json.dumps(legacy, indent=2)
        if draw(st.booleans()):
            text = text.replace("\n", "\r\n")
        data = text.encode()
    elif layout == "single":
        data = json.dumps(legacy).encode()
    else:
        data = b"[\n" + b",\n".join(orjson.dumps(entry) for entry in legacy) + b"\n]\n"
    if draw(st.booleans()):
        data = BOM + data
    expected = count
    damaged = False
    if layout == "indent2" and count >= 3 and draw(st.booleans()):
        data = data.replace(b'"duration_ms": 13.5,', b'"duration_ms": 13.5x,')  # the 2nd entry
        expected -= 1
        damaged = True
    added = [
        make_entry(100 + n, inputs={"s": draw(TRICKY)}) for n in range(draw(st.integers(0, 3)))
    ]
    if added and count:
        # What the store does after a legacy array: its closing bracket becomes ",\n".
        data = data.rstrip().removesuffix(b"]").rstrip() + b",\n"
        lines = [orjson.dumps(entry) for entry in added]
        if draw(st.booleans()) and len(lines) > 1:
            lines.insert(1, b'{"damaged": 1x}')  # damage between two entry lines
            damaged = True
        data += b",\n".join(lines) + b"\n]\n"
        expected += len(added)
    tail = draw(st.sampled_from(["none", "torn", "zeros"]))
    if tail == "torn":
        data += b",\n" + orjson.dumps(make_entry(999))[: draw(st.integers(1, 60))]
    elif tail == "zeros":
        data += bytes(draw(st.integers(1, 5000)))
    hole = draw(st.sampled_from([0, 0, 1 << 20]))
    return data, expected, hole, damaged


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(log=logs())
def test_newest_first_is_oldest_first_reversed_and_the_next_append_keeps_all(
    tmp_path: Path, log: tuple[bytes, int, int, bool], caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the layout, both read directions agree; one append keeps every entry and
    leaves a strict JSON array (damage in the middle stays: appends never rewrite it)."""
    data, expected, hole, damaged = log
    path = tmp_path / "telemetry.json"
    path.write_bytes(data)
    if hole:
        os.truncate(path, len(data) + hole)
    with caplog.at_level(logging.CRITICAL, logger="betty_otel"):
        forward_damage: list[Damage] = []
        backward_damage: list[Damage] = []
        forward = read_forward(path, on_damage=forward_damage.append)
        backward = read_backward(path, on_damage=backward_damage.append)
        assert backward == list(reversed(forward))
        # Damage in the middle is reported in both directions; a torn tail never is.
        assert bool(forward_damage) == bool(backward_damage) == damaged
        assert len(forward) == expected
        new: dict[str, Any] = make_entry(5000)
        append_entries(path, [new])
        if damaged:
            assert read_forward(path) == [*forward, new]
        else:
            assert strict_entries(path) == [*forward, new]


@pytest.mark.parametrize(
    "data",
    [
        b'[\n{"a":1},\n{"b":null\n}]\n',  # the last brace starts its line
        b'[\n{"a":1},\n{"b":null\r\n}]',
        b'[{"a": 1}, {"b": [1,\n2]\n}]',
        b'[\n  {"a": 1}\n]',
        b'[{"a": "]\\n}"}]',
        b'\xef\xbb\xbf[\r\n{"a": 1}\r\n]\r\n',
    ],
)
def test_a_valid_array_in_any_layout_is_appended_to_never_moved_aside(
    tmp_path: Path, data: bytes
) -> None:
    """Whatever a tool's layout, a complete JSON array of objects keeps its entries in place."""
    path = tmp_path / "telemetry.json"
    path.write_bytes(data)
    before = json.loads(data.decode("utf-8-sig"))
    store = TelemetryStore(path)
    store.append([{"skill": "x"}])
    store.close()
    assert [file.name for file in tmp_path.iterdir()] == ["telemetry.json"]
    assert json.loads(path.read_bytes().decode("utf-8-sig")) == [*before, {"skill": "x"}]


def test_an_old_writer_killed_mid_dump_never_yields_nested_values_as_entries(
    tmp_path: Path,
) -> None:
    """json.dump(indent=2) cut at the end of any line (the original writer rewrites the whole
    file): newest first gives exactly the complete entries oldest first gives, reversed,
    never an object from inside an entry (a nested list's items look like entries)."""
    entries = [
        {"skill": f"s{i}", "inputs": {"files": [{"p": 1}, {"p": [2, {"q": 3}]}]}} for i in range(3)
    ]
    text = json.dumps(entries, indent=2).encode()
    path = tmp_path / "telemetry.json"
    cuts = [i + 1 for i, byte in enumerate(text) if byte in b"]}"]
    for cut in cuts:
        path.write_bytes(text[:cut])
        oldest = list(iter_entries(path, newest_first=False, on_damage=lambda _: None))
        newest = list(iter_entries(path, on_damage=lambda _: None))
        assert newest == oldest[::-1], text[:cut][-40:]
        assert all("skill" in entry for entry in newest), text[:cut][-40:]

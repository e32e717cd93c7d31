"""Positioned line reads: the line ending at an offset, however long, is the one
`lines_backward` yields first (the store's tail checks ask for it on every first append)."""

from __future__ import annotations

from pathlib import Path

import pytest

from betty_otel._store.lines import line_ending_at, lines_backward

LENGTHS = (0, 1, 511, 512, 513, 4096, 65_535, 65_536, 65_537, 300_000)
"""Line lengths around one small read, one block, and past the first block's growth."""


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("before", ["", "[\n", "x" * 700 + "\n"])
@pytest.mark.parametrize("after", ["", "\n", "\n  }"])
def test_the_line_ending_at_an_offset_is_the_text_since_the_newline_before_it(
    tmp_path: Path, length: int, before: str, after: str
) -> None:
    """For every end in the file: the bytes from just after the last newline before end
    up to end (b'' at 0), as `lines_backward` yields first."""
    data = (before + "y" * length + after).encode()
    path = tmp_path / "log"
    path.write_bytes(data)
    ends = {0, 1, len(before), len(before) + length, len(data) - 1, len(data)}
    with path.open("rb") as file:
        for end in sorted(end for end in ends if 0 <= end <= len(data)):
            expected = data[:end].rpartition(b"\n")[2]
            assert line_ending_at(file.fileno(), end) == expected
            first = next(iter(lines_backward(file.fileno(), end)), (0, b""))[1]
            assert first == expected

"""What the CLI prints is terminal-safe: every control character a terminal acts on is
printed as its JSON escape, and plain text (most output, which skips the pattern) is
printed exactly as it is."""

from __future__ import annotations

import json
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from betty_otel.cli.terminal import escape_controls

CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
"""C0 and C1 controls (newline aside), DEL, line and paragraph separators, and the
bidirectional marks, embeddings, overrides and isolates."""


def reference(text: str, *, lines: bool) -> str:
    """Each control as json.dumps escapes it (\\n too unless lines)."""
    pattern = CONTROLS if lines else re.compile(f"\n|{CONTROLS.pattern}")
    return pattern.sub(lambda match: json.dumps(match.group())[1:-1], text)


texts = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from("\x00\x1b\n\r\t\x7f\x85\x9b\u061c\u200e\u2028\u202e\u2066\u00a0 é😀"),
    ),
    max_size=40,
)


@settings(max_examples=500)
@given(text=texts, lines=st.booleans())
@example(text="plain text, printable: unchanged", lines=False)
@example(text='{\n  "skill": "a"\n}', lines=True)
@example(text="\x1b[2J\u202egnp.exe\u00a0", lines=False)
def test_escape_controls_escapes_every_control_and_nothing_else(text: str, lines: bool) -> None:
    assert escape_controls(text, lines=lines) == reference(text, lines=lines)

"""What the store tests share: entries that look like structure, the layouts old tools write.

- `tricky_entries`: entries whose text looks like JSON structure.
- `LAYOUTS`: every layout a log may have on disk, by name (canonical, indent2, CRLF, BOM...).
- `assert_readers_agree`: both readers return the entries, in opposite orders, and no damage.
- `collect_damage`: a damage list and the on_damage callback that fills it.
- `TORN_NAME`: the name of a torn tail saved beside the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from betty_otel._store import Damage
from helpers import BOM, Entry, canonical, indent2, make_entry, read_backward, read_forward

TORN_NAME = re.compile(r"^telemetry\.json\.torn-\d{8}T\d{6}\.\d{6}Z$")


def tricky_entries() -> list[Entry]:
    """Entries whose text looks like structure: brackets, commas, newlines, unicode."""
    return [
        make_entry(1),
        {"msg": 'a]b,\n}{ "quoted" [', "nested": {"x": [1, [2, []]], "y": {}}, "ok": True},
        {"skill": "žluťoučký kůň 🐍", "error_message": "line1\r\nline2\u2028", "n": -0.5},
        {"empty": [], "zero": 0, "null": None, "false": False, "big": 2**62},
        {"args": [1, 2, ["deep", {"k": "]"}]]},
    ]


LAYOUTS: dict[str, Callable[[list[Entry]], bytes]] = {
    "canonical": canonical,
    "indent2": indent2,
    "indent2_final_newline": lambda es: indent2(es) + b"\n",
    "indent4_unicode": lambda es: json.dumps(es, indent=4, ensure_ascii=False).encode(),
    "crlf": lambda es: indent2(es).replace(b"\n", b"\r\n") + b"\r\n",
    "canonical_crlf": lambda es: canonical(es).replace(b"\n", b"\r\n"),
    "bom": lambda es: BOM + indent2(es),
    "bom_canonical": lambda es: BOM + canonical(es),
    "trailing_whitespace": lambda es: canonical(es) + b"\n \t\n\n   ",
    "no_final_newline": lambda es: canonical(es)[:-1],
    "compact_one_line": lambda es: json.dumps(es, separators=(",", ":")).encode(),
    "default_separators": lambda es: json.dumps(es).encode(),
    "leading_whitespace": lambda es: b"\n\n  " + indent2(es),
}


def collect_damage() -> tuple[list[Damage], Callable[[Damage], None]]:
    found: list[Damage] = []
    return found, found.append


def assert_readers_agree(path: Path, expected: list[Entry]) -> None:
    """Both readers return expected (oldest first / newest first) and report no damage."""
    damage, report = collect_damage()
    assert read_forward(path, on_damage=report) == expected
    assert read_backward(path, on_damage=report) == expected[::-1]
    assert damage == []

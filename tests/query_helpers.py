"""What the query tests share: entries, and logs written as each writer writes them.

- `entry`: a canonical entry (keys in the schema's order), one second apart by index.
- `many`: entries with varied skills, statuses, callers and awkward values.
- `write_store` (the real store), `write_json` (the old tools' json.dump) and
  `write_layout` (each of `LAYOUTS`, the layouts the readers must handle).
- `ago`: an ISO time that long before now.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from betty_otel._store import TelemetryStore


def entry(index: int, **overrides: Any) -> dict[str, Any]:
    """A canonical entry (keys in the schema's order); overrides replace or add keys."""
    value: dict[str, Any] = {
        "timestamp": (
            datetime(2025, 10, 24, tzinfo=timezone.utc) + timedelta(seconds=index)
        ).isoformat(timespec="microseconds"),
        "skill": f"skill.{index % 3}",
        "status": "success",
        "duration_ms": float(index),
        "caller": "CLI",
        "inputs": {"n": index},
        "error_message": None,
        "metadata": {},
        "trace_id": f"{index:032x}",
        "span_id": f"{index + 1:016x}",
        "parent_span_id": None,
    }
    value.update(overrides)
    return value


def write_store(path: Path, entries: list[dict[str, Any]]) -> Path:
    """Write entries with the real store (canonical layout), one append per entry."""
    store = TelemetryStore(path)
    for item in entries:
        store.append([item])
    store.close()
    return path


def write_json(path: Path, entries: list[Any], **options: Any) -> Path:
    """Write entries as the old tools do (json.dump, indent=2 by default)."""
    options.setdefault("indent", 2)
    path.write_text(json.dumps(entries, **options), encoding="utf-8")
    return path


def ago(delta: timedelta) -> str:
    """A timestamp delta before now (now read afresh: the suite may run for minutes)."""
    return (datetime.now(timezone.utc) - delta).isoformat(timespec="microseconds")


def many(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Entries with varied skills, statuses, callers and awkward values."""
    skills = ["a.b", "café", 'say "hi"', "back\\slash", "new\nline", "tab\tx", "plain"]
    statuses = ["success", "success", "failure", "timeout", "error", "failed", "pending"]
    durations: list[Any] = [1.5, 2, 0, 2**63 - 1, -1, 1e-05, None, "12", True, {"a": 1}, [1, 2]]
    return [
        entry(
            i,
            skill=skills[(i * 7 + seed) % len(skills)],
            status=statuses[(i * 3 + seed) % len(statuses)],
            duration_ms=durations[i % len(durations)] if i % 5 == 0 else i * 1.25,
            caller=["CLI", "API", "x,y"][i % 3],
            inputs={"text": "}, {" * (i % 3), "list": list(range(i % 4))},
        )
        for i in range(count)
    ]


LAYOUTS = ["canonical", "indent2", "mixed", "crlf", "bom", "torn", "damaged", "compact_other"]


def write_layout(path: Path, layout: str, entries: list[dict[str, Any]]) -> Path:
    """Write entries in one of the layouts the readers must handle."""
    half = len(entries) // 2
    if layout == "canonical":
        path.write_bytes(b"[\n" + b",\n".join(map(orjson.dumps, entries)) + b"\n]\n")
    elif layout == "indent2":
        write_json(path, entries)
    elif layout == "mixed":
        write_json(path, entries[:half])
        TelemetryStore(path).append(entries[half:])
    elif layout == "crlf":
        path.write_bytes(b"[\r\n" + b",\r\n".join(map(orjson.dumps, entries)) + b"\r\n]\r\n")
    elif layout == "bom":
        path.write_bytes(b"\xef\xbb\xbf[\n" + b",\n".join(map(orjson.dumps, entries)) + b"\n]\n")
    elif layout == "torn":
        joined = b",\n".join(map(orjson.dumps, entries))
        path.write_bytes(b"[\n" + joined + b',\n{"timestamp":"2025-10-24T00:00:00+00:00",')
    elif layout == "damaged":
        lines = [orjson.dumps(item) for item in entries]
        lines[half] = b'{"timestamp":"2025-10-24T00:00:00+00:00","skill":"x","status":"s'
        lines[half + 1] = b"garbage that is not json"
        lines[half + 2] = b'{"timestamp":"x","skill":"a\tb","status":"success","duration_ms":1}'
        path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    elif layout == "compact_other":
        option = orjson.OPT_SORT_KEYS
        path.write_bytes(
            b"[\n" + b",\n".join(orjson.dumps(item, option=option) for item in entries) + b"\n]\n"
        )
    else:  # pragma: no cover
        raise AssertionError(layout)
    return path

"""Generate a realistic canonical telemetry.json for benchmarks and tests.

Entries follow the schema order (timestamp, skill, status, duration_ms, caller,
inputs, error_message, metadata, trace_id, span_id, parent_span_id): ~50 skills,
a few callers, mostly successes with some failures, timeouts and errors, small
inputs and metadata, and workflow traces whose children are recorded before
their parent (a child ends first). Written with orjson in the store's canonical
layout, so a million entries take a few seconds.

Usage: python benchmarks/gen_log.py OUT.json [COUNT]
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

__all__ = ["SKILLS", "generate", "write_log"]

_DOMAINS = ("api", "docs", "workflow", "agent", "skill", "registry", "hook", "policy", "plugin")
_VERBS = ("validate", "compose", "define", "build", "publish", "sync", "lint", "render")
SKILLS: tuple[str, ...] = tuple(f"{d}.{v}" for d in _DOMAINS for v in _VERBS)[:50]
_CALLERS = ("CLI", "API", "workflow.compose", "agent.run", "hook.pre_commit")
_ERRORS = {
    "failure": ("Validation failed: missing field 'name'", "Schema mismatch in manifest"),
    "timeout": ("Timed out after 30s", "Deadline exceeded"),
    "error": ("FileNotFoundError: skill.yaml", "KeyError: 'version'"),
}
_FANOUT = (0, 0, 0, 2, 3)
"""Children per trace: most executions are alone, some are workflows with children."""
# (status, weight): mostly successes.
_STATUS_WEIGHTS = (("success", 90.0), ("failure", 6.0), ("timeout", 2.0), ("error", 2.0))


def _status(roll: float) -> str:
    roll *= 100
    for status, weight in _STATUS_WEIGHTS:
        if roll < weight:
            return status
        roll -= weight
    return "success"


def generate(count: int, seed: int = 1) -> Iterator[bytes]:
    """Yield count canonical entry lines (compact JSON, no separators), oldest first."""
    rng = random.Random(seed)
    rand = rng.random
    bits = rng.getrandbits
    micros = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000
    # Per-skill typical duration, so percentiles differ by skill.
    scale = {skill: rng.uniform(5, 2000) for skill in (*SKILLS, "workflow.compose")}
    inputs = {
        (skill, strict): {"path": f"skills/{skill}", "strict": strict}
        for skill in scale
        for strict in (True, False)
    }
    metadata = [{"attempt": a, "host": f"worker-{h}"} for a in (1, 1, 1, 2, 3) for h in range(8)]
    made = 0
    dumps = orjson.dumps
    fromtimestamp = datetime.fromtimestamp
    utc = timezone.utc
    last_minute = -1
    prefix = ""
    while made < count:
        trace_id = f"{bits(128):032x}"
        root_id = f"{bits(64):016x}"
        children = _FANOUT[int(rand() * len(_FANOUT))] if made + 4 < count else 0
        first_start = 0
        for index in range(children + 1):
            is_root = index == children
            skill = "workflow.compose" if is_root and children else SKILLS[int(rand() * 50)]
            duration = round(rng.expovariate(1 / scale[skill]), 3)
            if is_root and children:
                # A workflow ends after its children and spans all of them.
                micros += 1_000 + int(rand() * 50_000)
                duration = round((micros - first_start) / 1000 + rand() * 10, 3)
            else:
                micros += (
                    1_000
                    + int(duration * 1000)
                    + int(rand() * (60_000_000 if not index else 5_000))
                )
                if index == 0:
                    first_start = micros - int(duration * 1000)
            status = _status(rand())
            errors = _ERRORS.get(status)
            minute, fraction = divmod(micros, 60_000_000)
            if minute != last_minute:
                last_minute = minute
                prefix = fromtimestamp(minute * 60, utc).strftime("%Y-%m-%dT%H:%M:")
            second, micro = divmod(fraction, 1_000_000)
            entry: dict[str, Any] = {
                "timestamp": f"{prefix}{second:02d}.{micro:06d}+00:00",
                "skill": skill,
                "status": status,
                "duration_ms": duration,
                "caller": "workflow.compose" if index < children else _CALLERS[int(rand() * 5)],
                "inputs": inputs[skill, rand() < 0.5],
                "error_message": errors[int(rand() * 2)] if errors else None,
                "metadata": metadata[int(rand() * len(metadata))],
                "trace_id": trace_id,
                "span_id": root_id if is_root else f"{bits(64):016x}",
                "parent_span_id": None if is_root else root_id,
            }
            yield dumps(entry)
            made += 1


def write_log(path: Path, count: int, seed: int = 1) -> Path:
    """Write count generated entries to path in the canonical layout; return path."""
    with path.open("wb") as handle:
        handle.write(b"[\n")
        batch: list[bytes] = []
        separator = b""
        for line in generate(count, seed):
            batch.append(line)
            if len(batch) == 10_000:
                handle.write(separator + b",\n".join(batch))
                separator, batch = b",\n", []
        if batch:
            handle.write(separator + b",\n".join(batch))
        handle.write(b"\n]\n")
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1])
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    write_log(target, total)
    print(f"wrote {total} entries to {target} ({target.stat().st_size / 1e6:.0f} MB)")

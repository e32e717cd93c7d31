"""The baseline of bench_cli: what the original Betty skill's telemetry_capture.py does.

Standard library only, written for this benchmark from the skill's documentation
(/work/shared/betty/telemetry.capture.md): read SKILL STATUS DURATION_MS CALLER
[INPUTS_JSON [ERROR_MESSAGE]] from sys.argv, validate the status, then under an
exclusive flock load the whole JSON array, append the entry and write the whole file
back (indent=2), and print the entry. It imports what the original imports (json, os,
sys, fcntl, datetime, pathlib, typing), so its start-up cost is the original's.

    python benchmarks/original_capture.py plugin.build success 320 CLI
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

STATUSES = ("success", "failure", "timeout", "error", "pending")


def append_whole_file(path: Path, entry: dict[str, Any]) -> None:
    """Load the array under an exclusive lock, append entry, rewrite the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("[]")
    with path.open("r+") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        try:
            data = json.load(file)
            if not isinstance(data, list):
                data = []
            data.append(entry)
            file.seek(0)
            file.truncate()
            json.dump(data, file, indent=2)
            file.write("\n")
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print("usage: original_capture.py SKILL STATUS DURATION_MS CALLER [INPUTS [ERROR]]")
        return 1
    skill, status, duration, caller = argv[:4]
    inputs: dict[str, Any] = {}
    if len(argv) > 4:
        try:
            inputs = json.loads(argv[4])
        except json.JSONDecodeError as exc:
            print(f"Error: Invalid JSON for inputs: {exc}", file=sys.stderr)
            return 1
    if status not in STATUSES:
        print(f"Error: Invalid status: {status}. Must be one of: {', '.join(STATUSES)}")
        return 1
    entry = {
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "skill": skill,
        "status": status,
        "duration_ms": float(duration),
        "caller": caller,
        "inputs": inputs,
        "error_message": argv[5] if len(argv) > 5 else None,
        "metadata": {},
    }
    path = Path(os.environ.get("BETTY_TELEMETRY_FILE", "registry/telemetry.json"))
    append_whole_file(path, entry)
    print(json.dumps(entry, indent=2))
    print(f"\n✓ Telemetry captured to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

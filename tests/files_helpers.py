"""What the file fault suites share: the CLI run as a user would, a decorated call, the folder.

- `run_cli`: the installed console script; its output must never hold a traceback.
- `decorated`: a decorated call that records its input.
- `NEW`: an entry to append; `side_files`: everything beside the log in its folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from betty_otel import capture_telemetry
from helpers import make_entry

CLI = Path(sys.executable).parent / "betty-telemetry"
TRACEBACK = "Traceback (most recent call last)"

NEW = make_entry(999_999)


def side_files(path: Path) -> list[Path]:
    """Everything beside the log in its folder."""
    return sorted(p for p in path.parent.iterdir() if p.name != path.name)


def run_cli(*args: str, timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The installed console script; its output must never hold a traceback."""
    result = subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        check=False,
        **kwargs,
    )
    assert TRACEBACK not in result.stderr, result.stderr[-3000:]
    assert TRACEBACK not in result.stdout, result.stdout[-3000:]
    return result


@capture_telemetry(skill_name="faults.hostile", caller="faults", capture_inputs=True)
def decorated(number: int) -> int:
    return number * 2

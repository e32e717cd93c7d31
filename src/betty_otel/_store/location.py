"""Where the telemetry file is: the argument, else the environment, else the default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

__all__ = ["DEFAULT_PATH", "ENV_FILE", "resolve_path"]

ENV_FILE: Final = "BETTY_TELEMETRY_FILE"
DEFAULT_PATH: Final = Path("registry") / "telemetry.json"
"""Relative to the working directory, where Betty keeps its registry."""


def resolve_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the telemetry file: the argument, else $BETTY_TELEMETRY_FILE, else the default."""
    if path is not None and os.fspath(path) != "":
        return Path(path)
    env = os.environ.get(ENV_FILE, "")
    return Path(env) if env else DEFAULT_PATH

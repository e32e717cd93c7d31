"""The log a drop-in shim chose for the process that imports it, outside the environment.

The shims that ``betty-telemetry install-skill`` writes make their repository's log the
default of the process that imports them (`set_shim_log`, through
``betty_otel.dropin.use_repository``): install-skill's ``--file``, else
``registry/telemetry.json`` under $BETTY_HOME or the shim's repository; $BETTY_TELEMETRY_FILE
still wins. For that process only: nothing is put in ``os.environ``, so its child
processes (another repository's skills, tools) resolve their own log as usual.
"""

from __future__ import annotations

import os
from pathlib import Path

from betty_otel._state import STATE
from betty_otel._store import resolve_path
from betty_otel._store.location import DEFAULT_PATH, ENV_FILE, ENV_HOME

__all__ = ["set_shim_log", "shim_log"]


def set_shim_log(home: str | os.PathLike[str], telemetry_file: str | None = None) -> None:
    """Make home's log (or telemetry_file, install-skill's --file) this process's default."""
    STATE.shim_log = (os.fspath(home), telemetry_file or None)


def shim_log() -> Path | None:
    """The log a shim chose for this process, absolute; None when no shim chose one or
    $BETTY_TELEMETRY_FILE names the log (read now: the program may set it later)."""
    chosen = STATE.shim_log
    if chosen is None or os.environ.get(ENV_FILE):
        return None
    home, telemetry_file = chosen
    if telemetry_file:
        return resolve_path(telemetry_file)
    return resolve_path(Path(os.environ.get(ENV_HOME) or home) / DEFAULT_PATH)

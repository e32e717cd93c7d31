"""What the telemetry.capture shims run when their interpreter cannot import betty_otel.

Skills run with the interpreter they were started with: often the system ``python3``,
while betty_otel lives in a virtual environment. ``betty-telemetry install-skill``
records the installing interpreter in the shims (``INSTALLED``: its path, its import
paths, its extension ABI) and copies this file beside them as
``betty_otel_fallback.py``. A shim that cannot import betty_otel calls `dropin`, which
tries, in order:

1. The command line only: the installing interpreter runs it instead (exec), with the
   same arguments, so the same output and exit status.
2. betty_otel of the installing interpreter, imported into this one: when both have the
   same extension ABI (``SOABI``: version, build and platform), its import paths are
   appended to ``sys.path`` as site folders (their ``.pth`` files read), after this
   interpreter's own (the skill's packages win). A failed import takes them back.
3. Otherwise telemetry is skipped, said once on stderr: the decorator and the context
   run the skill's code unchanged, ``TelemetryCapture.capture`` checks the status as
   the original skill did and returns the entry unwritten, ``query`` finds nothing,
   and the command line exits 0 without a write. Nothing unredacted is ever written
   by this module: only betty_otel writes the log.

So telemetry never turns a working skill into a failing one. This file runs exactly
where betty_otel is missing: it uses the standard library only, in Python 3.7 syntax,
and keeps its one mutable fact (whether it warned) itself, outside betty_otel's state.
"""

from __future__ import annotations

import importlib
import os
import site
import sys
import sysconfig
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ENV_EXECUTED",
    "TelemetryCapture",
    "TelemetryContext",
    "capture_main",
    "capture_telemetry",
    "dropin",
]

ENV_EXECUTED = "BETTY_OTEL_DROPIN_FROM"
"""Set for the installing interpreter when a shim's command line runs in it: it never
hands the command on again."""

_STATUSES = ("success", "failure", "timeout", "error", "pending")
"""The original skill's statuses, in its message's order (betty_otel's own list is in
`betty_otel._entry`, which this file cannot import where it runs)."""


class _Said:
    """Whether this process has been told that telemetry is skipped (said once)."""

    skipped = False


def dropin(installed: dict[str, Any], script: str | None) -> ModuleType | SimpleNamespace:
    """What a shim exports its names from: betty_otel.dropin, or this module's stand-ins.

    installed: what the shim records of the interpreter that installed it: ``python``
    (its path), ``paths`` (where it imports betty_otel and its packages from) and
    ``abi`` (its extension ABI, ``SOABI``). script: the shim's path when it runs as a
    command (it may then be handed to the installing interpreter, and this never
    returns), else None.
    """
    python = str(installed.get("python") or "")
    if script is not None:
        _run_with(python, script)
    module = _borrow(list(installed.get("paths") or ()), installed.get("abi"))
    if module is not None:
        return module
    _skip(python)
    return SimpleNamespace(
        TelemetryCapture=TelemetryCapture,
        TelemetryContext=TelemetryContext,
        capture_telemetry=capture_telemetry,
        capture_main=capture_main,
    )


def _run_with(python: str, script: str) -> None:
    """Hand the command line to the installing interpreter (exec); return if it cannot be."""
    if not python or python == sys.executable or os.environ.get(ENV_EXECUTED):
        return
    if not os.access(python, os.X_OK):
        return
    environ = dict(os.environ)
    environ[ENV_EXECUTED] = sys.executable
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(python, [python, script, *sys.argv[1:]], environ)  # noqa: S606 - no shell wanted
    except OSError:
        return  # not runnable after all: the other ways remain


def _borrow(paths: list[str], abi: object) -> ModuleType | None:
    """betty_otel.dropin imported through the installing interpreter's paths, or None.

    Only for the same extension ABI: its compiled packages then load here. A failed
    import takes back the paths and whatever it loaded from them.
    """
    if not paths or abi is None or abi != sysconfig.get_config_var("SOABI"):
        return None
    before, finders = list(sys.path), list(sys.meta_path)
    for path in paths:
        if Path(path).is_dir():
            site.addsitedir(path)  # appended, with its .pth files (an editable install's)
    try:
        return importlib.import_module("betty_otel.dropin")
    except Exception:  # noqa: BLE001 - a broken borrowed install means no telemetry, no failure
        roots = tuple(path + os.sep for path in sys.path if path not in before)
        sys.path[:], sys.meta_path[:] = before, finders
        for name, module in list(sys.modules.items()):
            if roots and str(getattr(module, "__file__", None) or "").startswith(roots):
                del sys.modules[name]
        return None


def _skip(python: str) -> None:
    """Say once, on stderr, that this process records no telemetry, and what would fix it."""
    if _Said.skipped:
        return
    _Said.skipped = True
    sys.stderr.write(
        f"Warning: telemetry is not recorded: {sys.executable} cannot import betty_otel"
        f" and cannot use the one of {python or 'the interpreter that installed it'}."
        " The skill runs unchanged. Install betty-otel for this interpreter, or run the"
        " skill with that one.\n"
    )


# ---------------------------------------------------------------------------
# The original skill's API, recording nothing
# ---------------------------------------------------------------------------


def capture_telemetry(wrapped: Callable[..., Any] | None = None, **_options: Any) -> Any:
    """The decorator, bare or called: the function itself, unchanged."""
    if wrapped is None:
        return lambda function: function
    return wrapped


class TelemetryContext:
    """The context manager (``with`` and ``async with``): runs the block, records nothing,
    and never hides its exception."""

    def __init__(self, skill: str = "", caller: str = "runtime", *_args: Any, **_kw: Any) -> None:
        self.skill = skill
        self.caller = caller

    def __enter__(self) -> TelemetryContext:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    async def __aenter__(self) -> TelemetryContext:
        return self.__enter__()

    async def __aexit__(self, *_exc: object) -> None:
        return None

    def set_inputs(self, inputs: Any) -> None:
        """Nothing is recorded."""

    def set_metadata(self, metadata: Any) -> None:
        """Nothing is recorded."""

    def set_status(self, status: Any) -> None:
        """Nothing is recorded."""

    def set_error(self, message: Any) -> None:
        """Nothing is recorded."""


class TelemetryCapture:
    """The programmatic API: capture checks the status as the original skill did and
    returns the entry it would have written; query finds nothing."""

    def __init__(self, telemetry_file: Any = None, **_options: Any) -> None:
        home = os.environ.get("BETTY_HOME") or "."
        chosen = telemetry_file or os.environ.get("BETTY_TELEMETRY_FILE")
        self.path = Path(chosen) if chosen else Path(home) / "registry" / "telemetry.json"

    @property
    def telemetry_file(self) -> Path:
        """The telemetry file (the original skill's name for it)."""
        return self.path

    def capture(
        self,
        skill: str,
        status: str,
        duration_ms: Any,
        caller: str,
        inputs: Any = None,
        error_message: str | None = None,
        metadata: Any = None,
    ) -> dict[str, Any]:
        """The entry, unwritten.

        Raises:
            ValueError: an invalid status, with the original skill's message.
        """
        if status not in _STATUSES:
            msg = f"Invalid status: {status}. Must be one of: {', '.join(_STATUSES)}"
            raise ValueError(msg)
        try:
            duration: Any = float(duration_ms)
        except (TypeError, ValueError):
            duration = duration_ms
        return {
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "skill": skill,
            "status": status,
            "duration_ms": duration,
            "caller": caller,
            "inputs": dict(inputs) if isinstance(inputs, dict) else {},
            "error_message": error_message,
            "metadata": dict(metadata) if isinstance(metadata, dict) else {},
        }

    def query(self, *_args: Any, **_filters: Any) -> list[dict[str, Any]]:
        """Nothing: the log is betty_otel's to read."""
        return []


def capture_main(_argv: list[str]) -> int:
    """The command line: records nothing (said when this module was chosen), exits 0."""
    return 0

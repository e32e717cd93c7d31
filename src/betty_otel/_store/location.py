"""Where the telemetry file is: the argument, else the environment, else the Betty registry.

The rule (resolve_path), first match wins:

1. an explicit path (argument, ``--file``);
2. ``$BETTY_TELEMETRY_FILE``;
3. ``registry/telemetry.json`` under the Betty root (`betty_root`): ``$BETTY_HOME``
   when set, else the nearest folder, from the working directory up to the
   filesystem root, that holds a ``registry/`` folder and at least one of
   ``skills/``, ``agents/`` or ``workflows/`` (what every Betty repository has);
4. ``./registry/telemetry.json``.

A relative path is made absolute against the working directory once, when it is
resolved (a store or pipeline resolves it when created), so a later ``os.chdir``
never splits one program's log across folders. Without an explicit path (2-4) the
file is resolved once per process (again only if one of the two variables
changes): a later ``chdir`` does not move it.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "BETTY_MARKERS",
    "DEFAULT_PATH",
    "ENV_FILE",
    "ENV_HOME",
    "betty_root",
    "default_path",
    "on_reset",
    "resolve_path",
    "telemetry_file_of",
]

ENV_FILE: Final = "BETTY_TELEMETRY_FILE"
ENV_HOME: Final = "BETTY_HOME"
DEFAULT_PATH: Final = Path("registry") / "telemetry.json"
"""Where Betty keeps its log, relative to the Betty root (or the working directory)."""
BETTY_MARKERS: Final = ("skills", "agents", "workflows")
"""Folders of which at least one sits beside ``registry/`` at a Betty repository's root."""


def betty_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The Betty root: ``$BETTY_HOME`` when set, else the repository holding start.

    The repository is the nearest folder from start (default: the working
    directory) up to the filesystem root that holds a ``registry/`` folder and one
    of BETTY_MARKERS (``skills/``, ``agents/``, ``workflows/``). None when there is
    neither. The result is absolute; nothing is created.
    """
    home = os.environ.get(ENV_HOME, "")
    if home:
        return _absolute(Path(home))
    try:
        folder = (Path(start) if start is not None else Path.cwd()).absolute()
    except OSError:  # the working directory was removed
        return None
    for candidate in (folder, *folder.parents):
        if _is_folder(candidate / "registry") and any(
            _is_folder(candidate / marker) for marker in BETTY_MARKERS
        ):
            return candidate
    return None


def _is_folder(path: Path) -> bool:
    """path is a folder; an unreadable one on the way up is simply not a root."""
    try:
        return path.is_dir()
    except OSError:
        return False


def default_path() -> Path:
    """The log when no path is given: $BETTY_TELEMETRY_FILE, else the Betty registry.

    ``registry/telemetry.json`` under the Betty root, else under the working
    directory. Resolved once per process (cached with the two variables it was
    resolved for; only a change of one of them, or `betty_otel._state.reset`,
    resolves it again), so a later ``chdir`` does not move the log, even when the
    variable holds a relative path.
    """
    return _default_path_for(os.environ.get(ENV_FILE, ""), os.environ.get(ENV_HOME, ""))


@functools.lru_cache(maxsize=1)
def _default_path_for(telemetry_file: str, home: str) -> Path:  # noqa: ARG001 - the cache key
    """default_path for these values of $BETTY_TELEMETRY_FILE and $BETTY_HOME (which
    betty_root reads itself)."""
    if telemetry_file:
        return _absolute(Path(telemetry_file))
    root = betty_root()
    return _absolute(DEFAULT_PATH if root is None else root / DEFAULT_PATH)


def on_reset() -> None:
    """Resolve the default log again on its next use."""
    _default_path_for.cache_clear()


def resolve_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The telemetry file, absolute: the argument, else default_path().

    An empty argument counts as not given; a relative one is taken against the
    working directory now.
    """
    if path is not None and os.fspath(path) != "":
        return _absolute(Path(path))
    return default_path()


def _absolute(path: Path) -> Path:
    """path made absolute against the working directory; as it is if that is gone."""
    try:
        return path.absolute()
    except OSError:  # the working directory was removed: the relative path still works
        return path


def telemetry_file_of(
    telemetry_file: str | os.PathLike[str] | None, path: str | os.PathLike[str] | None
) -> str | os.PathLike[str] | None:
    """The log a reading function was given: telemetry_file, or its deprecated name path.

    ``telemetry_file`` is the log's one keyword across the API (the original skill's
    ``TelemetryCapture(telemetry_file=...)``, ``configure``); the readers called it
    ``path`` before, which still works with a DeprecationWarning.

    Raises:
        TypeError: both were given.
    """
    if path is None:
        return telemetry_file
    if telemetry_file is not None:
        msg = "give telemetry_file or path (its deprecated name), not both"
        raise TypeError(msg)
    warnings.warn(
        "the keyword path= is deprecated: use telemetry_file=", DeprecationWarning, stacklevel=3
    )
    return path

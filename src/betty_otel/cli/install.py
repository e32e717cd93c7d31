"""``betty-telemetry install-skill``: put the drop-in shims into an existing Betty repository.

It writes ``skills/telemetry.capture/telemetry_capture.py`` and ``telemetry_utils.py``,
thin shims over `betty_otel.dropin`, so every skill that imports the original
telemetry.capture skill, or runs its script from a shell, writes through betty_otel
without an edit; and, first, ``betty_otel_fallback.py`` with its two parts beside them
(`betty_otel.dropin_fallback`), for skills run by an interpreter that cannot import
betty_otel. The shims record the installing interpreter (the one that has betty_otel):
its path and import paths, which the fallback runs betty_otel with. Every file appears
whole or not at all (written aside, then linked into place), and a file already there is
never overwritten: it is renamed first to ``<name>.orig-<UTC time>`` beside the new one
(a file already up to date is left alone).

The shims and the fallback are Python 3.6 syntax: they run with whatever Python 3 the
repository's skills run with.
"""

from __future__ import annotations

import argparse
import os
import site
import sys
from pathlib import Path
from types import ModuleType
from typing import Final, NamedTuple

import betty_otel
from betty_otel import dropin_fallback, dropin_fallback_helper, dropin_fallback_log
from betty_otel._store import betty_root, resolve_path
from betty_otel._store.files import aside_path
from betty_otel.cli.commandline import CommandError
from betty_otel.cli.terminal import out

__all__ = [
    "FALLBACK",
    "FALLBACKS",
    "SHIMS",
    "SKILL_DIR",
    "Installed",
    "cmd_install_skill",
    "import_paths",
    "install_skill",
    "shim_text",
]

SKILL_DIR: Final = Path("skills") / "telemetry.capture"
"""Where a Betty repository keeps the telemetry.capture skill."""

FALLBACK: Final = "betty_otel_fallback.py"
"""The name of `betty_otel.dropin_fallback`'s copy beside the shims."""

FALLBACKS: Final[dict[str, ModuleType]] = {
    "betty_otel_fallback_helper.py": dropin_fallback_helper,
    "betty_otel_fallback_log.py": dropin_fallback_log,
    FALLBACK: dropin_fallback,
}
"""The fallback's files beside the shims (its parts are named after it), in the order
they are written: each is complete before anything that loads it is in place."""

_HEADER: Final = '''#!{python}
"""Betty's telemetry.capture skill as a drop-in over betty_otel {version}.

Written by `betty-telemetry install-skill`; a file it replaced is saved beside it
as {name}.orig-<UTC time>. Code written for the original skill runs unchanged
and writes through betty_otel: the locked, append-only registry/telemetry.json
of this repository, and OpenTelemetry spans when a collector is configured.
Run by an interpreter that cannot import betty_otel, it records through the
installing interpreter ({fallback} beside it says how). It never fails a skill.
"""

import os
import sys

# The interpreter that installed this (it has betty_otel) and where it imports it from.
INSTALLED = {{"python": {python!r}, "paths": {paths!r}}}
# This repository's log, for this process only (the environment is left alone): "file"
# (install-skill --file), else registry/telemetry.json under $BETTY_HOME or "home";
# $BETTY_TELEMETRY_FILE wins over both.
REPOSITORY = {{
    "home": os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))),
    "file": {file!r},
}}

try:
    from betty_otel.dropin import {names}, use_repository

    use_repository(REPOSITORY["home"], REPOSITORY["file"])
except Exception:  # missing or broken for this interpreter: never the skill's failure
    try:
        if "betty_otel_fallback" not in sys.modules:
            import importlib.util

            _WHERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), {fallback!r})
            _SPEC = importlib.util.spec_from_file_location("betty_otel_fallback", _WHERE)
            _MODULE = importlib.util.module_from_spec(_SPEC)
            _SPEC.loader.exec_module(_MODULE)
            sys.modules["betty_otel_fallback"] = _MODULE
        _DROPIN = sys.modules["betty_otel_fallback"].dropin(INSTALLED, REPOSITORY)
    except Exception as _ERROR:  # the fallback missing or broken too: telemetry is skipped
        _DROPIN = sys.modules.get("betty_otel_unrecorded")
        if _DROPIN is None:
            import types
            from datetime import datetime, timezone

            _DROPIN = sys.modules["betty_otel_unrecorded"] = types.ModuleType("unrecorded")

            def _capture_telemetry(wrapped=None, **_options):
                return wrapped if wrapped is not None else (lambda function: function)

            class _TelemetryContext(object):
                def __init__(self, *_args, **_options):
                    pass

                def __enter__(self):
                    return self

                def __exit__(self, *_exc):
                    return None

                async def __aenter__(self):
                    return self

                async def __aexit__(self, *_exc):
                    return None

                def __getattr__(self, _name):  # set_inputs, set_status, ...: nothing recorded
                    return lambda *_args, **_options: None

            class _TelemetryCapture(object):
                def __init__(self, telemetry_file=None, **_options):
                    self.telemetry_file = telemetry_file

                def capture(self, skill, status, duration_ms, caller, *_more, **_named):
                    moment = datetime.now(timezone.utc).isoformat(timespec="microseconds")
                    return {{"timestamp": moment, "skill": skill, "status": status,
                            "duration_ms": duration_ms, "caller": caller, "inputs": {{}},
                            "error_message": None, "metadata": {{}}}}

                def query(self, *_args, **_filters):
                    return []

            _DROPIN.capture_telemetry, _DROPIN.TelemetryContext = (
                _capture_telemetry,
                _TelemetryContext,
            )
            _DROPIN.TelemetryCapture = _TelemetryCapture
            _DROPIN.capture_main = lambda _argv: 0
            try:
                sys.stderr.write(
                    "Warning: telemetry is not recorded (this skill runs unchanged):"
                    " {fallback} beside %s cannot be loaded (%s: %s); run"
                    " `betty-telemetry install-skill` again.\\n"
                    % (os.path.dirname(os.path.abspath(__file__)), type(_ERROR).__name__, _ERROR)
                )
            except (AttributeError, OSError, ValueError):  # stderr closed or broken
                pass
{assign}
'''

SHIMS: Final = {
    "telemetry_capture.py": (
        "TelemetryCapture, capture_main",
        '\n__all__ = ["TelemetryCapture"]\n\n'
        'if __name__ == "__main__":\n    sys.exit(capture_main(sys.argv[1:]))\n',
    ),
    "telemetry_utils.py": (
        "TelemetryCapture, TelemetryContext, capture_telemetry",
        '\n__all__ = ["TelemetryCapture", "TelemetryContext", "capture_telemetry"]\n',
    ),
}
"""File name -> (the names it imports from betty_otel.dropin, the rest of its text)."""


class Installed(NamedTuple):
    """One file: where it is, where the file it replaced was saved, whether it was written."""

    path: Path
    saved: Path | None
    written: bool


def import_paths() -> list[str]:
    """Where this interpreter imports betty_otel and the packages it needs from: its site
    folders and betty_otel's own root (an editable install's source folder), in the order
    it searches them."""
    root = str(Path(betty_otel.__file__).resolve().parents[1])
    wanted = {*site.getsitepackages(), root}
    if site.ENABLE_USER_SITE:
        wanted.add(site.getusersitepackages())
    found = [path for path in dict.fromkeys(sys.path) if path in wanted]
    return found if root in found else [*found, root]


def shim_text(name: str, telemetry_file: Path | None = None) -> str:
    """The text of one shim, for the interpreter running this; telemetry_file: --file."""
    names, body = SHIMS[name]
    header = _HEADER.format(
        python=sys.executable,
        version=betty_otel.__version__,
        name=name,
        names=names,
        paths=import_paths(),
        fallback=FALLBACK,
        file=None if telemetry_file is None else str(telemetry_file),
        assign="\n".join(f"    {each} = _DROPIN.{each}" for each in names.split(", ")),
    )
    return header + body


def install_skill(repo: Path, telemetry_file: Path | None = None) -> list[Installed]:
    """Write the fallback, then the shims, into repo's skills/telemetry.capture, saving
    what is there first; telemetry_file: the log the skills write (default: the
    repository's registry/telemetry.json, or $BETTY_TELEMETRY_FILE when set).

    Raises:
        OSError: a folder or file could not be created or renamed (nothing is overwritten;
            a file is either whole or not there).
    """
    folder = repo / SKILL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        (name, Path(str(module.__file__)).read_bytes(), 0o644) for name, module in FALLBACKS.items()
    ]
    files += [(name, shim_text(name, telemetry_file).encode(), 0o755) for name in SHIMS]
    done = []
    for name, text, mode in files:
        path = folder / name
        saved = None
        if os.path.lexists(path):
            if path.is_file() and not path.is_symlink() and path.read_bytes() == text:
                done.append(Installed(path, None, written=False))
                continue
            saved = aside_path(path, "orig")
            path.rename(saved)
        _put(path, text, mode)
        done.append(Installed(path, saved, written=True))
    return done


def _put(path: Path, text: bytes, mode: int) -> None:
    """Create path holding text, whole or not at all: written to a new private file
    beside it, then linked to path (which fails if a file appeared there since)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    finally:
        temporary.unlink()


def cmd_install_skill(args: argparse.Namespace) -> int:
    if args.repo is not None:
        repo = Path(args.repo).absolute()
        if not repo.is_dir():
            msg = f"{repo} is not a folder"
            raise CommandError(msg)
    else:
        found = betty_root()
        if found is None:
            msg = (
                f"no Betty repository holds {Path.cwd()} (a folder with registry/ and skills/, "
                "agents/ or workflows/): give BETTY_REPO, or set BETTY_HOME"
            )
            raise CommandError(msg)
        repo = found
    telemetry_file = resolve_path(args.file) if args.file else None
    out(f"Installing the telemetry.capture drop-in (betty_otel {betty_otel.__version__}) in {repo}")
    for item in install_skill(repo, telemetry_file):
        if not item.written:
            out(f"  {item.path}: already up to date")
        elif item.saved is not None:
            out(f"  {item.path}: written (the previous file is saved as {item.saved.name})")
        else:
            out(f"  {item.path}: written")
    out(
        "Skills that import telemetry_utils or telemetry_capture, or run "
        f"{SKILL_DIR / 'telemetry_capture.py'}, now write through betty_otel"
        + ("." if telemetry_file is None else f" to {telemetry_file}.")
    )
    return 0

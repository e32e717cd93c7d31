"""``betty-telemetry install-skill``: put the drop-in shims into an existing Betty repository.

It writes ``skills/telemetry.capture/telemetry_capture.py`` and ``telemetry_utils.py``,
thin shims over `betty_otel.dropin`, so every skill that imports the original
telemetry.capture skill, or runs its script from a shell, writes through betty_otel
without an edit. A file already there is never overwritten: it is renamed first to
``<name>.orig-<UTC time>`` beside the new one (a shim already up to date is left
alone). The shims start with the installing interpreter (the one that has betty_otel).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Final, NamedTuple

import betty_otel
from betty_otel._store import betty_root
from betty_otel._store.files import aside_path
from betty_otel.cli.parser import CommandError
from betty_otel.cli.terminal import out

__all__ = ["SKILL_DIR", "Installed", "cmd_install_skill", "install_skill"]

SKILL_DIR: Final = Path("skills") / "telemetry.capture"
"""Where a Betty repository keeps the telemetry.capture skill."""

_HEADER: Final = '''#!{python}
"""Betty's telemetry.capture skill as a drop-in over betty_otel {version}.

Written by `betty-telemetry install-skill`; a file it replaced is saved beside it
as {name}.orig-<UTC time>. Code written for the original skill runs unchanged
and writes through betty_otel: the locked, append-only registry/telemetry.json
of this repository (BETTY_HOME defaults to it), and OpenTelemetry spans when
a collector is configured.
"""

import os
import sys
from pathlib import Path

_PYTHON = {python!r}  # the interpreter that installed it, and has betty_otel

os.environ.setdefault("BETTY_HOME", str(Path(__file__).resolve().parents[2]))
try:
    from betty_otel.dropin import {names}
except ImportError as exc:
    _MESSAGE = f"betty_otel is not installed for {{sys.executable}}: use {{_PYTHON}}"
    if __name__ == "__main__":
        sys.exit(f"Error: {{_MESSAGE}}")
    raise ImportError(_MESSAGE) from exc
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
    """One shim: where it is, where the file it replaced was saved, whether it was written."""

    path: Path
    saved: Path | None
    written: bool


def shim_text(name: str) -> str:
    """The text of one shim, for the interpreter running this."""
    names, body = SHIMS[name]
    header = _HEADER.format(
        python=sys.executable, version=betty_otel.__version__, name=name, names=names
    )
    return header + body


def install_skill(repo: Path) -> list[Installed]:
    """Write the shims into repo's skills/telemetry.capture, saving what is there first.

    Raises:
        OSError: a folder or file could not be created or renamed (nothing is overwritten).
    """
    folder = repo / SKILL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    done = []
    for name in SHIMS:
        path, text = folder / name, shim_text(name).encode()
        saved = None
        if os.path.lexists(path):
            if path.is_file() and not path.is_symlink() and path.read_bytes() == text:
                done.append(Installed(path, None, written=False))
                continue
            saved = aside_path(path, "orig")
            path.rename(saved)
        # O_EXCL: a file that appeared since is not overwritten either.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755)
        with os.fdopen(fd, "wb") as handle:
            handle.write(text)
        done.append(Installed(path, saved, written=True))
    return done


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
    out(f"Installing the telemetry.capture drop-in (betty_otel {betty_otel.__version__}) in {repo}")
    for item in install_skill(repo):
        if not item.written:
            out(f"  {item.path}: already up to date")
        elif item.saved is not None:
            out(f"  {item.path}: written (the previous file is saved as {item.saved.name})")
        else:
            out(f"  {item.path}: written")
    out(
        "Skills that import telemetry_utils or telemetry_capture, or run "
        f"{SKILL_DIR / 'telemetry_capture.py'}, now write through betty_otel."
    )
    return 0

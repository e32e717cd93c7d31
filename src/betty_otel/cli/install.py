"""``betty-telemetry install-skill``: put the drop-in shims into an existing Betty repository.

It writes ``skills/telemetry.capture/telemetry_capture.py`` and ``telemetry_utils.py``,
thin shims over `betty_otel.dropin`, so every skill that imports the original
telemetry.capture skill, or runs its script from a shell, writes through betty_otel
without an edit; and ``betty_otel_fallback.py`` beside them (`betty_otel.dropin_fallback`),
for skills run by an interpreter that cannot import betty_otel. The shims record the
installing interpreter (the one that has betty_otel): its path, its import paths and
its extension ABI, which the fallback uses. A file already there is never overwritten:
it is renamed first to ``<name>.orig-<UTC time>`` beside the new one (a file already
up to date is left alone).
"""

from __future__ import annotations

import argparse
import os
import site
import sys
import sysconfig
from pathlib import Path
from typing import Final, NamedTuple

import betty_otel
from betty_otel import dropin_fallback
from betty_otel._store import betty_root, resolve_path
from betty_otel._store.files import aside_path
from betty_otel.cli.parser import CommandError
from betty_otel.cli.terminal import out

__all__ = ["FALLBACK", "SKILL_DIR", "Installed", "cmd_install_skill", "install_skill"]

SKILL_DIR: Final = Path("skills") / "telemetry.capture"
"""Where a Betty repository keeps the telemetry.capture skill."""

FALLBACK: Final = "betty_otel_fallback.py"
"""The name of `betty_otel.dropin_fallback`'s copy beside the shims."""

_HEADER: Final = '''#!{python}
"""Betty's telemetry.capture skill as a drop-in over betty_otel {version}.

Written by `betty-telemetry install-skill`; a file it replaced is saved beside it
as {name}.orig-<UTC time>. Code written for the original skill runs unchanged
and writes through betty_otel: the locked, append-only registry/telemetry.json
of this repository (BETTY_HOME defaults to it), and OpenTelemetry spans when
a collector is configured. Run by an interpreter that cannot import betty_otel,
it uses the installing interpreter's ({fallback} beside it says how); failing
that, the skill runs unchanged without telemetry, with one warning.
"""

import os
import sys
from pathlib import Path

# The interpreter that installed this (it has betty_otel), where it imports betty_otel
# and its packages from, and its extension ABI (an interpreter with the same ABI can
# import them too).
INSTALLED = {{
    "python": {python!r},
    "paths": {paths!r},
    "abi": {abi!r},
}}

os.environ.setdefault("BETTY_HOME", str(Path(__file__).resolve().parents[2])){file}
try:
    from betty_otel.dropin import {names}
except Exception:  # missing or broken for this interpreter: never the skill's failure
    import importlib.util

    _NAME, _HERE = "betty_otel_fallback", Path(__file__).resolve().parent
    if _NAME not in sys.modules:
        _SPEC = importlib.util.spec_from_file_location(_NAME, _HERE / {fallback!r})
        sys.modules[_NAME] = importlib.util.module_from_spec(_SPEC)
        _SPEC.loader.exec_module(sys.modules[_NAME])
    _DROPIN = sys.modules[_NAME].dropin(INSTALLED, __file__ if __name__ == "__main__" else None)
{assign}
'''

_FILE_LINE: Final = '\nos.environ.setdefault("BETTY_TELEMETRY_FILE", {file!r})'
"""With --file: the log the skills write unless $BETTY_TELEMETRY_FILE says otherwise."""

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
        abi=sysconfig.get_config_var("SOABI"),
        fallback=FALLBACK,
        file="" if telemetry_file is None else _FILE_LINE.format(file=str(telemetry_file)),
        assign="\n".join(f"    {each} = _DROPIN.{each}" for each in names.split(", ")),
    )
    return header + body


def install_skill(repo: Path, telemetry_file: Path | None = None) -> list[Installed]:
    """Write the shims and the fallback into repo's skills/telemetry.capture, saving
    what is there first; telemetry_file: the log the skills write (default: the
    repository's registry/telemetry.json, or $BETTY_TELEMETRY_FILE when set).

    Raises:
        OSError: a folder or file could not be created or renamed (nothing is overwritten).
    """
    folder = repo / SKILL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    texts = {name: shim_text(name, telemetry_file).encode() for name in SHIMS}
    texts[FALLBACK] = Path(dropin_fallback.__file__).read_bytes()
    done = []
    for name, text in texts.items():
        path = folder / name
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

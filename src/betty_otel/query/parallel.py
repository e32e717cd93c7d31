"""Reading one large file on two CPUs: a helper process reads its last parts.

A whole read of a large file (stats without a summary, the report) is split at line starts
into parts. This process reads the parts forward from the first; a helper
process reads them backward from the last and hands each result over through a
private temporary file. This process stops where the helper's finished parts
begin, so the two meet wherever their speeds bring them, and nothing ever waits
on the helper: one that fails to start, dies, stalls, deadlocks or writes garbage
only means that this process reads more itself. The helper is always killed and
reaped before the read returns or raises.

The helper is forked (no start-up cost) on Linux while no other thread runs;
with threads (a forked child could find their locks held forever) or elsewhere,
it is a new interpreter running `betty_otel.query.worker` (about 0.1 s of imports
to start, more without compiled ``.pyc`` files), when `sys.executable` is a Python
interpreter (not a frozen or embedding program). That interpreter gets this process's
``sys.path``, so it imports the same betty_otel whatever ``PYTHONSAFEPATH``, ``-P``,
``-I`` or a relative ``PYTHONPATH`` say. Which way a helper ran, how many parts it
did, or why a large file was read without one, is logged at debug level.

A helper's part is used only when the read reaching it was at a seam
(`ForwardParser.at_seam`: between elements, nothing pending, no indented layout
learnt) and the part itself ends at one (or is the last): then the helper's
parser, started inside the array at the part's first line (always a whole entry
line), reads exactly as one parser reading the whole file would. Anything else
(the old tools' indented layout, damage across a split) is read here, so results,
damage reports and the summary written are the same as a read by one process.

Settings: ``BETTY_OTEL_STATS_PARALLEL=0`` turns the helper off, ``=spawn`` never
forks. ``BETTY_OTEL_STATS_PARALLEL_BYTES`` is the smallest file read with a helper
(default 32 MiB, about 0.2 s of reading: below that, starting and merging do not
pay back). Only when this process may run on two CPUs (`os.sched_getaffinity`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import orjson

from betty_otel._jsontext import JSONDecodeError
from betty_otel._store import parse_entry_line
from betty_otel._store.format import is_entry_line
from betty_otel.query.children import fork_child, reap, stop_child

if TYPE_CHECKING:
    import subprocess

__all__ = [
    "ENV_MIN_BYTES",
    "ENV_PARALLEL",
    "Helper",
    "Work",
    "min_bytes",
    "plan",
    "serve",
    "spawn_arguments",
    "split_points",
    "start_method",
    "worker_command",
]

logger = logging.getLogger(__name__)

ENV_PARALLEL: Final = "BETTY_OTEL_STATS_PARALLEL"
"""``0`` (or off, false, no): read every file in this process; ``spawn``: never fork."""
ENV_MIN_BYTES: Final = "BETTY_OTEL_STATS_PARALLEL_BYTES"
"""The smallest file read with a helper, in bytes."""
_MIN_BYTES: Final = 32 << 20
_MAX_PARTS: Final = 32
"""Parts per file: 8 per threshold's worth of bytes (4 MiB at the default), at most 32."""
_LINE_LOOKUP: Final = 1 << 16
_OFF: Final = frozenset({"0", "off", "false", "no"})
_PYTHON: Final = re.compile(r"(python|pypy)[0-9.]*(\.exe)?", re.IGNORECASE)


def _setting() -> str | None:
    """``fork`` or ``spawn`` (the ways a helper may start), or None when turned off."""
    value = os.environ.get(ENV_PARALLEL, "").strip().lower()
    if value in _OFF:
        return None
    return "spawn" if value == "spawn" else "fork"


def min_bytes() -> int:
    """The smallest file (or summarised prefix, `betty_otel.query.proof`) given to a helper."""
    text = os.environ.get(ENV_MIN_BYTES, "").strip()
    try:
        return max(0, int(text)) if text else _MIN_BYTES
    except ValueError:
        logger.warning("betty_otel: %s=%r is not a number of bytes; ignored", ENV_MIN_BYTES, text)
        return _MIN_BYTES


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def start_method() -> str | None:
    """How a helper starts here: ``fork``, ``spawn`` (a new interpreter), or None (no helper).

    Fork (no start-up cost) only on Linux and while no other thread runs, Python's or
    native (a thread's locks would be held forever in the child); else a new interpreter, when
    `sys.executable` is one (not a frozen or embedding program).
    """
    setting = _setting()
    if setting is None or os.name != "posix":
        return None
    if setting == "fork" and sys.platform.startswith("linux") and _threads() == 1:
        return "fork"
    return "spawn" if worker_command() is not None else None


def _threads() -> int:
    """Threads of this process: Python's, and native ones (an extension's) that Linux lists."""
    try:
        native = sum(1 for _ in Path("/proc/self/task").iterdir())
    except OSError:
        native = 1
    return max(threading.active_count(), native)


def worker_command() -> list[str] | None:
    """The command that starts a new-interpreter helper; None when there is none.

    ``-I``: the helper's ``sys.path`` is not what the environment or its working folder
    say (``PYTHONSAFEPATH``, ``PYTHONPATH`` relative to another folder...) but this
    process's own, handed over (`spawn_arguments`), so it imports the very betty_otel
    and orjson this process runs.
    """
    executable = sys.executable
    if getattr(sys, "frozen", False) or not executable:
        return None
    if not _PYTHON.fullmatch(Path(executable).name):
        return None
    return [executable, "-I", "-c", _BOOTSTRAP]


_BOOTSTRAP: Final = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[2]); "
    "from betty_otel.query.worker import main; main(sys.argv[1])"
)
"""The helper's first lines: this process's sys.path (its second argument), then the worker."""


def spawn_arguments(arguments: dict[str, Any]) -> list[str]:
    """What follows `worker_command`: arguments (JSON), then this process's sys.path (JSON)."""
    path = [entry for entry in sys.path if isinstance(entry, str)]
    return [orjson.dumps(arguments).decode(), orjson.dumps(path).decode()]


def split_points(fd: int, size: int, parts: int) -> list[int]:
    """0, the starts of up to parts - 1 whole entry lines spread over the file, size.

    Each point starts a line that is one whole canonical entry (a line a parser reads
    the same way in any state at a seam); a region without one gets no point.
    """
    points = [0]
    for k in range(1, parts):
        target = max(size * k // parts, points[-1] + 1)
        point = _entry_line_at(fd, target, size)
        if point is not None and points[-1] < point < size:
            points.append(point)
    points.append(size)
    return points


def _entry_line_at(fd: int, target: int, size: int) -> int | None:
    """The start of the first whole entry line starting at or after target (within 64 KiB)."""
    base = target - 1
    data = os.pread(fd, min(_LINE_LOOKUP, size - base), base)
    newline = data.find(b"\n")
    while newline >= 0:
        following = data.find(b"\n", newline + 1)
        if following < 0:
            return None
        body = data[newline + 1 : following].rstrip(b"\r")
        if is_entry_line(body) and _one_value(body):
            return base + newline + 1
        newline = following
    return None


def _one_value(line: bytes) -> bool:
    """True when an entry line is one JSON value: any parser state at a seam reads it alone."""
    with contextlib.suppress(JSONDecodeError):
        parse_entry_line(line)
        return True
    return False


Work = Callable[[int, int], None]
"""What a forked helper runs: work(output descriptor, notes descriptor)."""


class Helper:
    """A helper process reading parts [points[k], points[k + 1]) from the last one down.

    Its results go to a private temporary file; a line ``k`` on its notes pipe says
    part k is complete there. `ready` and `results` never wait for it. Use as a
    context manager: on leaving, the helper is killed and reaped. Forked, it runs
    work; decode reads back the bytes it wrote for one part (`serve`). spawn, when
    given, is what `betty_otel.query.worker` (stats's reader in a new interpreter)
    gets: options and filters; without it, a helper is only forked.
    """

    def __init__(
        self,
        fd: int,
        points: list[int],
        work: Work,
        decode: Callable[[bytes], Any],
        *,
        spawn: tuple[dict[str, Any], Any] | None = None,
    ) -> None:
        # Imported here: only a large read needs them; `import betty_otel.query` (the
        # CLI's reading commands) stays as quick as before.
        import tempfile  # noqa: PLC0415

        self.points = points
        self.done = len(points) - 1
        """The lowest part index such that this part and all after it are complete."""
        self.pid = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.notes_fd = -1
        self.notes = b""
        self.output: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.decode = decode
        self.method = start_method()
        if spawn is None and self.method == "spawn":
            self.method = None
        try:
            if self.method == "fork":
                output = self.output.fileno()
                self.pid, self.notes_fd = fork_child(lambda notes: work(output, notes))
                os.set_blocking(self.notes_fd, False)
            elif self.method == "spawn" and spawn is not None:
                self._spawn(fd, {**spawn[0], "points": points}, spawn[1])
            if self.method is not None:
                logger.debug("stats helper started (%s) for %d parts", self.method, len(points) - 2)
        except (OSError, ValueError) as exc:
            logger.debug("stats helper not started (%s: %s)", self.method, exc)
            self.method = None
        except BaseException:  # Ctrl-C while starting it: no helper left behind
            self.close()
            raise

    def _spawn(self, fd: int, options: dict[str, Any], filters: Any) -> None:
        import pickle  # noqa: PLC0415
        import subprocess  # noqa: PLC0415

        command = worker_command()
        assert command is not None
        arguments = {**options, "fd": fd, "out": self.output.fileno()}
        self.process = subprocess.Popen(
            [*command, *spawn_arguments(arguments)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            pass_fds=(fd, self.output.fileno()),
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.notes_fd = self.process.stdout.fileno()
        os.set_blocking(self.notes_fd, False)
        self.process.stdin.write(pickle.dumps(filters))
        self.process.stdin.close()

    def __enter__(self) -> Helper:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ready(self, index: int) -> bool:
        """True when the helper has completed part index and every part after it."""
        if self.done > index:
            self._read_notes()
        return self.done <= index

    def _read_notes(self) -> None:
        """Take the part numbers the helper has written so far (never waits)."""
        if self.notes_fd < 0:
            return
        with contextlib.suppress(OSError):  # BlockingIOError: nothing new
            self.notes += os.read(self.notes_fd, 1 << 16)
        lines = self.notes.split(b"\n")
        for line in lines[:-1]:
            if line.strip().isdigit() and int(line) == self.done - 1:
                self.done -= 1
        self.notes = lines[-1]

    def results(self, index: int) -> list[Any]:
        """The results of parts index and after (None where one cannot be read back)."""
        found: dict[int, Any] = {}
        offset = 0
        for _ in range(len(self.points) - 1 - self.done):
            try:
                length = int.from_bytes(os.pread(self.output.fileno(), 8, offset), "big")
                data = os.pread(self.output.fileno(), length, offset + 8)
                part = self.decode(data)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                logger.debug("stats helper result unreadable (%s)", exc)
                break
            found[part.index] = part
            offset += 8 + length
        return [found.get(k) for k in range(index, len(self.points) - 1)]

    def close(self) -> None:
        """Kill and reap the helper (whatever it is doing), and drop its results."""
        ended = None
        try:
            self._read_notes()
            if self.process is not None:
                ended = self.process.poll()
                self.process.kill()
                reap(self.process.poll)
            elif self.pid > 0:
                ended = stop_child(self.pid)
        except OSError as exc:
            logger.warning("betty_otel: stats helper not stopped (%s)", exc)
        finally:
            if self.process is not None:
                assert self.process.stdout is not None
                self.process.stdout.close()
            elif self.notes_fd >= 0:
                os.close(self.notes_fd)
            if self.method is not None:
                logger.debug(
                    "stats helper (%s): %d of %d parts done%s", self.method,
                    len(self.points) - 1 - self.done, len(self.points) - 2,
                    f"; it had failed with status {ended}" if ended else "",
                )  # fmt: skip
            self.method = None
            self.process = None
            self.pid = 0
            self.notes_fd = -1
            self.output.close()


def serve(points: list[int], part: Callable[[int], bytes], out: int, notes: int) -> None:
    """What a helper does: the parts from the last down to part 1, each one's bytes
    (part(index)) written to out after their length, then its index and a newline to
    notes; stop when the parent is gone (nobody would read the rest). It runs at the
    caller's priority, as a thread of the caller would."""
    parent = os.getppid()
    for index in range(len(points) - 2, 0, -1):
        data = part(index)
        view = memoryview(len(data).to_bytes(8, "big") + data)
        while view:
            view = view[os.write(out, view) :]
        os.write(notes, b"%d\n" % index)
        if os.getppid() != parent:
            return


def plan(fd: int, size: int, start: int) -> list[int] | None:
    """The split points for reading a file with a helper; None to read it here alone.

    A whole read large enough for a helper that goes without one says why (debug level).
    """
    if start != 0 or size < max(min_bytes(), 2):
        return None
    alone = _why_alone()
    if alone is not None:
        logger.debug("stats: %d bytes read without a helper (%s)", size, alone)
        return None
    parts = max(2, min(_MAX_PARTS, size * 8 // max(min_bytes(), 1)))
    points = split_points(fd, size, parts)
    return points if len(points) > 2 else None


def _why_alone() -> str | None:
    """Why no helper can run here, or None when one can."""
    if _cpus() < 2:
        return "this process may use one CPU only"
    if _setting() is None:
        return f"{ENV_PARALLEL}={os.environ.get(ENV_PARALLEL)}"
    if start_method() is None:
        return "no Python interpreter to start (a frozen or embedding program), and no fork"
    return None

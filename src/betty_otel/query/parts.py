"""Reading one large file on two CPUs: a helper process tallies its last parts.

A whole read of a large file (stats without a summary) is split at line starts
into parts. This process reads the parts forward from the first; a helper
process (`betty_otel.query.worker`, a fresh interpreter: no fork, so threads of
the host program are safe) reads them backward from the last and hands each
result over. This process stops where the helper's finished parts begin, so the
two meet wherever their speeds bring them and nothing waits on the helper: a
helper that fails to start, dies, stalls or writes garbage only means that this
process reads more itself. The helper is always killed and reaped before the read
returns or raises.

A helper's part is used only when the read reaching it was at a seam
(`ForwardParser.at_seam`: between elements, nothing pending, no indented layout
learnt) and the part itself ends at one (or is the last): then the helper's
parser, started inside the array at the part's first line (always a whole entry
line), reads exactly as one parser reading the whole file would. Anything else
(the old tools' indented layout, damage across a split) is read here, so results,
damage reports and the summary written are the same as a read by one process.

``BETTY_OTEL_STATS_PARALLEL=0`` turns the helper off; it is used only for files of
at least ``BETTY_OTEL_STATS_PARALLEL_BYTES`` (default 32 MiB: below that, its start
(an interpreter and the query modules, about 0.1 s) does not pay back), at the
start of the file, when this process may run on two CPUs (`os.sched_getaffinity`)
and `sys.executable` is a Python interpreter (not a frozen or embedding program).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson

from betty_otel._store import Damage, parse_entry_line
from betty_otel._store.format import is_entry_line
from betty_otel.query.groups import Group

__all__ = [
    "ENV_MIN_BYTES",
    "ENV_PARALLEL",
    "Helper",
    "PartResult",
    "decode_part",
    "encode_part",
    "plan",
    "split_points",
    "worker_command",
]

logger = logging.getLogger(__name__)

ENV_PARALLEL: Final = "BETTY_OTEL_STATS_PARALLEL"
"""``0`` (or off, false, no): read every file in this process."""
ENV_MIN_BYTES: Final = "BETTY_OTEL_STATS_PARALLEL_BYTES"
"""The smallest file read with a helper, in bytes."""
_MIN_BYTES: Final = 32 << 20
_MAX_PARTS: Final = 64
"""Parts per file: 8 per threshold's worth of bytes (4 MiB at the default), at most 64."""
_LINE_LOOKUP: Final = 1 << 16
_REAP_SECONDS: Final = 10.0
"""How long to wait for a killed helper to be reaped (a bound, never reached in practice)."""
_OFF: Final = frozenset({"0", "off", "false", "no"})
_PYTHON: Final = re.compile(r"(python|pypy)[0-9.]*(\.exe)?", re.IGNORECASE)


@dataclass
class PartResult:
    """What a helper found in one part: groups by (key, status), damage, where it ended.

    seam: the part ends between elements with nothing pending (`ForwardParser.at_seam`).
    pieces, tail and trail are for the stats summary's windows (`summary.Capture`):
    the window bytes read, the bytes before the part's last complete element, and
    the part's last bytes.
    """

    index: int
    groups: dict[tuple[str | None, str | None], Group]
    plain: bool
    damage: list[Damage]
    end: int
    seam: bool
    pieces: list[tuple[int, bytes]] = field(default_factory=list)
    tail: bytes = b""
    trail: tuple[int, bytes] = (0, b"")


def encode_part(part: PartResult) -> bytes:
    """A part as bytes: a JSON header, then the durations (doubles), then the captured bytes."""
    blob = bytearray()
    groups = []
    for (key, status), group in part.groups.items():
        groups.append([key, status, group.count, group.statuses, len(group.durations)])
        blob += group.durations.tobytes()
    captured = [*(data for _, data in part.pieces), part.tail, part.trail[1]]
    header = orjson.dumps(
        {
            "index": part.index,
            "groups": groups,
            "plain": part.plain,
            "damage": [[d.offset, d.length, d.reason] for d in part.damage],
            "end": part.end,
            "seam": part.seam,
            "pieces": [[offset, len(data)] for offset, data in part.pieces],
            "tail": len(part.tail),
            "trail": [part.trail[0], len(part.trail[1])],
            "order": sys.byteorder,
        }
    )
    body = len(header).to_bytes(4, "big") + header + bytes(blob) + b"".join(captured)
    return len(body).to_bytes(8, "big") + body


def decode_part(data: bytes) -> PartResult:
    """The part encode_part wrote (raises ValueError, TypeError or KeyError when it is not one)."""
    length = int.from_bytes(data[:4], "big")
    head = orjson.loads(data[4 : 4 + length])
    if head["order"] != sys.byteorder:
        raise ValueError("byte order")
    view = memoryview(data)[4 + length :]
    groups: dict[tuple[str | None, str | None], Group] = {}
    for key, status, count, statuses, numeric in head["groups"]:
        group = Group(count, dict(statuses))
        group.durations.frombytes(view[: numeric * 8])
        view = view[numeric * 8 :]
        groups[key, status] = group
    pieces = []
    for offset, size in head["pieces"]:
        pieces.append((offset, bytes(view[:size])))
        view = view[size:]
    tail, view = bytes(view[: head["tail"]]), view[head["tail"] :]
    trail_end, trail_size = head["trail"]
    if len(view) != trail_size:
        raise ValueError("length")
    damage = [Damage(offset, size, reason) for offset, size, reason in head["damage"]]
    return PartResult(
        head["index"], groups, head["plain"], damage, head["end"], head["seam"],
        pieces, tail, (trail_end, bytes(view)),
    )  # fmt: skip


def _min_bytes() -> int | None:
    """The threshold from the environment; None when the helper is turned off."""
    if os.environ.get(ENV_PARALLEL, "").strip().lower() in _OFF:
        return None
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


def worker_command() -> list[str] | None:
    """The command that starts a helper; None when this interpreter cannot start one."""
    executable = sys.executable
    if (
        os.name != "posix"
        or getattr(sys, "frozen", False)
        or not executable
        or not _PYTHON.fullmatch(Path(executable).name)
    ):
        return None
    return [executable, "-m", "betty_otel.query.worker"]


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
        if is_entry_line(body):
            try:
                parse_entry_line(body)
            except orjson.JSONDecodeError:
                pass
            else:
                return base + newline + 1
        newline = following
    return None


class Helper:
    """A helper process reading parts [points[k], points[k + 1]) from the last one down.

    Its results go to a private temporary file; a line ``k`` on its standard output
    says part k is complete there. `ready` and `results` never wait for it. Use as a
    context manager: on leaving, the helper is killed and reaped.
    """

    def __init__(self, fd: int, points: list[int], options: dict[str, Any], filters: Any) -> None:
        self.points = points
        self.done = len(points) - 1
        """The lowest part index such that this part and all after it are complete."""
        self.process: subprocess.Popen[bytes] | None = None
        self.output: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.notes = b""
        command = worker_command()
        if command is None:
            return
        arguments = {**options, "fd": fd, "out": self.output.fileno(), "points": points}
        package = Path(__file__).resolve().parents[2]  # the folder that holds betty_otel
        try:
            self.process = subprocess.Popen(
                [*command, orjson.dumps(arguments).decode()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                pass_fds=(fd, self.output.fileno()),
                cwd=package,  # -m puts the working folder first on sys.path: ours, not the caller's
            )
            assert self.process.stdin is not None
            assert self.process.stdout is not None
            os.set_blocking(self.process.stdout.fileno(), False)
            self.process.stdin.write(pickle.dumps(filters))
            self.process.stdin.close()
        except (OSError, ValueError) as exc:
            logger.debug("stats helper not started (%s)", exc)

    def __enter__(self) -> Helper:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ready(self, index: int) -> bool:
        """True when the helper has completed part index and every part after it."""
        if self.process is not None and self.done > index:
            assert self.process.stdout is not None
            with contextlib.suppress(BlockingIOError, OSError):
                self.notes += os.read(self.process.stdout.fileno(), 1 << 16)
            lines = self.notes.split(b"\n")
            for line in lines[:-1]:
                if line.strip().isdigit() and int(line) == self.done - 1:
                    self.done -= 1
            self.notes = lines[-1]
        return self.done <= index

    def results(self, index: int) -> list[PartResult | None]:
        """The results of parts index and after (None where one cannot be read back)."""
        found: dict[int, PartResult] = {}
        offset = 0
        for _ in range(len(self.points) - 1 - self.done):
            try:
                length = int.from_bytes(os.pread(self.output.fileno(), 8, offset), "big")
                part = decode_part(os.pread(self.output.fileno(), length, offset + 8))
            except (OSError, ValueError, TypeError, KeyError) as exc:
                logger.debug("stats helper result unreadable (%s)", exc)
                break
            found[part.index] = part
            offset += 8 + length
        return [found.get(k) for k in range(index, len(self.points) - 1)]

    def close(self) -> None:
        """Kill and reap the helper (whatever it is doing), and drop its results."""
        process, self.process = self.process, None
        try:
            if process is not None:
                process.kill()
                assert process.stdout is not None
                process.stdout.close()
                try:
                    process.wait(_REAP_SECONDS)
                except subprocess.TimeoutExpired:
                    logger.warning("betty_otel: stats helper %d not reaped", process.pid)
        finally:
            self.output.close()


def plan(fd: int, size: int, start: int) -> list[int] | None:
    """The split points for reading a file with a helper; None to read it here alone."""
    least = _min_bytes()
    if least is None or start != 0 or size < max(least, 2) or _cpus() < 2:
        return None
    if worker_command() is None:
        return None
    parts = max(2, min(_MAX_PARTS, size * 8 // max(least, 1)))
    points = split_points(fd, size, parts)
    return points if len(points) > 2 else None

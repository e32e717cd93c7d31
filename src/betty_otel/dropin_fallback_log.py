"""The drop-in fallback's last resort: the log read and appended to with the standard library.

Part of `betty_otel.dropin_fallback` (copied beside the shims with it; standard library
only, Python 3.6 syntax), used when betty_otel cannot be run at all. It keeps the
file's contract as betty_otel's writer does (DESIGN.md, "The file"):

- under ``flock(LOCK_EX)`` on the file itself, the path still naming the locked file;
- appended at the closing bracket, never rewritten, in the canonical layout (``[``, one
  compact entry a line joined by ``,\\n``, then ``\\n]\\n``); a missing log is put in
  place whole (a complete private file linked to the path), mode 0600;
- betty_otel's own end (an entry line or the empty array, then ``\\n]\\n``) is whole
  when seen under the lock. Any other end may be an old writer's dump whose last bytes
  land after it unlocks: it is appended to only once it has stayed the same for
  GRACE seconds and the whole file parses as an array (an empty file then gets a new
  array); never cut, never moved.

Only betty_otel redacts secrets, so `plain_entry` leaves out what may hold one: inputs
and metadata are empty, an error text reads ``(withheld)``, and ``metadata.withheld``
names what was left out. Its checks and messages are betty_otel's (the five statuses,
a non-empty skill and caller, a finite duration >= 0).
"""

import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "GRACE",
    "LOCK_TIMEOUT",
    "STATUSES",
    "append_entry",
    "invalid_status",
    "log_path",
    "plain_entry",
    "query_entries",
]

STATUSES = ("success", "failure", "timeout", "error", "pending")
"""The original skill's statuses, in its message's order (as `betty_otel._entry`'s)."""
GRACE = 0.5
"""Seconds an end that is not betty_otel's own layout must stay the same before an append."""
LOCK_TIMEOUT = 10.0
"""Seconds to wait for the lock and a settled end (betty_otel's default lock_timeout)."""
_WHITESPACE = b" \t\r\n"


def log_path(given: Any, repository: "dict[str, Any]") -> Path:
    """The log: given, else $BETTY_TELEMETRY_FILE, else the shim's --file (``file`` of
    repository), else registry/telemetry.json under $BETTY_HOME or the shim's repository
    (``home``); absolute. The log of both paths, the helper's and this module's."""
    chosen = os.fspath(given) if given is not None else ""
    if not chosen:
        chosen = os.environ.get("BETTY_TELEMETRY_FILE") or repository.get("file") or ""
    if not chosen:
        home = os.environ.get("BETTY_HOME") or repository.get("home") or "."
        chosen = os.path.join(home, "registry", "telemetry.json")
    return Path(os.path.abspath(chosen))


def invalid_status(status: Any) -> ValueError:
    """The original skill's error for a status that is not one of the five."""
    return ValueError(f"Invalid status: {status}. Must be one of: {', '.join(STATUSES)}")


def plain_entry(fields: "dict[str, Any]", text: bool) -> "dict[str, Any]":
    """The entry of one execution (capture's arguments in fields), checked; what may hold a
    secret left out. text: duration_ms is command-line text.

    Raises:
        ValueError, TypeError: an argument, as betty_otel checks it.
    """
    status = fields["status"]
    if status not in STATUSES:
        raise invalid_status(status)
    for name in ("skill", "caller"):
        if not isinstance(fields[name], str) or not fields[name].strip():
            raise ValueError(f"{name} must be a non-empty string, got {fields[name]!r}")
    withheld = [name for name in ("inputs", "error_message", "metadata") if fields.get(name)]
    ids = [0, 0]
    while not all(ids):  # random and never zero, as OpenTelemetry makes them
        ids = [int.from_bytes(os.urandom(size), "big") for size in (16, 8)]
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "skill": fields["skill"],
        "status": status,
        "duration_ms": _duration(fields["duration_ms"], text),
        "caller": fields["caller"],
        "inputs": {},
        "error_message": None if fields.get("error_message") is None else "(withheld)",
        "metadata": {"withheld": withheld} if withheld else {},
        "trace_id": f"{ids[0]:032x}",
        "span_id": f"{ids[1]:016x}",
        "parent_span_id": None,
    }


def _duration(value: Any, text: bool) -> float:
    """value as a finite float >= 0, with betty_otel's messages."""
    if text:
        try:
            number = float(str(value))
        except ValueError:
            raise ValueError(f"Invalid duration_ms: {value!r} is not a number") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"duration_ms must be a number, got {type(value).__name__}")
    else:
        try:
            number = float(value)
        except OverflowError:
            number = float("inf")
    if not 0 <= number < float("inf"):
        if text:
            raise ValueError(f"Invalid duration_ms: {value!r} must be a finite number >= 0")
        raise ValueError(f"duration_ms must be a finite number >= 0, got {value!r}")
    return number


def append_entry(path: str, entry: "dict[str, Any]", timeout: float = LOCK_TIMEOUT) -> None:
    """Append entry to the log at path, keeping the file's contract (see the module).

    Raises:
        OSError: not written: the lock or a settled end not had within timeout, a file
            that is not a JSON array (left as it is), a symbolic link, no permission.
    """
    line = json.dumps(entry, separators=(",", ":")).encode("ascii")
    deadline = time.monotonic() + timeout
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    import fcntl  # noqa: PLC0415 - only where a file is written (the fallback's last resort)

    while True:
        if not os.path.lexists(path) and _create(path, b"[\n" + line + b"\n]\n"):
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # moved away (rotated) since: put a new one in place
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        msg = f"{path}: its lock was not had in {timeout:g} s"
                        raise OSError(msg) from None
                    time.sleep(0.01)
            if _names(path, fd):
                _append_locked(path, fd, line, deadline)
                return
        finally:
            os.close(fd)  # unlocks


def _create(path: str, data: bytes) -> bool:
    """Put a whole new log at path (a link to a complete private file); False if one is there."""
    name = f".{os.path.basename(path)}.{os.getpid()}-{threading.get_ident()}.new"
    temporary = os.path.join(os.path.dirname(path), name)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        _write_at(fd, data, 0)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    return True


def _names(path: str, fd: int) -> bool:
    """True when path still names the file open as fd."""
    try:
        there = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino)


def _append_locked(path: str, fd: int, line: bytes, deadline: float) -> None:
    """Append line at the array's end once that end is known to be whole."""
    while True:
        held = os.fstat(fd)
        found = _insertion(fd, held.st_size, time.time() - held.st_ctime >= GRACE)
        if found is not None:
            offset, separator = found
            data = separator + line + b"\n]\n"
            _write_at(fd, data, offset)
            os.ftruncate(fd, offset + len(data))
            return
        if time.monotonic() >= deadline:
            msg = f"{path}: its end kept changing (a write still landing?); left as it is"
            raise OSError(msg)
        time.sleep(0.05)


def _insertion(fd: int, size: int, settled: bool) -> "tuple[int, bytes] | None":
    """(offset, separator) where the new line goes; None while the end may still change.

    Raises:
        OSError: a settled file that is not a JSON array.
    """
    start = max(0, size - (1 << 16))
    tail = _read_at(fd, start, size)
    if start == 0 and tail.lstrip(b"\xef\xbb\xbf") == b"[\n]\n":
        return size - 3, b"\n"
    if tail.endswith(b"}\n]\n"):
        body = tail[:-3]
        newline = body.rfind(b"\n")  # the last entry line starts after it, whole in the tail
        if (
            newline >= 0
            and body[newline + 1 : newline + 2] == b"{"
            and _is_object(body[newline + 1 :])
        ):
            return size - 3, b",\n"
    if not settled:
        return None
    if size == 0:  # no data at all (what an interrupted creator leaves): a new array
        return 0, b"[\n"
    whole = _read_at(fd, 0, size)
    try:
        array = json.loads(whole.decode("utf-8-sig"))
    except ValueError:
        array = None
    if not isinstance(array, list):
        raise OSError("the log is not a JSON array; left as it is")
    before = whole.rstrip(_WHITESPACE)[:-1].rstrip(_WHITESPACE)
    return len(before), (b"\n" if before.endswith(b"[") else b",\n")


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line.decode("utf-8")), dict)
    except ValueError:
        return False


def _read_at(fd: int, start: int, end: int) -> bytes:
    os.lseek(fd, start, os.SEEK_SET)
    chunks = []
    left = end - start
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_at(fd: int, data: bytes, offset: int) -> None:
    os.lseek(fd, offset, os.SEEK_SET)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def query_entries(path: Path, skill: Any, status: Any, caller: Any, limit: Any) -> "list[Any]":
    """The log's entries whose skill, status and caller are the given ones (a text, or any
    of several; None: any), newest (recorded last) first, at most limit of them. A torn
    or damaged log gives its whole entry lines."""
    found = [
        entry
        for entry in reversed(_read_entries(path))
        if isinstance(entry, dict)
        and _matches(entry.get("skill"), skill)
        and _matches(entry.get("status"), status)
        and _matches(entry.get("caller"), caller)
    ]
    return found if limit is None else found[: max(0, int(limit))]


def _read_entries(path: Path) -> "list[Any]":
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        array = json.loads(data.decode("utf-8-sig"))
    except ValueError:
        array = None
    if isinstance(array, list):
        return array
    found = []
    for line in data.splitlines():
        element = line.rstrip(b"\r").rstrip(b",")
        if element.startswith(b"{") and _is_object(element):
            found.append(json.loads(element.decode("utf-8")))
    return found


def _matches(value: Any, wanted: Any) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return bool(value == wanted)
    return value in set(wanted)

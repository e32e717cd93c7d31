"""The record folder beside the log and the files in it: names, contents, safe access.

The records of ``registry/telemetry.json`` live in ``registry/telemetry.json.inflight/``
(mode 0700), one file per execution (mode 0600), never inside the log. A record holds
the entry the execution would make (status ``pending``), its start time and its owner
(`betty_otel._inflight.owner`); its modification time is the owner's last sign of life.
The name says the ids and the phase of the record:

- ``<trace_id>-<span_id>.json``: the execution is running (``.json.tmp`` while its
  record is being written: complete, it counts as the record);
- ``...ending-<mark>``: its owner is writing its entry;
- ``...reaping-<mark>``: a reaper is writing its abandoned entry.

``<mark>`` names the newest entry of the log when that phase began (16 hex digits of a
hash of the entry, ``none`` for an empty log): an entry written in that phase comes
after it (see `betty_otel._inflight.reaper`). Every access goes through a descriptor of
the folder opened without following a symbolic link, and every file is opened without
following one: nothing here is ever read or written through a link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, NamedTuple

from betty_otel._inflight.owner import Owner, owner_of
from betty_otel._jsontext import JSONDecodeError, dumps, loads
from betty_otel._store.files import pwrite_all

__all__ = [
    "FOLDER_SUFFIX",
    "MAX_RECORD_BYTES",
    "Record",
    "RecordError",
    "Unreadable",
    "encode_record",
    "folder_of",
    "open_folder",
    "open_record",
    "phase_name",
    "read_record",
    "read_records",
    "record_at",
    "record_name",
    "write_record",
]

FOLDER_SUFFIX: Final = ".inflight"
MAX_RECORD_BYTES: Final = 1 << 20
"""A bigger file is no record of ours (inputs and metadata are bounded well below this)."""
_FORMAT: Final = "betty_inflight"
_VERSION: Final = 1
_NAME: Final = re.compile(
    r"([0-9a-f]{32})-([0-9a-f]{16})\.(?:json(\.tmp)?|(ending|reaping)-([0-9a-f]{16}|none))"
)
_HEX16: Final = re.compile(r"[0-9a-f]{16}")
_LATEST_NS: Final = 253_402_214_400 * 1_000_000_000
"""9999-12-31T00:00:00Z: the latest time an entry's timestamp can hold (in any zone)."""
_FILE_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FOLDER_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


_Owners = dict[tuple[Any, ...], Owner | None]
"""The owners met so far while reading a folder, by their values (see owner_of)."""


class RecordError(OSError):
    """The record folder cannot be used (not a folder, a link, another user's ...)."""


class Record(NamedTuple):
    """One record as read from the folder."""

    name: str
    phase: str
    """``running`` (also a complete ``.tmp``), ``ending`` or ``reaping``."""
    mark: str | None
    """The newest entry of the log when the phase began (ending, reaping)."""
    owner: Owner
    start_ns: int
    last_seen_ns: int
    entry: dict[str, Any]
    """The entry the execution would make (status pending, timestamp its start; its keys
    in any order: readers put them in ENTRY_KEYS order)."""

    @property
    def key(self) -> str:
        """``<trace_id>-<span_id>``: one execution, whatever the phase."""
        return self.name[:49]


class Unreadable(NamedTuple):
    """A file of the folder that is no record betty_otel can use, and why."""

    name: str
    reason: str


def folder_of(log: Path) -> Path:
    """The record folder of a log: ``<log>.inflight`` beside it."""
    return log.parent / (log.name + FOLDER_SUFFIX)


def record_name(trace_id: str, span_id: str) -> str:
    """The name of a running execution's record."""
    return f"{trace_id}-{span_id}.json"


def phase_name(name: str, phase: str, mark: str) -> str:
    """The name of the record called name, in phase (``ending`` or ``reaping``) at mark."""
    return f"{name[:49]}.{phase}-{mark}"


def _private_parents(folder: Path) -> None:
    """Create the folder's missing ancestors, each 0700 (as the store creates the log's):
    ``mkdir(parents=True)`` would give them the umask's mode."""
    missing = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    for parent in reversed(missing[1:]):
        with contextlib.suppress(FileExistsError):
            parent.mkdir(mode=0o700)


def open_folder(folder: Path, *, create: bool) -> int:
    """A descriptor of the record folder, never through a symbolic link.

    With create, a missing folder (and its missing ancestors) is made 0700, and a
    folder of ours that others may read is made 0700.

    Raises:
        FileNotFoundError: no folder (without create).
        RecordError: the path is not a folder, is a symbolic link, or (with create)
            belongs to another user.
        OSError: the folder cannot be made or opened.
    """
    if create:
        _private_parents(folder)
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
    try:
        fd = os.open(folder, _FOLDER_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            msg = "not a folder (a file, a symbolic link or a FIFO)"
            raise RecordError(exc.errno, msg, str(folder)) from None
        raise
    try:
        info = os.fstat(fd)
        if create and info.st_uid != os.getuid():
            raise RecordError(errno.EPERM, "owned by another user", str(folder))
        if create and info.st_mode & 0o077:
            os.fchmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def encode_record(owner: Owner, start_ns: int, entry: dict[str, Any]) -> bytes:
    """A record's bytes."""
    record = {_FORMAT: _VERSION, "owner": owner.as_json(), "start_ns": start_ns, "entry": entry}
    return dumps(record)


def write_record(folder_fd: int, name: str, data: bytes, last_seen_ns: int) -> None:
    """Create the record name (0600) holding data, whole or not at all.

    It is written as ``<name>.tmp`` and renamed into place, so a reader never sees
    half a record.

    Raises:
        OSError: the record could not be written (nothing is left behind but, after a
            crash, a ``.tmp`` that readers take for the record once complete).
    """
    temporary = name + ".tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temporary, flags, 0o600, dir_fd=folder_fd)
    except FileExistsError:  # left by an attempt that failed: ours, by its name
        os.unlink(temporary, dir_fd=folder_fd)
        fd = os.open(temporary, flags, 0o600, dir_fd=folder_fd)
    try:
        try:
            pwrite_all(fd, data, 0)
            os.utime(fd, ns=(last_seen_ns, last_seen_ns))
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=folder_fd)
        raise


def open_record(folder_fd: int, name: str) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file name in the folder (never a link or a FIFO).

    Raises:
        FileNotFoundError: it is gone.
        RecordError: it is not a regular file.
    """
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=folder_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RecordError(exc.errno, "a symbolic link", name) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise RecordError(errno.EINVAL, "not a regular file", name)
    return fd, info


def _read_whole(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, MAX_RECORD_BYTES))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _entry_of(value: object, trace_id: str, span_id: str) -> dict[str, Any] | None:
    """The record's entry, or None when it is not one of these ids (or not an entry)."""
    if not isinstance(value, dict):
        return None
    skill, caller, parent = value.get("skill"), value.get("caller"), value.get("parent_span_id")
    if not (isinstance(skill, str) and skill and isinstance(caller, str)):
        return None
    if value.get("trace_id") != trace_id or value.get("span_id") != span_id:
        return None
    if parent is not None and not (isinstance(parent, str) and _HEX16.fullmatch(parent)):
        return None
    if not (isinstance(value.get("inputs"), dict) and isinstance(value.get("metadata"), dict)):
        return None
    return value


def _decode(name: str, data: bytes, mtime_ns: int, owners: _Owners) -> Record | str:
    """The record of a file's bytes, or why they are none."""
    match = _NAME.fullmatch(name)
    if match is None:
        return "not a record's name"
    trace_id, span_id, temporary, phase, mark = match.groups()
    try:
        value = loads(data)
    except JSONDecodeError:
        return "incomplete" if temporary else "not JSON"
    if not isinstance(value, dict) or value.get(_FORMAT) != _VERSION:
        return "not a record of this version"
    owner = owner_of(value.get("owner"), owners)
    start = value.get("start_ns")
    entry = _entry_of(value.get("entry"), trace_id, span_id)
    if owner is None or entry is None or not isinstance(start, int) or isinstance(start, bool):
        return "not a valid record (owner, start or entry)"
    if not 0 <= start <= _LATEST_NS:
        return "not a valid record (a start time no clock gives)"
    # A clock set back, or a hostile time: last seen is never before the start, nor past
    # what a timestamp can say.
    seen = min(max(mtime_ns, start), _LATEST_NS)
    return Record(name, phase or "running", mark, owner, start, seen, entry)


def record_at(
    fd: int, name: str, info: os.stat_result, owners: _Owners | None = None
) -> Record | Unreadable:
    """The record in the open file fd (called name, with info its fstat), or why it is none.

    owners: the owners met so far (see `betty_otel._inflight.owner.owner_of`).
    """
    if info.st_size > MAX_RECORD_BYTES:
        return Unreadable(name, f"too large ({info.st_size:,} bytes)")
    try:
        data = _read_whole(fd, info.st_size)
    except OSError as exc:
        return Unreadable(name, exc.strerror or str(exc))
    decoded = _decode(name, data, info.st_mtime_ns, {} if owners is None else owners)
    return decoded if isinstance(decoded, Record) else Unreadable(name, decoded)


def read_record(
    folder_fd: int, name: str, owners: _Owners | None = None
) -> Record | Unreadable | None:
    """The record called name, why it is unreadable, or None when it is gone."""
    try:
        fd, info = open_record(folder_fd, name)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Unreadable(name, exc.strerror or str(exc))
    try:
        return record_at(fd, name, info, owners)
    finally:
        os.close(fd)


def _names(folder_fd: int) -> Iterator[str]:
    with os.scandir(folder_fd) as entries:
        for item in entries:
            yield item.name


def read_records(folder: Path) -> tuple[list[Record], list[Unreadable]]:
    """Every record in the folder, and every file there that is none (an incomplete
    ``.tmp`` is left out of both: it is being written, or was never finished).

    A missing folder holds nothing.

    Raises:
        RecordError, OSError: the folder cannot be read.
    """
    try:
        folder_fd = open_folder(folder, create=False)
    except FileNotFoundError:
        return [], []
    records: list[Record] = []
    unreadable: list[Unreadable] = []
    owners: _Owners = {}
    try:
        for name in _names(folder_fd):
            found = read_record(folder_fd, name, owners)
            if isinstance(found, Record):
                records.append(found)
            elif found is not None and found.reason != "incomplete":
                unreadable.append(found)
    finally:
        os.close(folder_fd)
    return records, unreadable

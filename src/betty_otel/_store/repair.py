"""Repairs under the writers' lock: a torn tail cut back, an empty file given an empty
array. Imported only when one is needed: an append to a sound file does not load this.

A torn tail (a writer killed mid-append) is cut back to the last complete element and
the array closed; the removed bytes are saved beside the file. Only a torn append after
an array of entries is cut (see `betty_otel._store.tail.is_torn_append`): for anything
else the caller moves the whole file aside. The caller also makes sure the tail is not
an old Betty writer's dump still landing (see `betty_otel._store.legacy`) before any cut.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from betty_otel._logs import logger
from betty_otel._store.files import aside_path, pwrite_all, write_private
from betty_otel._store.format import CLOSE, WHITESPACE
from betty_otel._store.lines import data_end, head_kind
from betty_otel._store.rotation import EMPTY_ARRAY
from betty_otel._store.tail import insertion_point, is_torn_append

__all__ = ["Cut", "cut_point", "cut_torn_tail", "fill_empty"]


class Cut(NamedTuple):
    """What a repair does to a file: cut it at `at`, write `closing` there."""

    at: int
    closing: bytes
    """The array's closing (``\n]\n``), or a newline after its bracket (already there)."""
    removed: bytes
    """The bytes from at to end, saved beside the file when they hold more than whitespace."""
    end: int
    """Where the data ends: the NULs after it (a crash's extension) are dropped unread."""


def cut_point(fd: int, size: int) -> Cut | None:
    """What a repair does to the file (size bytes), or None when the bytes after the last
    complete element are no torn append after an array of entries, nor follow the
    bracket of a closed one (the file must then be moved aside whole).

    `check` asks this too, so that what it advises is what a repair does.
    """
    # A NUL-filled tail (a crash extended the file, not its data) holds nothing to keep.
    end = data_end(fd, size)
    # The tolerant parser, only for a repair: an append does not import it.
    from betty_otel._store.parser import array_prefix  # noqa: PLC0415

    cut, entries = array_prefix(fd, end)
    removed = os.pread(fd, end - cut, cut)
    if entries and is_torn_append(removed):
        return Cut(cut, b"[" + CLOSE if cut == 0 else CLOSE, removed, end)
    # The array may close after a damaged last element (kept: damage, as in the middle);
    # then only what follows its bracket is cut (NULs, bytes added after it).
    closed = _array_end(fd, cut, removed) if entries else None
    return None if closed is None else Cut(closed, b"\n", removed[closed - cut :], end)


def cut_torn_tail(fd: int, path: Path, size: int, *, fsync: bool) -> int | None:
    """Cut the bytes after the last complete element (or after the array's bracket) and
    close the array; save what was cut beside the file.

    size is the file's size; the file must not end with a closed array. Returns the
    number of bytes removed, or None when the file must be moved aside whole (`cut_point`).
    """
    point = cut_point(fd, size)
    if point is None:
        return None
    cut, closing, removed, end = point
    if removed.strip(WHITESPACE):
        aside = aside_path(path, "torn")
        write_private(aside, removed)
        logger(__name__).warning(
            "repaired a torn tail of %s: removed %d bytes after %s (saved to %s)",
            path,
            len(removed),
            "the last complete entry" if closing != b"\n" else "the array's closing bracket",
            aside,
        )
    if end < size:
        logger(__name__).warning(
            "repaired %s: dropped %d NUL bytes at its end (a crash extended the file, "
            "not its data)",
            path,
            size - end,
        )
    os.ftruncate(fd, cut)
    pwrite_all(fd, closing, cut)
    if fsync:
        os.fsync(fd)
    return size - cut


def _array_end(fd: int, cut: int, after: bytes) -> int | None:
    """The offset just after the array's closing bracket, when it is in after (the bytes
    from cut, the end of the last complete element) and the file up to it is a closed
    array (`insertion_point`); else None."""
    from betty_otel._store.parser import array_close  # noqa: PLC0415 - repair only

    closed = array_close(after)
    if closed < 0 or insertion_point(fd, cut + closed)[0] < 0:
        return None
    return cut + closed


def fill_empty(fd: int, path: Path, *, fsync: bool) -> bool:
    """Write an empty array into a file that holds no JSON value (0 bytes, or only
    whitespace); True when it did. json.load, and so the original Betty writer, fails on
    such a file; there is nothing in it to keep."""
    if head_kind(fd) != "empty":
        return False
    os.ftruncate(fd, 0)
    pwrite_all(fd, EMPTY_ARRAY, 0)
    if fsync:
        os.fsync(fd)
    logger(__name__).warning("%s held no JSON value: wrote an empty array into it", path)
    return True

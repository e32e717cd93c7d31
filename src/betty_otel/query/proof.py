"""Proving that a file still holds the bytes a stats summary record counted.

A record (`betty_otel.query.summary`) holds the xxh3-128 digests, with a seed of its
own, of the very bytes it counted, in spans covering the file's first bytes up to
its offset. `Proof` hashes those spans again from the file; the record is used only
when every digest is the same. Why that is sound, and the change time is not:

- Whatever changed a summarised byte (an in-place edit of any size at any place, a
  rewrite, a truncation and regrowth, mtime set back or not), the bytes hashed now
  differ from the bytes counted, and so, but for a chance of about 2**-128 per span,
  do their digests. A record moved forward keeps the digests of what it counted and
  adds those of the bytes counted since, so what it says is proven anew each time.
- The change time (ctime), which no one can set back, cannot prove it: appends change it
  as much as edits do, so after any append it says nothing about the bytes before; a
  write through a shared mapping already written changes no time at all; timestamps
  are coarse (several writes in one tick); and some file systems (FAT, some FUSE
  ones) keep no change time. Device, inode and size only turn a record down early.
- xxh3 is not built against a forger: someone who can write the log and read the
  private summary (its seed) could make bytes that match. That person can write any
  figures into the log or the summary anyway; the proof is against every change made
  without the summary in view, the ones real tools make.

Hashing reads every summarised byte once, at memory speed when the file is in the page
cache: through a mapping, about 18 GB/s on the benchmark machine; with pread, about
7 GB/s. A mapped file that another program truncates meanwhile kills the process that
reads it (SIGBUS), so a mapping is read only by a forked child, whose death is only a
failed proof. A child is forked when a helper may be (`parts.start_method`: Linux, no
other thread) and the prefix is at least ``BETTY_OTEL_STATS_PARALLEL_BYTES``; it hashes
while this process reads the bytes appended since. Otherwise this process hashes with
pread. Which of the two ran, and the outcome, is logged at debug level.
"""

from __future__ import annotations

import logging
import os
import select
import signal
from collections.abc import Callable, Iterator
from typing import Final

from betty_otel.query.children import fork_child, stop_child
from betty_otel.query.parallel import min_bytes, start_method
from betty_otel.query.summary import Record, new_hasher

__all__ = ["Proof"]

logger = logging.getLogger(__name__)

_BLOCK: Final = 1 << 16
"""Bytes per pread: small enough to be hashed while still in the CPU's cache."""
_WAIT_SECONDS: Final = 30.0
_WAIT_BYTES_PER_SECOND: Final = 20e6
"""How long to wait for the child: a bound that only a stopped or stuck child reaches."""

Chunks = Callable[[int, int], Iterator[bytes | memoryview]]
"""chunks(low, high): the file's bytes in [low, high), in order (fewer when it is shorter)."""


class Proof:
    """Whether the file open at fd still holds the bytes record counted.

    Use as a context manager: a forked child, if any, starts hashing at once and is
    killed and reaped on leaving; `holds` gives the answer (found once).
    """

    def __init__(self, fd: int, record: Record) -> None:
        self.fd = fd
        self.record = record
        self.pid = 0
        self.answer_fd = -1
        self.found: bool | None = None
        if record.end >= min_bytes() and start_method() == "fork":
            try:
                self.pid, self.answer_fd = fork_child(self._in_child)
            except OSError as exc:
                logger.debug("stats summary proof: no child (%s)", exc)

    def __enter__(self) -> Proof:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def concurrent(self) -> bool:
        """True when a forked child hashes while the caller goes on (else `holds` hashes)."""
        return self.pid > 0

    def holds(self) -> bool:
        """True when every span's bytes are the same (waits for the child, if any)."""
        if self.found is None:
            if self.pid:
                answer = self._answer()
                logger.debug("stats summary proof (fork): %s", answer)
                self.found = answer == "same bytes"
            else:
                self.found = spans_match(self.record, self._read)
                answer = "same bytes" if self.found else "changed"
                logger.debug("stats summary proof (this process): %s", answer)
        return self.found

    def close(self) -> None:
        """Kill and reap the child, if any."""
        if self.pid:
            try:
                stop_child(self.pid)
            except OSError as exc:
                logger.warning("betty_otel: stats summary proof child not stopped (%s)", exc)
            finally:
                os.close(self.answer_fd)
                self.pid = 0
                self.answer_fd = -1

    def _answer(self) -> str:
        """What the child found: ``same bytes``, ``changed``, or why there is no answer."""
        bound = _WAIT_SECONDS + self.record.end / _WAIT_BYTES_PER_SECOND
        waiting = select.poll()  # not select.select: the descriptor may be above 1023
        waiting.register(self.answer_fd, select.POLLIN)
        if not waiting.poll(bound * 1000):
            return f"no answer in {bound:.0f} s"
        answer = os.read(self.answer_fd, 1)
        return {b"1": "same bytes", b"0": "changed"}.get(answer, "the child died")

    def _in_child(self, out: int) -> None:
        """In the forked child: hash through a mapping (pread if the file cannot be mapped)
        and write 1 (the same bytes) or 0 to out."""
        import mmap  # noqa: PLC0415 - in the child only
        import resource  # noqa: PLC0415

        # A truncation under the mapping kills this child (SIGBUS): quietly (no handler
        # such as faulthandler's prints to the caller's terminal), and without a core
        # file (a limit of 1 byte is below any core's size, and turns off piped cores).
        signal.signal(signal.SIGBUS, signal.SIG_DFL)
        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        limit = 1 if hard == resource.RLIM_INFINITY else min(1, hard)
        resource.setrlimit(resource.RLIMIT_CORE, (limit, hard))
        try:
            mapped = mmap.mmap(self.fd, self.record.end, prot=mmap.PROT_READ)
        except (OSError, ValueError):  # cannot be mapped, or shorter now
            same = spans_match(self.record, self._read)
        else:
            with mapped, memoryview(mapped) as view:
                same = spans_match(self.record, lambda low, high: iter([view[low:high]]))
        os.write(out, b"1" if same else b"0")

    def _read(self, low: int, high: int) -> Iterator[bytes]:
        """The file's bytes in [low, high) by pread, a block at a time."""
        while low < high:
            data = os.pread(self.fd, min(_BLOCK, high - low), low)
            if not data:
                return
            yield data
            low += len(data)


def spans_match(record: Record, chunks: Chunks) -> bool:
    """True when each span of record, hashed from chunks, has its digest."""
    low = 0
    for high, digest in record.spans:
        hasher = new_hasher(record.seed)
        length = 0
        for chunk in chunks(low, high):
            hasher.update(chunk)
            length += len(chunk)
        if length != high - low or hasher.hexdigest() != digest:
            return False
        low = high
    return True

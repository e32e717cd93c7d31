"""The warm append: one store appending again reuses what it knows of the tail it wrote.

A store remembers where its last append ended the file and the bytes that ended it;
the next append checks them with one read and skips the careful tail search. These
tests pin that this gives the same file as the careful path (a fresh store, which
knows nothing) whatever happened in between: another store or process appending, the
original Betty writer rewriting the whole file (also to the same size), truncation,
a torn or NUL-extended tail left by a killed writer, a rename by another process,
a fork. Real files and real forks; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel._store import TelemetryStore, encode_entry
from helpers import Entry, append_entries, canonical, load_strict, make_entry, strict_entries
from legacy_writer import legacy_append


def numbers(path: Path) -> list[int]:
    """The entries' numbers (make_entry's), in file order, read as json.load does."""
    return [entry["inputs"]["n"] for entry in strict_entries(path)]


def in_child(append: Callable[[list[Entry]], None], entries: list[Entry]) -> None:
    """Fork; the child appends entries (through objects it inherited), then exits."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            append(entries)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60  # not a speed bound: a child stuck on a lock fails the test
    while (status := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's append hung")
        time.sleep(0.005)
    assert os.waitstatus_to_exitcode(status[1]) == 0


# ---------------------------------------------------------------------------
# each change between two appends, on its own
# ---------------------------------------------------------------------------


def test_consecutive_appends_write_the_canonical_file(
    log_path: Path, store: TelemetryStore
) -> None:
    """Appends through one store, one entry or a batch at a time, give the canonical layout."""
    store.append([make_entry(1)])
    store.append([make_entry(2), make_entry(3)])
    store.append([make_entry(4)])
    assert log_path.read_bytes() == canonical([make_entry(n) for n in range(1, 5)])


def test_an_append_by_another_store_in_between_is_kept(
    log_path: Path, store: TelemetryStore
) -> None:
    """Another store (its own descriptor and lock) appends between two of ours: nothing lost."""
    store.append([make_entry(1)])
    append_entries(log_path, [make_entry(2)])
    store.append([make_entry(3)])
    assert log_path.read_bytes() == canonical([make_entry(n) for n in (1, 2, 3)])


def test_an_original_betty_rewrite_in_between_is_kept(
    log_path: Path, store: TelemetryStore
) -> None:
    """The original writer rewrites the whole file (indent=2) between two of our appends."""
    store.append([make_entry(1)])
    legacy_append(log_path, make_entry(2))
    store.append([make_entry(3)])
    assert load_strict(log_path) == [make_entry(n) for n in (1, 2, 3)]


def test_a_rewrite_to_the_same_size_with_another_tail_is_noticed(
    log_path: Path, store: TelemetryStore
) -> None:
    """Another tool rewrites the file in place to the same size, its end laid out otherwise
    (`` }]`` and a newline for ``}``, newline, ``]``, newline): the next append still lands
    inside the array, not where the old closing bracket was."""
    store.append([make_entry(1), make_entry(2)])
    data = log_path.read_bytes()
    assert data.endswith(b"}\n]\n")
    log_path.write_bytes(data[:-4] + b" }]\n")
    store.append([make_entry(3)])
    assert load_strict(log_path) == [make_entry(n) for n in (1, 2, 3)]


def test_a_same_size_torn_append_by_a_killed_writer_is_repaired(
    log_path: Path, store: TelemetryStore
) -> None:
    """A writer killed after three bytes of its append (",\\n{" over "\\n]\\n"): same size,
    other bytes. The next append repairs the tail instead of writing after it."""
    store.append([make_entry(1)])
    size = log_path.stat().st_size
    with log_path.open("r+b") as handle:
        handle.seek(size - 3)
        handle.write(b",\n{")
    assert log_path.stat().st_size == size
    store.append([make_entry(2)])
    assert numbers(log_path) == [1, 2]


def test_a_nul_extended_tail_is_repaired(log_path: Path, store: TelemetryStore) -> None:
    """A crash that extended the file with NUL bytes after our append (more of them than the
    next append writes): repaired, then appended; no NUL is left inside the array."""
    store.append([make_entry(1)])
    with log_path.open("ab") as handle:
        handle.write(b"\0" * 4096)
    store.append([make_entry(2)])
    assert numbers(log_path) == [1, 2]


def test_a_truncated_and_rewritten_file_is_appended_to_as_it_is_now(
    log_path: Path, store: TelemetryStore
) -> None:
    """Another tool truncates the file and writes other entries, to exactly our old size and
    with the same last entry line: the next append keeps every entry of the new content."""
    store.append([make_entry(1), make_entry(2)])
    old = log_path.read_bytes()
    # Entry 7 padded to the length of entry 1, before the same last line: same size, same tail.
    first, last = encode_entry(make_entry(1)), encode_entry(make_entry(2))
    seven = encode_entry(make_entry(7, skill="s"))
    seven = seven[:-1] + b',"pad":"' + b"x" * (len(first) - len(seven) - 9) + b'"}'
    assert len(seven) == len(first)
    log_path.write_bytes(b"[\n" + seven + b",\n" + last + b"\n]\n")
    assert len(log_path.read_bytes()) == len(old)
    store.append([make_entry(3)])
    assert numbers(log_path) == [7, 2, 3]


def test_a_file_renamed_by_another_process_is_left_alone(
    log_path: Path, store: TelemetryStore
) -> None:
    """Another process renames the log (rotation, logrotate): the next append goes to a new
    file at the path, never into the renamed one, though its tail is still ours."""
    store.append([make_entry(1)])
    moved = log_path.with_name("telemetry.json.1")
    log_path.rename(moved)
    store.append([make_entry(2)])
    assert numbers(moved) == [1]
    assert numbers(log_path) == [2]


def test_a_file_replaced_by_a_copy_of_itself_is_followed(
    log_path: Path, store: TelemetryStore
) -> None:
    """The log is replaced by an identical copy (an editor's atomic save): same bytes, another
    inode; the next append goes to the file the path names now."""
    store.append([make_entry(1)])
    copy = log_path.with_name("copy.json")
    copy.write_bytes(log_path.read_bytes())
    old = log_path.with_name("old.json")
    log_path.rename(old)
    copy.rename(log_path)
    store.append([make_entry(2)])
    assert numbers(log_path) == [1, 2]
    assert numbers(old) == [1]


def test_a_forked_child_appends_through_its_own_descriptor(
    log_path: Path, store: TelemetryStore
) -> None:
    """A child forked after an append appends through the inherited store object; the parent's
    next append follows the child's, and neither overwrites the other."""
    store.append([make_entry(1)])
    in_child(store.append, [make_entry(2)])
    store.append([make_entry(3)])
    in_child(store.append, [make_entry(4)])
    assert numbers(log_path) == [1, 2, 3, 4]


def test_a_line_that_is_not_one_json_object_is_never_trusted(
    log_path: Path, store: TelemetryStore
) -> None:
    """append_encoded given a line that is not JSON: the next append takes the careful path,
    just as a fresh store would, so the warm store never writes what the careful one would not."""
    other = log_path.with_name("other.json")
    store.append_encoded([encode_entry(make_entry(1)), b"{not json}"])
    append_entries(other, [make_entry(1)])
    fresh = TelemetryStore(other)
    try:
        fresh.append_encoded([b"{not json}"])
    finally:
        fresh.close()
    store.append([make_entry(2)])
    append_entries(other, [make_entry(2)])
    assert log_path.read_bytes() == other.read_bytes()


# ---------------------------------------------------------------------------
# any interleaving: the warm path and the careful path write the same file
# ---------------------------------------------------------------------------


@dataclass
class Log:
    """One log under test, how "ours" appends to it, and what it must hold."""

    path: Path
    ours: Callable[[list[Entry]], None]
    acked: list[int] = field(default_factory=list)
    moved: list[tuple[Path, bytes]] = field(default_factory=list)
    next_number: int = 0

    def entries(self, count: int) -> list[Entry]:
        """count new entries, acknowledged once the append that takes them returns."""
        first = self.next_number
        self.next_number += count
        self.acked.extend(range(first, first + count))
        return [make_entry(n) for n in range(first, first + count)]


def _ours(log: Log, count: int) -> None:
    log.ours(log.entries(count))


def _ours_in_a_child(log: Log, count: int) -> None:
    in_child(log.ours, log.entries(count))


def _another_store(log: Log, count: int) -> None:
    append_entries(log.path, log.entries(count))


def _original_writer(log: Log, _count: int) -> None:
    """The original Betty writer rewrites the whole file; it fails (and writes nothing) on a
    file that json.load rejects (an empty one too), so it runs only on one it reads."""
    try:
        json.loads(log.path.read_bytes())
    except FileNotFoundError:
        pass
    except ValueError:
        return
    legacy_append(log.path, log.entries(1)[0])


def _same_bytes(log: Log, _count: int) -> None:
    """Rewrite the file in place with the bytes it has: same size, same tail."""
    if log.path.exists():
        log.path.write_bytes(log.path.read_bytes())


def _relaid_end(log: Log, count: int) -> None:
    """Same size, other bytes at the end: ``}\\n]\\n`` laid out as another tool might."""
    if log.path.exists() and (data := log.path.read_bytes()).endswith(b"}\n]\n"):
        log.path.write_bytes(data[:-4] + (b" }]\n", b"}]\n\n", b"  }]")[count - 1])


def _truncate(log: Log, _count: int) -> None:
    """Another tool empties the file in place (copytruncate): its entries go by its hand."""
    if log.path.exists():
        os.truncate(log.path, 0)
        log.acked.clear()


def _torn(log: Log, count: int) -> None:
    """A writer of ours killed after 3 (same size), 40 or 150 bytes of its append."""
    if not (log.path.exists() and log.path.read_bytes().endswith(b"}\n]\n")):
        return
    partial = (b",\n" + encode_entry(make_entry(10_000)))[: (3, 40, 150)[count - 1]]
    with log.path.open("r+b") as handle:
        handle.seek(-3, os.SEEK_END)
        handle.write(partial)


def _nul_tail(log: Log, count: int) -> None:
    """A crash that extended the file without writing its data: NUL bytes at the end."""
    if log.path.exists():
        with log.path.open("ab") as handle:
            handle.write(b"\0" * (10, 400, 4096)[count - 1])


def _rename(log: Log, _count: int) -> None:
    """Another process moves the log away; it must stay as it was, bytes intact."""
    if log.path.exists():
        moved = log.path.with_name(f"{log.path.name}.moved{len(log.moved)}")
        log.path.rename(moved)
        log.moved.append((moved, moved.read_bytes()))
        log.acked.clear()


OPERATIONS: dict[str, Callable[[Log, int], None]] = {
    "ours": _ours,
    "ours in a forked child": _ours_in_a_child,
    "another store": _another_store,
    "original writer": _original_writer,
    "same bytes": _same_bytes,
    "relaid end": _relaid_end,
    "truncate": _truncate,
    "torn": _torn,
    "NUL tail": _nul_tail,
    "rename": _rename,
}

scripts = st.lists(
    st.tuples(
        st.sampled_from(sorted(OPERATIONS)) | st.just("ours"),
        st.integers(min_value=1, max_value=3),
    ),
    max_size=14,
)


def _run(log: Log, script: list[tuple[str, int]]) -> None:
    for name, count in script:
        OPERATIONS[name](log, count)
    _ours(log, 1)  # a last append of ours settles whatever was left (a torn tail, NULs)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(script=scripts)
def test_warm_and_careful_appends_write_the_same_file(
    tmp_path_factory: pytest.TempPathFactory, script: list[tuple[str, int]]
) -> None:
    """Any interleaving of our appends (also from a forked child) with other stores, the
    original writer, same-size rewrites, truncations, torn and NUL tails and renames: one
    warm store writes byte for byte the file that a fresh store per append (always the
    careful path) writes; the file is a strict JSON array holding every acknowledged entry
    exactly once, in order; a renamed file is never written to again."""
    base = tmp_path_factory.mktemp("interleaving")
    warm_path = base / "warm" / "telemetry.json"
    careful_path = base / "careful" / "telemetry.json"
    warm_store = TelemetryStore(warm_path)
    warm = Log(warm_path, warm_store.append)
    careful = Log(careful_path, lambda entries: append_entries(careful_path, entries))
    try:
        _run(warm, script)
    finally:
        warm_store.close()
    _run(careful, script)

    for log in (warm, careful):
        assert numbers(log.path) == log.acked
        for moved, was in log.moved:
            assert moved.read_bytes() == was
    assert warm.path.read_bytes() == careful.path.read_bytes()
    assert [was for _, was in warm.moved] == [was for _, was in careful.moved]

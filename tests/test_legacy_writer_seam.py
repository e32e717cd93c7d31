"""The original Betty writer as Betty repositories run it, beside betty_otel's writers.

The original unlocks before close() flushes the end of its json.dump (`legacy_writer`).
Every betty_otel writer (a store, the decorator in sync and batch mode, `betty-telemetry
capture`, forked children) takes the lock in that gap, at every split point of the dump,
and the old writer's late bytes land while it holds the lock: the file is a JSON array at
rest, every acknowledged entry is there exactly once, and the old writer keeps working.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel import capture_telemetry
from betty_otel._store import TelemetryStore, check_file, iter_entries, log_files
from cli_helpers import CLI
from helpers import load_strict
from legacy_writer import FORK_WARNING, legacy_append, legacy_text, lock_is_held, until

SEED: list[dict[str, Any]] = [
    {"id": f"old-{n}", "skill": "legacy.seed", "inputs": {"n": n}} for n in range(3)
]
"""What the old writer's log holds before each test (written by the old writer itself)."""


def entry_id(entry: dict[str, Any]) -> str:
    """The id a test gave an entry: the old writer's "id", or the input "n" of ours."""
    if "id" in entry:
        return str(entry["id"])
    return str(entry["inputs"]["n"])


def seeded(path: Path) -> Path:
    """A log the old writer wrote, entry by entry."""
    for entry in SEED:
        legacy_append(path, entry)
    return path


def assert_at_rest(path: Path, expected: set[str]) -> None:
    """json.load reads the file and every file of the log; the log holds expected exactly
    once (a tail set aside is in the rotated files); check agrees; the old writer works."""
    live = [entry_id(entry) for entry in load_strict(path)]
    for file in log_files(path):
        assert b"\0" not in file.read_bytes()
        assert isinstance(load_strict(file), list)
        assert check_file(file).ok
    ids = [entry_id(entry) for entry in iter_entries(path, newest_first=False)]
    assert sorted(ids) == sorted(expected)
    legacy_append(path, {"id": "old-after"})
    assert [entry_id(entry) for entry in load_strict(path)] == [*live, "old-after"]


# ---------------------------------------------------------------------------
# betty_otel writers, each started in the old writer's gap; done() says it finished
# ---------------------------------------------------------------------------

Start = Callable[[Path, str], Callable[[], bool]]


def _in_thread(work: Callable[[], object]) -> Callable[[], bool]:
    thread = threading.Thread(target=work)
    thread.start()
    return lambda: not thread.is_alive()


@capture_telemetry(skill_name="seam.decorated", capture_inputs=True)
def decorated(n: str) -> str:
    return n


def _store(path: Path, ident: str) -> Callable[[], bool]:
    def work() -> None:
        store = TelemetryStore(path)
        try:
            store.append([{"skill": "seam.store", "inputs": {"n": ident}}])
        finally:
            store.close()

    return _in_thread(work)


def _sync(path: Path, ident: str) -> Callable[[], bool]:
    return _in_thread(lambda: decorated(ident))


def _batch(path: Path, ident: str) -> Callable[[], bool]:
    def work() -> None:
        decorated(ident)
        betty_otel.shutdown()  # the batch writer writes now, in the gap

    return _in_thread(work)


def _cli(path: Path, ident: str) -> Callable[[], bool]:
    inputs = json.dumps({"n": ident})
    process = subprocess.Popen(
        [str(CLI), "capture", "seam.cli", "success", "1", "CLI", inputs, "--file", str(path)],
        stdout=subprocess.DEVNULL,
    )

    def done() -> bool:
        if process.poll() is None:
            return False
        assert process.returncode == 0
        return True

    return done


def _fork(path: Path, ident: str) -> Callable[[], bool]:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            decorated(ident)  # a forked child of a configured program writes synchronously
            code = 0
        finally:
            os._exit(code)
    status: list[int] = []

    def done() -> bool:
        if not status:
            finished, code = os.waitpid(pid, os.WNOHANG)
            if finished == 0:
                return False
            status.append(code)
        assert os.waitstatus_to_exitcode(status[0]) == 0
        return True

    return done


WRITERS: dict[str, Start] = {
    "store": _store,
    "sync": _sync,
    "batch": _batch,
    "cli capture": _cli,
    "forked child": _fork,
}


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A log the old writer started (in registry/, a folder it created)."""
    return seeded(tmp_path / "registry" / "telemetry.json")


def configure_for(kind: str, path: Path) -> None:
    """The decorator's writers write to path (synchronously, or batched for "batch")."""
    if kind in ("sync", "batch", "forked child"):
        betty_otel.configure(path, otlp=False, batch=kind == "batch")


def old_writer_with_one_writer_in_its_gap(path: Path, kind: str, late: int | None) -> set[str]:
    """The old writer appends "old-new" with late bytes still buffered at its unlock; in
    its gap a writer of kind appends "ours" and takes the lock. Returns what must be there."""
    started: list[Callable[[], bool]] = []

    def in_the_gap() -> None:
        started.append(WRITERS[kind](path, "ours"))
        until(lambda: lock_is_held(path) or started[0](), f"the {kind} writer to take the lock")

    legacy_append(path, {"id": "old-new"}, late=late, between=in_the_gap)
    until(started[0], f"the {kind} writer to finish")
    betty_otel.shutdown()
    return {*(str(entry["id"]) for entry in SEED), "old-new", "ours"}


def dump_size() -> int:
    """Bytes the old writer's dump holds in these tests (the split points run up to it)."""
    return len(legacy_text([*SEED, {"id": "old-new"}]))


# ---------------------------------------------------------------------------
# the double is the real writer
# ---------------------------------------------------------------------------


def test_the_double_writes_what_the_original_writes_and_flushes_after_its_unlock(
    tmp_path: Path,
) -> None:
    """legacy_append leaves json.dump(indent=2) and a newline; with the real buffers, a small
    log's whole dump is still buffered at the unlock (the file is empty in the gap); with
    late, exactly that many bytes are; the cap keeps the newest; it creates "[]" only for
    a missing file and fails on an empty one, as the original does."""
    path = seeded(tmp_path / "telemetry.json")
    assert path.read_bytes() == legacy_text(SEED)
    in_gap: list[bytes] = []
    legacy_append(path, {"id": "a"}, between=lambda: in_gap.append(path.read_bytes()))
    assert in_gap == [b""]
    text = legacy_text([*SEED, {"id": "a"}, {"id": "b"}])
    legacy_append(path, {"id": "b"}, late=7, between=lambda: in_gap.append(path.read_bytes()))
    assert in_gap[1] == text[:-7]
    assert path.read_bytes() == text
    legacy_append(path, {"id": "c"}, cap=3)  # simulates the 100,000 cap on a small log
    assert [entry["id"] for entry in load_strict(path)] == ["a", "b", "c"]
    path.write_bytes(b"")
    with pytest.raises(json.JSONDecodeError):
        legacy_append(path, {"id": "d"})
    assert path.read_bytes() == b""


# ---------------------------------------------------------------------------
# one betty_otel writer in the gap, at the split points
# ---------------------------------------------------------------------------


def test_a_store_in_the_gap_at_every_split_point_loses_nothing(tmp_path: Path) -> None:
    """At every split point of the old writer's dump (only its final newline late, ..., all
    of it late), a store that takes the lock in the gap neither cuts nor overwrites what is
    still landing: the file ends a JSON array with every entry once."""
    for late in range(1, dump_size() + 1):
        path = seeded(tmp_path / f"split-{late}" / "telemetry.json")
        assert_at_rest(path, old_writer_with_one_writer_in_its_gap(path, "store", late))


SPLITS = {
    "final newline": 1,
    "bracket and newline": 2,
    "last brace": 4,
    "inside the last entry": 9,
    "a separator": 20,
    "half": -2,
    "all but the bracket": -1,
    "all of it": 0,
}
"""Split points by bytes still buffered at the unlock; -2: half the dump, -1: all but its
first byte, 0: all of it (nothing of the dump is in the file in the gap)."""


def late_bytes(split: str) -> int:
    late = SPLITS[split]
    size = dump_size()
    return {-2: size // 2, -1: size - 1, 0: size}.get(late, late)


@pytest.mark.filterwarnings(FORK_WARNING)
@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_every_writer_in_the_gap_loses_nothing(log: Path, kind: str, split: str) -> None:
    """The decorator (sync and batch), `betty-telemetry capture`, a forked child and a store,
    each taking the lock while the old writer's last bytes are still to land."""
    configure_for(kind, log)
    assert_at_rest(log, old_writer_with_one_writer_in_its_gap(log, kind, late_bytes(split)))


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_every_writer_in_the_gap_of_the_real_buffers_loses_nothing(log: Path, kind: str) -> None:
    """With the buffers the original really has (a small log's dump lands whole at close)."""
    configure_for(kind, log)
    assert_at_rest(log, old_writer_with_one_writer_in_its_gap(log, kind, None))


def test_a_large_log_with_the_real_buffers_loses_nothing(log: Path) -> None:
    """A log of a few hundred KB: the old writer's last 8 KiB or so land after its unlock,
    into the middle of nothing of ours."""
    for n in range(400):
        legacy_append(log, {"id": f"big-{n}", "pad": "x" * 500})
    before = {entry_id(entry) for entry in load_strict(log)}
    expected = old_writer_with_one_writer_in_its_gap(log, "store", None)
    assert_at_rest(log, expected | before)


def old_writer_stopped_in_its_gap_until_our_writer_is_done(
    path: Path, kind: str, late: int | None
) -> set[str]:
    """As above, but the old writer stays stopped in its gap until our writer has finished:
    longer than any grace period."""
    started: list[Callable[[], bool]] = []

    def stopped_in_the_gap() -> None:
        started.append(WRITERS[kind](path, "ours"))
        until(started[0], f"the {kind} writer to finish")

    legacy_append(path, {"id": "old-new"}, late=late, between=stopped_in_the_gap)
    betty_otel.shutdown()
    return {*(str(entry["id"]) for entry in SEED), "old-new", "ours"}


@pytest.mark.filterwarnings(FORK_WARNING)
@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("kind", ["store", "sync", "cli capture", "forked child"])
def test_an_old_writer_stopped_in_its_gap_longer_than_the_grace_period_loses_nothing(
    log: Path, kind: str, split: str
) -> None:
    """Our writer gives up waiting for the late bytes: it sets the file aside (rotated to
    telemetry.json.1, where they land when the old writer resumes) and appends to a new
    one. Nothing is cut: the log holds every entry once, every file of it is whole."""
    configure_for(kind, log)
    late = late_bytes(split)
    assert_at_rest(log, old_writer_stopped_in_its_gap_until_our_writer_is_done(log, kind, late))


# ---------------------------------------------------------------------------
# many writers at once, in any interleaving
# ---------------------------------------------------------------------------

OLD_WORKER = r"""
import random, sys, time
sys.path.insert(0, sys.argv[3])
from legacy_writer import legacy_append

path, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(count)
for n in range(count):
    # A gap of the real buffers, now and then widened as a descheduled writer's would be.
    pause = rng.choice([0, 0, 0, 0.0005, 0.002, 0.01])
    legacy_append(path, {"id": f"loop-{n}"}, between=lambda: time.sleep(pause))
    print(f"loop-{n}", flush=True)
"""


@pytest.mark.filterwarnings(FORK_WARNING)
def test_an_old_writer_in_a_loop_beside_every_kind_of_writer_loses_nothing(
    log: Path, tmp_path: Path
) -> None:
    """One old writer appending in a loop (its gap sometimes widened) while stores in
    threads, the decorator, `capture` processes and forked children append: the file is a
    JSON array with every acknowledged entry exactly once, and the old writer never fails.

    One old writer at a time: two of them can break each other in the same gap (the second
    loads the first's half-written file), with or without betty_otel."""
    script = tmp_path / "old_worker.py"
    script.write_text(OLD_WORKER, encoding="utf-8")
    tests = str(Path(__file__).parent)
    old = subprocess.Popen(
        [sys.executable, str(script), str(log), "150", tests],
        stdout=subprocess.PIPE,
        text=True,
    )
    betty_otel.configure(log, otlp=False)
    expected = {str(entry["id"]) for entry in SEED}
    waiting: list[Callable[[], bool]] = []
    round_ = 0
    while old.poll() is None:
        for kind in ("store", "sync", "cli capture", "forked child"):
            ident = f"{kind}-{round_}"
            expected.add(ident)
            waiting.append(WRITERS[kind](log, ident))
        for n in range(5):
            decorated(f"main-{round_}-{n}")
            expected.add(f"main-{round_}-{n}")
        until(lambda: all(done() for done in waiting), "the writers of a round")
        round_ += 1
    out, _ = old.communicate()
    assert old.returncode == 0
    expected |= set(out.split())
    assert round_ > 0
    assert_at_rest(log, expected)

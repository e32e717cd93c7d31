"""The store under real concurrency: processes, threads, SIGKILL, fork, old writers, rotation.

Writers are real processes running a small worker script (written to tmp_path), so
flock, crashes and the kernel's file semantics are exercised for real.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from betty_otel._store import (
    LockTimeoutError,
    TelemetryStore,
    check_file,
    iter_entries,
    log_files,
)
from helpers import load_strict
from legacy_writer import legacy_append

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"
TESTS = REPO_ROOT / "tests"
# The shared fixtures sit beside the repository (../shared), also in CI's fresh clone.
FIXTURE = REPO_ROOT.parent / "shared" / "fixtures" / "betty-registry-telemetry.json"

WORKER = r"""
import fcntl, os, sys, threading, time
from betty_otel._store import TelemetryStore
from legacy_writer import legacy_append

PAD = "x" * 200


def entry(ident, pad=PAD):
    return {"timestamp": "2025-10-24T14:30:45.123456+00:00", "skill": "worker.append",
            "status": "success", "duration_ms": 1.25, "caller": "test",
            "inputs": {"id": ident, "pad": pad}, "error_message": None, "metadata": {},
            "id": ident}


def wait_for(go):
    while not os.path.exists(go):
        time.sleep(0.001)


def threads(path, writer, nthreads, count, go, max_bytes, backups):
    def run(thread):
        store = TelemetryStore(path, lock_timeout=60, max_bytes=max_bytes, backups=backups)
        try:
            for i in range(count):
                store.append([entry(f"{writer}-{thread}-{i}")])
        finally:
            store.close()

    wait_for(go)
    workers = [threading.Thread(target=run, args=(t,)) for t in range(nthreads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def acked(path, writer, ack_file, batch, pad):
    # Append forever; after each append returns, record its ids durably. Big batches
    # (hundreds of KiB) make a SIGKILL land inside the write, leaving a torn tail.
    pad = "y" * pad
    store = TelemetryStore(path, lock_timeout=60)
    with open(ack_file, "a", encoding="utf-8") as acks:
        i = 0
        while True:
            ids = [f"{writer}-{i + k}" for k in range(batch)]
            store.append([entry(ident, pad) for ident in ids])
            acks.write("".join(ident + "\n" for ident in ids))
            acks.flush()
            os.fsync(acks.fileno())
            i += batch


def crash(path, writer, ack_file, count, keep):
    # Acknowledge count appends, then die by SIGKILL in the middle of the next write,
    # after keep bytes of it reached the file (a negative keep counts from its end).
    import signal
    store = TelemetryStore(path)
    with open(ack_file, "a", encoding="utf-8") as acks:
        for i in range(count):
            store.append([entry(f"{writer}-{i}")])
            acks.write(f"{writer}-{i}\n")
            acks.flush()
    real_pwrite = os.pwrite

    def dying_pwrite(fd, data, offset):
        data = bytes(data)
        real_pwrite(fd, data[:keep], offset)
        os.kill(os.getpid(), signal.SIGKILL)

    os.pwrite = dying_pwrite
    store.append([entry(f"{writer}-torn-{k}") for k in range(3)])


def legacy(path, writer, count, go):
    wait_for(go)
    for i in range(count):
        # Old writers take turns: two of them break each other in one gap (the second loads
        # the first's half-written file), with or without betty_otel beside them.
        with open(go + ".old-writers", "a") as turn:
            fcntl.flock(turn, fcntl.LOCK_EX)
            legacy_append(path, entry(f"{writer}-{i}"))


mode = sys.argv[1]
if mode == "threads":
    threads(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6],
            int(sys.argv[7]), int(sys.argv[8]))
elif mode == "acked":
    acked(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
elif mode == "crash":
    crash(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
elif mode == "legacy":
    legacy(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
else:
    raise SystemExit(f"unknown mode {mode}")
"""


@pytest.fixture
def worker(tmp_path: Path) -> Path:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    return script


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(SRC), str(TESTS)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def start(worker: Path, *args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(worker), *(str(a) for a in args)],
        env=worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(processes: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Wait for every worker; fail with its stderr if one did not exit cleanly."""
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            _, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
        assert process.returncode == 0, err.decode(errors="replace")


def ids_in(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["id"] for entry in entries]


@contextlib.contextmanager
def killing_leftovers(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """Never leave a worker running when a test fails."""
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()


# ---------------------------------------------------------------------------
# (a) many processes x threads
# ---------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_processes_and_threads_appending_at_once_lose_and_duplicate_nothing(
    tmp_path: Path, worker: Path
) -> None:
    """8 processes x 4 threads x 50 appends at once: 1600 entries, no duplicates, strict JSON."""
    path = tmp_path / "registry" / "telemetry.json"
    go = tmp_path / "go"
    processes: list[subprocess.Popen[bytes]] = []
    with killing_leftovers(processes):
        for writer in range(8):
            processes.append(start(worker, "threads", path, f"p{writer}", 4, 50, go, 0, 5))
        time.sleep(0.5)  # let the interpreters start, then release them together
        go.touch()
        finish(processes)
    data = load_strict(path)
    ids = ids_in(data)
    assert len(ids) == 8 * 4 * 50
    assert set(ids) == {f"p{w}-{t}-{i}" for w in range(8) for t in range(4) for i in range(50)}
    # Each thread's entries are in its own order.
    for writer in range(8):
        for thread in range(4):
            mine = [i for i in ids if i.startswith(f"p{writer}-{thread}-")]
            assert mine == [f"p{writer}-{thread}-{i}" for i in range(50)]
    assert ids_in(list(iter_entries(path, newest_first=True))) == ids[::-1]
    assert check_file(path).ok


# ---------------------------------------------------------------------------
# (b) SIGKILL at random points
# ---------------------------------------------------------------------------


def read_acks(ack_file: Path) -> list[str]:
    """Acknowledged ids: complete lines only (a kill can cut the last line short)."""
    if not ack_file.exists():
        return []
    text = ack_file.read_text(encoding="utf-8")
    return text.split("\n")[:-1]


@pytest.mark.faults
@pytest.mark.timeout(120)
def test_sigkilled_writers_never_lose_an_acknowledged_entry(tmp_path: Path, worker: Path) -> None:
    """3 writers SIGKILLed 20 times at random points: every acknowledged entry survives once."""
    path = tmp_path / "telemetry.json"
    rng = random.Random(20251024)
    writers = 3
    generation = [0] * writers
    processes: list[subprocess.Popen[bytes]] = []
    current: list[subprocess.Popen[bytes]] = []
    ack_files: list[Path] = []

    def launch(writer: int) -> subprocess.Popen[bytes]:
        ack = tmp_path / f"ack-{writer}-{generation[writer]}.txt"
        ack_files.append(ack)
        name = f"w{writer}g{generation[writer]}"
        batch = 1 + (writer + generation[writer]) % 3  # single entries and small batches
        pad = 200 if writer else 16_000  # writer 0 writes 16-48 KB per append
        process = start(worker, "acked", path, name, ack, batch, pad)
        processes.append(process)
        return process

    with killing_leftovers(processes):
        current.extend(launch(w) for w in range(writers))
        for _ in range(20):
            victim = rng.randrange(writers)
            ack = next(a for a in reversed(ack_files) if a.name.startswith(f"ack-{victim}-"))
            # Kill while it is appending: after it has acknowledged something, at a random moment.
            deadline = time.monotonic() + 15
            while not read_acks(ack) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert read_acks(ack), "writer never acknowledged an append"
            time.sleep(rng.uniform(0, 0.03))
            os.kill(current[victim].pid, signal.SIGKILL)
            _, err = current[victim].communicate()
            assert current[victim].returncode == -signal.SIGKILL, err.decode(errors="replace")
            generation[victim] += 1
            current[victim] = launch(victim)
        for process in current:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    store = TelemetryStore(path)
    try:
        store.repair()
    finally:
        store.close()
    data = load_strict(path)
    ids = ids_in(data)
    counts = Counter(ids)
    assert [i for i, n in counts.items() if n > 1] == []
    acknowledged = [i for ack in ack_files for i in read_acks(ack)]
    assert len(acknowledged) > 20
    missing = set(acknowledged) - set(ids)
    assert missing == set()
    assert check_file(path).ok
    # What repairs removed was saved beside the file: torn writes, never an acknowledged entry.
    # (A copy can be empty: a writer killed while saving it; the next repair saves it again.)
    for torn in tmp_path.glob("telemetry.json.torn-*"):
        saved = torn.read_text(encoding="utf-8", errors="replace")
        assert not [i for i in acknowledged if f'"id":"{i}"}}' in saved]


@pytest.mark.faults
@pytest.mark.timeout(60)
@pytest.mark.parametrize("keep", [1, 2, 300, 700, -3, -1])
def test_writer_killed_mid_write_leaves_a_tail_the_next_writer_repairs(
    tmp_path: Path, worker: Path, keep: int
) -> None:
    """A writer SIGKILLed inside its write: readers skip the torn tail; the next append repairs
    it, keeps every acknowledged entry and saves the removed bytes beside the file."""
    path = tmp_path / "telemetry.json"
    ack = tmp_path / "ack.txt"
    process = start(worker, "crash", path, "c", ack, 5, keep)
    with killing_leftovers([process]):
        _, err = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, err.decode(errors="replace")
    acknowledged = read_acks(ack)
    assert acknowledged == [f"c-{i}" for i in range(5)]
    torn = path.read_bytes()
    report = check_file(path)
    assert report.torn_tail or keep < 0  # keep=-1/-3: only the closing bracket is missing
    assert not report.damage
    oldest_first = ids_in(list(iter_entries(path, newest_first=False)))
    assert oldest_first[:5] == acknowledged
    assert ids_in(list(iter_entries(path))) == oldest_first[::-1]
    assert path.read_bytes() == torn  # readers never write

    store = TelemetryStore(path)
    try:
        store.append([{"id": "next"}])
    finally:
        store.close()
    data = ids_in(load_strict(path))
    assert data == [*oldest_first, "next"]
    assert check_file(path).ok
    saved = list(tmp_path.glob("telemetry.json.torn-*"))
    if keep in (1, 2):  # only ",\n" of the batch was written: nothing but a separator to save
        assert len(saved) <= 1
    elif keep > 0:
        assert len(saved) == 1
        assert torn.endswith(saved[0].read_bytes())


# ---------------------------------------------------------------------------
# (c) the real Betty registry file
# ---------------------------------------------------------------------------


@pytest.fixture
def registry_copy(tmp_path: Path) -> Path:
    if not FIXTURE.is_file():
        pytest.fail(f"shared fixture not found at {FIXTURE} (expected ../shared beside the repo)")
    copy = tmp_path / "telemetry.json"
    shutil.copyfile(FIXTURE, copy)
    return copy


def test_real_registry_file_keeps_every_entry_when_appended_to(registry_copy: Path) -> None:
    """Appending to a copy of a real Betty registry (indent=2) keeps all 225 entries equal."""
    original = load_strict(registry_copy)
    assert len(original) == 225
    assert check_file(registry_copy).ok
    assert list(iter_entries(registry_copy, newest_first=False)) == original
    assert list(iter_entries(registry_copy)) == original[::-1]
    new = {
        "timestamp": "2025-10-24T14:30:45.123456+00:00",
        "skill": "registry.update",
        "status": "success",
        "duration_ms": 3.5,
        "caller": "CLI",
        "inputs": {},
        "error_message": None,
        "metadata": {},
        "trace_id": "0" * 31 + "1",
        "span_id": "0" * 15 + "1",
        "parent_span_id": None,
    }
    store = TelemetryStore(registry_copy)
    try:
        store.append([new])
    finally:
        store.close()
    after = load_strict(registry_copy)
    assert after == [*original, new]
    oldest_first = list(iter_entries(registry_copy, newest_first=False))
    newest_first = list(iter_entries(registry_copy))
    assert len(oldest_first) == len(newest_first) == 226
    assert oldest_first == after
    assert newest_first == after[::-1]
    report = check_file(registry_copy)
    assert report.ok
    assert report.entries == 226
    # The old bytes are untouched: the original text up to its last "}" is a prefix.
    text = FIXTURE.read_bytes()
    assert registry_copy.read_bytes().startswith(text[: text.rindex(b"}") + 1])


def test_real_registry_file_keeps_heterogeneous_entries(registry_copy: Path) -> None:
    """The fixture's varied keys and statuses (e.g. "failed") are read back exactly as written."""
    original = load_strict(registry_copy)
    statuses = {entry.get("status") for entry in original}
    assert "failed" in statuses
    key_sets = {tuple(entry) for entry in original}
    assert len(key_sets) > 1
    assert list(iter_entries(registry_copy, newest_first=False)) == original


# ---------------------------------------------------------------------------
# (d) the old Betty writer and ours on the same file
# ---------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_legacy_writer_and_store_side_by_side_lose_nothing(tmp_path: Path, worker: Path) -> None:
    """Old whole-file writers (the original, unlocking before its last bytes land; taking
    turns among themselves) and our appenders on one file at once: the exact id set survives."""
    path = tmp_path / "telemetry.json"
    legacy_append(path, {"id": "seed", "skill": "seed"})
    go = tmp_path / "go"
    processes: list[subprocess.Popen[bytes]] = []
    with killing_leftovers(processes):
        for writer in range(3):
            processes.append(start(worker, "legacy", path, f"legacy{writer}", 40, go))
        for writer in range(3):
            processes.append(start(worker, "threads", path, f"ours{writer}", 2, 40, go, 0, 5))
        time.sleep(0.5)
        go.touch()
        finish(processes)
    data = load_strict(path)
    ids = ids_in(data)
    expected = {"seed"}
    expected |= {f"legacy{w}-{i}" for w in range(3) for i in range(40)}
    expected |= {f"ours{w}-{t}-{i}" for w in range(3) for t in range(2) for i in range(40)}
    assert len(ids) == len(expected)
    assert set(ids) == expected
    assert list(iter_entries(path, newest_first=True)) == data[::-1]
    assert check_file(path).ok


# ---------------------------------------------------------------------------
# (e) fork while another thread holds the lock
# ---------------------------------------------------------------------------


def _probe_locked(path: Path) -> bool:
    """True when some other open file description holds flock on path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _child_after_fork(store: TelemetryStore, report_fd: int) -> int:
    """In the forked child: must not use the parent's lock; appends once it is free."""
    store.lock_timeout = 0.5
    try:
        store.append([{"id": "child-early"}])
    except LockTimeoutError:
        pass
    else:
        return 10  # appended while the parent held the lock: it reused the parent's lock
    store.close()  # must neither close nor unlock the parent's descriptor
    os.write(report_fd, b"1")
    store.lock_timeout = 10
    store.append([{"id": "child"}])
    store.close()
    return 0


@pytest.mark.timeout(60)
def test_fork_while_a_thread_holds_the_lock(tmp_path: Path) -> None:
    """A child forked while a parent thread holds the lock waits for it, then appends; the
    parent's lock is never released by the child."""
    path = tmp_path / "telemetry.json"
    store = TelemetryStore(path)
    store.append([{"id": "parent-before"}])
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.locked():
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        read_fd, write_fd = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 3
            try:
                os.close(read_fd)
                code = _child_after_fork(store, write_fd)
            finally:
                os._exit(code)
        os.close(write_fd)
        try:
            # The child timed out on the lock and closed its store: ours is still held.
            assert os.read(read_fd, 1) == b"1", "child exited early"
            assert _probe_locked(path), "the child released the parent's lock"
            assert holder.is_alive()
        finally:
            os.close(read_fd)
            release.set()
        started = time.monotonic()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert time.monotonic() - started < 10
    finally:
        release.set()
        holder.join()
    store.append([{"id": "parent-after"}])
    store.close()
    assert ids_in(load_strict(path)) == ["parent-before", "child", "parent-after"]
    assert not _probe_locked(path)


# ---------------------------------------------------------------------------
# (f) rotation under concurrency
# ---------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_rotation_under_concurrency_loses_and_duplicates_nothing(
    tmp_path: Path, worker: Path
) -> None:
    """4 processes appending with a small max_bytes: every entry is in exactly one rotated file."""
    path = tmp_path / "telemetry.json"
    go = tmp_path / "go"
    processes: list[subprocess.Popen[bytes]] = []
    with killing_leftovers(processes):
        for writer in range(4):
            processes.append(start(worker, "threads", path, f"r{writer}", 2, 60, go, 8_000, 10_000))
        time.sleep(0.5)
        go.touch()
        finish(processes)
    files = log_files(path)
    assert len(files) > 5
    assert sorted(tmp_path.glob("telemetry.json*")) == sorted(files)
    per_file = []
    for file in files:
        assert check_file(file).ok, file
        per_file.append(load_strict(file))
        assert file.stat().st_size <= 8_000 or len(per_file[-1]) == 1
    ids = [i for chunk in reversed(per_file) for i in ids_in(chunk)]
    expected = {f"r{w}-{t}-{i}" for w in range(4) for t in range(2) for i in range(60)}
    assert len(ids) == len(expected)
    assert set(ids) == expected
    for writer in range(4):
        for thread in range(2):
            mine = [i for i in ids if i.startswith(f"r{writer}-{thread}-")]
            assert mine == [f"r{writer}-{thread}-{i}" for i in range(60)]
    assert ids_in(list(iter_entries(path, newest_first=False))) == ids
    assert ids_in(list(iter_entries(path))) == ids[::-1]

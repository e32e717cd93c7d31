"""Writers and child-process plumbing for the fault-injection suite (issue 5).

Used by the fault suites (``tests/test_faults_*.py``):

- ``record``: the decorated call every writer makes. ``capture_inputs=True`` puts the
  call's unique id in the entry (``entry["inputs"]["call_id"]``), so "exactly once"
  can be checked per call.
- writer loops run in forked children, in threads and as ``multiprocessing`` targets
  (importable, so the ``spawn`` start method finds them).
- ``FORK_WARNING``: the filter for Python 3.12+'s warning when a process with threads forks.
- ``ids_of`` (the call ids of entries) and ``wait_until`` (poll a condition, bounded).
- ``Children``: forks children that can never return into pytest, and kills and reaps
  whatever is still running when a test ends (pass or fail).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import betty_otel
from betty_otel import _setup, capture_telemetry
from betty_otel._state import STATE

SKILL = "faults.write"
CALLER = "faults"
PAD_CHUNK = 4000  # under the sanitizer's per-string budget (4096 chars)

EXIT_DROPPED = 4  # a writer's exporter dropped an entry (it would have acknowledged a loss)
EXIT_WRONG_VALUE = 3  # the decorated call did not return its value
EXIT_RAISED = 2  # the child's target raised (traceback on stderr or through the pipe)
EXIT_WATCHDOG = 70  # the test process went away, or the child outlived its lifetime

FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"
"""Python 3.12+ warns when a process with threads forks; the fault suites fork such processes."""


@capture_telemetry(skill_name=SKILL, caller=CALLER, capture_inputs=True)
def record(call_id: str, pad: list[str] | None = None) -> str:
    """The decorated call: returns its id; its entry carries the id in its inputs."""
    return call_id


def padding(size: int) -> list[str]:
    """About size characters of input, as strings short enough to be kept whole."""
    chunks = []
    left = size
    while left > 0:
        chunks.append("p" * min(PAD_CHUNK, left))
        left -= PAD_CHUNK
    return chunks


def call_id_of(entry: Mapping[str, Any]) -> str:
    """The id a writer gave the call that produced this entry."""
    inputs = entry["inputs"]
    assert isinstance(inputs, dict), entry
    call_id = inputs["call_id"]
    assert isinstance(call_id, str), entry
    return call_id


def ids_of(entries: list[dict[str, Any]]) -> list[str]:
    """The call ids of the entries, in their order."""
    return [call_id_of(entry) for entry in entries]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll condition until true; an AssertionError naming what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


def raw_entry(call_id: str) -> dict[str, Any]:
    """An entry in the documented schema for direct TelemetryStore appends."""
    return {
        "timestamp": "2025-10-24T14:30:45.123456+00:00",
        "skill": "faults.store",
        "status": "success",
        "duration_ms": 1.5,
        "caller": CALLER,
        "inputs": {"call_id": call_id},
        "error_message": None,
        "metadata": {},
        "trace_id": "0" * 31 + "1",
        "span_id": "0" * 15 + "1",
        "parent_span_id": None,
    }


def current_exporter() -> betty_otel.BettyFileExporter:
    """The file exporter of this process's pipeline (configured or inherited by fork)."""
    current = STATE.pipeline
    assert current is not None
    assert current.exporter is not None
    return current.exporter


def read_lines(path: Path) -> list[str]:
    """Complete lines of an append-only text file (a kill can cut the last one short)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return text.split("\n")[:-1]


def _ack_fd(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run target(0..count-1) in threads; re-raise the first exception one of them raised."""
    failures: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


# ---------------------------------------------------------------------------
# Writer loops
# ---------------------------------------------------------------------------


def slow_disk(chunk: int, pause: float) -> None:
    """From now on, os.pwrite in this process writes at most chunk bytes per call after a
    pause: a slow disk, so that a kill often finds the process inside an append."""
    real = os.pwrite

    def slow_pwrite(fd: int, data: Any, offset: int) -> int:
        time.sleep(pause)
        return real(fd, bytes(data[:chunk]), offset)

    os.pwrite = slow_pwrite


def acked_writer(
    path: Path,
    name: str,
    ack_dir: Path,
    threads: int,
    pad: int,
    batch: int = 0,
    slow: bool = False,
) -> None:
    """Forever (until SIGKILL): threads make decorated calls; once a call's entry is
    written, its id goes to the thread's ack file with one write(2) on an O_APPEND file.

    Synchronous export (batch 0): an entry is written when the call returns, so each id
    is acknowledged right after its call. With batch, the pipeline batches (big appends,
    so a kill often lands inside one write): a thread makes batch calls, then
    force_flush(), then acknowledges them. The kernel keeps a completed write(2) when the
    process is killed, so an id in an ack file is one whose entry had been written. A
    writer whose exporter dropped an entry exits with EXIT_DROPPED instead of
    acknowledging it. With slow, writes go through slow_disk (short writes).
    """
    if slow:
        slow_disk(1024, 0.0003)
    exporter = betty_otel.configure(path, otlp=False, batch=bool(batch))
    assert exporter is not None
    pipeline = _setup.current_pipeline()
    chunks = padding(pad)

    def run(thread: int) -> None:
        fd = _ack_fd(ack_dir / f"{name}-{thread}.ack")
        pending: list[str] = []
        i = 0
        while True:
            call_id = f"{name}-{thread}-{i}"
            if record(call_id, chunks) != call_id:
                os._exit(EXIT_WRONG_VALUE)
            pending.append(call_id)
            i += 1
            if len(pending) < batch:
                continue
            if batch:
                pipeline.force_flush()
            if exporter.dropped:
                os._exit(EXIT_DROPPED)
            os.write(fd, "".join(f"{done}\n" for done in pending).encode())
            pending.clear()

    run_threads(threads, run)


def count_writer(
    path: Path | None,
    name: str,
    threads: int,
    calls: int,
    pad: int = 0,
    go: Path | None = None,
    slow: bool = False,
) -> None:
    """threads x calls decorated calls, then return; SystemExit(EXIT_DROPPED) on a drop.

    path None uses the pipeline this process inherited (a fork child); otherwise the
    pipeline is configured here (a spawned child). With go, waits for that file first.
    With slow, writes go through slow_disk (appends stay half-written for a while).
    """
    if slow:
        slow_disk(1024, 0.0003)
    if path is not None:
        betty_otel.configure(path, otlp=False)
    exporter = current_exporter()
    chunks = padding(pad)
    if go is not None:
        deadline = time.monotonic() + 60
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.002)
    failures: list[str] = []

    def run(thread: int) -> None:
        for i in range(calls):
            call_id = f"{name}-{thread}-{i}"
            if record(call_id, chunks) != call_id:
                failures.append(call_id)

    run_threads(threads, run)
    if failures:
        raise SystemExit(EXIT_WRONG_VALUE)
    if exporter.dropped:
        raise SystemExit(EXIT_DROPPED)


def generation_writer(name: str, ack_path: Path, control: Path) -> None:
    """Decorated calls until control/stop exists; each acknowledged as ``id generation``.

    The generation is the highest k for which control/gen-k existed before the call
    started: the test creates gen-k only after its k-th replacement (or removal) of the
    file finished, so the call began after it.
    """
    fd = _ack_fd(ack_path)
    exporter = current_exporter()
    generation = 0
    i = 0
    try:
        while not (control / "stop").exists():
            while (control / f"gen-{generation + 1}").exists():
                generation += 1
            call_id = f"{name}-{i}"
            if record(call_id) != call_id:
                raise SystemExit(EXIT_WRONG_VALUE)
            if exporter.dropped:
                raise SystemExit(EXIT_DROPPED)
            os.write(fd, f"{call_id} {generation}\n".encode())
            i += 1
    finally:
        os.close(fd)


def generation_process(prefix: str, threads: int, ack_dir: Path, control: Path) -> None:
    """A writer process: threads of generation_writer, acks in ack_dir/<name>.ack."""
    run_threads(
        threads,
        lambda thread: generation_writer(
            f"{prefix}t{thread}", ack_dir / f"{prefix}t{thread}.ack", control
        ),
    )


def multiprocessing_writer(path: str | None, name: str, threads: int, calls: int) -> None:
    """multiprocessing target (fork and spawn): count_writer with a str path."""
    count_writer(None if path is None else Path(path), name, threads, calls)


# ---------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------


def _watchdog(parent: int, lifetime: float) -> None:
    """In a child: exit if the test process is gone or the child outlived its lifetime."""
    deadline = time.monotonic() + lifetime

    def run() -> None:
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(0.2)
        os._exit(EXIT_WATCHDOG)

    threading.Thread(target=run, name="fault-watchdog", daemon=True).start()


def _fork() -> int:
    with warnings.catch_warnings():
        # 3.12+ warns when a process with threads forks; forking such processes is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


class Children:
    """Forked children of one test: every one is killed and reaped when the block ends."""

    def __init__(self) -> None:
        self.pids: set[int] = set()

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for pid in list(self.pids):
            self.kill(pid)

    def fork(self, target: Callable[[], object], *, lifetime: float = 180.0) -> int:
        """Run target in a forked child that exits 0 when it returns (never into pytest).

        SystemExit(n) exits with n; any other exception prints its traceback and exits
        with EXIT_RAISED.
        """
        parent = os.getpid()
        pid = _fork()
        if pid:
            self.pids.add(pid)
            return pid
        code = EXIT_RAISED  # pragma: no cover - everything below runs in the child
        try:
            _watchdog(parent, lifetime)
            target()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else EXIT_RAISED
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            os._exit(code)

    def call(self, target: Callable[[], Any], *, timeout: float = 60.0) -> Any:
        """Run target in a forked child and return its JSON-able result.

        An exception in the child (a failed assert included) fails the test with the
        child's traceback. The result travels through a pipe, so it arrives even when
        the child cannot write files (RLIMIT_FSIZE).
        """
        read_fd, write_fd = os.pipe()

        def child() -> None:
            os.close(read_fd)
            try:
                payload = {"ok": True, "value": target()}
            except BaseException:
                payload = {"ok": False, "error": traceback.format_exc()}
            data = json.dumps(payload).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view) :]
            os.close(write_fd)

        pid = self.fork(child, lifetime=timeout + 30)
        os.close(write_fd)
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"forked child did not finish within {timeout} s")
                ready, _, _ = select.select([read_fd], [], [], left)
                if not ready:
                    continue
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(read_fd)
        code = self.wait(pid, timeout=max(1.0, deadline - time.monotonic()))
        assert code == 0, f"forked child exited with {code}"
        raw = b"".join(chunks)
        assert raw, "forked child sent no result"
        payload = json.loads(raw)
        if not payload["ok"]:
            raise AssertionError(f"in the forked child:\n{payload['error']}")
        return payload["value"]

    def wait(self, pid: int, *, timeout: float) -> int:
        """The child's exit code (negative: killed by that signal); kills it on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.pids.discard(pid)
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() >= deadline:
                self.kill(pid)
                raise AssertionError(f"child {pid} did not exit within {timeout} s; killed")
            time.sleep(0.002)

    def wait_stopped(self, pid: int, *, timeout: float = 10.0) -> None:
        """Wait until the child is stopped (SIGSTOP delivered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG | os.WUNTRACED)
            if done:
                assert os.WIFSTOPPED(status), f"child {pid} ended instead of stopping: {status}"
                return
            time.sleep(0.002)
        raise AssertionError(f"child {pid} was not stopped within {timeout} s")

    def kill(self, pid: int) -> int:
        """SIGKILL (works on a stopped child too) and reap; the exit code."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            self.pids.discard(pid)
            return -signal.SIGKILL
        self.pids.discard(pid)
        return os.waitstatus_to_exitcode(status)

    def poll(self, pid: int) -> int | None:
        """The child's exit code if it has ended (and is now reaped), else None."""
        done, status = os.waitpid(pid, os.WNOHANG)
        if not done:
            return None
        self.pids.discard(pid)
        return os.waitstatus_to_exitcode(status)

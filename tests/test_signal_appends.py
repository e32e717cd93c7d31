"""A signal handler that records while the thread it interrupted is inside an append.

Signal handlers run in the main thread, between two bytecodes of whatever it was doing,
which may be an append to the very file the handler records to (the synchronous
export). The handler can neither wait for the lock (its own thread holds it: it would
wait lock_timeout, then drop the entry) nor write (the file is mid-change). Its entries
are deferred, and the append it interrupted writes them as it lets go: the handler
returns at once, every execution is in the file once, after the interrupted one, even
when the handler ends the program with an exception. Real processes, real signals; the
fault is only where the signal lands (inside the append).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from betty_otel._store import TelemetryStore, writer
from helpers import read_entries, run_script

_PROGRAM = """
    import json, os, signal, sys, time
    import betty_otel
    from betty_otel._store import writer

    betty_otel.configure(os.environ["LOG"], otlp=False, lock_timeout=120)
    waits = []


    def on_signal(signum, frame):
        started = time.monotonic()
        with betty_otel.TelemetryContext("signal.handler", caller="handler"):
            pass
        waits.append(time.monotonic() - started)
        if os.environ.get("EXIT"):
            sys.exit(3)  # raised into the interrupted append


    signal.signal(signal.SIGUSR1, on_signal)
    real_append = writer.TelemetryStore._append_locked


    def append_then_signal(self, fd, lines):  # the fault: the signal lands mid-append
        real_append(self, fd, lines)
        if os.environ.get("ONCE") != "done":
            os.environ["ONCE"] = "done"
            os.kill(os.getpid(), signal.SIGUSR1)


    writer.TelemetryStore._append_locked = append_then_signal
    try:
        with betty_otel.TelemetryContext("signal.main"):
            pass
    finally:
        print(json.dumps({"handler ran": len(waits), "waited": bool(waits) and waits[0] > 60}),
              flush=True)
    with betty_otel.TelemetryContext("after"):
        pass
    """


def _skills(path: Path) -> list[str]:
    return [entry["skill"] for entry in read_entries(path)]


def test_an_execution_a_signal_handler_records_during_an_append_is_written_after_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "telemetry.json"
    output = run_script(_PROGRAM, tmp_path, {"LOG": str(log)})
    assert json.loads(output.splitlines()[0]) == {"handler ran": 1, "waited": False}
    assert _skills(log) == ["signal.main", "signal.handler", "after"]


def test_a_handler_that_ends_the_program_still_has_its_execution_written(
    tmp_path: Path,
) -> None:
    """sys.exit in the handler is raised into the interrupted append: as it unwinds, that
    append writes what the handler recorded."""
    import subprocess
    import sys
    import textwrap

    log = tmp_path / "telemetry.json"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(_PROGRAM))
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "LOG": str(log), "EXIT": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert json.loads(done.stdout.splitlines()[0]) == {"handler ran": 1, "waited": False}
    assert _skills(log) == ["signal.main", "signal.handler"]


def test_a_repair_from_a_signal_handler_during_an_append_fails_at_once(tmp_path: Path) -> None:
    """What cannot be deferred (a repair) fails at once with a lock error (EDEADLK), where
    it would have waited lock_timeout for its own thread."""
    output = run_script(
        """
        import errno, json, os, signal, time
        from betty_otel._store import TelemetryStore
        from betty_otel._store import writer
        from betty_otel._store.errors import LockTimeoutError

        store = TelemetryStore(os.environ["LOG"], lock_timeout=120)
        found = []


        def on_signal(signum, frame):
            started = time.monotonic()
            try:
                TelemetryStore(os.environ["LOG"], lock_timeout=120).repair()
            except LockTimeoutError as exc:
                found.append([exc.errno == errno.EDEADLK, time.monotonic() - started < 60])


        signal.signal(signal.SIGUSR1, on_signal)
        real_append = writer.TelemetryStore._append_locked


        def append_then_signal(self, fd, lines):
            real_append(self, fd, lines)
            os.kill(os.getpid(), signal.SIGUSR1)


        writer.TelemetryStore._append_locked = append_then_signal
        store.append([{"skill": "main", "status": "success"}])
        print(json.dumps(found))
        """,
        tmp_path,
        {"LOG": str(tmp_path / "telemetry.json")},
    )
    assert json.loads(output) == [[True, True]]
    assert _skills(tmp_path / "telemetry.json") == ["main"]


def _descriptors_of(path: Path) -> int:
    """How many descriptors of this process name path."""
    count = 0
    for link in Path("/proc/self/fd").iterdir():
        try:
            count += link.readlink() == path
        except OSError:
            continue
    return count


def test_a_store_closed_while_another_store_of_its_path_appends_is_closed_when_it_lets_go(
    tmp_path: Path,
) -> None:
    """Never under the append (its descriptor could be reused for another file), never
    left open: the store that holds the file closes it as it lets go."""
    path = tmp_path / "telemetry.json"
    holder, other = TelemetryStore(path), TelemetryStore(path)
    other.append([{"skill": "opened", "status": "success"}])  # other has a descriptor now
    inside, release = threading.Event(), threading.Event()
    real_append = writer.TelemetryStore._append_locked

    def held_append(self: TelemetryStore, fd: int, lines: Sequence[bytes]) -> None:
        real_append(self, fd, lines)
        if self is holder:
            inside.set()
            release.wait(30)

    writer.TelemetryStore._append_locked = held_append  # type: ignore[method-assign]
    try:
        thread = threading.Thread(target=holder.append, args=([{"skill": "held"}],))
        thread.start()
        assert inside.wait(30)
        before = _descriptors_of(path)
        other.close()  # another thread holds the path: not closed under it, not waited for
        assert _descriptors_of(path) == before
        release.set()
        thread.join(30)
    finally:
        writer.TelemetryStore._append_locked = real_append  # type: ignore[method-assign]
    assert _descriptors_of(path) == before - 1  # closed by the holder as it let go
    holder.close()
    assert _descriptors_of(path) == before - 2
    assert _skills(path) == ["opened", "held"]

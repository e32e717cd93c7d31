"""The drop-in fallback in process: its helper, its standard-library writer, its copies.

`betty_otel.dropin_fallback` runs where betty_otel cannot be imported; here it is driven
in the test process with a fresh process state (`fallback` fixture). Its helper is the
real betty_otel (this interpreter), or fake interpreters that fail each way a helper can
(not there, dying at start, garbling, ending, never answering): every entry is still
written once, and the failure is said once. The standard-library writer keeps the file's
contract beside betty_otel's and an old writer's (lock, canonical layout, a tail still
landing, a file that is no array). Its copies of betty_otel's texts are betty_otel's.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from betty_otel import dropin, dropin_fallback, dropin_fallback_helper
from betty_otel import dropin_fallback_log as plainlog
from betty_otel._entry import STATUSES, validate_duration
from betty_otel._store import TelemetryStore
from betty_otel.cli.capture import json_object
from betty_otel.cli.install import import_paths
from helpers import canonical, indent2, make_entry, run_program, strict_entries

WARNING = "Warning: telemetry is recorded without betty_otel: "
FIELDS = {"skill": "s.x", "status": "success", "duration_ms": 5.0, "caller": "CLI"}


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """The fallback module with a fresh process state, for a shim in tmp_path's repository."""
    monkeypatch.setattr(dropin_fallback, "PROCESS", type(dropin_fallback.PROCESS)())
    monkeypatch.delenv("BETTY_TELEMETRY_FILE", raising=False)
    monkeypatch.delenv("BETTY_HOME", raising=False)
    dropin_fallback.dropin({"python": sys.executable, "paths": import_paths()}, {"home": tmp_path})
    yield dropin_fallback
    helper = dropin_fallback.PROCESS.helpers.helper
    if helper is not None:
        helper.stop()


def _fake_python(tmp_path: Path, script: str) -> str:
    path = tmp_path / "fake-python"
    path.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    path.chmod(0o755)
    return str(path)


# ---------------------------------------------------------------------------
# Through the helper
# ---------------------------------------------------------------------------


def test_through_the_helper_capture_writes_what_it_returns_and_query_reads_it(
    fallback: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry = fallback.TelemetryCapture()
    assert telemetry.telemetry_file == tmp_path / "registry" / "telemetry.json"
    first = telemetry.capture("a.run", "failure", 3, "API", {"password": "pw-1234"}, "boom")
    second = telemetry.capture("b.run", "success", 4.5, "CLI", metadata={"k": [1, 2]})
    assert strict_entries(telemetry.telemetry_file) == [first, second]
    assert first["inputs"] == {"password": "***REDACTED***"}  # betty_otel redacted it
    assert telemetry.query() == [second, first]
    assert telemetry.query(status="failure", limit=5) == [first]
    assert telemetry.query(skill=["a.run", "b.run"], since="1h") == [second, first]
    with pytest.raises(ValueError, match=r"^Invalid status: bogus\. Must be one of: success, "):
        telemetry.capture("a.run", "bogus", 1, "CLI")
    with pytest.raises(TypeError, match="duration_ms must be a number, got str"):
        telemetry.capture("a.run", "success", "12", "CLI")
    with pytest.raises(TypeError):
        telemetry.query(nonsense=1)
    assert capsys.readouterr().err == ""


def test_the_decorator_keeps_secrets_its_sanitize_keys_name_out_of_the_error_text(
    fallback: Any, tmp_path: Path
) -> None:
    """A value under one of sanitize_keys is redacted in the inputs and wherever it
    appears in the error text, before it leaves the skill's process."""

    @fallback.capture_telemetry(capture_inputs=True, sanitize_keys=["Passphrase"])  # type: ignore[untyped-decorator]
    def unlock(vault: str, passphrase: str, options: Any = None) -> None:
        raise ValueError(f"{passphrase!r} does not open {vault}")

    with pytest.raises(ValueError, match="correct horse"):
        unlock("main", "correct horse", options={"passphrase": "battery staple", "n": {1}})
    (entry,) = strict_entries(tmp_path / "registry" / "telemetry.json")
    assert entry["skill"].endswith("unlock")
    assert entry["status"] == "failure"
    assert entry["inputs"] == {
        "vault": "main",
        "passphrase": "***REDACTED***",
        "options": {"passphrase": "***REDACTED***", "n": [1]},
    }
    assert entry["error_message"] == "ValueError: '***REDACTED***' does not open main"


def test_hostile_values_never_fail_the_decorated_call(fallback: Any, tmp_path: Path) -> None:
    """Cycles, objects whose repr raises and huge inputs are recorded as well as they can
    be; the call's result is untouched."""

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    cycle: list[Any] = []
    cycle.append(cycle)

    @fallback.capture_telemetry(skill_name="hostile", capture_inputs=True)  # type: ignore[untyped-decorator]
    def work(*values: Any) -> str:
        return "done"

    assert work(Hostile(), cycle, {"wide": list(range(200_000))}) == "done"
    (entry,) = strict_entries(tmp_path / "registry" / "telemetry.json")
    assert entry["status"] == "success"
    assert entry["inputs"]["values"][0] == "<unrepresentable Hostile>"


def test_a_forked_child_records_through_its_own_helper(fallback: Any, tmp_path: Path) -> None:
    telemetry = fallback.TelemetryCapture()
    telemetry.capture("parent.before", "success", 1, "CLI")
    pid = os.fork()
    if pid == 0:  # the child: its own helper, never the parent's pipes
        try:
            telemetry.capture("child", "success", 1, "CLI")
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    telemetry.capture("parent.after", "success", 1, "CLI")
    skills = [e["skill"] for e in strict_entries(telemetry.telemetry_file)]
    assert skills == ["parent.before", "child", "parent.after"]


# ---------------------------------------------------------------------------
# A helper that fails, each way
# ---------------------------------------------------------------------------

FAKES = {
    "not there": None,
    "dies at start": "echo 'Fatal Python error: init_fs_encoding' >&2; exit 1",
    "garbles": "echo 'hello there'; exec sleep 30",
    "ends after saying ready": "echo '{\"ready\": true}'; read line; exit 3",
    "never says ready": "exec sleep 30",
    "says ready, never answers": "echo '{\"ready\": true}'; exec sleep 30",
}


@pytest.mark.faults
@pytest.mark.parametrize("fake", list(FAKES))
def test_a_helper_that_fails_leaves_every_entry_written_once_and_says_so_once(
    fallback: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake: str,
) -> None:
    monkeypatch.setattr(dropin_fallback_helper, "START_TIMEOUT", 1.0)
    monkeypatch.setattr(dropin_fallback_helper, "ANSWER_TIMEOUT", 1.0)
    script = FAKES[fake]
    python = str(tmp_path / "gone") if script is None else _fake_python(tmp_path, script)
    fallback.dropin({"python": python, "paths": []}, {"home": tmp_path})
    telemetry = fallback.TelemetryCapture()
    big = {"blob": "x" * 300_000}  # more than a pipe holds: a helper that stops reading
    first = telemetry.capture("one", "failure", 1, "CLI", big, "secret-ish error")
    second = telemetry.capture("two", "success", 2, "CLI")
    assert strict_entries(telemetry.telemetry_file) == [first, second]
    assert first["inputs"] == {}
    assert first["error_message"] == "(withheld)"
    assert first["metadata"] == {"withheld": ["inputs", "error_message"]}
    assert telemetry.query() == [second, first]
    err = capsys.readouterr().err
    assert err.count(WARNING) == 1
    assert python in err
    assert fallback.PROCESS.helpers.helper is None


_SIGNAL_PROGRAM = """
import json, os, signal, sys
from pathlib import Path
from betty_otel import dropin_fallback, dropin_fallback_helper
from betty_otel.cli.install import import_paths

home, at = Path(sys.argv[1]), int(sys.argv[2])
dropin_fallback.dropin({"python": sys.executable, "paths": import_paths()}, {"home": home})
telemetry = dropin_fallback.TelemetryCapture()
signal.signal(
    signal.SIGUSR1,
    lambda *_: telemetry.capture("handler", "success", 1, "CLI", {"n": 1}, None, {"m": 1}),
)
real_reply, replies = dropin_fallback_helper.Helper._reply, []


def reply(self, deadline):  # the signal arrives while this thread waits for the helper
    replies.append(1)
    if len(replies) == at:
        os.kill(os.getpid(), signal.SIGUSR1)
    return real_reply(self, deadline)


dropin_fallback_helper.Helper._reply = reply
telemetry.capture("main", "success", 2, "CLI", {"n": 2})
telemetry.capture("after", "success", 3, "CLI", {"n": 3})
print(json.dumps(str(telemetry.telemetry_file)))
"""


@pytest.mark.faults
@pytest.mark.parametrize("at", [1, 2], ids=["while the helper starts", "while it answers"])
def test_a_signal_handler_recording_while_its_thread_waits_for_the_helper_never_hangs(
    tmp_path: Path, at: int
) -> None:
    """A handler that records while its own thread is starting or asking the helper
    cannot wait for it (it would wait for itself, forever): its entry is written by the
    standard library (inputs, metadata and error text withheld, said once), and the
    helper is kept for the executions that follow."""
    done = run_program(_SIGNAL_PROGRAM, str(tmp_path), str(at))
    entries = {entry["skill"]: entry for entry in strict_entries(Path(json.loads(done.stdout)))}
    assert sorted(entries) == ["after", "handler", "main"]
    assert entries["handler"]["inputs"] == {}
    assert entries["handler"]["metadata"] == {"withheld": ["inputs", "metadata"]}
    assert entries["main"]["inputs"] == {"n": 2}
    assert entries["after"]["inputs"] == {"n": 3}
    assert done.stderr.count("Warning: ") == 1
    assert "without betty_otel's helper" in done.stderr


_WINDOW_PROGRAM = """
import json, os, signal, sys
from pathlib import Path
from betty_otel import dropin_fallback, dropin_fallback_helper
from betty_otel.cli.install import import_paths

dropin_fallback_helper.START_TIMEOUT = dropin_fallback_helper.ANSWER_TIMEOUT = 600.0
dropin_fallback.dropin(
    {"python": sys.executable, "paths": import_paths()}, {"home": Path(sys.argv[1])}
)
telemetry = dropin_fallback.TelemetryCapture()
telemetry.capture("warm.up", "success", 1, "CLI")
signal.signal(
    signal.SIGUSR1, lambda *_: telemetry.capture("handler", "success", 1, "CLI", {"n": 1})
)


class Delivering:  # the real lock; the signal lands as its acquire returns
    def __init__(self, real):
        self.real, self.fire = real, True

    def acquire(self, *args, **kwargs):
        got = self.real.acquire(*args, **kwargs)
        if self.fire:
            self.fire = False
            os.kill(os.getpid(), signal.SIGUSR1)
        return got

    def release(self):
        self.real.release()


turn = dropin_fallback.PROCESS.helpers.helper.turn
turn.lock = Delivering(turn.lock)
telemetry.capture("main", "success", 2, "CLI", {"n": 2})
print(json.dumps(str(telemetry.telemetry_file)))
"""


@pytest.mark.faults
def test_a_signal_handler_recording_as_its_thread_takes_the_helper_uses_it_at_once(
    tmp_path: Path,
) -> None:
    """A handler that runs as its thread has just taken the helper, before any byte of
    the request: it may use the helper (nothing is mid-exchange) and does, at once; it
    used to wait for its own thread as long as a start and a request may take."""
    done = run_program(_WINDOW_PROGRAM, str(tmp_path))
    entries = strict_entries(Path(json.loads(done.stdout)))
    assert [(entry["skill"], entry["inputs"]) for entry in entries] == [
        ("warm.up", {}),
        ("handler", {"n": 1}),
        ("main", {"n": 2}),
    ]
    assert done.stderr == ""


@pytest.mark.faults
def test_an_exchange_cut_short_by_ctrl_c_never_pairs_a_reply_with_another_request(
    fallback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt after a request went to the helper and before its reply came
    stops that helper: the next capture gets its own entry from a new one (it got the
    cut-short request's, then a garbled reply, the helper given up and the entry doubled)."""
    telemetry = fallback.TelemetryCapture()
    telemetry.capture("warm.up", "success", 1, "CLI")
    first = fallback.PROCESS.helpers.helper
    real_reply = dropin_fallback_helper.Helper._reply
    cut: list[bool] = []

    def ctrl_c_once(self: Any, deadline: float) -> Any:
        if not cut:
            cut.append(True)
            raise KeyboardInterrupt  # as a SIGINT there would
        return real_reply(self, deadline)

    monkeypatch.setattr(dropin_fallback_helper.Helper, "_reply", ctrl_c_once)
    with pytest.raises(KeyboardInterrupt):
        telemetry.capture("cut.short", "success", 1, "CLI")
    second = telemetry.capture("second", "success", 2, "CLI", {"n": 2})
    third = telemetry.capture("third", "success", 3, "CLI", {"n": 3})
    assert (second["skill"], second["inputs"]) == ("second", {"n": 2})
    assert (third["skill"], third["inputs"]) == ("third", {"n": 3})
    skills = [entry["skill"] for entry in strict_entries(telemetry.telemetry_file)]
    assert skills in (["warm.up", "second", "third"], ["warm.up", "cut.short", "second", "third"])
    assert fallback.PROCESS.helpers.helper not in (None, first)
    assert telemetry.query(skill="second") == [second]


# ---------------------------------------------------------------------------
# The standard-library writer and the file's contract
# ---------------------------------------------------------------------------


def _entry(number: int) -> dict[str, Any]:
    return plainlog.plain_entry({**FIELDS, "skill": f"s.{number}"}, text=False)


def test_a_new_log_is_put_in_place_whole_private_and_in_the_canonical_layout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "folders" / "telemetry.json"
    entry = _entry(0)
    plainlog.append_entry(str(path), entry)
    assert path.read_bytes() == canonical([entry])
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["telemetry.json"]


@pytest.mark.parametrize("start", ["betty_otel's", "empty array", "empty canonical", "0 bytes"])
def test_appends_keep_the_canonical_layout_beside_betty_otel(tmp_path: Path, start: str) -> None:
    path = tmp_path / "telemetry.json"
    first = [make_entry(1), make_entry(2)] if start == "betty_otel's" else []
    if start == "betty_otel's":
        TelemetryStore(path).append(first)
    else:
        path.write_bytes({"empty canonical": b"[\n]\n", "empty array": b"[]"}.get(start, b""))
    ours = [_entry(3), _entry(4)]
    for entry in ours:
        plainlog.append_entry(str(path), entry)
    TelemetryStore(path).append([make_entry(5)])
    assert path.read_bytes() == canonical([*first, *ours, make_entry(5)])


def test_an_old_writers_layout_is_appended_to_once_it_has_settled(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    path.write_bytes(indent2([make_entry(1)]) + b"\n")
    ours = _entry(2)
    plainlog.append_entry(str(path), ours)
    assert strict_entries(path) == [make_entry(1), ours]


@pytest.mark.faults
def test_a_tail_still_landing_after_an_old_writer_unlocked_is_waited_for(
    tmp_path: Path,
) -> None:
    """The original writer unlocks before its last bytes land: the append waits for them
    (the file would be torn, then cut under the late bytes) and goes after them."""
    path = tmp_path / "telemetry.json"
    whole = indent2([make_entry(1), make_entry(2)]) + b"\n"
    cut = len(whole) - 5  # all but "\n]\n" and a bit: the dump's last buffer
    path.write_bytes(whole[:cut])
    landed = threading.Event()

    def late_flush() -> None:
        time.sleep(0.3)
        with path.open("r+b") as handle:  # as close() flushes: no lock, at its offset
            handle.seek(cut)
            handle.write(whole[cut:])
        landed.set()

    writer = threading.Thread(target=late_flush)
    writer.start()
    ours = _entry(3)
    plainlog.append_entry(str(path), ours)
    writer.join()
    assert landed.is_set()
    assert strict_entries(path) == [make_entry(1), make_entry(2), ours]


@pytest.mark.faults
@pytest.mark.parametrize(
    "content",
    [b'{"not": "an array"}', b"garbage", b'[{"a": 1}, {"b"', b"\x00" * 64],
    ids=["object", "text", "torn for good", "nul bytes"],
)
def test_a_file_that_is_no_array_is_left_as_it_is(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "telemetry.json"
    path.write_bytes(content)
    with pytest.raises(OSError, match="left as it is"):
        plainlog.append_entry(str(path), _entry(1), timeout=2)
    assert path.read_bytes() == content


@pytest.mark.faults
def test_a_symbolic_link_and_a_held_lock_are_refused_not_written_through(tmp_path: Path) -> None:
    target = tmp_path / "target.json"
    target.write_bytes(b"[]")
    link = tmp_path / "telemetry.json"
    link.symlink_to(target)
    with pytest.raises(OSError, match=r"symbolic link|Too many levels"):
        plainlog.append_entry(str(link), _entry(1))
    assert target.read_bytes() == b"[]"
    held = tmp_path / "held.json"
    held.write_bytes(b"[\n]\n")
    with held.open("rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(OSError, match=r"its lock was not had in 0\.3 s"):
            plainlog.append_entry(str(held), _entry(2), timeout=0.3)
        timer = threading.Timer(0.3, fcntl.flock, (holder, fcntl.LOCK_UN))
        timer.start()
        plainlog.append_entry(str(held), _entry(3), timeout=10)  # waits for the holder
        timer.join()
    assert [e["skill"] for e in strict_entries(held)] == ["s.3"]


def test_concurrent_writers_of_both_kinds_lose_nothing(tmp_path: Path) -> None:
    """Threads appending with the standard-library writer and with betty_otel's store
    at once: every entry is there exactly once, in a file that stays a JSON array."""
    path = tmp_path / "telemetry.json"
    count = 40

    def plain(base: int) -> None:
        for number in range(base, base + count):
            plainlog.append_entry(str(path), _entry(number))

    def store(base: int) -> None:
        writer = TelemetryStore(path)
        for number in range(base, base + count):
            writer.append([make_entry(number)])
        writer.close()

    threads = [threading.Thread(target=f, args=(b,)) for f, b in ((plain, 0), (plain, 100))]
    threads += [threading.Thread(target=store, args=(b,)) for b in (200, 300)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = strict_entries(path)
    assert len({e["span_id"] for e in entries}) == len(entries) == 4 * count
    plain_skills = {f"s.{n}" for b in (0, 100) for n in range(b, b + count)}
    assert {e["skill"] for e in entries if e["skill"].startswith("s.")} == plain_skills
    stored = {make_entry(n)["span_id"] for b in (200, 300) for n in range(b, b + count)}
    assert stored <= {e["span_id"] for e in entries}


def test_the_standard_library_query_reads_a_torn_log_and_filters_as_asked(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    entries = [_entry(n) | {"status": ("success", "failure")[n % 2]} for n in range(5)]
    path.write_bytes(canonical(entries)[:-10])  # torn in the last entry
    query = plainlog.query_entries
    assert query(path, None, None, None, None) == entries[3::-1]
    assert query(path, None, "failure", None, 1) == [entries[3]]
    assert query(path, ["s.0", "s.2"], None, "CLI", None) == [entries[2], entries[0]]
    assert query(tmp_path / "missing.json", None, None, None, None) == []


# ---------------------------------------------------------------------------
# The command line, and the copies of betty_otel's texts
# ---------------------------------------------------------------------------


@pytest.fixture
def unreachable(fallback: Any, tmp_path: Path) -> Any:
    """The fallback with no helper to be had: the standard-library writer records."""
    fallback.dropin({"python": str(tmp_path / "gone"), "paths": []}, {"home": tmp_path})
    return fallback


@pytest.mark.parametrize(
    ("argv", "stream", "text"),
    [
        (["a", "b", "c"], "out", dropin.USAGE + "\n"),
        (["s", "success", "1", "CLI", "{invalid json}"], "err", "Error: Invalid JSON for inputs: "),
        (
            ["s", "success", "1", "CLI", "[1]"],
            "err",
            "Error: inputs must be a JSON object, got list",
        ),
        (["s", "bogus", "1", "CLI"], "err", "Error capturing telemetry: Invalid status: bogus."),
        (["s", "success", "-1", "CLI"], "err", "Error capturing telemetry: Invalid duration_ms: "),
        (["s", "success", "x", "CLI"], "err", "Error capturing telemetry: Invalid duration_ms: "),
    ],
)
def test_the_command_line_refuses_what_the_original_refused(
    unreachable: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stream: str,
    text: str,
) -> None:
    assert unreachable.capture_main(argv) == 1
    printed = capsys.readouterr()
    assert (printed.out if stream == "out" else printed.err.splitlines()[-1]).startswith(
        text.rstrip("\n") if stream == "err" else text
    )
    assert not (tmp_path / "registry" / "telemetry.json").exists()


def test_the_command_line_prints_what_it_wrote_and_never_fails_on_its_streams(
    unreachable: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "registry" / "telemetry.json"
    printed = io.StringIO()
    monkeypatch.setattr(sys, "stdout", printed)
    assert unreachable.capture_main(["p.build", "success", "320", "CLI"]) == 0
    shown, _, done = printed.getvalue().rstrip("\n").rpartition("\n\n")
    assert json.loads(shown) == strict_entries(log)[0]
    assert done == f"✓ Telemetry captured to {log}"

    class Broken(io.StringIO):
        def write(self, _text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    for stdout, stderr in ((None, None), (Broken(), Broken())):
        monkeypatch.setattr(sys, "stdout", stdout)
        monkeypatch.setattr(sys, "stderr", stderr)
        assert unreachable.capture_main(["p.build", "success", "1", "CLI"]) == 0
    assert len(strict_entries(log)) == 3


@pytest.mark.parametrize("text", ["{invalid json}", "[1, 2", '"text"', "[" * 100_000, "1e999999"])
def test_the_fallbacks_copies_of_betty_otels_texts_are_betty_otels(text: str) -> None:
    assert dropin_fallback.USAGE == dropin.USAGE
    assert plainlog.STATUSES == STATUSES
    with pytest.raises(ValueError, match="inputs") as ours:
        dropin_fallback.json_object("inputs", text)
    with pytest.raises(ValueError, match="inputs") as theirs:
        json_object("inputs", text)
    assert str(ours.value) == str(theirs.value)
    for value, as_text in (("-1", True), ("nan", True), ("x", True), (-1, False), ("1", False)):
        kind = ValueError if as_text or value == -1 else TypeError
        with pytest.raises(kind) as ours_duration:
            plainlog.plain_entry({**FIELDS, "duration_ms": value}, text=as_text)
        with pytest.raises(kind) as theirs_duration:
            validate_duration(value, text=as_text)
        assert str(ours_duration.value) == str(theirs_duration.value)

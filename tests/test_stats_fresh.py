"""stats through its summary always equals a full recount, whatever was done to the file.

The summary beside the log (`betty_otel.query.summary`) is used only when every byte
it counted is proven unchanged (`betty_otel.query.proof`). These tests change the
summarised bytes in every way that keeps size, inode and modification time (an
in-place edit of a status word, a digit, any bytes, anywhere; mtime set back), and
in the ways that do not (appends, the original writer's rewrites, truncations,
splices), with the proof hashed by a forked child or by this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import resource
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel.query import proof as proof_module
from betty_otel.query import stats
from betty_otel.query.parallel import ENV_MIN_BYTES, ENV_PARALLEL
from betty_otel.query.proof import Proof
from betty_otel.query.summary import read_summary, summary_path
from helpers import append_entries, make_entry
from legacy_writer import legacy_append
from test_stats_summary import figures, recount

WORDS = [b'"pending"', b'"success"', b'"failure"', b'"timeout"']
"""Status words of one length: an edit from one to another keeps the file's size."""
WORD = re.compile(b"|".join(re.escape(word) for word in WORDS))
BIG = 3000
"""Entries that make a log of more than 1 MiB, where the old summary sampled bytes (64 KiB,
then 31 windows of 4 KiB) and let most in-place edits through."""

MODES = {
    "proof in a forked child": {ENV_PARALLEL: "fork", ENV_MIN_BYTES: "0"},
    "proof in this process": {ENV_PARALLEL: "0"},
}


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with the proof in a forked child (mapped) and in this process."""
    for name, value in MODES[request.param].items():
        monkeypatch.setenv(name, value)
    return str(request.param)


def entry(number: int) -> dict[str, Any]:
    """An entry of about 650 bytes (its inputs hold a prompt), statuses of seven letters."""
    return make_entry(
        number,
        skill=["a", "b", "caf\u00e9"][number % 3],
        status=["pending", "success", "failure", "timeout"][number % 4],
        caller=["CLI", "API"][number % 2],
        duration_ms=[1.5, 30, 0.25, None][number % 4] if number % 5 else number * 0.5,
        inputs={"n": number, "prompt": f"summarise report {number} " * 14},
    )


def keeping_times(path: Path, edit: Any) -> None:
    """Run edit(handle) on the file opened r+b, then set its access and modification
    times back to what they were (as tools that restore timestamps do)."""
    before = path.stat()
    with path.open("r+b") as handle:
        edit(handle)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def overwrite(path: Path, offset: int, data: bytes) -> None:
    """Write data over the bytes at offset (in place: the size stays), times kept."""

    def edit(handle: Any) -> None:
        handle.seek(offset)
        handle.write(data)

    keeping_times(path, edit)


def splice(path: Path, offset: int, cut: int, data: bytes) -> None:
    """Replace cut bytes at offset with data (the size changes), times kept."""
    whole = path.read_bytes()

    def edit(handle: Any) -> None:
        handle.seek(0)
        handle.truncate()
        handle.write(whole[:offset] + data + whole[offset + cut :])

    keeping_times(path, edit)


def swap_word(path: Path, index: int, word: bytes) -> None:
    """Replace the index-th status word (modulo their number) with word, in place."""
    found = [match.start() for match in WORD.finditer(path.read_bytes())]
    if found:
        overwrite(path, found[index % len(found)], word)


def change_digit(path: Path, fraction: float, digit: int) -> None:
    """Replace the first digit at or after fraction of the file with another, in place."""
    data = path.read_bytes()
    start = int(len(data) * fraction)
    at = next((i for i in range(start, len(data)) if data[i : i + 1].isdigit()), None)
    if at is not None:
        overwrite(path, at, b"%d" % ((int(data[at : at + 1]) + 1 + digit) % 10))


EDITS = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 30)),
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("word"), st.tuples(st.integers(0, 10**6), st.sampled_from(WORDS))),
    st.tuples(st.just("digit"), st.tuples(st.floats(0.0, 1.0), st.integers(0, 8))),
    st.tuples(st.just("bytes"), st.tuples(st.floats(0.0, 1.0), st.binary(min_size=1, max_size=40))),
    st.tuples(
        st.just("splice"),
        st.tuples(st.floats(0.0, 1.0), st.integers(0, 300), st.binary(max_size=300)),
    ),
    st.tuples(st.just("stats"), st.sampled_from(["skill", "caller", "status"])),
)
OPS = st.one_of(EDITS, st.tuples(st.just("legacy"), st.integers(1, 2)))
"""EDITS and the original writer's whole-file rewrites (indent=2)."""


def apply(path: Path, op: tuple[str, Any], counter: list[int]) -> None:
    kind, arg = op
    size = path.stat().st_size if path.exists() else 0
    if kind == "append":
        append_entries(path, [entry(counter[0] + i) for i in range(arg)])
        counter[0] += arg
    elif kind == "legacy":
        for _ in range(arg):
            with contextlib.suppress(ValueError):  # it cannot load a damaged file
                legacy_append(path, entry(counter[0]))
            counter[0] += 1
    elif kind == "stats":
        stats(path, by=arg)
    elif size == 0:
        return
    elif kind == "truncate":
        os.truncate(path, int(size * arg))
    elif kind == "word":
        swap_word(path, *arg)
    elif kind == "digit":
        change_digit(path, *arg)
    elif kind == "bytes":
        fraction, data = arg
        offset = min(int(size * fraction), size - 1)
        overwrite(path, offset, data[: size - offset])
    else:
        fraction, cut, data = arg
        splice(path, int(size * fraction), cut, data)


def check_history(tmp: Path, first: int, ops: list[tuple[str, Any]]) -> None:
    """Log first entries, then each op, every stats equal to a full recount after each."""
    path = tmp / "log" / "telemetry.json"
    path.parent.mkdir()
    append_entries(path, [entry(i) for i in range(first)])
    counter = [first]
    for op in ops:
        apply(path, op, counter)
        for by in ("skill", "caller", "status"):
            assert figures(stats(path, by=by)) == recount(path, tmp, by=by), (op, by)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(OPS, min_size=1, max_size=10))
def test_stats_equal_a_full_recount_after_any_history(
    tmp_path_factory: pytest.TempPathFactory, mode: str, ops: list[tuple[str, Any]]
) -> None:
    """Appends, the original writer's rewrites, truncations, in-place edits of words,
    digits or any bytes at any position (times set back), splices, with stats calls (which
    write and move the summary forward) in between: every stats equals a full recount."""
    check_history(tmp_path_factory.mktemp("fresh"), 40, ops)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(EDITS, min_size=1, max_size=10))
def test_stats_equal_a_full_recount_on_a_log_of_more_than_1_mib(
    tmp_path_factory: pytest.TempPathFactory, mode: str, ops: list[tuple[str, Any]]
) -> None:
    """The same on a log of more than 1 MiB, where most bytes were never sampled before
    (the original writer's rewrites are left to the test above: each full recount of a
    large indent=2 log takes about a second)."""
    check_history(tmp_path_factory.mktemp("large"), BIG, ops)


def test_a_status_word_rewritten_in_place_with_the_times_set_back(
    tmp_path: Path, mode: str
) -> None:
    """The case that served stale counts: one ``pending`` becomes ``success`` (both seven
    letters: same size, same inode, mtime set back). stats sees it at once; and an edit
    followed by appends enough to move the summary forward (past 1 MiB) is seen too, so
    stale counts are never carried forward."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [{**entry(i), "status": "pending"} for i in range(BIG)])
    assert stats(path)["a"].statuses == {"pending": BIG // 3}
    data = path.read_bytes()
    overwrite(path, data.index(b'"pending"', len(data) // 2), b'"success"')
    assert sum(group.statuses.get("success", 0) for group in stats(path).values()) == 1
    assert figures(stats(path)) == recount(path, tmp_path)
    overwrite(path, data.index(b'"pending"'), b'"success"')  # then, without a stats call:
    for start in range(BIG, 4 * BIG, BIG):
        append_entries(path, [{**entry(i), "status": "pending"} for i in range(start, start + BIG)])
        assert figures(stats(path)) == recount(path, tmp_path)
    assert sum(group.statuses.get("success", 0) for group in stats(path).values()) == 2


@pytest.mark.parametrize("where", ["first entry", "middle", "last summarised entry"])
def test_an_edit_at_any_place_of_the_summarised_bytes_is_seen(
    tmp_path: Path, mode: str, where: str
) -> None:
    """The first, a middle and the last entry the summary counted, edited in place with
    the times set back after more entries were appended: stats equals a full recount."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [entry(i) for i in range(BIG)])
    stats(path)
    (record,) = read_summary(path)
    data = path.read_bytes()
    offsets = {
        "first entry": data.index(b'"status":"'),
        "middle": data.index(b'"status":"', len(data) // 2),
        "last summarised entry": data.rindex(b'"status":"', 0, record.end),
    }
    append_entries(path, [entry(i) for i in range(BIG, BIG + 10)])
    at = offsets[where] + len(b'"status":')
    word = next(w for w in WORDS if not data.startswith(w, at))
    overwrite(path, at, word)
    assert figures(stats(path)) == recount(path, tmp_path)
    assert figures(stats(path, by="status")) == recount(path, tmp_path, by="status")


def test_a_rewrite_that_keeps_every_size_and_time_is_seen(tmp_path: Path, mode: str) -> None:
    """The whole file rewritten in place with its status words swapped (every size, the
    inode and the times the same): nothing but the bytes tell, and stats follows them."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [entry(i) for i in range(BIG)])
    stats(path, by="status")
    data = path.read_bytes()
    shuffled = data.replace(b'"pending"', b'"swapped"').replace(b'"success"', b'"pending"')
    overwrite(path, 0, shuffled.replace(b'"swapped"', b'"success"'))
    assert figures(stats(path, by="status")) == recount(path, tmp_path, by="status")


def test_the_proof_says_how_it_ran(
    tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """At debug level, whether the summarised bytes were hashed by a forked child or by
    this process, and what it found."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [entry(i) for i in range(50)])
    stats(path)
    with caplog.at_level(logging.DEBUG, logger="betty_otel.query.proof"):
        stats(path)
        overwrite(path, path.read_bytes().index(b'"pending"'), b'"success"')
        stats(path)
    how = "fork" if "child" in mode else "this process"
    assert [r.getMessage() for r in caplog.records] == [
        f"stats summary proof ({how}): same bytes",
        f"stats summary proof ({how}): changed",
    ]


@pytest.mark.faults
def test_a_truncation_under_the_mapping_kills_only_the_child_quietly(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Another program truncates the file while the forked child hashes it through a
    mapping (SIGBUS): the proof fails, the child is reaped, nothing is printed (not even
    by faulthandler, which pytest turns on) and no core file is left; stats then equals
    a full recount of what the file holds."""
    monkeypatch.setenv(ENV_PARALLEL, "fork")
    monkeypatch.setenv(ENV_MIN_BYTES, "0")
    monkeypatch.chdir(tmp_path)  # where a core file would go (core_pattern "core")
    path = tmp_path / "telemetry.json"
    append_entries(path, [entry(i) for i in range(3000)])
    stats(path)
    (record,) = read_summary(path)
    real = proof_module.spans_match

    def truncated_first(found: Any, chunks: Any) -> bool:
        os.truncate(path, 100)  # in the child, under its mapping
        return real(found, chunks)

    monkeypatch.setattr(proof_module, "spans_match", truncated_first)
    capfd.readouterr()
    limits = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (limits[1], limits[1]))  # cores allowed
    try:
        with path.open("rb") as handle, Proof(handle.fileno(), record) as proof:
            pid = proof.pid
            assert pid > 0
            assert not proof.holds()
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, limits)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped
    assert capfd.readouterr() == ("", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["telemetry.json", "telemetry.json.stats"]
    monkeypatch.undo()
    assert path.stat().st_size == 100
    assert figures(stats(path)) == recount(path, tmp_path)


@pytest.mark.parametrize("version", [1, 4])
def test_a_summary_of_an_older_version_is_replaced(tmp_path: Path, version: int) -> None:
    """A summary of an older version (1: sampled windows, which could not see an in-place
    edit; 4: no damage told for a broken last element) is never used: stats reads the
    whole file and writes a current summary over it."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [entry(i) for i in range(30)])
    summary = summary_path(path)
    summary.write_bytes(b"betty-otel stats summary %d\n" % version + bytes(64))
    summary.chmod(0o600)
    assert figures(stats(path)) == recount(path, tmp_path)
    assert summary.read_bytes().startswith(b"betty-otel stats summary 5\n")
    assert read_summary(path)[0].end > 0


CHILDREN = {
    "stalls": ("time.sleep(600)", "no answer in 0 s"),
    "raises": ("raise RuntimeError('boom')", "the child died"),
    "exits at once": ("os._exit(0)", "the child died"),
}


@pytest.mark.faults
@pytest.mark.parametrize(("code", "answer"), CHILDREN.values(), ids=CHILDREN.keys())
def test_a_proof_child_that_fails_costs_a_whole_read_and_is_reaped(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    code: str,
    answer: str,
) -> None:
    """A forked proof child that stalls (waited for a bounded time, here shortened), raises
    or exits without answering: the summary is not trusted, the file is read whole, the
    figures equal a full recount and the child is killed and reaped."""
    monkeypatch.setenv(ENV_PARALLEL, "fork")
    monkeypatch.setenv(ENV_MIN_BYTES, "0")
    path = tmp_path / "telemetry.json"
    append_entries(path, [entry(i) for i in range(300)])
    stats(path)
    append_entries(path, [entry(i) for i in range(300, 320)])

    parent = os.getpid()

    def failing(found: Any, chunks: Any) -> bool:
        # The fault is the child's: in this process it would stop the test run itself.
        assert os.getpid() != parent, "the proof ran in this process, not in a forked child"
        exec(code, {"os": os, "time": time})
        return True

    monkeypatch.setattr(proof_module, "spans_match", failing)
    monkeypatch.setattr(proof_module, "_WAIT_SECONDS", 0.2)
    # Children other tests of this process left running (a drop-in helper) are not ours.
    before = set(psutil.Process().children())
    with caplog.at_level(logging.DEBUG, logger="betty_otel.query.proof"):
        result = figures(stats(path))
    monkeypatch.undo()
    assert result == recount(path, tmp_path)
    assert [r.getMessage() for r in caplog.records] == [f"stats summary proof (fork): {answer}"]
    assert set(psutil.Process().children()) - before == set()

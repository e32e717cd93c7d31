"""Faults: hostile command lines for every betty-telemetry command (issue 5, case 21).

Hypothesis builds random and hostile arguments (random text and undecodable bytes, huge
numbers, ``nan``, ``-inf``, ``1e309``, negative durations, bad statuses, invalid JSON,
JSON that is not an object, deeply nested JSON, unknown flags, missing arguments, bad
``--since`` / ``--limit`` / ``--format`` values) for capture, query, stats, trace, tail
(without ``-f``), check, repair and export (to an unreachable endpoint), against telemetry
files of every kind (missing, valid, legacy, torn, damaged, foreign, a folder, a symlink).

Whatever the arguments: never a Python traceback, exit status 0, 1 or 2 only, and on an
error a clear message (``Error: ...`` or argparse's usage error) rather than an internal
one; a failed capture writes nothing. Most examples run in-process through
``betty_otel.cli.main(argv)``; a few go through the installed console script.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from betty_otel.cli import main
from cli_helpers import CLI, write
from collector import RotelCollector
from helpers import canonical, indent2, make_entry

pytestmark = pytest.mark.faults

TRACEBACK = "Traceback (most recent call last)"
UNREACHABLE = "http://127.0.0.1:9"
COMMANDS = ("capture", "query", "stats", "trace", "tail", "check", "repair", "export")

UNCLEAR = re.compile(
    r"islice|sys\.maxsize|C int|C long|convert float|recursion|Value out of range"
    r"|has no attribute|not subscriptable|unexpected keyword|positional argument"
    r"|unhashable|index out of range|is not iterable|unsupported operand|codec can't"
    r"|^\w*(Error|Exception)$"
)
"""Messages that are Python's internals talking, not an explanation for the user."""


# ---------------------------------------------------------------------------
# The telemetry files an example runs against
# ---------------------------------------------------------------------------


def cli_entry(number: int) -> dict[str, Any]:
    """An entry whose status, skill and parent vary with number (pairs share a trace)."""
    return make_entry(
        number,
        timestamp=f"2025-10-24T14:30:{number % 60:02d}.123456+00:00",
        skill=f"skill.{number % 3}",
        status=("success", "failure", "timeout")[number % 3],
        duration_ms=10.0 + number,
        inputs={"n": number},
        error_message=None if number % 3 == 0 else "boom",
        trace_id=f"{number // 2 + 1:032x}",
        parent_span_id=None if number % 2 == 0 else f"{number:016x}",
    )


VALID = canonical([cli_entry(n) for n in range(4)])
LEGACY = indent2([cli_entry(n) for n in range(3)])
TORN = VALID[: -len(b"\n]\n")] + b',\n{"skill": "torn", "inp'
DAMAGED = VALID.replace(b'{"timestamp":"2025-10-24T14:30:01', b'{"timestamp";"2025-10-24T14:30:01')
FOREIGN = b'{"not": "an array"}\n'

FILE_KINDS = (
    "default",  # no --file: $BETTY_TELEMETRY_FILE, a file that does not exist yet
    "missing",
    "missing_folders",
    "valid",
    "legacy",
    "torn",
    "damaged",
    "foreign",
    "empty",
    "folder",
    "symlink",
)
STRICT_AFTER = frozenset({"default", "missing", "missing_folders", "valid", "legacy", "empty"})
"""Kinds that must be strict JSON arrays after any command (if they exist, not empty)."""


def make_file(kind: str, folder: Path) -> Path:
    """The telemetry file of this kind in folder (fresh for every example)."""
    path = folder / "telemetry.json"
    contents = {
        "valid": VALID,
        "legacy": LEGACY,
        "torn": TORN,
        "damaged": DAMAGED,
        "foreign": FOREIGN,
        "empty": b"",
    }
    if kind in contents:
        path.write_bytes(contents[kind])
    elif kind == "missing_folders":
        path = folder / "a" / "b" / "telemetry.json"
    elif kind == "folder":
        path.mkdir()
    elif kind == "symlink":
        path.symlink_to(folder / "elsewhere.json")
    return path


def strict(path: Path) -> Any:
    def reject(name: str) -> Any:
        raise AssertionError(f"{path} holds the non-standard JSON constant {name}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


def snapshot(path: Path) -> tuple[bool, int, int, tuple[str, ...]]:
    """What a failed capture must not change: the file, and what is beside it."""
    try:
        info = path.lstat()
        exists, size, mtime = True, info.st_size, info.st_mtime_ns
    except FileNotFoundError:
        exists, size, mtime = False, -1, -1
    beside = tuple(sorted(p.name for p in path.parent.iterdir())) if path.parent.exists() else ()
    return exists, size, mtime, beside


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

NUMBERS = [
    "0", "-0", "1", "-1", "2.5", "-2.5", "1e309", "-1e309", "1e308", "1.7e302", "1e20",
    "1e-400", "nan", "NaN", "-nan", "inf", "-inf", "+Infinity", "9" * 400, "-" + "9" * 30,
    "99999999999999999999999", "0x10", "1_000", " 7 ", "", "5ms", "\u0661\u0662", "1,5",
]  # fmt: skip
JSONS = [
    "{}", '{"a": 1}', "{", "}", "[]", "[1, 2]", "null", "true", "1", '"text"', "{'a': 1}",
    '{"a": NaN}', '{"a": Infinity, "b": -Infinity}', '{"a": 1e999}', '{"a": 1, "a": 2}',
    '{"password": "hunter2", "nested": {"api_key": "k-123"}}', '{"\\ud800": "\\udfff"}',
    '{"a": "\\u0000"}', '{"a": 1} trailing', " {} ", "\ufeff{}", "[" * 5000,
    '{"a":' * 3000 + "1" + "}" * 3000, '{"a":' * 300 + "1" + "}" * 300,
    '{"a": [' + "1," * 10000 + "1]}", '{"big": "' + "x" * 30_000 + '"}',
]  # fmt: skip
STATUSES = [
    "success", "failure", "timeout", "error", "pending", "SUCCESS", "failed", "bogus", "",
    " success", "success\n", "\u017eluťoučký",
]  # fmt: skip
TIMES = [
    "15m", "2h", "7d", "1w", "30s", "0s", "-15m", "15", "15x", "1.5h", "99999999999w",
    "9" * 40 + "d", "1e3d", "now", "yesterday", "2025-10-24", "2025-10-24T14:30:00",
    "2025-10-24T14:30:00Z", "2025-10-24T14:30:00+25:00", "2025-13-45T99:99:99",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "",
]  # fmt: skip
FORMATS = ["table", "json", "jsonl", "tree", "xml", "", "JSON"]
TRACE_IDS = [f"{1:032x}", f"{2:032x}", "0" * 32, "X" * 32, "abc", ""]
JUNK_FLAGS = [
    "--frobnicate", "--", "-", "-x", "-n", "--limit", "--since", "--until", "--skill=",
    "--status=bogus", "--by", "--format", "--metadata", "--min-duration", "--trace-id",
    "--protocol", "--batch-size", "--timeout", "--service-name", "--otlp", "--lines", "-h",
]  # fmt: skip
FILTER_FLAGS = [
    "--skill", "--status", "--caller", "--trace-id", "--since", "--until", "--min-duration",
]  # fmt: skip

_ARGV_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
random_text = st.text(_ARGV_CHARS, max_size=30)
# What a POSIX argv can hold that is not UTF-8: bytes decoded with surrogateescape.
undecodable = st.binary(min_size=1, max_size=12).filter(lambda b: b"\x00" not in b)
hostile_text = st.one_of(random_text, undecodable.map(os.fsdecode))
number = st.one_of(st.sampled_from(NUMBERS), st.floats().map(repr), st.integers().map(str))
json_text = st.one_of(
    st.sampled_from(JSONS),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | random_text,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(random_text, children, max_size=3)
        ),
        max_leaves=8,
    ).map(json.dumps),
)
any_value = st.one_of(
    hostile_text,
    number,
    json_text,
    st.sampled_from(STATUSES),
    st.sampled_from(TIMES),
    st.sampled_from(FORMATS),
    st.sampled_from(TRACE_IDS),
    st.sampled_from(JUNK_FLAGS),
)


def _forbidden(token: str) -> bool:
    """Tokens that would follow (-f), reach a real network endpoint or pick another file."""
    if token.startswith("--"):
        name = token.split("=", 1)[0]
        return len(name) > 2 and any(
            option.startswith(name) for option in ("--file", "--follow", "--endpoint")
        )
    return token.startswith("-") and "f" in token


def _clean(tokens: list[str]) -> list[str]:
    return [token for token in tokens if not _forbidden(token)]


def _flag_values(flags: list[str], values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """Flags with values (sometimes missing: a flag at the end without its value)."""
    pair = st.tuples(st.sampled_from(flags), values).map(list)
    return st.lists(pair, max_size=4).map(lambda pairs: [t for p in pairs for t in p])


junk = st.lists(any_value, max_size=2)
filters = _flag_values(FILTER_FLAGS, any_value)

capture_args = st.one_of(
    # Mostly well-formed, one field at a time hostile.
    st.tuples(
        st.one_of(hostile_text, st.just("skill.ok")),
        st.sampled_from(STATUSES),
        number,
        st.one_of(hostile_text, st.just("CLI")),
        st.lists(st.one_of(json_text, hostile_text), max_size=2),
        st.one_of(st.just([]), json_text.map(lambda m: ["--metadata", m])),
        junk,
    ).map(lambda t: [t[0], t[1], t[2], t[3], *t[4], *t[5], *t[6]]),
    # Anything at all.
    st.lists(any_value, max_size=8),
)
query_args = st.tuples(
    filters,
    _flag_values(["--limit", "--format"], st.one_of(number, st.sampled_from(FORMATS), any_value)),
    junk,
).map(lambda t: [*t[0], *t[1], *t[2]])
stats_args = st.tuples(
    filters,
    _flag_values(
        ["--by", "--format"], st.sampled_from(["skill", "caller", "status", "inputs", *FORMATS])
    ),
    junk,
).map(lambda t: [*t[0], *t[1], *t[2]])
trace_args = st.tuples(
    st.lists(st.one_of(st.sampled_from(TRACE_IDS), hostile_text), max_size=2),
    _flag_values(["--format"], st.sampled_from(FORMATS)),
    junk,
).map(lambda t: [*t[0], *t[1], *t[2]])
tail_args = st.tuples(
    _flag_values(
        ["-n", "--lines", "--format", "--interval"], st.one_of(number, st.sampled_from(FORMATS))
    ),
    junk,
).map(lambda t: [*t[0], *t[1]])
plain_args = st.lists(any_value, max_size=3)  # check and repair take no arguments but --file
export_args = st.tuples(
    st.lists(st.sampled_from(["--otlp"]), max_size=1),
    filters,
    _flag_values(
        ["--protocol", "--batch-size", "--service-name", "--timeout"],
        st.one_of(st.sampled_from(["grpc", "http/protobuf", "carrier-pigeon"]), number),
    ),
    junk,
).map(lambda t: [*t[0], *t[1], *t[2], *t[3], "--endpoint", UNREACHABLE, "--timeout", "1"])

ARGS: dict[str, st.SearchStrategy[list[str]]] = {
    "capture": capture_args,
    "query": query_args,
    "stats": stats_args,
    "trace": trace_args,
    "tail": tail_args,
    "check": plain_args,
    "repair": plain_args,
    "export": export_args,
}


@dataclass(frozen=True)
class Example:
    command: str
    args: list[str]
    file_kind: str

    def argv(self, path: Path) -> list[str]:
        """The command line: --file first (so a ``--`` among the arguments cannot hide it)."""
        where = [] if self.file_kind == "default" else ["--file", str(path)]
        # For export, the unreachable endpoint and the timeout stay the last words.
        tail = (
            [*_clean(self.args[:-4]), *self.args[-4:]]
            if self.command == "export"
            else _clean(self.args)
        )
        return [self.command, *where, *tail]


def examples(commands: tuple[str, ...]) -> st.SearchStrategy[Example]:
    return st.sampled_from(commands).flatmap(
        lambda command: st.builds(
            Example, st.just(command), ARGS[command], st.sampled_from(FILE_KINDS)
        )
    )


# ---------------------------------------------------------------------------
# Running one example and judging what it did
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: object
    stdout: str
    stderr: str


def run_in_process(argv: list[str]) -> Outcome:
    """main(argv) with stdout / stderr captured; the logging set-up main() does is undone."""
    package = logging.getLogger("betty_otel")
    saved = (package.handlers[:], package.propagate, package.level)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code: object = main(argv)
            except SystemExit as exc:  # allowed: argparse's own exit
                code = 0 if exc.code is None else exc.code
    finally:
        package.handlers[:], package.propagate = saved[0], saved[1]
        package.setLevel(saved[2])
    return Outcome(code, out.getvalue(), err.getvalue())


def run_script(argv: list[str], cwd: Path) -> Outcome:
    result = subprocess.run(
        [str(CLI), *argv],
        capture_output=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    out, err = (data.decode("utf-8", "replace") for data in (result.stdout, result.stderr))
    return Outcome(result.returncode, out, err)


def problems_with(example: Example, argv: list[str], outcome: Outcome) -> list[str]:
    """Everything wrong with what one command line did."""
    problems: list[str] = []
    if TRACEBACK in outcome.stderr or TRACEBACK in outcome.stdout:
        problems.append("a Python traceback was printed")
    if outcome.code not in (0, 1, 2) or isinstance(outcome.code, bool):
        problems.append(f"exit status {outcome.code!r}, not 0, 1 or 2")
    if outcome.code == 2:
        if "error:" not in outcome.stderr:
            problems.append("exit status 2 without argparse's usage error")
    elif outcome.code == 1:
        errors = [line for line in outcome.stderr.splitlines() if line.startswith("Error: ")]
        reported = example.command in ("check", "repair") and outcome.stdout.strip()
        if not errors and not reported:
            problems.append("exit status 1 without an `Error: ...` message")
        for line in errors:
            message = line[len("Error: ") :].strip()
            if not message or UNCLEAR.search(message):
                problems.append(f"unclear error message: {line[:300]!r}")
    helped = outcome.stdout.startswith("usage:")  # -h / --help among the arguments
    said = "✓ Telemetry captured to" in outcome.stdout
    if example.command == "capture" and outcome.code == 0 and not helped and not said:
        problems.append("capture succeeded without saying where it wrote")
    return problems


class Workspace:
    """A fresh folder per example, the working directory and $BETTY_TELEMETRY_FILE in it."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.counter = itertools.count()

    def folder(self) -> Path:
        folder = self.root / f"example-{next(self.counter)}"
        folder.mkdir()
        self.monkeypatch.chdir(folder)
        self.monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(folder / "telemetry.json"))
        return folder


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    return Workspace(tmp_path, monkeypatch)


def check_example(example: Example, workspace: Workspace, *, script: bool = False) -> None:
    folder = workspace.folder()
    path = make_file(example.file_kind, folder)
    argv = example.argv(path)
    before = snapshot(path)
    outcome = run_script(argv, folder) if script else run_in_process(argv)
    problems = problems_with(example, argv, outcome)
    if example.command == "capture" and outcome.code != 0 and snapshot(path) != before:
        problems.append("a failed capture changed the telemetry file or its folder")
    if example.file_kind in STRICT_AFTER and path.is_file() and path.stat().st_size:
        try:
            strict(path)
        except (AssertionError, ValueError) as exc:
            problems.append(f"the file is no longer a strict JSON array: {exc}")
    assert not problems, (
        f"argv={[a[:80] for a in argv]!r}\n"
        f"exit={outcome.code!r}\nstderr={outcome.stderr[-1500:]}\nstdout={outcome.stdout[-500:]}\n"
        + "\n".join(problems)
    )


FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---------------------------------------------------------------------------
# The fuzz tests
# ---------------------------------------------------------------------------


@settings(FUZZ, max_examples=150)
@given(example=examples(("capture",)))
def test_capture_with_hostile_arguments_never_tracebacks_and_writes_nothing_on_error(
    example: Example, workspace: Workspace
) -> None:
    """capture with random and hostile SKILL / STATUS / DURATION_MS / CALLER / INPUTS_JSON /
    ERROR_MESSAGE / --metadata: exit 0, 1 or 2, a clear message, nothing written on error."""
    check_example(example, workspace)


@settings(FUZZ, max_examples=200)
@given(example=examples(("query", "stats", "trace", "tail")))
def test_read_commands_with_hostile_arguments_never_traceback(
    example: Example, workspace: Workspace
) -> None:
    """query, stats, trace and tail (no -f) with hostile filters, limits, formats and ids, on
    every kind of file: exit 0, 1 or 2 with a clear message."""
    check_example(example, workspace)


@settings(FUZZ, max_examples=60)
@given(example=examples(("check", "repair")))
def test_check_and_repair_with_hostile_arguments_never_traceback(
    example: Example, workspace: Workspace
) -> None:
    """check and repair on every kind of file, with stray arguments: exit 0, 1 or 2."""
    check_example(example, workspace)


@settings(FUZZ, max_examples=12)
@given(example=examples(("export",)))
def test_export_to_an_unreachable_endpoint_with_hostile_arguments_never_tracebacks(
    example: Example, workspace: Workspace
) -> None:
    """export --endpoint http://127.0.0.1:9 (nothing listens) with hostile filters and
    options: exit 0, 1 or 2 with a clear message, within the 1 s timeout per request."""
    check_example(example, workspace)


@settings(FUZZ, max_examples=15, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(example=examples(COMMANDS))
def test_the_console_script_with_hostile_arguments_never_tracebacks(
    example: Example, workspace: Workspace
) -> None:
    """The installed betty-telemetry, in a subprocess, with hostile arguments (undecodable
    bytes included) to any command: exit 0, 1 or 2, no traceback, a clear message."""
    check_example(example, workspace, script=True)


# ---------------------------------------------------------------------------
# Hostile values the fuzzer found worth pinning down
# ---------------------------------------------------------------------------

PINNED = [
    ["capture", "s", "success", "1e308", "CLI"],
    ["capture", "s", "success", "1.7e302", "CLI"],
    ["capture", "s", "success", "1", "CLI", "[" * 5000],
    ["capture", "s", "success", "1", "CLI", '{"a":' * 3000 + "1" + "}" * 3000],
    ["capture", "s", "success", "1", "CLI", "{}", "--metadata", "[" * 5000],
    ["query", "--limit", "99999999999999999999999"],
    ["tail", "-n", "99999999999999999999999"],
    ["query", "--since", "99999999999w"],
    ["stats", "--until", "9" * 40 + "d"],
    ["query", "--since", "9999-12-31T23:59:59-01:00", "--until", "9999-12-31T23:59:59-01:00"],
]


@pytest.mark.parametrize("argv", PINNED, ids=lambda argv: " ".join(a[:12] for a in argv)[:60])
def test_pinned_hostile_command_lines_fail_cleanly_or_succeed(
    argv: list[str], workspace: Workspace
) -> None:
    """Huge numbers, overflowing times and deep JSON: a clear error (exit 1 or 2, nothing
    written) or success; never Python's internals as the message."""
    command = argv[0]
    example = Example(command, argv[1:], "valid")
    folder = workspace.folder()
    path = make_file("valid", folder)
    before = snapshot(path)
    outcome = run_in_process([command, "--file", str(path), *argv[1:]])
    problems = problems_with(example, argv, outcome)
    if command == "capture" and outcome.code != 0 and snapshot(path) != before:
        problems.append("a failed capture changed the file")
    strict(path)
    assert not problems, f"exit={outcome.code!r} stderr={outcome.stderr[-800:]!r}: {problems}"


@pytest.mark.collector
def test_an_entry_with_a_huge_but_valid_duration_does_not_break_export(
    tmp_path: Path, rotel_collector: RotelCollector
) -> None:
    """An entry with a huge duration (1e20 ms, written by another tool; `capture` itself
    rejects durations reaching back before 1970) must not make `export` fail for the whole
    file: every entry reaches the collector."""
    path = write(tmp_path / "telemetry.json", [cli_entry(n) for n in range(3)])
    write(path, [{**cli_entry(9), "skill": "huge.duration", "duration_ms": 1e20}])
    capture = run_in_process(
        ["capture", "huge.duration", "success", "1e20", "CLI", "--file", str(path)]
    )
    assert capture.code == 1
    assert "duration_ms must not reach back before 1970" in capture.stderr
    write(path, [cli_entry(3)])
    outcome = run_in_process(
        ["export", "--otlp", "--endpoint", rotel_collector.http_endpoint, "--file", str(path)]
    )
    assert outcome.code == 0, outcome.stderr
    names = sorted(span.name for span in rotel_collector.spans(expect=5))
    assert names == sorted(["huge.duration", "skill.0", "skill.0", "skill.1", "skill.2"])

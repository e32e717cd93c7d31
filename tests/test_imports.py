"""What importing betty_otel and running the CLI loads: never the OTel SDK or wrapt
unless the work needs them (recording spans, `export`), so reading the log is quick."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import betty_otel
from cli_helpers import run_main
from collector import free_port
from helpers import append_entries, indent2, make_entry, read_entries

HEAVY = (
    "json.dumps([m for m in sys.modules"
    " if m.split('.')[0] == 'wrapt' or m.startswith('opentelemetry.sdk')])"
)
"""Python text: the names of the loaded modules of the SDK and of wrapt, as JSON."""


def heavy_modules_after(code: str) -> list[str]:
    """The SDK and wrapt modules a fresh interpreter holds after running code."""
    script = f"import json, sys\n{code}\nprint({HEAVY})"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return names


@pytest.mark.parametrize(
    "code",
    [
        "import betty_otel",
        "from betty_otel import STATUSES, internal_errors",
        "import betty_otel.cli",
        "import betty_otel.query",
    ],
)
def test_imports_do_not_load_the_sdk_or_wrapt(code: str) -> None:
    assert heavy_modules_after(code) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["query", "--help"],
        ["query", "--limit", "all"],
        ["stats"],
        ["trace", "ab" * 16],
        ["tail", "-n", "3"],
        ["check"],
        ["repair"],
    ],
)
def test_commands_that_read_do_not_load_the_sdk_or_wrapt(tmp_path: Path, argv: list[str]) -> None:
    path = tmp_path / "telemetry.json"
    path.write_text('[\n{"timestamp":"2025-10-24T14:30:45.123456+00:00","skill":"a"}\n]\n')
    code = f"from betty_otel.cli import main\nmain({[*argv, '--file', str(path)]!r})"
    assert heavy_modules_after(code) == []


CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACE"))}
"""The environment without OTel settings: nothing but the file receives a capture's span."""

HOSTILE_CAPTURE = [
    "\x1b[31mskill\u202e",
    "failure",
    "12.5",
    "caller\x00",
    '{"password": "hunter2", "deep": [[[{"api_key": "x"}]]], "n": 1e400}',
    "boom token=ghp_0123456789abcdefghijklmnopqrstuvwxyz01",
    "--metadata",
    '{"user": "\\ud800", "big": 123456789012345678901234567890}',
]


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["a", "success", "1", "CLI"], {}),
        (HOSTILE_CAPTURE, {}),
        (HOSTILE_CAPTURE, {"TRACEPARENT": f"00-{'ab' * 16}-{'cd' * 8}-01"}),
        (["a", "success", "1", "CLI"], {"OTEL_TRACES_EXPORTER": "none"}),
        (
            ["a", "success", "1", "CLI"],
            {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        ),
        (["a", "bogus", "1", "CLI"], {}),  # errors too
    ],
)
def test_capture_without_otlp_loads_neither_the_sdk_nor_wrapt(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    """No exporter configured: the entry goes straight to the file, no span is made."""
    argv = ["capture", *args, "--file", str(tmp_path / "t.json")]
    result, heavy = run_main(argv, {**CLEAN_ENV, **env})
    assert result.returncode == (1 if "bogus" in args else 0), result.stderr
    assert heavy == []


def test_capture_with_otlp_configured_records_a_span_through_the_sdk(tmp_path: Path) -> None:
    """The check above can fail: with an OTLP endpoint, capture makes a span with the SDK
    (the collector is down here: the capture still succeeds, within its exit budget)."""
    path = tmp_path / "telemetry.json"
    env = {**CLEAN_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    # The timeout only catches a hang: the closed port costs about the 1 s exit budget.
    result, heavy = run_main(["capture", "a", "success", "1", "CLI", "--file", str(path)], env)
    assert result.returncode == 0, result.stderr
    assert "opentelemetry.sdk.trace" in heavy
    assert read_entries(path)[0]["skill"] == "a"


def test_public_names_are_listed_and_resolve_to_their_modules() -> None:
    from betty_otel._entry import STATUSES
    from betty_otel.instrument import capture_telemetry

    assert set(betty_otel.__all__) <= set(dir(betty_otel))
    for name in betty_otel.__all__:
        assert getattr(betty_otel, name) is not None
    assert betty_otel.STATUSES is STATUSES
    assert betty_otel.capture_telemetry is capture_telemetry
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = betty_otel.nothing_here


# ---------------------------------------------------------------------------
# The capture path: about what the original stdlib-only script loads
# ---------------------------------------------------------------------------

LOADED = "sorted(sys.modules)"
"""Python text: every loaded module's name (for run_main)."""

NOT_FOR_A_PLAIN_CAPTURE = (
    "orjson",  # json writes the entry; orjson's import costs more than the whole capture
    "dataclasses",  # imported by orjson, and it imports inspect, ast, dis
    "inspect",
    "logging",  # nothing was logged: imported where something is (betty_otel._logs)
    "random",  # ids from os.urandom
    "shutil",  # argparse asks the terminal's width only when formatting help
    "uuid",
    "opentelemetry",  # no exporter besides the file: no span, no SDK
    "wrapt",
    "betty_otel._store.readers",  # an append reads nothing back
    "betty_otel._store.snapshot",
    "betty_otel._store.parser",  # the tolerant parser: repairs only
    "betty_otel._sanitize",  # nothing to sanitize without inputs, metadata or a message
    "betty_otel.query",
    "betty_otel.capture",
)
"""Modules (and their submodules) a capture with nothing to sanitize must not load."""


def unwanted(loaded: list[str], names: tuple[str, ...]) -> list[str]:
    """The loaded modules that are one of names or inside one of them."""
    return [
        module
        for module in loaded
        if any(
            module.partition(".")[0] == name or module == name or module.startswith(f"{name}.")
            for name in names
        )
    ]


def write_log(path: Path, layout: str) -> None:
    """The log before the capture, in one of the layouts a capture appends to."""
    entries = [make_entry(n) for n in range(3)]
    if layout == "canonical":
        append_entries(path, entries)  # the tail check then parses its last line
    elif layout == "indent=2":
        path.write_bytes(indent2(entries))
    elif layout == "single line":
        path.write_text(json.dumps(entries))  # the tail check parses the whole array
    elif layout == "torn tail":  # a repair: the tolerant parser, loaded then
        append_entries(path, entries)
        path.write_bytes(path.read_bytes()[:-3] + b',\n{"timestamp": "2025-')


@pytest.mark.parametrize("layout", ["missing", "canonical", "indent=2", "single line"])
@pytest.mark.parametrize("traceparent", [None, f"00-{'ab' * 16}-{'cd' * 8}-01"])
def test_a_plain_capture_loads_about_what_the_original_script_loads(
    tmp_path: Path, layout: str, traceparent: str | None
) -> None:
    """`capture SKILL STATUS MS CALLER`, nothing but the file configured: standard library
    modules the original script loads, argparse, and the store's writer; none of
    NOT_FOR_A_PLAIN_CAPTURE. The entry is written and read back as printed."""
    path = tmp_path / "telemetry.json"
    write_log(path, layout)
    env = {**CLEAN_ENV, **({} if traceparent is None else {"TRACEPARENT": traceparent})}
    argv = ["capture", "plugin.build", "success", "320", "CLI", "--file", str(path)]
    result, loaded = run_main(argv, env, modules=LOADED)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert unwanted(loaded, NOT_FOR_A_PLAIN_CAPTURE) == []
    printed = json.loads(result.stdout.rstrip("\n").rpartition("\n")[0])
    assert read_entries(path)[-1] == printed
    if traceparent is not None:
        assert printed["trace_id"] == "ab" * 16
        assert printed["parent_span_id"] == "cd" * 8


NOT_ON_AN_APPEND = (
    "typing",  # annotations only: names from typing are imported for the type checker
    "threading",  # the store's path locks come from _thread
    "weakref",  # the providers' processor switches are made with the first one
    "importlib",  # a module named at run time is imported without it
    "argparse",  # a plain capture line is read without the parser
    "betty_otel._store.repair",  # a sound log needs no repair,
    "betty_otel._store.rotation",  # nor a new file
    "betty_otel._record",  # the record of an execution whose span ends: spans only
)
"""Modules a plain capture line appending to a sound log does not load either: start-up
time the original script does not spend."""


@pytest.mark.parametrize("layout", ["canonical", "indent=2", "single line"])
def test_a_plain_capture_line_appending_to_a_sound_log_loads_none_of_the_rest(
    tmp_path: Path, layout: str
) -> None:
    """`capture SKILL STATUS MS CALLER` as Betty's scripts write it (no option, the log
    named by $BETTY_TELEMETRY_FILE) appending to a sound log of any layout loads none of
    NOT_FOR_A_PLAIN_CAPTURE nor NOT_ON_AN_APPEND; the entry is appended all the same."""
    path = tmp_path / "telemetry.json"
    write_log(path, layout)
    env = {**CLEAN_ENV, "BETTY_TELEMETRY_FILE": str(path)}
    argv = ["capture", "plugin.build", "success", "320", "CLI"]
    result, loaded = run_main(argv, env, modules=LOADED)
    assert result.returncode == 0, result.stderr
    assert unwanted(loaded, NOT_FOR_A_PLAIN_CAPTURE + NOT_ON_AN_APPEND) == []
    entries = read_entries(path)
    assert entries[:-1] == [make_entry(n) for n in range(3)]
    assert entries[-1]["skill"] == "plugin.build"


def test_a_capture_with_inputs_loads_the_sanitizer_but_no_sdk_or_logging(tmp_path: Path) -> None:
    """Inputs, metadata and a message are redacted by the sanitizer; still no span, no
    SDK, no wrapt, no logging, and no orjson (json writes the redacted text)."""
    path = tmp_path / "telemetry.json"
    argv = ["capture", "a", "failure", "1", "CLI", '{"password": "x", "n": 1e16}', "boom"]
    result, loaded = run_main(
        [*argv, "--metadata", '{"k": -0.0}', "--file", str(path)], CLEAN_ENV, modules=LOADED
    )
    assert result.returncode == 0, result.stderr
    assert "betty_otel._sanitize" in loaded
    assert (
        unwanted(loaded, ("opentelemetry", "wrapt", "logging", "betty_otel._store.readers")) == []
    )
    assert unwanted(loaded, ("orjson", "dataclasses", "inspect", "uuid")) == []
    entry = read_entries(path)[0]
    assert entry["inputs"] == {"password": "***REDACTED***", "n": 1e16}
    assert entry["metadata"] == {"k": -0.0}


def test_a_repair_on_the_capture_path_loads_the_parser_and_logs_through_the_cli(
    tmp_path: Path,
) -> None:
    """The check above can fail: a torn tail makes the capture repair it, which loads the
    tolerant parser and logging, and its warning is printed by the CLI's handler."""
    path = tmp_path / "telemetry.json"
    write_log(path, "torn tail")
    argv = ["capture", "a", "success", "1", "CLI", "--file", str(path)]
    result, loaded = run_main(argv, CLEAN_ENV, modules=LOADED)
    assert result.returncode == 0, result.stderr
    assert {"betty_otel._store.parser", "logging"} <= set(loaded)
    assert result.stderr.startswith("betty-telemetry: WARNING: repaired a torn tail of ")
    assert [entry["skill"] for entry in read_entries(path)][-1] == "a"


@pytest.mark.parametrize("batch", [False, True], ids=["sync", "batch"])
def test_a_configured_pipeline_encodes_its_entries_with_orjson(tmp_path: Path, batch: bool) -> None:
    """A long-lived program's decorator pays orjson's import once, at configure, and
    each entry's encoding is then orjson's (the standard library's json, which a one-shot
    capture uses to start quicker, costs a decorated call about 15 µs more)."""
    code = (
        "import betty_otel, sys\n"
        f"betty_otel.configure({str(tmp_path / 'telemetry.json')!r}, otlp=False, batch={batch})\n"
        "print('orjson' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]

"""The installed ``betty-telemetry`` console script, run in a subprocess like a user would.

Help and usage, capture, query, stats and trace, a closed pipe; ``tail`` and ``check`` /
``repair`` have their own modules (test_cli_tail.py, test_cli_repair.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from betty_otel.cli.commandline import COMMANDS, build_parser
from cli_helpers import (
    CLI,
    LEGACY_FILE,
    entry,
    run,
    write,
)

STATUS_ERROR = (
    "Error: Invalid status: bogus. Must be one of: success, failure, timeout, error, pending"
)


def test_console_script_is_installed() -> None:
    """The script beside the interpreter runs this package's CLI: its help lists every command."""
    assert CLI.exists(), f"{CLI} missing: pip install -e . again"
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: betty-telemetry ")
    missing = [command for command in sorted(COMMANDS) if command not in result.stdout]
    assert missing == []


# ---------------------------------------------------------------------------
# help and usage
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["", *sorted(COMMANDS)])
def test_help_has_examples(command: str) -> None:
    """README: "every command takes --file ... and --help with examples"."""
    result = run(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout
    if command:
        assert "--file" in result.stdout


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "betty_otel", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0
    assert "betty-telemetry" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["capture", "a", "success"],
        ["query", "--limit", "-1"],
        ["query", "--limit", "many"],
        ["query", "--format", "xml"],
        ["query", "--min-duration", "fast"],
        ["stats", "--by", "inputs"],
        ["tail", "-n", "x"],
        ["export"],
        ["export", "--otlp", "--protocol", "carrier-pigeon"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = run(*args, "--file", str(tmp_path / "t.json"))
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert not (tmp_path / "t.json").exists()


ONE_COMMAND_LINES = [
    ["capture", "a", "success", "1", "CLI", "{}", "x", "--metadata", "{}", "--file", "f"],
    ["query", "--status", "failure", "--status", "error", "--limit", "all", "--format", "json"],
    ["stats", "--by", "caller", "--since", "7d", "--min-duration", "5"],
    ["trace", "ab" * 16, "--format", "json"],
    ["tail", "-n", "3", "-f", "--interval", "1"],
    ["check", "--file", "x"],
    ["repair"],
    ["export", "--otlp", "--batch-size", "5", "--protocol", "grpc"],
    ["install-skill", "repo"],
    ["report", "-o", "r.html", "--skill", "a"],
]


@pytest.mark.parametrize("argv", ONE_COMMAND_LINES, ids=[argv[0] for argv in ONE_COMMAND_LINES])
def test_a_parser_built_for_one_command_parses_it_alike(argv: list[str]) -> None:
    """main() builds only the named command's parser (quicker start): same result."""
    assert vars(build_parser(argv[0]).parse_args(argv)) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_parser_built_for_one_command_helps_and_fails_alike(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    for parser in (build_parser(command), build_parser()):
        for argv in ([command, "--help"], [command, "--bogus"], [command, "-n", "x"]):
            with pytest.raises(SystemExit) as exit_status:
                parser.parse_args(argv)
            outputs.append((exit_status.value.code, capsys.readouterr()))
    assert outputs[:3] == outputs[3:]


# ---------------------------------------------------------------------------
# capture
# ---------------------------------------------------------------------------


def test_capture_prints_the_entry_and_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "reg" / "telemetry.json"
    result = run(
        "capture",
        "api.validate",
        "failure",
        "412.5",
        "workflow.compose",
        '{"path": "skills/x", "password": "hunter2"}',
        "missing name",
        "--metadata",
        '{"attempt": 2}',
        "--file",
        str(path),
    )
    assert result.returncode == 0, result.stderr
    text, _, last = result.stdout.rstrip("\n").rpartition("\n")
    assert last == f"✓ Telemetry captured to {path}"
    printed = json.loads(text)
    assert text.startswith('{\n  "timestamp"')  # indented JSON
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored == [printed]
    assert printed["skill"] == "api.validate"
    assert printed["status"] == "failure"
    assert printed["duration_ms"] == 412.5
    assert printed["caller"] == "workflow.compose"
    assert printed["inputs"] == {"path": "skills/x", "password": "***REDACTED***"}
    assert printed["error_message"] == "missing name"
    assert printed["metadata"] == {"attempt": 2}
    assert len(printed["trace_id"]) == 32


def test_capture_minimal_and_default_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BETTY_TELEMETRY_FILE"}
    result = run("capture", "a.skill", "success", "0", "CLI", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    # Resolved once to an absolute path (issue 9), as the original skill printed it.
    assert f"✓ Telemetry captured to {tmp_path / 'registry' / 'telemetry.json'}" in result.stdout
    default = tmp_path / "registry" / "telemetry.json"
    assert json.loads(default.read_text(encoding="utf-8"))[0]["inputs"] == {}
    env["BETTY_TELEMETRY_FILE"] = str(tmp_path / "env.json")
    assert run("capture", "b", "pending", "1e3", "CLI", cwd=tmp_path, env=env).returncode == 0
    assert json.loads((tmp_path / "env.json").read_text(encoding="utf-8"))[0]["skill"] == "b"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a", "success", "1", "CLI", "{bad"], "Error: Invalid JSON for inputs: Expecting "),
        (["a", "success", "1", "CLI", ""], "Error: Invalid JSON for inputs: "),
        (["a", "bogus", "1", "CLI"], STATUS_ERROR),
        (["a", "failed", "1", "CLI"], "Error: Invalid status: failed. Must be one of"),
        (["a", "success", "abc", "CLI"], "Error: Invalid duration_ms: 'abc' is not a number"),
        (["a", "success", "-1", "CLI"], "Error: Invalid duration_ms: '-1' must be a finite"),
        (["a", "success", "nan", "CLI"], "Error: Invalid duration_ms: 'nan' must be a finite"),
        (["a", "success", "inf", "CLI"], "Error: Invalid duration_ms: 'inf' must be a finite"),
        (["a", "success", "1e999", "CLI"], "Error: Invalid duration_ms: '1e999' must be"),
        (["a", "success", "1", "CLI", "[1, 2]"], "Error: inputs must be a JSON object, got list"),
        (["a", "success", "1", "CLI", '"text"'], "Error: inputs must be a JSON object, got str"),
        (
            ["a", "success", "1", "CLI", "{}", "x", "--metadata", "{"],
            "Error: Invalid JSON for metadata",
        ),
        (["a", "success", "1", "CLI", "--metadata", "3"], "Error: metadata must be a JSON object"),
        (["", "success", "1", "CLI"], "Error: skill must be a non-empty string"),
        (["a", "success", "1", " "], "Error: caller must be a non-empty string"),
    ],
)
def test_capture_errors_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    fresh = tmp_path / "fresh.json"
    existing = write(tmp_path / "existing.json", [entry(1)])
    before = existing.read_bytes()
    for path in (fresh, existing):
        result = run("capture", *args, "--file", str(path))
        assert result.returncode == 1
        assert result.stderr.startswith(message), result.stderr
        assert result.stdout == ""
    assert not fresh.exists()
    assert existing.read_bytes() == before


def test_capture_does_not_load_the_otlp_stack(tmp_path: Path) -> None:
    """Without OTLP configured, capture never imports an OTLP exporter (import-time log)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [
            *(sys.executable, "-X", "importtime", "-m", "betty_otel"),
            *("capture", "a", "success", "1", "CLI", "--file", str(tmp_path / "t.json")),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line]
    assert "betty_otel.cli" in imported
    assert not [name for name in imported if name.startswith("opentelemetry.exporter")]
    assert "grpc" not in imported
    assert "requests" not in imported


# ---------------------------------------------------------------------------
# query, stats, trace
# ---------------------------------------------------------------------------


def test_query_json_when_piped_and_filters(log: Path) -> None:
    result = run("query", "--file", str(log))
    assert result.returncode == 0
    found = json.loads(result.stdout)
    assert [item["inputs"]["n"] for item in found] == list(range(11, -1, -1))
    result = run("query", "--file", str(log), "--status", "failure", "--status", "timeout")
    # 9 is "failed": a failure (issue 10)
    assert [item["inputs"]["n"] for item in json.loads(result.stdout)] == [9, 7, 4]
    result = run("query", "--file", str(log), "--caller", "API", "--limit", "1")
    assert [item["inputs"]["n"] for item in json.loads(result.stdout)] == [9]
    result = run("query", "--file", str(log), "--min-duration", "19", "--skill", "skill.1")
    assert [item["inputs"]["n"] for item in json.loads(result.stdout)] == [10, 4]
    result = run("query", "--file", str(log), "--trace-id", f"{3:032x}")
    assert [item["inputs"]["n"] for item in json.loads(result.stdout)] == [2]
    result = run(
        "query",
        "--file",
        str(log),
        "--since",
        "2025-10-24T14:00:05Z",
        "--until",
        "2025-10-24T14:00:07Z",
    )
    assert [item["inputs"]["n"] for item in json.loads(result.stdout)] == [6, 5]
    result = run("query", "--file", str(log), "--since", "1h")
    assert json.loads(result.stdout) == []


def test_query_limit_and_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path / "t.json", [entry(i) for i in range(30)])
    assert len(json.loads(run("query", "--file", str(path)).stdout)) == 20  # the default
    assert len(json.loads(run("query", "--file", str(path), "--limit", "all").stdout)) == 30
    assert json.loads(run("query", "--file", str(path), "--limit", "0").stdout) == []
    lines = run("query", "--file", str(path), "--format", "jsonl", "--limit", "3").stdout
    assert [json.loads(line)["inputs"]["n"] for line in lines.splitlines()] == [29, 28, 27]


def test_query_table_is_aligned(log: Path) -> None:
    result = run("query", "--file", str(log), "--format", "table", "--limit", "all")
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "time",
        "(UTC)",
        "skill",
        "status",
        "duration_ms",
        "caller",
        "error",
    ]
    assert set(lines[1]) == {"-", " "}
    assert len(lines) == 2 + 12
    skill_column = lines[0].index("skill")
    status_column = lines[0].index("status")
    for line in lines[2:]:
        assert line[skill_column - 2 : skill_column] == "  "
        assert line[skill_column : skill_column + 6] == "skill."
        assert line[status_column - 1] == " "
    failure = next(line for line in lines if line.startswith("2025-10-24 14:00:04"))
    assert " failure " in failure
    assert "500.0" in failure
    # an old tool's word is shown with the canonical status it means
    failed = next(line for line in lines if line.startswith("2025-10-24 14:00:09"))
    assert " failure (failed) " in failed
    assert failure.endswith("boom second line")  # one line per entry
    assert run("query", "--file", str(log), "--format", "table", "--skill", "x").stdout == (
        "No entries.\n"
    )


def test_query_errors(tmp_path: Path, log: Path) -> None:
    result = run("query", "--file", str(log), "--since", "yesterday")
    assert result.returncode == 2  # a usage error
    assert "error: argument --since: Invalid time 'yesterday'" in result.stderr
    result = run("query", "--file", str(log), "--since", "1h", "--until", "2h")
    assert result.returncode == 2
    assert "is after --until" in result.stderr
    result = run("query", "--file", str(tmp_path / "absent.json"))
    assert (result.returncode, result.stdout) == (1, "")  # no file: an error, not an empty log
    assert result.stderr.startswith(f"Error: {tmp_path / 'absent.json'} does not exist")
    folder = tmp_path / "folder.json"
    folder.mkdir()
    result = run("query", "--file", str(folder))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ")


def test_legacy_file(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.json"
    legacy.write_bytes(LEGACY_FILE.read_bytes())
    result = run("query", "--file", str(legacy), "--status", "failed", "--limit", "all")
    found = json.loads(result.stdout)
    original = json.loads(legacy.read_text(encoding="utf-8"))
    # "failed" and "failure" are one canonical status (issue 10)
    failures = ("failed", "failure")
    assert found == [item for item in reversed(original) if item.get("status") in failures]
    table = run("query", "--file", str(legacy), "--format", "table").stdout
    assert len(table.splitlines()) == 22
    stats = json.loads(run("stats", "--file", str(legacy), "--by", "status").stdout)
    assert sum(group["count"] for group in stats) == 225
    assert run("check", "--file", str(legacy)).returncode == 0


def test_stats(log: Path) -> None:
    result = run("stats", "--file", str(log), "--format", "table")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["skill", "count", "failures", "fail"]
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert rows["skill.1"][1:4] == ["4", "2", "50.0%"]  # entries 1 4 7 10: 4 failed, 7 timed out
    assert rows["skill.0"][1:4] == ["4", "1", "25.0%"]  # "failed" is a failure (issue 10)
    assert lines[-1] == "12 entries in 3 groups (percentiles: linear interpolation)"
    groups = json.loads(run("stats", "--file", str(log), "--by", "caller").stdout)
    assert [(g["key"], g["count"], g["failures"]) for g in groups] == [
        ("CLI", 10, 1),
        ("API", 2, 2),
    ]
    assert groups[0]["statuses"] == {"success": 9, "failure": 1}
    assert groups[1]["p50"] == 18.0
    filtered = json.loads(run("stats", "--file", str(log), "--status", "failure").stdout)
    assert [(g["key"], g["count"], g["failure_rate"]) for g in filtered] == [
        ("skill.0", 1, 1.0),
        ("skill.1", 1, 1.0),
    ]
    assert run("stats", "--file", str(log), "--skill", "none", "--format", "table").stdout == (
        "No entries.\n"
    )


def test_trace(tmp_path: Path) -> None:
    trace_id = "ab" * 16
    root = entry(9, skill="workflow.compose", trace_id=trace_id, span_id="1" * 16, duration_ms=9000)
    child = entry(3, skill="step.one", trace_id=trace_id, span_id="2" * 16, parent_span_id="1" * 16)
    child2 = entry(
        5,
        skill="step.two",
        status="failure",
        error_message="bad input",
        trace_id=trace_id,
        span_id="3" * 16,
        parent_span_id="1" * 16,
    )
    grandchild = entry(
        2, skill="step.inner", trace_id=trace_id, span_id="4" * 16, parent_span_id="2" * 16
    )
    path = write(tmp_path / "t.json", [grandchild, child, child2, root, entry(20)])
    result = run("trace", trace_id, "--file", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("workflow.compose  success  9,000.0 ms  caller=CLI")
    assert lines[1].startswith("├── step.one  success  13.0 ms")
    assert lines[2].startswith("│   └── step.inner  success  12.0 ms")
    assert lines[3].startswith("└── step.two  failure  15.0 ms")
    assert lines[3].endswith("error=bad input")
    assert len(lines) == 4
    tree = json.loads(run("trace", trace_id, "--file", str(path), "--format", "json").stdout)
    assert tree[0]["entry"] == root
    assert [node["entry"]["skill"] for node in tree[0]["children"]] == ["step.one", "step.two"]
    missing = run("trace", "cd" * 16, "--file", str(path))
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"Error: no entries with trace id {'cd' * 16}")


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    path = write(tmp_path / "t.json", [entry(i) for i in range(3000)])
    process = subprocess.Popen(
        [str(CLI), "query", "--file", str(path), "--limit", "all", "--format", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline()
    process.stdout.close()
    assert process.wait(timeout=60) == 0
    assert process.stderr is not None
    with process.stderr:
        assert b"Traceback" not in process.stderr.read()

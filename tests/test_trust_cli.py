"""Trust: the CLI's output cannot be steered by what a log entry or an argument holds,
and its usage errors are usage errors.

- query/tail/trace/stats tables escape control characters (ESC, BEL, CR, OSC 52, C1, DEL,
  bidirectional overrides and isolates) from every field, and so do messages on stderr
  that quote log or user text; JSON output stays JSON with the exact values.
- ``tail -f --interval -1`` is a usage error (exit 2) before anything runs; ``--file /``
  says plainly what is wrong; a malformed inputs argument to ``capture`` is not echoed
  (exit 1 with the parser's reason, as the original skill did).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest

from cli_helpers import run

pytestmark = pytest.mark.faults

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
HOSTILE = {
    "esc_clear": "\x1b[2J\x1b[H",
    "bel": "ding\x07",
    "cr_rewrite": "ok\rFORGED",
    "osc52": "\x1b]52;c;ZWNobyBwd25lZA==\x07",
    "c1_csi": "\x9b31m",
    "del": "x\x7fy",
    "bidi": "\u202egnp.exe",
    "newline": "line1\nline2",
    "backspace": "abc\x08\x08\x08xyz",
    "isolate": "\u2066evil\u2069",
    "nul_tab": "a\x00b\tc",
}


def _write(path: Path, text: str) -> None:
    entries = [
        {
            "timestamp": "2026-01-01T00:00:00.000000+00:00",
            "skill": f"skill{text}",
            "status": "failure",
            "duration_ms": 1.0,
            "caller": f"caller{text}",
            "inputs": {},
            "error_message": f"error{text}",
            "metadata": {},
            "trace_id": TRACE_ID,
            "span_id": "00f067aa0ba902b7",
            "parent_span_id": None,
        }
    ]
    path.write_bytes(orjson.dumps(entries))


def _unsafe(text: str) -> list[str]:
    """The characters of text, newline aside, that a terminal acts on instead of showing."""
    bidi = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    return [
        ch
        for ch in text
        if ch != "\n" and (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ord(ch) in bidi)
    ]


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize(
    "command",
    [
        ["query", "--format", "table"],
        ["stats", "--format", "table"],
        ["stats", "--by", "caller", "--format", "table"],
        ["tail", "-n", "5"],
        ["trace", TRACE_ID],
    ],
    ids=["query", "stats", "stats_by_caller", "tail", "trace"],
)
def test_human_output_escapes_control_characters_from_the_log(
    tmp_path: Path, text: str, command: list[str]
) -> None:
    path = tmp_path / "telemetry.json"
    _write(path, text)
    result = run(*command, "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert _unsafe(result.stdout) == []
    assert _unsafe(result.stderr) == []
    shown = "caller" if "caller" in command else "skill"
    assert shown in result.stdout  # the entry is shown, escaped, not dropped
    if command[0] != "stats":
        # the entry is one line: a newline in a field cannot forge a row
        lines = result.stdout.splitlines()
        rows = [line for line in lines if "skill" in line and not line.startswith("time")]
        assert len(rows) == 1, result.stdout
        assert "caller" in rows[0]
        assert "error" in rows[0]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_output_keeps_the_exact_text_and_is_terminal_safe(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "telemetry.json"
    hostile = "".join(HOSTILE.values())
    _write(path, hostile)
    result = run("query", "--format", fmt, "--file", str(path))
    printed = json.loads(result.stdout) if fmt == "json" else [json.loads(result.stdout)]
    assert printed[0]["skill"] == "skill" + hostile
    assert printed[0]["error_message"] == "error" + hostile
    assert _unsafe(result.stdout) == []  # JSON escapes (\u001b, \u202e), not raw characters


def test_messages_on_stderr_that_quote_user_or_log_text_are_escaped(tmp_path: Path) -> None:
    hostile = "".join(HOSTILE.values()).replace("\x00", "")  # argv cannot hold NUL
    path = tmp_path / "telemetry.json"
    _write(path, "")
    results = [
        run("capture", "x", hostile, "1", "CLI", "--file", str(path)),  # invalid status
        run("capture", "x", "success", hostile, "CLI", "--file", str(path)),  # duration
        run("trace", "0" * 31 + "1", "--file", str(tmp_path / hostile[:8])),  # a path
        run("query", "--limit", hostile),  # argparse's own usage error
        run("query", hostile),  # argparse: unrecognized arguments
        run("stats", "--by", hostile),  # argparse: invalid choice
    ]
    for result in results:
        assert result.returncode in (1, 2), result
        assert result.stderr.strip()
        assert _unsafe(result.stderr) == [], result.stderr
        assert _unsafe(result.stdout) == [], result.stdout


def test_library_warnings_printed_by_the_cli_are_escaped(tmp_path: Path) -> None:
    """A damaged region is reported by the store's logger, quoting the file's (hostile) name."""
    path = tmp_path / "tele\x1b]52;c;AA==\x07\u202emetry.json"
    _write(path, "")
    good = path.read_bytes()
    path.write_bytes(good[:-1] + b',\n{"bad": "\x1b[2J\x07 \xc2\x9b"  \x1b]52;c;AA==\x07\n' + b"]")
    for command in (["query"], ["check"]):
        result = run(*command, "--file", str(path))
        assert "metry.json" in result.stderr + result.stdout
        assert _unsafe(result.stderr) == [], result.stderr
        assert _unsafe(result.stdout) == [], result.stdout


@pytest.mark.parametrize("interval", ["-1", "0", "nan", "inf", "-0.5", "1e300"])
@pytest.mark.parametrize("follow", [["-f"], []], ids=["follow", "no_follow"])
def test_tail_with_a_bad_interval_is_a_usage_error_before_anything_runs(
    tmp_path: Path, interval: str, follow: list[str]
) -> None:
    path = tmp_path / "telemetry.json"
    _write(path, "")
    # a bound that catches a hang (tail -f with a huge interval would never return)
    result = run("tail", *follow, "--interval", interval, "--file", str(path), timeout=60)
    assert result.returncode == 2, result
    assert result.stdout == ""  # nothing printed before the error
    assert "interval" in result.stderr


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "1e300"])
def test_export_with_a_bad_timeout_is_a_usage_error(tmp_path: Path, timeout: str) -> None:
    path = tmp_path / "telemetry.json"
    _write(path, "")
    result = run("export", "--otlp", "--timeout", timeout, "--file", str(path))
    assert result.returncode == 2, result
    assert "timeout" in result.stderr


READERS = [
    ["query"],
    ["stats"],
    ["check"],
    ["repair"],
    ["tail"],
    ["trace", TRACE_ID],
    ["export", "--otlp", "--endpoint", "http://127.0.0.1:9"],
]


@pytest.mark.parametrize("command", READERS, ids=lambda command: command[0])
@pytest.mark.parametrize("where", ["/", "dir", "dir_link"])
def test_a_directory_as_the_file_gets_a_plain_message(
    tmp_path: Path, command: list[str], where: str
) -> None:
    path = {"/": Path("/"), "dir": tmp_path, "dir_link": tmp_path / "link"}[where]
    if where == "dir_link":
        path.symlink_to(tmp_path)
    result = run(*command, "--file", str(path))
    assert result.returncode == 1
    assert str(path) in result.stderr
    assert "is a directory" in result.stderr
    assert "Errno" not in result.stderr


@pytest.mark.parametrize("command", READERS, ids=lambda command: command[0])
def test_a_fifo_as_the_file_gets_a_plain_message_and_never_hangs(
    tmp_path: Path, command: list[str]
) -> None:
    fifo = tmp_path / "telemetry.json"
    os.mkfifo(fifo)
    result = run(*command, "--file", str(fifo), timeout=60)  # a bound that catches a hang
    assert result.returncode == 1
    assert f"{fifo} is not a regular file" in result.stderr


def test_a_malformed_inputs_argument_is_not_echoed(tmp_path: Path) -> None:
    secret = "sk-live-4f9a8b7c6d5e4f3a2b1c"
    path = tmp_path / "telemetry.json"
    bad_inputs = [
        f'{{"api_key": "{secret}"',
        f"password={secret}",
        f'["{secret}"]',
        f'"{secret}"',
        f'{{"a": {"[" * 100_000}"{secret}"',
    ]
    for bad in bad_inputs:
        for args in ([bad], ["{}", "message", "--metadata", bad]):
            result = run("capture", "x", "success", "1", "CLI", *args, "--file", str(path))
            assert result.returncode == 1, result  # an error, as the original skill's exit 1
            assert secret not in result.stderr + result.stdout
            assert "inputs" in result.stderr or "metadata" in result.stderr
    assert not path.exists()


def test_a_malformed_inputs_argument_gives_the_original_message() -> None:
    result = run("capture", "plugin.build", "success", "320", "CLI", "{invalid json}")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "Error: Invalid JSON for inputs: Expecting property name enclosed in double quotes"
    )

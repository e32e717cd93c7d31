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
from conftest import read_entries

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

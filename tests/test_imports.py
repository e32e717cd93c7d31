"""What importing betty_otel and running the CLI loads: never the OTel SDK or wrapt
unless the work needs them (recording spans, `export`), so reading the log is quick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import betty_otel

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


def test_the_sdk_is_loaded_when_a_command_needs_it(tmp_path: Path) -> None:
    """The check above can fail: capture records a span through the SDK."""
    path = tmp_path / "telemetry.json"
    argv = ["capture", "a", "success", "1", "CLI", "--file", str(path)]
    code = f"from betty_otel.cli import main\nmain({argv!r})"
    assert "opentelemetry.sdk.trace" in heavy_modules_after(code)


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

"""betty_otel.testing: capture_entries() and the betty_entries pytest fixture for users' tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import betty_otel
from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry
from betty_otel.testing import CapturedEntries, capture_entries
from helpers import read_entries


@capture_telemetry(skill_name="helper.skill", caller="API", capture_inputs=True)
def skill(x: int, token: str = "t-secret-1") -> dict[str, str]:
    return {"status": "success" if x >= 0 else "failure", "error": "negative"}


def test_capture_entries_records_in_memory_instead_of_the_file(telemetry_file: Path) -> None:
    with capture_entries() as entries:
        skill(1)
        skill(-1)
    assert isinstance(entries, CapturedEntries)
    assert [e["status"] for e in entries] == ["success", "failure"]
    first = entries[0]
    assert first["skill"] == "helper.skill"
    assert first["caller"] == "API"
    assert first["inputs"] == {"x": 1, "token": "***REDACTED***"}
    assert entries[1]["error_message"] == "negative"
    assert not telemetry_file.exists()


def test_capture_entries_have_the_file_entry_schema(telemetry_file: Path) -> None:
    with capture_entries() as entries:
        skill(1)
    skill(2)  # the same call, recorded to the file
    (in_memory,) = entries
    (on_disk,) = read_entries(telemetry_file)
    assert list(in_memory) == list(on_disk)
    for key in ("skill", "status", "caller", "error_message", "metadata"):
        assert in_memory[key] == on_disk[key]


def test_capture_entries_restores_the_previous_pipeline(telemetry_file: Path) -> None:
    skill(1)
    with capture_entries() as entries:
        skill(2)
    skill(3)
    assert len(entries) == 1
    assert [e["inputs"]["x"] for e in read_entries(telemetry_file)] == [1, 3]


def test_capture_entries_restores_even_when_the_block_raises(telemetry_file: Path) -> None:
    captured: list[CapturedEntries] = []

    def block() -> None:
        with capture_entries() as entries:
            captured.append(entries)
            skill(1)
            raise RuntimeError("in block")

    with pytest.raises(RuntimeError, match="in block"):
        block()
    skill(2)
    (entries,) = captured
    assert len(entries) == 1
    assert [e["inputs"]["x"] for e in read_entries(telemetry_file)] == [2]


def test_capture_entries_nested_and_async_executions_keep_links() -> None:
    @capture_telemetry(skill_name="child")
    async def child() -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        async with TelemetryContext("parent"):
            await asyncio.gather(child(), child())

    with capture_entries() as entries:
        asyncio.run(main())
    (parent,) = entries.by_skill("parent")
    children = entries.by_skill("child")
    assert len(children) == 2
    assert {c["parent_span_id"] for c in children} == {parent["span_id"]}
    assert {c["trace_id"] for c in children} == {parent["trace_id"]}
    assert entries.by_skill("nothing") == []


def test_capture_entries_sees_capture_calls(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    with capture_entries() as entries:
        entry = TelemetryCapture(path).capture("captured", "pending", 3, "CLI")
    assert entries == [entry]
    assert read_entries(path) == [entry]  # capture() still writes its own file


@pytest.mark.parametrize(
    ("variable", "value"),
    [("BETTY_TELEMETRY_DISABLED", "1"), ("OTEL_SDK_DISABLED", "true")],
)
def test_capture_entries_captures_even_when_telemetry_is_disabled_by_env(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test helper must not silently capture nothing because of the machine's env."""
    monkeypatch.setenv(variable, value)
    betty_otel.shutdown()
    with capture_entries() as entries:
        skill(1)
    assert [e["skill"] for e in entries] == ["helper.skill"]


def test_betty_entries_fixture_works_in_a_users_pytest_run(tmp_path: Path) -> None:
    project = tmp_path / "userproject"
    project.mkdir()
    (project / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:cacheprovider --strict-config --strict-markers\n"
        "filterwarnings = error\n"
    )
    (project / "conftest.py").write_text('pytest_plugins = ["betty_otel.testing"]\n')
    (project / "test_user.py").write_text(
        textwrap.dedent(
            """
            from betty_otel import capture_telemetry

            @capture_telemetry(skill_name="user.skill")
            def user_skill(x):
                return {"status": "failure", "error": "nope"} if x else x

            def test_first(betty_entries):
                user_skill(0)
                user_skill(1)
                assert [e["status"] for e in betty_entries] == ["success", "failure"]
                assert betty_entries.by_skill("user.skill")[1]["error_message"] == "nope"

            def test_fresh_per_test(betty_entries):
                assert betty_entries == []
                user_skill(0)
                assert len(betty_entries) == 1
            """
        )
    )
    telemetry = tmp_path / "must-not-exist.json"
    env = {**os.environ, "BETTY_TELEMETRY_FILE": str(telemetry)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(project)],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert not telemetry.exists()

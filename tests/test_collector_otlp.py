"""Spans reach a real OTLP collector (rotel-agent) exactly as the file records them.

The collector is started by each test on free loopback ports and stopped after it;
these tests run in CI, they do not skip.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import betty_otel
from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry
from collector import ReceivedSpan, RotelCollector
from helpers import read_entries

SECRETS = (
    "hunter2-top-secret",
    "sk-live-abcdefghijklmnopqrstuvwx",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
)

pytestmark = pytest.mark.collector


@capture_telemetry(skill_name="step.fetch", caller="workflow.compose", capture_inputs=True)
def fetch(url: str, password: str) -> dict[str, str]:
    return {"status": "success", "url": url}


@capture_telemetry(skill_name="step.parse", caller="workflow.compose", capture_inputs=True)
async def parse(document: str, api_key: str) -> int:
    await asyncio.sleep(0.001)
    if document == "bad":
        msg = f"cannot parse with Authorization: Bearer {SECRETS[2]}"
        raise ValueError(msg)
    return len(document)


@capture_telemetry(skill_name="workflow.compose", caller="CLI")
async def compose() -> None:
    fetch(f"https://user:{SECRETS[0]}@example.invalid/doc", password=SECRETS[0])
    await parse("good", api_key=SECRETS[1])
    with TelemetryContext("step.publish", caller="workflow.compose") as step:
        step.set_metadata({"target": "registry", "token": SECRETS[1]})
    with pytest.raises(ValueError, match="cannot parse"):
        await parse("bad", api_key=SECRETS[1])


def _assert_same(entry: dict[str, object], span: ReceivedSpan) -> None:
    """The collector's span says what the file's entry says."""
    assert span.trace_id == entry["trace_id"]
    assert span.parent_span_id == entry["parent_span_id"]
    assert span.name == entry["skill"]
    assert span.attributes["betty.skill"] == entry["skill"]
    assert span.attributes["betty.status"] == entry["status"]
    assert span.attributes["betty.caller"] == entry["caller"]
    inputs = span.attributes.get("betty.inputs")
    assert (json.loads(str(inputs)) if inputs is not None else {}) == entry["inputs"]
    metadata = span.attributes.get("betty.metadata")
    assert (json.loads(str(metadata)) if metadata is not None else {}) == entry["metadata"]
    assert span.attributes.get("betty.error_message") == entry["error_message"]
    failed = entry["status"] in ("failure", "error", "timeout")
    assert span.status_code == ("Error" if failed else "Unset")
    assert span.status_message == ((entry["error_message"] if failed else None) or "")
    if entry["skill"] == "step.parse" and failed:  # raised: the exception is an event too
        event = span.event("exception").attributes  # the message alone, its type apart
        assert f"{event['exception.type']}: {event['exception.message']}" == entry["error_message"]
    assert abs(span.duration_ns / 1e6 - float(str(entry["duration_ms"]))) < 0.01


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_every_entry_reaches_the_collector_with_the_same_ids_and_attributes(
    protocol: str,
    tmp_path: Path,
    rotel_collector: RotelCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nested sync and async executions: file entries and collector spans agree, no secrets."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "betty-otel-tests")
    endpoint = (
        rotel_collector.grpc_endpoint if protocol == "grpc" else rotel_collector.http_endpoint
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path)

    asyncio.run(compose())
    TelemetryCapture(path).capture("cli.capture", "timeout", 1500, "CLI", {"secret": SECRETS[0]})
    betty_otel.shutdown()  # flushes the OTLP batch processor

    entries = read_entries(path)
    assert len(entries) == 6
    received = {span.span_id: span for span in rotel_collector.spans(expect=len(entries))}
    assert set(received) == {entry["span_id"] for entry in entries}
    for entry in entries:
        _assert_same(entry, received[str(entry["span_id"])])
        assert received[str(entry["span_id"])].resource_attributes["service.name"] == (
            "betty-otel-tests"
        )
    root = next(entry for entry in entries if entry["skill"] == "workflow.compose")
    children = [entry for entry in entries if entry["parent_span_id"] == root["span_id"]]
    assert sorted(str(child["skill"]) for child in children) == [
        "step.fetch",
        "step.parse",
        "step.parse",
        "step.publish",
    ]
    raw_file = path.read_text(encoding="utf-8")
    raw_wire = rotel_collector.raw_output()
    for secret in SECRETS:
        assert secret not in raw_file
        assert secret not in raw_wire


def test_a_collector_that_is_down_never_breaks_or_blocks_the_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTLP to a closed port: calls return normally and the file still gets every entry."""
    from collector import free_port

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path)

    @capture_telemetry
    def work(x: int) -> int:
        return x * 2

    assert [work(i) for i in range(50)] == [i * 2 for i in range(50)]
    assert len(read_entries(path)) == 50
    betty_otel.shutdown()

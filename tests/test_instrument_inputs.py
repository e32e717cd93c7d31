"""@capture_telemetry's inputs: bound by parameter name, as at call time, secrets redacted.

Inputs bind parameter names with defaults, *args and **kwargs for every function kind;
secret keys are redacted at any depth in any style (sanitize_keys adds more); secret
values in inputs, exceptions and returned errors reach neither the file nor the span;
ordinary names are kept and unserialisable inputs never break the call.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import betty_otel
from betty_otel import capture_telemetry
from helpers import only_entry, read_entries
from instrument_helpers import KINDS, ORIGINALS, make, run

# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------

REDACTED = "***REDACTED***"


def test_inputs_bind_parameter_names_with_defaults_varargs_and_kwargs(
    telemetry_file: Path,
) -> None:
    @capture_telemetry(capture_inputs=True)
    def full(a: int, b: int = 2, *rest: int, c: int, d: int = 4, **extra: int) -> None:
        pass

    full(1, 2, 5, 6, c=3, e=7)
    full(1, c=3)
    first, second = read_entries(telemetry_file)
    assert first["inputs"] == {"a": 1, "b": 2, "rest": [5, 6], "c": 3, "d": 4, "extra": {"e": 7}}
    assert second["inputs"] == {"a": 1, "b": 2, "rest": [], "c": 3, "d": 4, "extra": {}}


@pytest.mark.parametrize("kind", KINDS)
def test_inputs_are_captured_for_every_function_kind(kind: str, telemetry_file: Path) -> None:
    original = ORIGINALS[kind]
    decorated = capture_telemetry(capture_inputs=True)(original)
    run(kind, functools.partial(decorated, 2))
    assert only_entry(telemetry_file)["inputs"] == {"a": 2, "b": "x"}


def test_inputs_are_those_at_call_time(telemetry_file: Path) -> None:
    @capture_telemetry(capture_inputs=True)
    def mutate(items: list[int]) -> None:
        items.append(99)

    mutate([1])
    assert only_entry(telemetry_file)["inputs"] == {"items": [1]}


def test_secret_keys_are_redacted_at_any_depth_in_any_case_or_separator_style(
    telemetry_file: Path,
) -> None:
    @capture_telemetry(capture_inputs=True)
    def call_api(apiKey: str, payload: dict[str, Any], **options: Any) -> None:  # noqa: N803
        pass

    payload = {
        "nested": [{"api-key": "value-2222", "author": "Ann", "authors": ["Bo"]}],
        "API_KEY": "value-3333",
        "deeper": {"list": [{"inner": {"Password": "value-4444"}}]},
        "max_tokens": 256,
    }
    call_api("value-1111", payload, API_KEY="value-5555", max_tokens=5)
    call_api(apiKey="value-6666", payload={})
    first, second = read_entries(telemetry_file)
    assert first["inputs"] == {
        "apiKey": REDACTED,
        "payload": {
            "nested": [{"api-key": REDACTED, "author": "Ann", "authors": ["Bo"]}],
            "API_KEY": REDACTED,
            "deeper": {"list": [{"inner": {"Password": REDACTED}}]},
            "max_tokens": 256,
        },
        "options": {"API_KEY": REDACTED, "max_tokens": 5},
    }
    assert second["inputs"] == {"apiKey": REDACTED, "payload": {}, "options": {}}
    raw = telemetry_file.read_bytes()
    for n in (1, 2, 3, 4, 5, 6):
        assert f"value-{n}{n}{n}{n}".encode() not in raw


def test_sanitize_keys_adds_a_key_in_any_style_on_top_of_the_defaults(
    telemetry_file: Path,
) -> None:
    @capture_telemetry(capture_inputs=True, sanitize_keys=["customer_id"])
    def charge(customer_id: str, order: dict[str, Any], password: str) -> None:
        pass

    @capture_telemetry(capture_inputs=True)
    def charge_default(customer_id: str) -> None:
        pass

    charge("C-111", {"customerId": "C-222", "Customer-ID": "C-333", "amount": 5}, "pw-444")
    charge_default("C-555")
    first, second = read_entries(telemetry_file)
    assert first["inputs"] == {
        "customer_id": REDACTED,
        "order": {"customerId": REDACTED, "Customer-ID": REDACTED, "amount": 5},
        "password": REDACTED,
    }
    assert second["inputs"] == {"customer_id": "C-555"}  # not secret unless asked


SECRET_VALUES = {
    "bearer": ("Authorization: Bearer abcDEF123456ghiJKL789", "abcDEF123456ghiJKL789"),
    "jwt": (
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U in use",
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    "pem": (
        "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAx7Qm9ZkS3cretKeyMaterial\n"
        "-----END RSA PRIVATE KEY-----\n",
        "MIIEpAIBAAKCAQEAx7Qm9ZkS3cretKeyMaterial",
    ),
    "url": ("connect to postgres://admin:s3cr3tPassw0rd@db.example.com/app", "s3cr3tPassw0rd"),
    "password-pair": ("login with password=CorrectHorse9Battery now", "CorrectHorse9Battery"),
}


def assert_secret_nowhere(secret: str, path: Path, memory: InMemorySpanExporter) -> None:
    raw = path.read_bytes()
    assert secret.encode() not in raw
    assert REDACTED.encode() in raw
    spans = memory.get_finished_spans()
    assert spans
    for span in spans:
        assert secret not in span.to_json()
        assert secret not in (span.status.description or "")
        for event in span.events:
            assert secret not in repr(dict(event.attributes or {}))


@pytest.mark.parametrize("kind", list(SECRET_VALUES))
def test_secret_values_in_inputs_and_exception_never_reach_file_or_span(
    kind: str, telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> None:
    text, secret = SECRET_VALUES[kind]

    @capture_telemetry(capture_inputs=True)
    def leaky(note: str, items: list[dict[str, str]]) -> None:
        raise RuntimeError(f"request failed: {note}")

    with pytest.raises(RuntimeError) as info:
        leaky(text, [{"description": text}])
    assert secret in str(info.value)  # the user's exception itself is untouched
    entry = only_entry(telemetry_file)
    assert entry["status"] == "failure"
    assert entry["error_message"].startswith("RuntimeError: request failed:")
    assert_secret_nowhere(secret, telemetry_file, memory_spans)


@pytest.mark.parametrize("kind", list(SECRET_VALUES))
def test_secret_values_in_a_returned_error_never_reach_file_or_span(
    kind: str, telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> None:
    text, secret = SECRET_VALUES[kind]
    result = {"status": "error", "error": text}
    assert make("sync", lambda: result)() is result
    entry = only_entry(telemetry_file)
    assert entry["status"] == "error"
    assert_secret_nowhere(secret, telemetry_file, memory_spans)


def test_ordinary_names_are_not_redacted(telemetry_file: Path) -> None:
    @capture_telemetry(capture_inputs=True)
    def generate(
        author: str, authors: list[str], max_tokens: int, tokenizer: str, keyboard: str
    ) -> None:
        pass

    generate("Ann", ["Bo", "Cy"], 512, "bpe", "qwerty")
    assert only_entry(telemetry_file)["inputs"] == {
        "author": "Ann",
        "authors": ["Bo", "Cy"],
        "max_tokens": 512,
        "tokenizer": "bpe",
        "keyboard": "qwerty",
    }


def test_unserialisable_inputs_do_not_break_the_call(telemetry_file: Path) -> None:
    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    cycle: list[Any] = []
    cycle.append(cycle)

    @capture_telemetry(capture_inputs=True)
    def odd(a: object, b: object, c: float) -> str:
        return "ok"

    assert odd(Weird(), cycle, float("nan")) == "ok"
    entry = only_entry(telemetry_file)
    assert set(entry["inputs"]) == {"a", "b", "c"}
    assert betty_otel.internal_errors() == 0

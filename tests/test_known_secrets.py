"""A value known to be secret is secret everywhere in its execution.

``def login(user, password): raise ValueError(f"bad password {password}")`` records
``inputs.password`` redacted; the same value must not come back in clear anywhere
else the execution is recorded: its error message, exception event (message, type,
stacktrace), span status description, metadata, and what its code puts on its span,
in the file and at a collector. What redaction removed from the inputs or metadata is
known secret, whatever found it: a secret name (at any depth, in any container), its
position in an argument list, or a value rule. Values shorter than 4 characters are
not searched for (a 1-character password would otherwise be cut out of every word).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import betty_otel
from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry
from betty_otel._known_secrets import MIN_LENGTH, NO_SECRETS, learned, scrub
from betty_otel._redact import Redactor
from betty_otel._sanitize import default_sanitizer
from cli_helpers import run
from helpers import read_entries

REDACTED = "***REDACTED***"


@pytest.fixture(params=["file-tracer", "program-provider"])
def recorded(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Path, InMemorySpanExporter | None]]:
    """The telemetry file, and what a collector received on a program's provider."""
    path = tmp_path / "telemetry.json"
    if request.param == "file-tracer":
        betty_otel.configure(path, otlp=False)
        yield path, None
        return
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    yield path, memory
    betty_otel.shutdown()
    provider.shutdown()


def _strings(attributes: object) -> list[str]:
    """The text values of OpenTelemetry attributes (strings, and strings in sequences)."""
    texts = []
    for value in dict(attributes or {}).values():  # type: ignore[call-overload]
        items = value if isinstance(value, (list, tuple)) else [value]
        texts += [item for item in items if isinstance(item, str)]
    return texts


def texts_of_span(span: ReadableSpan) -> list[str]:
    """Every text a collector receives of an execution's span besides its inputs."""
    attributes = {k: v for k, v in (span.attributes or {}).items() if k != "betty.inputs"}
    texts = [span.name, str(span.status.description), *_strings(attributes)]
    for event in span.events:
        texts += [event.name, *_strings(event.attributes)]
    return texts


def texts_of_entry(entry: dict[str, Any]) -> list[str]:
    """The entry's error message and metadata, as text."""
    return [str(entry["error_message"]), json.dumps(entry["metadata"])]


def assert_secret_nowhere(
    secret: str, recorded: tuple[Path, InMemorySpanExporter | None]
) -> dict[str, Any]:
    """secret is in no entry's error or metadata and nowhere on the collector's spans;
    returns the last entry."""
    path, memory = recorded
    entries = read_entries(path)
    for entry in entries:
        for text in texts_of_entry(entry):
            assert secret not in text
    if memory is not None:
        for span in memory.get_finished_spans():
            for text in texts_of_span(span):
                assert secret not in text
    return entries[-1]


# -- the example, and its class ----------------------------------------------


@capture_telemetry(capture_inputs=True)
def login(user: str, password: str) -> None:
    raise ValueError(f"bad password {password}")


def test_a_password_argument_is_secret_in_the_error_status_and_exception_event(
    recorded: tuple[Path, InMemorySpanExporter | None],
) -> None:
    with pytest.raises(ValueError, match="bad password hunter22"):  # the program sees it
        login("bob", "hunter22")
    entry = assert_secret_nowhere("hunter22", recorded)
    assert entry["inputs"] == {"user": "bob", "password": REDACTED}
    assert entry["error_message"] == f"ValueError: bad password {REDACTED}"
    _, memory = recorded
    if memory is not None:
        (span,) = memory.get_finished_spans()
        assert span.status.description == f"ValueError: bad password {REDACTED}"
        (event,) = span.events
        assert (event.attributes or {})["exception.message"] == f"bad password {REDACTED}"


@dataclasses.dataclass
class Settings:
    host: str
    api_key: str


class Credentials:
    def __init__(self, user: str, secret: str) -> None:
        self.user = user
        self.secret = secret


class Model:
    """Shaped like a pydantic model: model_dump() gives its fields."""

    def __init__(self, token: str) -> None:
        self.token = token

    def model_dump(self) -> dict[str, str]:
        return {"token": self.token}


CASES: dict[str, tuple[Callable[[str], object], str]] = {
    "nested-key": (lambda s: {"db": {"host": "h", "password": s}}, "s3cr3t-nested"),
    "list-under-key": (lambda s: {"passwords": ["first-pw-1", s]}, "s3cr3t-listed"),
    "tuple-under-key": (lambda s: {"credentials": ("alice", s)}, "s3cr3t-tuple"),
    "object-under-key": (lambda s: {"credentials": Credentials("alice", s)}, "s3cr3t-object"),
    "dataclass-field": (lambda s: Settings("h", s), "s3cr3t-dataclass"),
    "model-field": (Model, "s3cr3t-model"),
    "argv-option": (lambda s: ["mysql", "--password", s], "s3cr3t-argv"),
    "url-password": (lambda s: f"postgres://app:{s}@db.internal/prod", "s3cr3t-url"),
    "bearer-header": (lambda s: {"headers": f"Authorization: Bearer {s}"}, "abcdefghij0123456789"),
    "pair-in-text": (lambda s: f"retry=3 password={s} mode=fast", "s3cr3t-pair"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_what_redaction_removed_from_any_input_is_secret_in_the_error_and_events(
    recorded: tuple[Path, InMemorySpanExporter | None], case: str
) -> None:
    make, secret = CASES[case]

    @capture_telemetry(skill_name="deploy", capture_inputs=True)
    def deploy(config: object) -> None:
        raise RuntimeError(f"deploy failed with {secret} (config {config!r})")

    with pytest.raises(RuntimeError):
        deploy(make(secret))
    entry = assert_secret_nowhere(secret, recorded)
    assert secret not in json.dumps(entry["inputs"])
    assert entry["error_message"].startswith(f"RuntimeError: deploy failed with {REDACTED}")


def _sync() -> None:
    with TelemetryContext(
        "sync", metadata={"api_token": "meta-token-77", "note": "used meta-token-77"}
    ) as block:
        block.set_inputs({"user": "bob", "pin": "pin-0042"})
        raise KeyError("meta-token-77 rejected for pin-0042")


def test_metadata_secrets_are_secret_in_the_error_and_the_rest_of_the_metadata(
    recorded: tuple[Path, InMemorySpanExporter | None],
) -> None:
    with pytest.raises(KeyError, match="meta-token-77 rejected"):
        _sync()
    entry = assert_secret_nowhere("meta-token-77", recorded)
    assert_secret_nowhere("pin-0042", recorded)
    assert entry["metadata"] == {"api_token": REDACTED, "note": f"used {REDACTED}"}
    assert entry["error_message"] == f"KeyError: '{REDACTED} rejected for {REDACTED}'"


def test_what_code_puts_on_its_span_loses_the_known_secrets_on_the_wire(
    recorded: tuple[Path, InMemorySpanExporter | None],
) -> None:
    @capture_telemetry(skill_name="chatty", capture_inputs=True)
    def chatty(password: str) -> None:
        span = trace.get_current_span()
        span.set_attribute("user.note", f"tried {password}")
        span.add_event("retry", {"why": f"rejected {password}"})
        span.set_status(trace.StatusCode.ERROR, f"gave up on {password}")
        span.update_name(f"chatty {password}")

    chatty("chatty-pw-99")
    assert_secret_nowhere("chatty-pw-99", recorded)


def test_known_secrets_belong_to_one_execution(
    recorded: tuple[Path, InMemorySpanExporter | None],
) -> None:
    with pytest.raises(ValueError, match="bad password"):
        login("bob", "first-pw-1")

    @capture_telemetry(skill_name="report")
    def report() -> None:
        raise ValueError("the account first-pw-1 expired")  # no secret of this call

    with pytest.raises(ValueError, match="expired"):
        report()
    path, _ = recorded
    assert read_entries(path)[-1]["error_message"] == ("ValueError: the account first-pw-1 expired")


@pytest.mark.parametrize(
    ("password", "searched"),
    [("x" * (MIN_LENGTH - 1), False), ("y" * MIN_LENGTH, True), ("abc", False), ("abcd", True)],
)
def test_values_shorter_than_the_minimum_length_are_not_searched_for(
    recorded: tuple[Path, InMemorySpanExporter | None], password: str, searched: bool
) -> None:
    with pytest.raises(ValueError, match="bad password"):
        login("bob", password)
    path, _ = recorded
    (entry,) = read_entries(path)
    assert entry["inputs"]["password"] == REDACTED  # redacted by key, whatever its length
    assert (password not in entry["error_message"]) is searched


# -- captures of executions timed elsewhere -----------------------------------------


def test_a_capture_removes_its_known_secrets_from_its_error_and_metadata(tmp_path: Path) -> None:
    entry = TelemetryCapture(tmp_path / "t.json").capture(
        "login",
        "failure",
        12.0,
        "API",
        {"user": "bob", "password": "hunter22"},
        "bad password hunter22",
        {"note": "hunter22 was tried", "client_secret": "cs-123456"},
    )
    assert entry["inputs"] == {"user": "bob", "password": REDACTED}
    assert entry["error_message"] == f"bad password {REDACTED}"
    assert entry["metadata"] == {"note": f"{REDACTED} was tried", "client_secret": REDACTED}
    assert read_entries(tmp_path / "t.json") == [entry]


@pytest.mark.parametrize("path", ["direct", "span"])
def test_the_command_line_capture_removes_known_secrets_on_both_paths(
    tmp_path: Path, path: str
) -> None:
    env = {**os.environ, "BETTY_TELEMETRY_FILE": str(tmp_path / "t.json")}
    if path == "span":
        env["OTEL_ATTRIBUTE_COUNT_LIMIT"] = "2"  # an SDK setting: the span path runs
    result = run(
        "capture",
        "login",
        "failure",
        "12",
        "CLI",
        '{"user": "bob", "password": "hunter22"}',
        "bad password hunter22",
        "--metadata",
        '{"note": "hunter22 again"}',
        env=env,
    )
    assert result.returncode == 0, result.stderr
    (entry,) = read_entries(tmp_path / "t.json")
    assert entry["inputs"] == {"user": "bob", "password": REDACTED}
    assert entry["error_message"] == f"bad password {REDACTED}"
    assert entry["metadata"] == {"note": f"{REDACTED} again"}


# -- any secret, anywhere in the message --------------------------------------------

_SECRETS = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=MIN_LENGTH, max_size=24)
_WORDS = st.text("abcdefghijklmnopqrstuvwxyz ,.:=/'\"", max_size=12)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(secret=_SECRETS, before=_WORDS, after=_WORDS, via=st.sampled_from(["call", "block"]))
def test_any_known_secret_is_nowhere_in_what_its_execution_records(
    tmp_path: Path, secret: str, before: str, after: str, via: str
) -> None:
    path = tmp_path / f"t-{len(list(tmp_path.iterdir()))}.json"
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    message = f"{before}{secret}{after}"
    with pytest.raises(ValueError, match=re.escape(message)):
        _record_one(via, secret, message)
    betty_otel.shutdown()
    provider.shutdown()
    assert_secret_nowhere(secret, (path, memory))


def _record_one(via: str, secret: str, message: str) -> None:
    """One execution that knows secret (an input, or metadata) and raises message."""
    if via == "call":
        capture_telemetry(skill_name="s", capture_inputs=True)(_raise)(secret, message)
    else:
        with TelemetryContext("s", metadata={"note": message, "token": secret}):
            _raise(secret, message)


def _raise(password: str, message: str) -> None:
    raise ValueError(message)


# -- the rules of learning and removing ---------------------------------------------


class RaisingMapping(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("hostile")


def test_secrets_with_pattern_characters_are_removed_literally() -> None:
    secrets = learned(NO_SECRETS, REDACTED, lambda: {"password": "a.b*c(d)[e]"}, Redactor())
    assert secrets == ("a.b*c(d)[e]",)
    assert scrub("x a.b*c(d)[e] aXbbc", secrets) == f"x {REDACTED} aXbbc"
    assert scrub(scrub("a.b*c(d)[e]", secrets), secrets) == REDACTED


def test_parts_of_the_marker_and_blank_values_are_never_searched_for() -> None:
    raw = {"password": "REDACTED", "token": "    ", "secret": "***"}
    assert learned(NO_SECRETS, REDACTED, lambda: raw, Redactor()) == NO_SECRETS


def test_a_value_that_cannot_be_walked_teaches_what_was_found_before_it() -> None:
    raw = [{"password": "found-first"}, RaisingMapping(a=1)]
    assert learned(NO_SECRETS, REDACTED, lambda: raw, Redactor()) == ("found-first",)


def test_nothing_is_learned_when_redaction_removed_nothing() -> None:
    calls: list[int] = []
    assert learned(NO_SECRETS, '{"n":1}', lambda: calls.append(1), Redactor()) == NO_SECRETS
    assert calls == []  # the raw value is not even made


def test_the_walk_reads_no_further_than_the_sanitizer_reads() -> None:
    """Items past the 200 the sanitizer keeps are never read (nor recorded): the walk of
    a huge input costs what its redaction costs."""
    raw = {f"k{n}": "x" * 20_000 for n in range(1_000)} | {"password": "never-read"}
    assert "never-read" not in json.dumps(default_sanitizer().sanitize(raw))
    assert learned(NO_SECRETS, REDACTED, lambda: raw, Redactor()) == NO_SECRETS

"""Faults: secrets never reach the file, the span or a real collector (issue 5, case 20).

Secrets by key (any depth, any case or separator style, in decorator arguments, methods,
*args/**kwargs, TelemetryContext, set_inputs/set_metadata and TelemetryCapture.capture)
and by value (bearer tokens, JWTs, PEM private keys, URL credentials, ``password=`` in
text) are redacted in the file, the span (status, exception event) and at a real
collector, and the marker never echoes any part of them; ordinary names (``author``,
``max_tokens``) are kept.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import betty_otel
from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry
from collector import RotelCollector
from helpers import (
    LINE_BUDGET,
    assert_no_fragment,
    assert_nowhere,
    file_texts,
    strict_entries,
    take,
)

pytestmark = pytest.mark.faults

REDACTED = "***REDACTED***"


# ---------------------------------------------------------------------------
# Case 20: secrets
# ---------------------------------------------------------------------------

# Secrets are random letters outside a-f (never a hex id or a timestamp), so "no 6-char
# piece of the secret appears anywhere" is a meaningful check on every output.
_ALPHABET = "GHJKLMNPQRSTUVWXYZghjkmnpqrstuvwxyz"


def _token(seed: int, length: int = 24) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(_ALPHABET) for _ in range(length))


KEY_SPELLINGS = (
    "password",
    "PASSWORD",
    "api-key",
    "apiKey",
    "API_KEY",
    "client.secret",
    "Client-Secret",
    "db_password",
    "githubToken",
    "aws_secret_access_key",
    "X-Api-Key",
    "Authorization",
    "refresh_token",
    "private_key",
    "passphrase",
    "Cookie",
)
KEY_SECRETS: dict[str, str] = {key: _token(100 + n) for n, key in enumerate(KEY_SPELLINGS)}
NESTED_SECRET = _token(99)
"""Under ``credentials``: a secret key whose value is a whole structure."""


def nested_secrets() -> dict[str, Any]:
    """Every spelling not used as a parameter name, at depth, in lists in dicts."""
    s = KEY_SECRETS
    return {
        "profiles": [
            {"name": "primary", "api-key": s["api-key"]},
            {"name": "backup", "settings": {"client.secret": s["client.secret"]}},
            {"name": "deep", "retries": [[{"Client-Secret": s["Client-Secret"]}]]},
        ],
        "db": {"hosts": [{"host": "db1.example", "db_password": s["db_password"]}]},
        "headers": [{"X-Api-Key": s["X-Api-Key"]}, {"Authorization": s["Authorization"]}],
        "github": {"githubToken": s["githubToken"]},
        "aws": [[{"aws_secret_access_key": s["aws_secret_access_key"]}]],
        "keys": {
            "private_key": s["private_key"],
            "passphrase": s["passphrase"],
            "refresh_token": s["refresh_token"],
        },
        "Cookie": s["Cookie"],
        "credentials": {"user": "svc", "pw": [NESTED_SECRET]},
        "author": "Jane Austen",
        "max_tokens": 512,
    }


def assert_nested_redacted(recorded: dict[str, Any]) -> None:
    """The structure is kept, the secret values replaced, ordinary names untouched."""
    assert recorded["profiles"][0] == {"name": "primary", "api-key": REDACTED}
    assert recorded["profiles"][1]["settings"] == {"client.secret": REDACTED}
    assert recorded["profiles"][2]["retries"] == [[{"Client-Secret": REDACTED}]]
    assert recorded["db"]["hosts"] == [{"host": "db1.example", "db_password": REDACTED}]
    assert recorded["headers"] == [{"X-Api-Key": REDACTED}, {"Authorization": REDACTED}]
    assert recorded["aws"] == [[{"aws_secret_access_key": REDACTED}]]
    assert recorded["credentials"] == REDACTED
    assert recorded["author"] == "Jane Austen"
    assert recorded["max_tokens"] == 512


ALL_KEY_SECRETS = (*KEY_SECRETS.values(), NESTED_SECRET)


@capture_telemetry(skill_name="faults.secrets.login", caller="faults", capture_inputs=True)
def login(
    user: str,
    password: str,
    apiKey: str,  # noqa: N803 - the camelCase spelling is the point
    API_KEY: str,  # noqa: N803
    PASSWORD: str,  # noqa: N803
    options: dict[str, Any],
    author: str = "nobody",
    max_tokens: int = 0,
) -> str:
    return user


@capture_telemetry(skill_name="faults.secrets.connect", caller="faults", capture_inputs=True)
def connect(*requests: dict[str, Any], **settings: Any) -> int:
    return len(requests) + len(settings)


class Client:
    @capture_telemetry(skill_name="faults.secrets.method", caller="faults", capture_inputs=True)
    def authenticate(self, password: str, *, api_key: str) -> bool:
        return bool(password and api_key)


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[tuple[Path, InMemorySpanExporter]]:
    """The telemetry file, plus every span in memory (an SDK provider of the program's own)."""
    path = tmp_path / "telemetry.json"
    spans = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    yield path, spans
    betty_otel.shutdown()
    provider.shutdown()


def call_with_key_secrets(style: str) -> None:
    """The decorated calls carrying KEY_SECRETS, positionally or by keyword."""
    s = KEY_SECRETS
    if style == "positional":
        login("svc", s["password"], s["apiKey"], s["API_KEY"], s["PASSWORD"], nested_secrets())
    else:
        login(
            options=nested_secrets(),
            PASSWORD=s["PASSWORD"],
            API_KEY=s["API_KEY"],
            apiKey=s["apiKey"],
            password=s["password"],
            user="svc",
            author="Jane Austen",
            max_tokens=512,
        )


@pytest.mark.parametrize("style", ["positional", "keyword"])
def test_secret_keys_in_any_spelling_and_depth_are_redacted_in_decorator_arguments(
    style: str, memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """password, PASSWORD, apiKey, API_KEY as parameter names; api-key, client.secret and
    the rest nested in lists in dicts: none reaches the file or the span."""
    path, spans = memory
    call_with_key_secrets(style)
    (entry,) = strict_entries(path, LINE_BUDGET)
    inputs = entry["inputs"]
    for name in ("password", "apiKey", "API_KEY", "PASSWORD"):
        assert inputs[name] == REDACTED
    assert inputs["user"] == "svc"
    assert_nested_redacted(inputs["options"])
    assert_nowhere(ALL_KEY_SECRETS, path, spans)


def test_secret_keys_are_redacted_in_var_positional_and_var_keyword_arguments(
    memory: tuple[Path, InMemorySpanExporter],
) -> None:
    """``**{"api-key": ...}`` and dicts passed through ``*args``."""
    path, spans = memory
    s = KEY_SECRETS
    connect(
        nested_secrets(),
        {"password": s["password"], "author": "Jane Austen"},
        **{"api-key": s["api-key"], "client.secret": s["client.secret"], "max_tokens": 512},
    )
    (entry,) = strict_entries(path, LINE_BUDGET)
    inputs = entry["inputs"]
    assert_nested_redacted(inputs["requests"][0])
    assert inputs["requests"][1] == {"password": REDACTED, "author": "Jane Austen"}
    assert inputs["settings"] == {"api-key": REDACTED, "client.secret": REDACTED, "max_tokens": 512}
    assert_nowhere(ALL_KEY_SECRETS, path, spans)


def test_secret_parameters_of_a_method_are_redacted_positionally_and_by_keyword(
    memory: tuple[Path, InMemorySpanExporter],
) -> None:
    path, spans = memory
    Client().authenticate(KEY_SECRETS["password"], api_key=KEY_SECRETS["API_KEY"])
    (entry,) = strict_entries(path, LINE_BUDGET)
    assert entry["inputs"] == {"password": REDACTED, "api_key": REDACTED}
    assert_nowhere([KEY_SECRETS["password"], KEY_SECRETS["API_KEY"]], path, spans)


def test_secret_keys_are_redacted_in_context_inputs_set_inputs_metadata_and_capture(
    memory: tuple[Path, InMemorySpanExporter],
) -> None:
    """TelemetryContext(inputs=, metadata=), set_inputs, set_metadata, and
    TelemetryCapture.capture(inputs=, metadata=)."""
    path, spans = memory
    with TelemetryContext(
        "faults.secrets.context", caller="faults", inputs=nested_secrets(), metadata={"x": 1}
    ) as context:
        context.set_inputs(nested_secrets())
        context.set_metadata(nested_secrets())
        context.set_metadata({"API_KEY": KEY_SECRETS["API_KEY"]})
    with TelemetryContext("faults.secrets.context", caller="faults", metadata=nested_secrets()):
        pass
    TelemetryCapture(path).capture(
        "faults.secrets.capture",
        "success",
        5.0,
        "faults",
        inputs=nested_secrets(),
        metadata=nested_secrets(),
    )
    entries = strict_entries(path, LINE_BUDGET)
    assert len(entries) == 3
    assert_nested_redacted(entries[0]["inputs"])
    assert_nested_redacted(entries[0]["metadata"])
    assert entries[0]["metadata"]["API_KEY"] == REDACTED
    assert_nested_redacted(entries[1]["metadata"])
    assert_nested_redacted(entries[2]["inputs"])
    assert_nested_redacted(entries[2]["metadata"])
    assert_nowhere(ALL_KEY_SECRETS, path, spans)


def test_extra_sanitize_keys_are_redacted_like_the_defaults(
    memory: tuple[Path, InMemorySpanExporter],
) -> None:
    path, spans = memory
    colour = _token(7)

    @capture_telemetry(capture_inputs=True, sanitize_keys=["favourite_colour"])
    def paint(favourite_colour: str, options: dict[str, str]) -> None:
        pass

    paint(colour, {"Favourite-Colour": colour, "author": "Jane Austen"})
    with TelemetryContext("faults.paint", sanitize_keys=["favouriteColour"]) as context:
        context.set_inputs({"FAVOURITE_COLOUR": colour})
        context.set_metadata({"favourite.colour": colour})
    entries = strict_entries(path, LINE_BUDGET)
    assert entries[0]["inputs"]["options"] == {
        "Favourite-Colour": REDACTED,
        "author": "Jane Austen",
    }
    assert_nowhere([colour], path, spans)


class Credentials(NamedTuple):
    user: str
    password: str


def test_a_named_tuple_field_named_like_a_secret_is_redacted(
    memory: tuple[Path, InMemorySpanExporter],
) -> None:
    """A NamedTuple's field names are keys: Credentials(user, password) keeps no password."""
    path, spans = memory
    secret = KEY_SECRETS["password"]
    take(Credentials("svc", secret))
    assert_nowhere([secret], path, spans)


def test_bytes_keys_that_name_secrets_are_redacted(
    memory: tuple[Path, InMemorySpanExporter],
) -> None:
    """Keys read as bytes (Redis hashes, raw HTTP headers) name secrets just as well."""
    path, spans = memory
    secrets = [KEY_SECRETS["password"], KEY_SECRETS["api-key"]]
    take({b"password": secrets[0].encode(), b"api-key": secrets[1]})
    assert_nowhere(secrets, path, spans)


@pytest.mark.parametrize(
    "call",
    ["too-many-positional", "unknown-keyword", "missing-argument"],
)
def test_secrets_passed_positionally_are_redacted_even_when_the_call_does_not_bind(
    call: str, memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """A call with a wrong argument still raises its TypeError, and the password passed
    positionally is still redacted (its parameter name is known from its position)."""
    path, spans = memory
    secret = KEY_SECRETS["password"]

    @capture_telemetry(skill_name="faults.secrets.bind", capture_inputs=True)
    def sign_in(user: str, password: str, region: str) -> None:
        pass

    loose: Any = sign_in
    calls: dict[str, Callable[[], object]] = {
        "too-many-positional": lambda: loose("svc", secret, "eu", "extra"),
        "unknown-keyword": lambda: loose("svc", secret, regoin="eu"),
        "missing-argument": lambda: loose("svc", secret),
    }
    with pytest.raises(TypeError):
        calls[call]()
    assert_nowhere([secret], path, spans)


def test_author_and_max_tokens_are_not_secrets(tmp_path: Path) -> None:
    """No false positives: author, authors, max_tokens and tokenizer values are kept, as
    parameters, nested keys, metadata and in key=value text."""
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False)

    @capture_telemetry(capture_inputs=True)
    def generate(author: str, max_tokens: int, extra: dict[str, Any], note: str) -> None:
        pass

    ordinary = {
        "author": "Jane Austen",
        "authors": ["A", "B"],
        "max_tokens": 512,
        "tokenizer": "bpe",
    }
    note = "author=Jane max_tokens=512 tokenizer: bpe"
    generate("Jane Austen", 512, ordinary, note)
    with TelemetryContext("faults.ordinary", metadata=ordinary) as context:
        context.set_inputs(ordinary)
    (first, second) = strict_entries(path, LINE_BUDGET)
    assert first["inputs"] == {
        "author": "Jane Austen",
        "max_tokens": 512,
        "extra": ordinary,
        "note": note,
    }
    assert second["inputs"] == ordinary
    assert second["metadata"] == ordinary


# Secrets by value: (text holding the secret, the secret part that must vanish).
_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ"
    + _token(201, 40)
    + "."
    + _token(202, 43).replace("k", "_")
)
_PEM_BODY = "\n".join(["MII" + _token(203, 61), _token(204, 64), _token(205, 40) + "=="])
VALUE_SECRETS: dict[str, tuple[str, str]] = {
    "bearer-header": (f"Authorization: Bearer {_token(210)}", _token(210)),
    "bearer-in-a-command": (
        f"curl -H 'Authorization: Bearer {_token(211)}' https://api.example.com/v1",
        _token(211),
    ),
    "jwt": (f"session {_JWT} has expired", _JWT),
    "pem-private-key": (
        f"key file:\n-----BEGIN RSA PRIVATE KEY-----\n{_PEM_BODY}\n-----END RSA PRIVATE KEY-----\n",
        _PEM_BODY,
    ),
    "pem-private-key-cut-off": (f"-----BEGIN PRIVATE KEY-----\n{_PEM_BODY}", _PEM_BODY),
    "url-credentials-https": (f"GET https://svc:{_token(212)}@api.example.com/x", _token(212)),
    "url-credentials-postgres": (
        f"could not connect to postgres://admin:{_token(213)}@db.example.com:5432/app",
        _token(213),
    ),
    "password-pair": (f"login failed with password={_token(214)} (attempt 3)", _token(214)),
    "password-pair-quoted-with-space": (
        f'config: {{"db_password": "{_token(215)} {_token(216)}"}}',
        f"{_token(215)} {_token(216)}",
    ),
    "api-key-in-a-query-string": (
        f"GET https://api.example.com/v1/items?api_key={_token(217)}&page=2",
        _token(217),
    ),
    "secret-in-a-dict-repr": (f"bad config {{'client_secret': '{_token(218)}'}}", _token(218)),
    "bytes-password-in-a-dict-repr": (
        str({"password": _token(219).encode()}),
        _token(219),
    ),
}
ALL_VALUE_SECRETS = [secret for _, secret in VALUE_SECRETS.values()]


@pytest.mark.parametrize("kind", list(VALUE_SECRETS))
def test_secret_values_in_inputs_metadata_and_keys_are_redacted(
    kind: str, memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """A secret-looking value under an ordinary name, in a list, as a dict key, in
    set_inputs, metadata and capture(): none reaches the file or the span."""
    path, spans = memory
    text, secret = VALUE_SECRETS[kind]
    assert take({"note": text, "lines": [text], text: "as a key"}) is not None
    with TelemetryContext("faults.values", metadata={"log": text}) as context:
        context.set_inputs({"request": text})
    TelemetryCapture(path).capture(
        "faults.values", "success", 1.0, "faults", inputs={"q": text}, metadata={"m": [text]}
    )
    assert len(strict_entries(path, LINE_BUDGET)) == 3
    assert_nowhere([secret], path, spans)


@pytest.mark.parametrize("kind", list(VALUE_SECRETS))
def test_secret_values_in_exception_messages_reach_neither_file_nor_span_status_nor_event(
    kind: str, memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """Raised (plain, chained, timeout, KeyboardInterrupt) from a decorated function and a
    TelemetryContext, returned as {"status": "failure", "error": ...}, set with set_error,
    and passed to capture(error_message=...): the user's exception is untouched, but the
    file's error_message, the span's status description and its exception event hold no
    piece of the secret."""
    path, spans = memory
    text, secret = VALUE_SECRETS[kind]

    @capture_telemetry(skill_name="faults.errors", capture_inputs=True)
    def fail(how: str) -> dict[str, str]:
        if how == "plain":
            raise ConnectionError(text)
        if how == "chained":
            try:
                raise ConnectionError(text)
            except ConnectionError as cause:
                raise RuntimeError("request failed") from cause
        if how == "timeout":
            raise TimeoutError(text)
        if how == "interrupt":
            raise KeyboardInterrupt(text)
        return {"status": "failure", "error": text}

    for how, expected in (
        ("plain", ConnectionError),
        ("chained", RuntimeError),
        ("timeout", TimeoutError),
        ("interrupt", KeyboardInterrupt),
    ):
        with pytest.raises(expected) as raised:
            fail(how)
        assert secret in "".join(str(e) for e in (raised.value, raised.value.__cause__))
    fail("return")
    with (
        pytest.raises(ConnectionError) as raised_in_block,
        TelemetryContext("faults.errors.context"),
    ):
        raise ConnectionError(text)
    assert str(raised_in_block.value) == text
    with TelemetryContext("faults.errors.context") as context:
        context.set_error(text)
    TelemetryCapture(path).capture("faults.errors", "failure", 1.0, "faults", error_message=text)

    entries = strict_entries(path, LINE_BUDGET)
    assert [entry["status"] for entry in entries] == [
        "failure",
        "failure",
        "timeout",
        "error",
        "failure",
        "failure",
        "failure",
        "failure",
    ]
    assert all(entry["error_message"] for entry in entries)
    finished = [span for span in spans.get_finished_spans() if span.status.description]
    assert len(finished) == len(entries)
    assert sum(1 for span in finished for event in span.events if event.name == "exception") == 5
    assert_nowhere([secret], path, spans)


@pytest.mark.collector
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_no_secret_reaches_a_real_collector(
    protocol: str,
    tmp_path: Path,
    rotel_collector: RotelCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every secret scenario above, exported over OTLP to rotel-agent: the collector receives
    every span, and no piece of any secret appears in anything it printed."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    endpoint = (
        rotel_collector.grpc_endpoint if protocol == "grpc" else rotel_collector.http_endpoint
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path)

    call_with_key_secrets("positional")
    call_with_key_secrets("keyword")
    with TelemetryContext("faults.collector.context", metadata=nested_secrets()) as context:
        context.set_inputs(nested_secrets())
    TelemetryCapture(path).capture(
        "faults.collector.capture", "success", 1.0, "faults", inputs=nested_secrets()
    )

    @capture_telemetry(skill_name="faults.collector.values", capture_inputs=True)
    def leak(note: str, text: str) -> None:
        raise ConnectionError(text)

    for text, _ in VALUE_SECRETS.values():
        with pytest.raises(ConnectionError):
            leak(text, text=text)
        with TelemetryContext("faults.collector.set_error", metadata={"m": text}) as context:
            context.set_error(text)
    betty_otel.shutdown()  # flushes the OTLP batch processor

    entries = strict_entries(path, LINE_BUDGET)
    assert len(entries) == 4 + 2 * len(VALUE_SECRETS)
    received = rotel_collector.spans(expect=len(entries))
    assert {span.span_id for span in received} == {entry["span_id"] for entry in entries}
    raw = rotel_collector.raw_output()
    assert REDACTED in raw
    assert "Jane Austen" in raw  # ordinary values do arrive
    assert_no_fragment([*ALL_KEY_SECRETS, *ALL_VALUE_SECRETS], [raw], "the collector's output")
    assert_no_fragment(
        [*ALL_KEY_SECRETS, *ALL_VALUE_SECRETS], file_texts(path), "the telemetry file"
    )

"""Faults: hostile inputs, secrets, and telemetry that fails inside the host program (issue 5).

Case 19: inputs that break naive JSON encoders (NaN, infinities, lone surrogates, bytes,
cycles, a 10 MB string, objects whose repr/str raise, keys that are not strings, 10,000
levels of nesting, generators) never break the call; every entry stays strict JSON
within a size budget, whichever way the value comes in (decorator arguments,
TelemetryContext, TelemetryCapture.capture).

Case 20: secrets by key (any depth, any case or separator style) and by value (bearer
tokens, JWTs, PEM private keys, URL credentials, ``password=`` in text) never reach the
file, the span (status, exception event) or a real collector, and the marker never
echoes any part of them; ordinary names (``author``, ``max_tokens``) are kept.

And: telemetry never breaks the host program. With an unwritable file, a sanitizer that
raises, or a tracer that cannot start spans, the decorated function returns exactly its
value and raises exactly its exception; the failure is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import betty_otel
from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry, instrument
from betty_otel._sanitize import Sanitizer
from betty_otel._setup import FileSpan, FileTracer
from betty_otel._store import TelemetryStore
from collector import RotelCollector, free_port
from helpers import (
    LINE_BUDGET,
    assert_no_fragment,
    assert_nowhere,
    file_texts,
    strict_entries,
)

pytestmark = pytest.mark.faults

REDACTED = "***REDACTED***"


# ---------------------------------------------------------------------------
# Reading the file strictly
# ---------------------------------------------------------------------------


def entry_count(path: Path) -> int:
    return len(strict_entries(path, LINE_BUDGET)) if path.exists() else 0


# ---------------------------------------------------------------------------
# Case 19: hostile values
# ---------------------------------------------------------------------------


class ReprRaises:
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")


class StrRaises:
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class BothRaise:
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")

    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class KeyStrRaises:
    """Hashable, so it can be a dict key, but it cannot be turned into text."""

    def __repr__(self) -> str:
        raise RuntimeError("key __repr__ exploded")

    def __str__(self) -> str:
        raise RuntimeError("key __str__ exploded")


class ItemsRaise(dict[str, int]):
    def items(self) -> Any:
        raise RuntimeError("items() exploded")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("__iter__ exploded")


class ModelDumpRaises:
    def model_dump(self) -> dict[str, Any]:
        raise RuntimeError("model_dump exploded")


class ModelDumpsItself:
    def model_dump(self) -> dict[str, Any]:
        return {"me": self}


@dataclass
class Node:
    child: Any = None


def _self_list() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


def _self_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"name": "loop"}
    value["self"] = value
    return value


def _mutual_cycle() -> list[Any]:
    first: list[Any] = []
    second = {"back": first}
    first.append(second)
    return first


def _self_dataclass() -> Node:
    node = Node()
    node.child = node
    return node


def _deep_list(levels: int = 10_000) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


def _deep_dict(levels: int = 10_000) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"k": value}
    return value


def _odd_keys() -> dict[Any, Any]:
    return {
        1: "int",
        (1, 2): "tuple",
        None: "none",
        KeyStrRaises(): "object whose str raises",
        2.5: "float",
        float("nan"): "nan",
        float("inf"): "inf",
        False: "bool",
        frozenset({3}): "frozenset",
        b"raw": "bytes",
        "\ud800": "lone surrogate",
        "1": "collides with 1",
    }


HOSTILE: dict[str, Callable[[], object]] = {
    "nan": lambda: float("nan"),
    "inf": lambda: float("inf"),
    "minus-inf": lambda: float("-inf"),
    "nan-and-infs-in-a-list": lambda: [float("nan"), float("inf"), float("-inf"), 1.5],
    "nan-in-a-dict": lambda: {"score": float("nan"), "limit": float("-inf")},
    "lone-surrogate": lambda: "\ud800",
    "lone-surrogates-in-text": lambda: "start \udfff middle \ud800 end",
    "bytes-utf8": lambda: b"plain text bytes",
    "bytes-binary": lambda: b"\xff\xfe\x00\x80 not utf-8",
    "bytes-10MB": lambda: b"\x00" * 10_000_000,
    "bytearray": lambda: bytearray(b"\xc3\x28 invalid"),
    "memoryview": lambda: memoryview(b"view of bytes"),
    "list-containing-itself": _self_list,
    "dict-containing-itself": _self_dict,
    "mutual-cycle": _mutual_cycle,
    "dataclass-containing-itself": _self_dataclass,
    "model-dump-returning-itself": ModelDumpsItself,
    "string-10MB": lambda: "x" * 10_000_000,
    "string-10MB-non-ascii": lambda: "\u00e9\u4e2d" * 5_000_000,
    "string-10MB-of-key-value-pairs": lambda: "password=hunter2 a=b; " * 460_000,
    "many-10KB-strings": lambda: ["y" * 10_000] * 100,
    "many-control-character-strings": lambda: ["\x00\x01\x1f" * 3_400] * 100,
    "many-astral-character-strings": lambda: ["\U0001f600" * 10_000] * 100,
    "repr-raises": ReprRaises,
    "str-raises": StrRaises,
    "repr-and-str-raise": BothRaise,
    "repr-raises-inside-a-list": lambda: [1, ReprRaises(), {"k": BothRaise()}],
    "mapping-whose-items-raise": lambda: ItemsRaise(a=1),
    "model-dump-raises": ModelDumpRaises,
    "keys-that-are-not-strings": _odd_keys,
    "nested-10000-lists": _deep_list,
    "nested-10000-dicts": _deep_dict,
    "int-with-5000-digits": lambda: 10**5000,
    "set-of-mixed-types": lambda: {1, "a", None, 2.5, (1, 2)},
    "a-class": lambda: ReprRaises,
    "a-function": lambda: _deep_list,
}


@capture_telemetry(skill_name="faults.hostile", caller="faults", capture_inputs=True)
def take(data: object) -> object:
    return data


@capture_telemetry(skill_name="faults.hostile.var", caller="faults", capture_inputs=True)
def take_var(*args: object, **kwargs: object) -> tuple[tuple[object, ...], dict[str, object]]:
    return args, kwargs


def _via_positional(value: object, path: Path) -> str:
    assert take(value) is value
    return "inputs"


def _via_keyword(value: object, path: Path) -> str:
    assert take(data=value) is value
    return "inputs"


def _via_var_positional(value: object, path: Path) -> str:
    args, _ = take_var(value)
    assert args[0] is value
    return "inputs"


def _via_var_keyword(value: object, path: Path) -> str:
    _, kwargs = take_var(data=value)
    assert kwargs["data"] is value
    return "inputs"


def _via_context_inputs(value: object, path: Path) -> str:
    with TelemetryContext("faults.hostile.context", caller="faults", inputs={"data": value}):
        pass
    return "inputs"


def _via_context_metadata(value: object, path: Path) -> str:
    with TelemetryContext("faults.hostile.context", caller="faults", metadata={"data": value}):
        pass
    return "metadata"


def _via_set_inputs(value: object, path: Path) -> str:
    with TelemetryContext("faults.hostile.context", caller="faults") as context:
        context.set_inputs({"data": value})
    return "inputs"


def _via_set_metadata(value: object, path: Path) -> str:
    with TelemetryContext("faults.hostile.context", caller="faults") as context:
        context.set_metadata({"data": value})
    return "metadata"


def _via_capture_inputs(value: object, path: Path) -> str:
    TelemetryCapture(path).capture(
        "faults.hostile.capture", "success", 1.5, "faults", inputs={"data": value}
    )
    return "inputs"


def _via_capture_metadata(value: object, path: Path) -> str:
    TelemetryCapture(path).capture(
        "faults.hostile.capture", "success", 1.5, "faults", metadata={"data": value}
    )
    return "metadata"


CHANNELS: dict[str, Callable[[object, Path], str]] = {
    "decorator-positional": _via_positional,
    "decorator-keyword": _via_keyword,
    "decorator-var-positional": _via_var_positional,
    "decorator-var-keyword": _via_var_keyword,
    "context-inputs": _via_context_inputs,
    "context-metadata": _via_context_metadata,
    "context-set-inputs": _via_set_inputs,
    "context-set-metadata": _via_set_metadata,
    "capture-inputs": _via_capture_inputs,
    "capture-metadata": _via_capture_metadata,
}


@pytest.mark.parametrize("channel", list(CHANNELS))
@pytest.mark.parametrize("hostile", list(HOSTILE))
def test_a_hostile_value_never_breaks_the_call_and_the_entry_is_strict_json_within_budget(
    hostile: str, channel: str, telemetry_file: Path
) -> None:
    """Each hostile value, through each way in: the call returns normally (the decorated
    function gets and returns the very object), exactly one entry is added, the file is
    strict JSON (valid UTF-8, no NaN/Infinity) and no line exceeds LINE_BUDGET bytes."""
    value = HOSTILE[hostile]()
    field = CHANNELS[channel](value, telemetry_file)
    entries = strict_entries(telemetry_file, LINE_BUDGET)
    assert len(entries) == 1
    recorded = entries[0][field]
    assert isinstance(recorded, dict)
    assert recorded, f"{field} lost the value entirely"


@pytest.mark.parametrize(
    "way", ["set_inputs", "set_metadata", "context-init", "capture-inputs", "capture-metadata"]
)
def test_a_top_level_mapping_with_keys_that_are_not_strings_is_recorded_as_strict_json(
    way: str, telemetry_file: Path
) -> None:
    """ints, tuples, None, NaN, bytes, a surrogate and an object whose str raises as the keys
    of the inputs/metadata mapping itself: recorded, with string keys, strict JSON."""
    odd: Any = _odd_keys()
    if way == "set_inputs":
        with TelemetryContext("faults.keys", caller="faults") as context:
            context.set_inputs(odd)
    elif way == "set_metadata":
        with TelemetryContext("faults.keys", caller="faults") as context:
            context.set_metadata(odd)
    elif way == "context-init":
        with TelemetryContext("faults.keys", caller="faults", inputs=odd, metadata=odd):
            pass
    else:
        field = way.removeprefix("capture-")
        TelemetryCapture(telemetry_file).capture(
            "faults.keys", "success", 2.0, "faults", **{field: odd}
        )
    (entry,) = strict_entries(telemetry_file, LINE_BUDGET)
    recorded = entry["metadata"] if way.endswith("metadata") else entry["inputs"]
    assert len(recorded) >= 10  # every key kept, as text (only a str collision may merge)
    assert recorded["1"] in ("int", "collides with 1")
    assert recorded["null"] == "none"


ITERATORS: dict[str, Callable[[], Iterator[int]]] = {
    "generator": lambda: (i for i in range(10)),
    "list-iterator": lambda: iter(list(range(10))),
    "map": lambda: map(int, "0123456789"),
}


@capture_telemetry(skill_name="faults.consume", caller="faults", capture_inputs=True)
def consume(items: Iterable[int], *more: Iterable[int], **named: Iterable[int]) -> list[int]:
    out = list(items)
    for extra in (*more, *named.values()):
        out += list(extra)
    return out


@pytest.mark.parametrize("kind", list(ITERATORS))
def test_a_generator_argument_is_not_consumed_by_telemetry(kind: str, telemetry_file: Path) -> None:
    """The decorated function can still iterate a generator passed to it, positionally, in
    *args or in **kwargs; the entry records a marker instead of the items."""
    make = ITERATORS[kind]
    assert consume(make()) == list(range(10))
    assert consume(make(), make(), rest=make()) == list(range(10)) * 3
    entries = strict_entries(telemetry_file, LINE_BUDGET)
    assert len(entries) == 2
    assert isinstance(entries[0]["inputs"]["items"], str)  # a marker, not the items


@pytest.mark.parametrize("kind", list(ITERATORS))
def test_a_generator_in_context_or_capture_inputs_and_metadata_is_not_consumed(
    kind: str, telemetry_file: Path
) -> None:
    """set_inputs / set_metadata / TelemetryCapture.capture: the generator still yields all."""
    make = ITERATORS[kind]
    given = [make() for _ in range(5)]
    with TelemetryContext("faults.gen", caller="faults", inputs={"a": given[0]}) as context:
        context.set_inputs({"b": given[1]})
        context.set_metadata({"c": given[2]})
    TelemetryCapture(telemetry_file).capture(
        "faults.gen", "success", 1.0, "faults", inputs={"d": given[3]}, metadata={"e": given[4]}
    )
    assert [list(items) for items in given] == [list(range(10))] * 5
    assert len(strict_entries(telemetry_file, LINE_BUDGET)) == 2


class StrRaisesError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of the exception exploded")


class NothingWorksError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")


HOSTILE_ERRORS: dict[str, Callable[[], BaseException]] = {
    "message-10MB": lambda: ValueError("x" * 10_000_000),
    "message-10MB-of-control-characters": lambda: ValueError("\x00" * 10_000_000),
    "message-with-lone-surrogates": lambda: ValueError("bad \ud800 and \udfff"),
    "str-raises": StrRaisesError,
    "str-and-repr-raise": NothingWorksError,
    "cyclic-argument": lambda: ValueError(_self_list()),
    "10000-levels-deep-argument": lambda: ValueError(_deep_list()),
    "nan-argument": lambda: ValueError(float("nan")),
    "bytes-argument": lambda: ValueError(b"\xff\xfe"),
}


@pytest.mark.parametrize("hostile", list(HOSTILE_ERRORS))
def test_a_hostile_exception_is_re_raised_unchanged_and_recorded_as_strict_json(
    hostile: str, telemetry_file: Path
) -> None:
    """Decorator and TelemetryContext: the very exception object propagates; the entry is a
    failure with a text error_message, strict JSON within budget."""
    error = HOSTILE_ERRORS[hostile]()

    @capture_telemetry(skill_name="faults.raises", caller="faults", capture_inputs=True)
    def fail(data: object) -> None:
        raise error

    with pytest.raises(type(error)) as raised:
        fail(error)
    assert raised.value is error
    with (
        pytest.raises(type(error)) as raised,
        TelemetryContext("faults.raises.context", caller="faults", inputs={"e": error}),
    ):
        raise error
    assert raised.value is error
    entries = strict_entries(telemetry_file, LINE_BUDGET)
    assert [entry["status"] for entry in entries] == ["failure", "failure"]
    for entry in entries:
        assert isinstance(entry["error_message"], str)
        assert entry["error_message"].startswith(type(error).__name__)


@pytest.mark.parametrize(
    "message",
    ["x" * 10_000_000, "\x00" * 10_000_000, "lone \ud800 surrogate", "\U0001f600" * 2_000_000],
    ids=["10MB", "10MB-control-characters", "lone-surrogate", "8MB-astral"],
)
def test_a_hostile_error_message_from_set_error_or_capture_is_strict_json_within_budget(
    message: str, telemetry_file: Path
) -> None:
    """TelemetryContext.set_error and TelemetryCapture.capture(error_message=...)."""
    with TelemetryContext("faults.error", caller="faults") as context:
        context.set_error(message)
    TelemetryCapture(telemetry_file).capture(
        "faults.error", "failure", 3.0, "faults", error_message=message
    )
    entries = strict_entries(telemetry_file, LINE_BUDGET)
    assert [entry["status"] for entry in entries] == ["failure", "failure"]
    assert all(isinstance(entry["error_message"], str) for entry in entries)


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


# ---------------------------------------------------------------------------
# Telemetry never breaks the host program
# ---------------------------------------------------------------------------


class HostError(Exception):
    """The host program's own exception: it must come out as the very same object."""


def _host_call(kind: str, value: object, error: BaseException | None) -> object:
    """One call of a decorated function (or block) of the given kind; returns its result."""
    if kind == "sync":

        @capture_telemetry(skill_name="faults.host", capture_inputs=True)
        def sync_fn(password: str, data: object) -> object:
            if error is not None:
                raise error
            return value

        return sync_fn("pw-host", data={"k": [1, 2]})
    if kind == "async":

        @capture_telemetry(skill_name="faults.host", capture_inputs=True)
        async def async_fn(password: str, data: object) -> object:
            await asyncio.sleep(0)
            if error is not None:
                raise error
            return value

        return asyncio.run(async_fn("pw-host", data={"k": [1, 2]}))
    if kind == "generator":

        @capture_telemetry(skill_name="faults.host", capture_inputs=True)
        def gen_fn(password: str, data: object) -> Iterator[object]:
            yield value
            if error is not None:
                raise error

        items = list(gen_fn("pw-host", data={"k": [1, 2]}))  # runs to the end (or raises)
        return items[0]
    with TelemetryContext("faults.host", inputs={"password": "pw-host"}) as context:
        context.set_metadata({"data": {"k": [1, 2]}})
        if error is not None:
            raise error
        return value


HOST_KINDS = ("sync", "async", "generator", "context")


def _errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name.startswith("betty_otel") and record.levelno >= logging.ERROR
    ]


def _fault_directory_at_path(tmp_path: Path) -> Path:
    path = tmp_path / "telemetry.json"
    path.mkdir()
    return path


def _fault_path_under_a_file(tmp_path: Path) -> Path:
    plain = tmp_path / "plain.txt"
    plain.write_text("not a folder\n", encoding="utf-8")
    return plain / "telemetry.json"


@pytest.mark.parametrize("kind", HOST_KINDS)
@pytest.mark.parametrize(
    "fault", [_fault_directory_at_path, _fault_path_under_a_file], ids=["directory", "under-file"]
)
def test_an_unwritable_telemetry_file_never_changes_what_the_host_gets(
    fault: Callable[[Path], Path],
    kind: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A directory at the file's path, or a path under a regular file: the exact return
    value and the exact exception object come through; the drop is logged and counted."""
    caplog.set_level(logging.DEBUG, logger="betty_otel")
    path = fault(tmp_path)
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    value, error = object(), HostError("the host's own failure")
    assert _host_call(kind, value, None) is value
    with pytest.raises(HostError) as raised:
        _host_call(kind, value, error)
    assert raised.value is error
    assert exporter.dropped == 2
    assert _errors_logged(caplog)


def _raise(*args: object, **kwargs: object) -> Any:
    raise RuntimeError("injected fault inside telemetry")


@pytest.mark.parametrize("kind", HOST_KINDS)
@pytest.mark.parametrize(
    "target",
    [
        (instrument, "bind_inputs"),
        (Sanitizer, "sanitize"),
        (SdkTracer, "start_span"),
        (SdkSpan, "end"),
        (SdkSpan, "set_attributes"),
        (FileTracer, "start_span"),
        (FileSpan, "end"),
        (FileSpan, "set_attributes"),
        (TelemetryStore, "append_encoded"),
    ],
    ids=lambda target: f"{target[0].__name__}.{target[1]}",
)
def test_a_failure_inside_telemetry_never_changes_what_the_host_gets(
    target: tuple[object, str],
    kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Input binding, the sanitizer, the tracer's start_span, the span's end/set_attributes
    (the SDK's, and the FileTracer's when the file alone receives spans) or the store
    raising: the call returns its exact value and raises its exact exception; the failure
    is counted (internal_errors or the exporter's drops) and logged on "betty_otel"."""
    caplog.set_level(logging.DEBUG, logger="betty_otel")
    owner, name = target
    if owner in (SdkTracer, SdkSpan):  # an SDK setting (at its default) makes SDK spans
        monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "128")
    exporter = betty_otel.configure(tmp_path / "telemetry.json", otlp=False)
    assert exporter is not None
    before = betty_otel.internal_errors()
    value, error = object(), HostError("the host's own failure")
    with monkeypatch.context() as patch:
        patch.setattr(owner, name, _raise)
        assert _host_call(kind, value, None) is value
        with pytest.raises(HostError) as raised:
            _host_call(kind, value, error)
    assert raised.value is error
    unused = name == "bind_inputs" and kind == "context"
    if unused:  # TelemetryContext does not bind arguments: nothing failed
        assert betty_otel.internal_errors() == before
        return
    failures = betty_otel.internal_errors() - before + exporter.dropped
    assert failures >= 2, "each failing call must be counted"
    assert _errors_logged(caplog)


def test_a_span_processor_of_the_program_that_raises_never_reaches_the_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The program's own TracerProvider has a processor whose on_end raises."""

    class Exploding(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:  # noqa: ARG002 - the SDK's signature
            raise RuntimeError("a broken processor of the program")

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(Exploding(InMemorySpanExporter()))
    betty_otel.configure(tmp_path / "telemetry.json", otlp=False, tracer_provider=provider)
    for kind in HOST_KINDS:
        value, error = object(), HostError("the host's own failure")
        assert _host_call(kind, value, None) is value
        with pytest.raises(HostError) as raised:
            _host_call(kind, value, error)
        assert raised.value is error
    betty_otel.shutdown()
    provider.shutdown()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100000"), ("OTEL_BSP_SCHEDULE_DELAY", "-5")],
)
@pytest.mark.parametrize("kind", ["sync", "context"])
def test_a_malformed_otel_environment_never_breaks_a_decorated_call(
    variable: str, value: str, kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Lazy configuration from the environment happens inside the first instrumented call:
    an OTLP endpoint with a batch setting the SDK rejects must not make that call raise."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(tmp_path / "telemetry.json"))
    result, error = object(), HostError("the host's own failure")
    assert _host_call(kind, result, None) is result
    with pytest.raises(HostError) as raised:
        _host_call(kind, result, error)
    assert raised.value is error

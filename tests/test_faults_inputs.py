"""Faults: hostile inputs never break the call and are recorded as strict JSON (issue 5).

Case 19: inputs that break naive JSON encoders (NaN, infinities, lone surrogates, bytes,
cycles, a 10 MB string, objects whose repr/str raise, keys that are not strings, 10,000
levels of nesting, generators) never break the call; every entry stays strict JSON
within a size budget, whichever way the value comes in (decorator arguments,
TelemetryContext, TelemetryCapture.capture). Secrets (case 20) and the host program's
safety have their own modules: test_faults_secrets.py, test_faults_host_program.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry
from helpers import LINE_BUDGET, strict_entries, take

pytestmark = pytest.mark.faults

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

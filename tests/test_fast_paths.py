"""The decorator's per-call fast paths give exactly what the careful paths give.

Each call of a decorated function binds its arguments by a plan cached per signature,
sanitises a flat dict of plain values without the full walk, and its span becomes an
entry through one copy of the span's attributes. These tests pin, over generated
argument values and attribute mappings, that the entry is the one the careful paths
(``inspect`` binding, the sanitiser's full walk, reading any Mapping) would make.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags

import betty_otel
from betty_otel._entry import span_to_entry
from betty_otel._sanitize import Sanitizer, to_json_text
from helpers import read_entries

EXAMPLES = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

GH = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
SECRETISH = st.sampled_from(
    [f"password={GH}", "Bearer abc123DEF456ghi", f"url=https://u:pw@host/?token={GH}", GH]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()  # past 64 bits too: those become text
    | st.floats()  # NaN and infinities too
    | st.text(max_size=40)
    | st.text(st.characters(codec="utf-8"), min_size=250, max_size=300)  # past the flat limit
    | st.text(st.characters(blacklist_categories=()), max_size=20)  # controls, surrogates
    | SECRETISH
)
KEYS = st.text(max_size=8) | st.sampled_from(["token", "api_key"])
VALUES = st.recursive(
    SCALARS | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(KEYS, inner, max_size=4)
        | st.tuples(inner, inner)
    ),
    max_leaves=12,
)


def plain(a: object, b: object, flag: object = False) -> None:
    """Positional-or-keyword parameters with a default: the cached bind plan."""


def secretive(user: object, password: object, *, token: object = None, depth: object = 3) -> None:
    """Secret parameter names, keyword-only ones, defaults."""


def variadic(a: object, *rest: object, **options: object) -> None:
    """*args and **kwargs: bound by inspect."""


class Service:
    """A method: self is left out of the inputs."""

    def method(self, x: object, api_key: object = "k") -> None:
        """Bound call."""


CALLS: dict[str, Callable[[Any], tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "plain-positional": lambda v: ((v[0], v[1]), {}),
    "plain-keyword": lambda v: ((v[0],), {"b": v[1], "flag": v[2]}),
    "plain-all-keywords": lambda v: ((), {"flag": v[2], "b": v[1], "a": v[0]}),
    "secretive": lambda v: ((v[0], v[1]), {"token": v[2]}),
    "secretive-defaults": lambda v: ((v[0],), {"password": v[1]}),
    "variadic": lambda v: ((v[0], v[1], v[2]), {"key": v[1], "secret": v[2]}),
    "method": lambda v: ((v[0],), {"api_key": v[1]}),
}
FUNCTIONS: dict[str, Callable[..., None]] = {
    "plain": plain,
    "secretive": secretive,
    "variadic": variadic,
    "method": Service.method,
}


def careful_inputs(
    function: Callable[..., None], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """inspect's binding, self left out, then the sanitiser's full walk (a Mapping that is
    not a dict takes it), as the entry holds it after JSON."""
    bound = inspect.signature(function).bind_partial(*args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop("self", None)
    walked = Sanitizer().sanitize(MappingProxyType(arguments))
    return json.loads(to_json_text(walked))


@pytest.fixture(scope="module")
def log_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fast-paths")


@EXAMPLES
@given(call=st.sampled_from(sorted(CALLS)), values=st.tuples(VALUES, VALUES, VALUES))
def test_recorded_inputs_equal_what_inspect_binding_and_the_full_sanitiser_give(
    call: str, values: tuple[Any, Any, Any], log_folder: Path
) -> None:
    """Property: for any argument values, the entry's inputs are exactly the careful
    result (bound by inspect, defaults applied, self left out, fully walked), secrets
    redacted; the fast bind plan and the flat sanitiser change nothing."""
    path = log_folder / f"{call}.json"
    betty_otel.configure(path, otlp=False)
    function = FUNCTIONS[call.partition("-")[0]]
    args, kwargs = CALLS[call](values)
    if function is Service.method:
        decorated = betty_otel.capture_telemetry(capture_inputs=True)(Service.method)
        decorated(Service(), *args, **kwargs)
        expected = careful_inputs(function, (Service(), *args), kwargs)
    else:
        betty_otel.capture_telemetry(capture_inputs=True)(function)(*args, **kwargs)
        expected = careful_inputs(function, args, kwargs)
    assert read_entries(path)[-1]["inputs"] == expected
    assert GH not in path.read_text(encoding="utf-8")


class PlainMapping(Mapping[str, Any]):
    """A Mapping with no copy(): read item by item."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class CopyRaises(PlainMapping):
    """A Mapping whose copy() raises."""

    def copy(self) -> dict[str, Any]:
        raise RuntimeError("no copy")


ATTRIBUTE_VALUES = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
)
ATTRIBUTES = st.fixed_dictionaries(
    {"betty.skill": st.text(min_size=1, max_size=10)},
    optional={
        "betty.status": st.sampled_from(["success", "failure", "timeout", "error", "odd"]),
        "betty.caller": st.text(max_size=10),
        "betty.inputs": st.sampled_from(['{"a":1}', "[1]", "not json", '"x"']),
        "betty.metadata": st.sampled_from(['{"w":"x"}', "{", "3"]),
        "betty.error_message": st.text(max_size=10),
        "code.line.number": st.integers(0, 10_000),
        "other": ATTRIBUTE_VALUES,
    },
)


def _span(attributes: Any) -> ReadableSpan:
    context = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1))
    return ReadableSpan(
        name="work",
        context=context,
        attributes=attributes,
        start_time=1_700_000_000_000_000_000,
        end_time=1_700_000_000_250_000_000,
    )


@settings(max_examples=200, deadline=None)
@given(ATTRIBUTES, st.booleans())
def test_an_entry_is_the_same_whatever_mapping_holds_the_span_attributes(
    attributes: dict[str, Any], all_spans: bool
) -> None:
    """Property: the SDK's attributes are copied in one step; a plain dict, a read-only
    view, a Mapping without copy() and one whose copy() raises all give the same entry."""
    expected = span_to_entry(_span(attributes), all_spans=all_spans)
    assert expected is not None
    assert expected["skill"] == attributes["betty.skill"]
    for holder in (MappingProxyType(attributes), PlainMapping(attributes), CopyRaises(attributes)):
        assert span_to_entry(_span(holder), all_spans=all_spans) == expected


def test_a_span_without_attributes_is_not_an_entry_unless_all_spans() -> None:
    """No attributes at all: not Betty's; with all_spans, the span's name is the skill."""
    assert span_to_entry(_span(None)) is None
    entry = span_to_entry(_span(None), all_spans=True)
    assert entry is not None
    assert (entry["skill"], entry["metadata"], entry["inputs"]) == ("work", {}, {})

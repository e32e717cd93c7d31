"""Trust: the outcome is never a lie and our errors never reach user code.

- When working out the outcome itself fails (an exit code that cannot be compared, an
  exception class whose name cannot be read), a call that raised is still recorded as a
  failure or an error, never as success.
- A hostile Mapping given as inputs or metadata never raises the user's exception out of
  betty_otel's code; an out-of-range duration is the documented ValueError.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest

from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry
from helpers import read_entries

pytestmark = pytest.mark.faults


class BoomError(Exception):
    """The user's own exception, raised by the user's own objects."""


class UncomparableCode:
    def __eq__(self, other: object) -> bool:
        raise BoomError("no comparing me")

    __hash__ = object.__hash__

    def __str__(self) -> str:
        raise BoomError("no printing me")

    __repr__ = __str__


class NamelessMeta(type):
    def __getattribute__(cls, name: str) -> Any:
        if name in {"__name__", "__qualname__", "__module__"}:
            raise BoomError("no name")
        return super().__getattribute__(name)


class NamelessError(Exception, metaclass=NamelessMeta):
    pass


class NamelessInterrupt(KeyboardInterrupt, metaclass=NamelessMeta):
    pass


def _raise(exc: BaseException) -> NoReturn:
    raise exc


class UnreadableExit(SystemExit):
    @property
    def code(self) -> Any:  # type: ignore[override]
        raise BoomError("no code")


class UnprintableError(Exception, metaclass=NamelessMeta):
    def __str__(self) -> str:
        raise BoomError("no message either")


class NamelessTimeoutError(TimeoutError, metaclass=NamelessMeta):
    pass


CASES: dict[str, tuple[BaseException, set[str]]] = {
    "exit_code_uncomparable": (SystemExit(UncomparableCode()), {"failure"}),
    "exit_code_unreadable": (UnreadableExit(3), {"failure"}),
    "nameless_exception": (NamelessError("boom"), {"failure"}),
    "nameless_and_unprintable": (UnprintableError(), {"failure"}),
    "nameless_timeout": (NamelessTimeoutError(), {"timeout"}),
    "nameless_interrupt": (NamelessInterrupt(), {"error"}),
}


def _run_raising(how: str, exc: BaseException) -> None:
    if how == "decorator":
        capture_telemetry(skill_name="raises")(_raise)(exc)
    else:
        with TelemetryContext("raises", caller="test"):
            _raise(exc)


@pytest.mark.parametrize("case", CASES, ids=CASES)
@pytest.mark.parametrize("how", ["decorator", "context"])
def test_a_call_that_raised_is_never_recorded_as_success(
    telemetry_file: Path, case: str, how: str
) -> None:
    """An Exception is a failure, a timeout a timeout, another BaseException an error,
    a SystemExit whose code cannot be read or compared a failure; with an error message
    and an ERROR span, whatever could not be read."""
    exc, allowed = CASES[case]
    with pytest.raises(type(exc)) as raised:
        _run_raising(how, exc)
    assert raised.value is exc  # passed through unchanged
    (entry,) = read_entries(telemetry_file)
    assert entry["status"] in allowed
    assert entry["error_message"]


class HostileMapping(Mapping[str, Any]):
    """A Mapping whose every method raises the user's own exception."""

    def __getitem__(self, key: str) -> Any:
        raise BoomError("getitem")

    def __iter__(self) -> Iterator[str]:
        raise BoomError("iter")

    def __len__(self) -> int:
        raise BoomError("len")

    def items(self) -> Any:
        raise BoomError("items")

    def keys(self) -> Any:
        raise BoomError("keys")


UNREADABLE = {"<unreadable>": "<unrepresentable HostileMapping>"}


def test_a_hostile_mapping_in_the_context_never_raises_out_of_betty_otel(
    telemetry_file: Path,
) -> None:
    """Given to the constructor, set_inputs and set_metadata: recorded as a marker."""
    with TelemetryContext(
        "hostile", caller="test", inputs=HostileMapping(), metadata=HostileMapping()
    ) as run:
        run.set_inputs(HostileMapping())
        run.set_metadata(HostileMapping())
        run.set_metadata({"kept": 1})
    (entry,) = read_entries(telemetry_file)
    assert entry["status"] == "success"
    assert entry["inputs"] == UNREADABLE
    assert entry["metadata"] == {**UNREADABLE, "kept": 1}


def test_a_hostile_mapping_as_a_decorated_argument_is_recorded_without_raising(
    telemetry_file: Path,
) -> None:
    @capture_telemetry(skill_name="hostile", capture_inputs=True)
    def takes(options: Mapping[str, Any]) -> str:
        return "done"

    assert takes(HostileMapping()) == "done"
    (entry,) = read_entries(telemetry_file)
    assert entry["status"] == "success"
    assert set(entry["inputs"]) == {"options"}


class HostileClass:
    """Not a mapping, and even asking what it is raises."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise BoomError("class")


def test_something_that_cannot_even_be_type_checked_is_the_documented_type_error(
    telemetry_file: Path,
) -> None:
    with pytest.raises(TypeError, match="inputs must be a dict"):
        TelemetryContext("hostile", inputs=HostileClass())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metadata must be a dict"):
        TelemetryCapture(telemetry_file).capture(
            "hostile",
            "success",
            1,
            "CLI",
            metadata=HostileClass(),  # type: ignore[arg-type]
        )


def test_a_hostile_mapping_given_to_capture_is_recorded_without_raising(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    entry = TelemetryCapture(path).capture(
        "hostile", "success", 1.0, "CLI", inputs=HostileMapping(), metadata=HostileMapping()
    )
    assert read_entries(path) == [entry]
    assert entry["inputs"] == UNREADABLE
    assert entry["metadata"] == UNREADABLE


@pytest.mark.parametrize(
    "duration",
    [10**400, -(10**400), 10**5000, 10**20 * 1.0e300, float("inf"), 1.0e300, 2**1023 * 1.0],
    ids=["1e400", "-1e400", "1e5000", "float-overflow", "inf", "1e300", "max-float"],
)
def test_an_out_of_range_duration_is_the_documented_value_error(
    tmp_path: Path, duration: float
) -> None:
    path = tmp_path / "telemetry.json"
    with pytest.raises(ValueError, match="duration_ms"):
        TelemetryCapture(path).capture("big", "success", duration, "CLI")
    assert not path.exists() or read_entries(path) == []

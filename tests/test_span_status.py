"""The span status of a Betty outcome (`betty_otel._span_status.span_status_for`).

An execution that failed, timed out or errored ends its span with ERROR and the
(already redacted) message as the description, as OpenTelemetry asks of a failed
operation; every other outcome leaves the status UNSET, and an UNSET status carries no
description, whatever message was given.
"""

from __future__ import annotations

import pytest
from opentelemetry.trace import StatusCode

from betty_otel._entry import ERROR_STATUSES, STATUSES
from betty_otel._span_status import span_status_for

EXPECTED = {
    "success": StatusCode.UNSET,
    "failure": StatusCode.ERROR,
    "timeout": StatusCode.ERROR,
    "error": StatusCode.ERROR,
    "pending": StatusCode.UNSET,
}
"""Each Betty status and its span status: a status added to STATUSES must be placed here."""


def test_every_betty_status_has_its_span_status_listed() -> None:
    assert set(EXPECTED) == set(STATUSES)
    assert {s for s, code in EXPECTED.items() if code is StatusCode.ERROR} == ERROR_STATUSES


@pytest.mark.parametrize("status", STATUSES)
def test_each_betty_status_maps_to_its_span_status(status: str) -> None:
    assert span_status_for(status, None).status_code is EXPECTED[status]


@pytest.mark.parametrize("status", sorted(ERROR_STATUSES))
@pytest.mark.parametrize("message", ["boom", "", "line one\nline two", None])
def test_an_error_status_carries_the_message_as_its_description(
    status: str, message: str | None
) -> None:
    result = span_status_for(status, message)
    assert (result.status_code, result.description) == (StatusCode.ERROR, message)


@pytest.mark.parametrize("status", ["success", "pending"])
def test_a_non_error_status_has_no_description_even_when_a_message_is_given(status: str) -> None:
    result = span_status_for(status, "boom")
    assert (result.status_code, result.description) == (StatusCode.UNSET, None)


@pytest.mark.parametrize(
    "status",
    ["FAILURE", "Error", " timeout", "failed", "", None, 1, b"error", ("error",), ["error"]],
)
def test_anything_not_exactly_an_error_status_is_unset(status: object) -> None:
    """Statuses are compared exactly (a foreign entry's ``failed`` is not ``failure``), and a
    value of another type, even unhashable, gives UNSET rather than raising."""
    result = span_status_for(status, "boom")
    assert (result.status_code, result.description) == (StatusCode.UNSET, None)


def test_a_str_subclass_holding_an_error_status_is_an_error() -> None:
    """A str subclass (an enum of str, say) counts as its text."""

    class Status(str):
        pass

    result = span_status_for(Status("timeout"), "late")
    assert (result.status_code, result.description) == (StatusCode.ERROR, "late")

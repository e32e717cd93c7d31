"""What the environment asks of betty_otel (`betty_otel._environment`), read by its own rules.

- The off switches: ``OTEL_SDK_DISABLED`` and ``BETTY_TELEMETRY_DISABLED`` turn telemetry
  off for ``1``, ``true``, ``yes`` or ``on`` in any case and padding; any other value
  leaves it on.
- Which endpoint variable turns OTLP on when no exporter is listed: the general one for
  both signals, each signal's own for that signal only. (The list syntax of
  OTEL_TRACES_EXPORTER is pinned in test_conventions, its effect on metrics in test_metrics.)
- The SDK settings under which a span made without the SDK could differ.
"""

from __future__ import annotations

import logging

import pytest

from betty_otel._environment import (
    ENV_METRICS_EXPORTER,
    ENV_TRACES_EXPORTER,
    METRICS_EXPORTERS,
    OTLP_ENDPOINTS,
    OTLP_METRICS_ENDPOINTS,
    SUPPORTED_EXPORTERS,
    disabled_by_env,
    metrics_exporters,
    sdk_settings_set,
    traces_exporters,
)

SWITCHES = ("OTEL_SDK_DISABLED", "BETTY_TELEMETRY_DISABLED")
SDK_SETTINGS = (
    "OTEL_PYTHON_TRACER_PROVIDER",
    "OTEL_PYTHON_ID_GENERATOR",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
)
ENDPOINT = "http://127.0.0.1:4318"


@pytest.fixture(autouse=True)
def _no_sdk_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's SDK settings (conftest clears the exporter ones) are not read here."""
    for name in SDK_SETTINGS:
        monkeypatch.delenv(name, raising=False)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- off switches


def test_nothing_set_leaves_telemetry_on() -> None:
    assert disabled_by_env() is False


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize(
    "value", ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " 1 ", "\ttrue\n"]
)
def test_either_switch_turns_telemetry_off_for_a_true_word_in_any_case_and_padding(
    monkeypatch: pytest.MonkeyPatch, switch: str, value: str
) -> None:
    monkeypatch.setenv(switch, value)
    assert disabled_by_env() is True


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize(
    "value",
    ["", " ", "0", "false", "no", "off", "2", "t", "y", "enabled", "true,1", "1 1", "truee"],
)
def test_any_other_value_of_a_switch_leaves_telemetry_on(
    monkeypatch: pytest.MonkeyPatch, switch: str, value: str
) -> None:
    monkeypatch.setenv(switch, value)
    assert disabled_by_env() is False


def test_one_true_switch_is_enough_whatever_the_other_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    monkeypatch.setenv("BETTY_TELEMETRY_DISABLED", "1")
    assert disabled_by_env() is True
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("BETTY_TELEMETRY_DISABLED", "0")
    assert disabled_by_env() is True


# --------------------------------------------------------------------------- endpoints


def test_the_supported_names_are_the_documented_ones() -> None:
    """What the README and the warnings name: spans otlp/console/none, metrics add prometheus."""
    assert (ENV_TRACES_EXPORTER, SUPPORTED_EXPORTERS) == (
        "OTEL_TRACES_EXPORTER",
        ("otlp", "console", "none"),
    )
    assert (ENV_METRICS_EXPORTER, METRICS_EXPORTERS) == (
        "OTEL_METRICS_EXPORTER",
        ("otlp", "console", "prometheus", "none"),
    )


@pytest.mark.parametrize(
    ("endpoint", "spans", "metrics"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", {"otlp"}, {"otlp"}),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", {"otlp"}, set()),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", set(), {"otlp"}),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", set(), set()),
    ],
)
def test_with_no_exporter_listed_an_endpoint_turns_otlp_on_for_its_signals_only(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, spans: set[str], metrics: set[str]
) -> None:
    monkeypatch.setenv(endpoint, ENDPOINT)
    assert traces_exporters() == spans
    assert metrics_exporters() == metrics
    assert (endpoint in OTLP_ENDPOINTS) is bool(spans)
    assert (endpoint in OTLP_METRICS_ENDPOINTS) is bool(metrics)


def test_an_empty_endpoint_variable_turns_nothing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    assert traces_exporters() == frozenset()
    assert metrics_exporters() == frozenset()


@pytest.mark.parametrize("listed", [" ", "\t", " \n "])
def test_a_blank_exporter_list_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, listed: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", listed)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", listed)
    assert traces_exporters() == {"otlp"}
    assert metrics_exporters() == {"otlp"}


def test_prometheus_is_a_metrics_exporter_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Listed for spans it is a name betty_otel cannot honour: ignored, with a warning."""
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", " Prometheus ,OTLP")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "prometheus,console")
    assert metrics_exporters() == {"prometheus", "otlp"}
    assert warnings_of(caplog) == []
    assert traces_exporters() == {"console"}
    (warning,) = warnings_of(caplog)
    assert "OTEL_TRACES_EXPORTER" in warning
    assert "'prometheus'" in warning


def test_a_disabled_process_exports_no_metrics_but_its_span_list_is_still_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """metrics_exporters applies the off switch itself; for spans the pipeline applies it
    before asking (the file is still written then, see test_exporter_setup)."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert metrics_exporters() == frozenset()
    assert traces_exporters() == {"console"}


# --------------------------------------------------------------------------- SDK settings


def test_no_sdk_setting_set_by_default() -> None:
    assert sdk_settings_set() is False


@pytest.mark.parametrize("name", SDK_SETTINGS)
def test_each_sdk_setting_that_changes_spans_counts_when_set(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "8")
    assert sdk_settings_set() is True


@pytest.mark.parametrize("value", ["", " ", "\t\n"])
def test_a_blank_sdk_setting_counts_as_unset(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    for name in SDK_SETTINGS:
        monkeypatch.setenv(name, value)
    assert sdk_settings_set() is False


@pytest.mark.parametrize(
    "name",
    [
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
        "otel_python_id_generator",
    ],
)
def test_settings_that_leave_an_executions_span_as_it_is_do_not_count(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The resource is read on both paths alike; events and links are in no entry;
    variable names are case-sensitive, as the SDK reads them."""
    monkeypatch.setenv(name, "x")
    assert sdk_settings_set() is False

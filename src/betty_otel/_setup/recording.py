"""Tracers that record whatever OTEL_SDK_DISABLED says, for where recording was asked for.

TelemetryCapture.capture and the testing helper record explicitly: their spans are made
by an SDK tracer built here (not by the pipeline's provider, which may hand out no-op
tracers), with the name every betty_otel tracer has (`TRACER_NAME`).
"""

from __future__ import annotations

import functools
from typing import Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, SynchronousMultiSpanProcessor, Tracer
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

__all__ = ["TRACER_NAME", "on_reset", "recording_tracer", "shared_recording_tracer"]

TRACER_NAME: Final = "betty_otel"


def recording_tracer(*processors: SpanProcessor) -> Tracer:
    """An SDK tracer that records even under OTEL_SDK_DISABLED, into processors.

    For the places where recording was asked for explicitly (TelemetryCapture.capture,
    the testing helper). A TracerProvider reads OTEL_SDK_DISABLED when it is made and
    then hands out no-op tracers, so this builds the tracer with the SDK's public
    Tracer constructor, as a provider would (sampler ALWAYS_ON, default resource).
    """
    to_all = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call] # untyped in the SDK
    for processor in processors:
        to_all.add_span_processor(processor)
    return Tracer(
        ALWAYS_ON,
        Resource.create(),
        to_all,
        RandomIdGenerator(),
        # The deprecated InstrumentationInfo (its constructor warns); spans take None.
        None,  # type: ignore[arg-type]
        SpanLimits(),
        InstrumentationScope(TRACER_NAME, ""),
    )


@functools.cache
def shared_recording_tracer() -> Tracer:
    """One processor-less recording tracer for the process (see recording_tracer)."""
    return recording_tracer()


def on_reset() -> None:
    """Make the shared recording tracer again on its next use."""
    shared_recording_tracer.cache_clear()

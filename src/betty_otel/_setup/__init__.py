"""Where spans go: the pipeline (configure, shutdown), the span processors, the exporters
besides the file (OTLP, console), the thread hook."""

from betty_otel._setup.filespan import FileSpan, FileTracer
from betty_otel._setup.otlp import otlp_exporter
from betty_otel._setup.pipeline import (
    Pipeline,
    configure,
    disabled_by_env,
    pipeline,
    shutdown,
    swap,
)
from betty_otel._setup.processors import ProcessorSwitch, creator_writes
from betty_otel._setup.recording import TRACER_NAME, recording_tracer, shared_recording_tracer

__all__ = [
    "TRACER_NAME",
    "FileSpan",
    "FileTracer",
    "Pipeline",
    "ProcessorSwitch",
    "configure",
    "creator_writes",
    "disabled_by_env",
    "otlp_exporter",
    "pipeline",
    "recording_tracer",
    "shared_recording_tracer",
    "shutdown",
    "swap",
]

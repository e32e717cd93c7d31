"""Where spans go: the pipeline (configure, shutdown), the span processors, the exporters
besides the file (OTLP, console), the thread hook."""

from betty_otel._setup.filespan import FileSpan, FileTracer
from betty_otel._setup.otlp import otlp_exporter
from betty_otel._setup.pipeline import (
    Pipeline,
    configure,
    current_pipeline,
    disabled_by_env,
    shutdown,
    swap,
)
from betty_otel._setup.processors import ProcessorSwitch, skip_file_processors
from betty_otel._setup.recording import TRACER_NAME, recording_tracer, shared_recording_tracer

__all__ = [
    "TRACER_NAME",
    "FileSpan",
    "FileTracer",
    "Pipeline",
    "ProcessorSwitch",
    "configure",
    "current_pipeline",
    "disabled_by_env",
    "otlp_exporter",
    "recording_tracer",
    "shared_recording_tracer",
    "shutdown",
    "skip_file_processors",
    "swap",
]

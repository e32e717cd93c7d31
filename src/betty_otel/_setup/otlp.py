"""OTLP export alongside the file, set up from the OTEL_* environment variables."""

from __future__ import annotations

import logging
import os

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

__all__ = ["otlp_exporter", "otlp_processor", "otlp_wanted"]

logger = logging.getLogger(__name__)


def otlp_wanted() -> bool:
    """OTLP is on when an OTLP endpoint is set or OTEL_TRACES_EXPORTER lists otlp."""
    listed = os.environ.get("OTEL_TRACES_EXPORTER")
    if listed is not None and listed.strip():
        return "otlp" in {name.strip().lower() for name in listed.split(",")}
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def otlp_exporter(
    endpoint: str | None = None,
    *,
    protocol: str | None = None,
    timeout: float | None = None,
) -> SpanExporter:
    """An OTLP span exporter; protocol, endpoint and timeout default to the OTEL_* variables.

    The protocol is OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL: http/protobuf (default) or
    grpc. An HTTP endpoint given as a base URL gets the standard /v1/traces path.

    Raises:
        ImportError: the OTLP exporters are not installed (the message says how).
    """
    protocol = (
        protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    hint = "the OTLP exporter is not installed; install it with: pip install 'betty-otel[otlp]'"
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter(endpoint=endpoint, timeout=timeout)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as HttpExporter,
        )
    except ImportError as exc:
        raise ImportError(f"{hint} ({exc})") from None
    if protocol != "http/protobuf":
        logger.warning("OTLP protocol %r is not supported; using http/protobuf", protocol)
    if endpoint and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return HttpExporter(endpoint=endpoint, timeout=timeout)


def otlp_processor(endpoint: str | None) -> SpanProcessor | None:
    """A batch processor to the collector, or None (logged) when it cannot be made.

    OTLP settings come from the environment, where a bad value must cost the
    collector's copy, never the file or the program.
    """
    try:
        return BatchSpanProcessor(otlp_exporter(endpoint))
    except Exception:
        logger.exception("betty_otel: could not set up OTLP export; writing the file only")
        return None

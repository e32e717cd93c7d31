"""What a real collector passes on, decoded: metrics through ``rotel-agent`` to a receiver.

``MetricsReceiver`` is an OTLP/HTTP endpoint on loopback that accepts what is posted to
``/v1/metrics`` (gzip or not, as OTLP allows), decodes each request with the OTLP
protobuf classes and keeps every data point as a ``Point``. ``RotelMetrics`` starts one
and a real ``rotel-agent`` (``collector.RotelCollector``) that receives OTLP over HTTP
and gRPC and exports everything it gets to the receiver: a test sends to the agent and
reads what came out of it. Posts to other paths (the agent passes spans on too) are
answered and ignored.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from collector import RotelCollector

__all__ = ["MetricsReceiver", "Point", "RotelMetrics", "latest", "rotel_metrics"]

_POLL = 0.02


@dataclass(frozen=True)
class Point:
    """One data point as the receiver decoded it."""

    metric: str
    unit: str
    description: str
    kind: str
    """The OTLP data kind: ``histogram``, ``sum``, ``gauge``..."""
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    time_unix_nano: int
    count: int | None = None
    sum: float | None = None
    bounds: tuple[float, ...] = ()
    bucket_counts: tuple[int, ...] = ()
    value: float | None = None
    monotonic: bool | None = None


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def _points(request: ExportMetricsServiceRequest) -> Iterator[Point]:
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data") or ""
                data = getattr(metric, kind)
                common = {
                    "metric": metric.name,
                    "unit": metric.unit,
                    "description": metric.description,
                    "kind": kind,
                    "resource": resource,
                    "scope": scope_metrics.scope.name,
                }
                for point in data.data_points:
                    extra: dict[str, Any] = {}
                    if kind == "histogram":
                        extra = {
                            "count": point.count,
                            "sum": point.sum,
                            "bounds": tuple(point.explicit_bounds),
                            "bucket_counts": tuple(point.bucket_counts),
                        }
                    else:
                        number = point.WhichOneof("value")
                        extra = {"value": getattr(point, number) if number else None}
                        if kind == "sum":
                            extra["monotonic"] = data.is_monotonic
                    yield Point(
                        attributes=_attributes(point.attributes),
                        time_unix_nano=point.time_unix_nano,
                        **common,
                        **extra,
                    )


def latest(points: list[Point], metric: str) -> dict[frozenset[tuple[str, Any]], Point]:
    """The newest point of metric for each attribute set (cumulative: the totals)."""
    newest: dict[frozenset[tuple[str, Any]], Point] = {}
    for point in points:
        if point.metric != metric:
            continue
        key = frozenset(point.attributes.items())
        if key not in newest or point.time_unix_nano >= newest[key].time_unix_nano:
            newest[key] = point
    return newest


class MetricsReceiver:
    """An OTLP/HTTP metrics endpoint on 127.0.0.1 that keeps what it decodes."""

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver.lock:
                    receiver.paths.append(self.path)
                    if self.path == "/v1/metrics":
                        request = ExportMetricsServiceRequest.FromString(body)
                        receiver.points.extend(_points(request))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads the points

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MetricsReceiver:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[Point]:
        with self.lock:
            return list(self.points)

    def wait_until(
        self, condition: Callable[[list[Point]], bool], *, timeout: float = 20.0, what: str = ""
    ) -> list[Point]:
        """Every point received, once condition holds; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            points = self.received()
            if condition(points):
                return points
            if time.monotonic() >= deadline:
                names = sorted({point.metric for point in points})
                msg = f"gave up waiting for {what or 'the condition'}: received {names}"
                raise AssertionError(msg)
            time.sleep(_POLL)


class RotelMetrics:
    """A real rotel-agent passing what it receives on to a MetricsReceiver."""

    def __init__(self, receiver: MetricsReceiver, collector: RotelCollector) -> None:
        self.receiver = receiver
        self.collector = collector

    def endpoint(self, protocol: str) -> str:
        """The agent's OTLP endpoint for protocol (``http/protobuf`` or ``grpc``)."""
        return self.collector.grpc_endpoint if protocol == "grpc" else self.collector.http_endpoint


@pytest.fixture
def rotel_metrics() -> Iterator[RotelMetrics]:
    """A started RotelMetrics; register it in conftest.py as rotel_collector is."""
    with MetricsReceiver() as receiver:
        exporter = [
            "--exporter", "otlp",
            "--otlp-exporter-endpoint", receiver.endpoint,
            "--otlp-exporter-protocol", "http",
        ]  # fmt: skip
        with RotelCollector(exporter_args=exporter) as collector:
            yield RotelMetrics(receiver, collector)

"""The audit sampler: the program's sampling decision, except that nothing is dropped.

On a TracerProvider the program owns, betty_otel's tracer samples with
`AuditSampler(program's sampler)`. Where the program's sampler says DROP, the span
is still recorded (RECORD_ONLY): its sampled flag stays off, so the SDK's
Simple/BatchSpanProcessor, and with them the program's own exporters, skip it, and
its children and anything propagated from it keep the program's decision. The
file processors write every recording span of an execution, sampled or not, so
the telemetry file stays an audit log of every execution.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from betty_otel._errors import internal_error

__all__ = ["AuditSampler", "audit"]


class AuditSampler(Sampler):
    """Sample as the program's sampler does, but record what it drops (RECORD_ONLY)."""

    def __init__(self, program: Sampler) -> None:
        self.program = program

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        try:
            result = self.program.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        except Exception:  # noqa: BLE001 - a program's sampler must not cost the audit log
            internal_error("the program's sampler")
            parent = get_current_span(parent_context).get_span_context()
            return SamplingResult(Decision.RECORD_ONLY, attributes, parent.trace_state)
        if result.decision is not Decision.DROP:
            return result
        # A DROP result carries no attributes: the span records the ones it was given.
        return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)

    def get_description(self) -> str:
        return f"BettyAudit{{{self.program.get_description()}}}"


def audit(program: Sampler) -> AuditSampler:
    """The program's sampler under exactly one AuditSampler (an AuditSampler is returned
    as is): the SDK caches our tracer, which gets this on every configure, and a sampler
    wrapped once more each time would cost one more ``should_sample`` per span."""
    return program if isinstance(program, AuditSampler) else AuditSampler(program)

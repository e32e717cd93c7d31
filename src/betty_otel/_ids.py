"""Span ids and the W3C ``traceparent``: made and read once, for every path.

A span made by the SDK, by `betty_otel._setup.filespan.FileTracer` and by the direct
path of ``betty-telemetry capture`` (`betty_otel._direct`, which must not import the
SDK) gets its ids from `new_ids`, as the SDK's RandomIdGenerator makes them. Its
remote parent, ``$TRACEPARENT``, is read by `parse_traceparent` as OpenTelemetry's
TraceContextTextMapPropagator reads the header, whether the span path
(`betty_otel.propagation.environment_context`) or the direct path asks. Standard
library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "ENV_TRACEPARENT",
    "Traceparent",
    "environment_traceparent",
    "new_ids",
    "parse_traceparent",
]

ENV_TRACEPARENT: Final = "TRACEPARENT"
"""The environment variable that names the parent (the OpenTelemetry environment carrier)."""

# W3C Trace Context, as opentelemetry's TraceContextTextMapPropagator reads it. Compiled
# when a $TRACEPARENT is read (re caches it), not at start-up.
_TRACEPARENT: Final = (
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)
_TRACEPARENT_MAX_LENGTH: Final = 512


class Traceparent(tuple[int, int, int]):
    """What a valid ``traceparent`` names: the parent span and its trace flags.

    The tuple ``(trace_id, span_id, flags)``, its fields named. Not a NamedTuple: a capture
    does not import typing, and namedtuple compiles its class's code at import.
    """

    __slots__ = ()

    def __new__(cls, trace_id: int, span_id: int, flags: int) -> Traceparent:
        return super().__new__(cls, (trace_id, span_id, flags))

    def __getnewargs__(self) -> tuple[int, int, int]:
        """What pickle and copy make it again from, as for a NamedTuple."""
        return (self[0], self[1], self[2])

    @property
    def trace_id(self) -> int:
        """The parent's trace id."""
        return self[0]

    @property
    def span_id(self) -> int:
        """The parent span's id."""
        return self[1]

    @property
    def flags(self) -> int:
        """Its W3C trace flags (bit 0: sampled)."""
        return self[2]


def parse_traceparent(header: str | None) -> Traceparent | None:
    """The parent header names, or None when it names none validly.

    As the W3C propagator: lower-case hex only, all-zero ids and version ``ff`` are
    invalid, version ``00`` takes no extra fields (later versions may), leading blanks
    and trailing blanks after the flags are allowed, more than 512 characters are ignored.
    """
    if not header or len(header) > _TRACEPARENT_MAX_LENGTH:
        return None
    match = re.search(_TRACEPARENT, header)
    if match is None:
        return None
    version, trace_hex, span_hex, flags, extra = match.groups()
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not (trace_id and span_id) or version == "ff" or (version == "00" and extra):
        return None
    return Traceparent(trace_id, span_id, int(flags, 16))


def environment_traceparent(environ: Mapping[str, str] | None = None) -> Traceparent | None:
    """The parent that ``$TRACEPARENT`` in environ (default: os.environ) names, if valid."""
    return parse_traceparent((os.environ if environ is None else environ).get(ENV_TRACEPARENT))


def _urandom_bits(bits: int) -> int:
    """bits random bits from os.urandom: no import for a one-shot capture."""
    return int.from_bytes(os.urandom(bits // 8), "big")


def new_ids(
    trace_id: int | None = None, random_bits: Callable[[int], int] = _urandom_bits
) -> tuple[int, int]:
    """(trace_id, span_id) of a new span, random and never zero, as RandomIdGenerator
    makes them; trace_id is kept when given (a child of a remote parent).

    random_bits draws the bits: os.urandom by default, one import fewer for a one-shot
    capture; the decorator's FileSpan passes `random.getrandbits`, as the SDK does, a
    tenth of the cost per call (os.urandom is a system call; the random module is loaded
    with the SDK anyway, and reseeded in a forked child).
    """
    while not trace_id:
        trace_id = random_bits(128)
    span_id = 0
    while not span_id:
        span_id = random_bits(64)
    return trace_id, span_id

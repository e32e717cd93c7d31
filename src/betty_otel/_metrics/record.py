"""Recording executions into betty_otel's instruments: the hot path of the metrics.

`execution_started` and `execution_ended` bracket one execution (the active count, then
the duration); `record_execution` records one that was timed elsewhere (a capture).
Each reads `STATE.metrics` once: None (nothing would receive metrics) costs one test,
and the metrics SDK is never imported for it. Values come from betty_otel's own record
of the execution, never from its span, and never raise into the program.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from betty_otel._entry import ERROR_STATUSES, canonical_status, is_status
from betty_otel._errors import internal_error
from betty_otel._metrics.conventions import (
    ACTIVE,
    ACTIVE_DESCRIPTION,
    ACTIVE_UNIT,
    ATTR_CALLER,
    ATTR_ERROR_TYPE,
    ATTR_SKILL,
    ATTR_STATUS,
    BUCKETS,
    DURATION,
    DURATION_DESCRIPTION,
    DURATION_UNIT,
)
from betty_otel._metrics.series import SeriesGuard
from betty_otel._state import STATE

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter

__all__ = ["Recorder", "Started", "execution_ended", "execution_started", "record_execution"]


class Recorder:
    """betty_otel's two instruments on one meter, and the bound on their label values."""

    __slots__ = ("active", "duration", "guard")

    def __init__(self, meter: Meter, guard: SeriesGuard) -> None:
        # A meter hands out the instrument it already made for the same name, so
        # reconfiguring on the same provider leaves one of each.
        self.duration = meter.create_histogram(
            DURATION,
            unit=DURATION_UNIT,
            description=DURATION_DESCRIPTION,
            explicit_bucket_boundaries_advisory=BUCKETS,
        )
        self.active = meter.create_up_down_counter(
            ACTIVE, unit=ACTIVE_UNIT, description=ACTIVE_DESCRIPTION
        )
        self.guard = guard

    def record(
        self, skill: str, status: str, caller: str, seconds: float, error_type: str | None
    ) -> None:
        """One finished execution into the histogram (skill already folded)."""
        guard = self.guard
        if not is_status(status):
            status = canonical_status(status)  # an old tool's word, as the file maps it
        attributes = {
            ATTR_SKILL: skill,
            ATTR_STATUS: status,
            ATTR_CALLER: guard.fold(guard.callers, caller, ATTR_CALLER),
        }
        if status in ERROR_STATUSES:
            attributes[ATTR_ERROR_TYPE] = guard.fold(
                guard.error_types, error_type or status, ATTR_ERROR_TYPE
            )
        self.duration.record(seconds, attributes)


class Started:
    """One execution under way, as its start was recorded: where, which skill, when."""

    __slots__ = ("attributes", "caller", "recorder", "skill", "start")

    def __init__(self, recorder: Recorder, skill: str, caller: str) -> None:
        self.recorder = recorder
        self.skill = skill
        self.caller = caller
        self.attributes = {ATTR_SKILL: skill}
        self.start = time.perf_counter()


def execution_started(skill: str, caller: str) -> Started | None:
    """Count an execution as active; None when no metrics are recorded. Never raises.

    The execution ends in the instruments it started in, even across a reconfigure.
    """
    metrics = STATE.metrics
    if metrics is None:
        return None
    try:
        recorder = metrics.recorder
        started = Started(
            recorder, recorder.guard.fold(recorder.guard.skills, skill, ATTR_SKILL), caller
        )
        recorder.active.add(1, started.attributes)
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("recording the start of an execution in the metrics")
        return None
    return started


def execution_ended(started: Started | None, status: str, error_type: str | None) -> None:
    """The execution is no longer active; its duration goes into the histogram.

    error_type: the qualified class of the exception that failed it, if one did.
    Never raises.
    """
    if started is None:
        return
    try:
        seconds = time.perf_counter() - started.start
        recorder = started.recorder
        recorder.active.add(-1, started.attributes)
        recorder.record(started.skill, status, started.caller, seconds, error_type)
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("recording an execution in the metrics")


def record_execution(
    skill: str, status: str, caller: str, seconds: float, error_type: str | None = None
) -> None:
    """Record an execution timed elsewhere (a capture) in the histogram. Never raises."""
    metrics = STATE.metrics
    if metrics is None:
        return
    try:
        recorder = metrics.recorder
        folded = recorder.guard.fold(recorder.guard.skills, skill, ATTR_SKILL)
        recorder.record(folded, status, caller, seconds, error_type)
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("recording an execution in the metrics")

"""Recording executions into betty_otel's instruments: the hot path of the metrics.

`execution_started` and `execution_ended` bracket one execution (the active count, then
the duration); `record_execution` records one that was timed elsewhere (a capture).
Each reads `STATE.metrics` once: None (nothing would receive metrics) costs one test,
and the metrics SDK is never imported for it. Values come from betty_otel's own record
of the execution, never from its span, and never raise into the program.
"""

from __future__ import annotations

import threading
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
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

__all__ = [
    "Instruments",
    "Recorder",
    "Started",
    "execution_ended",
    "execution_started",
    "instruments_on",
    "record_execution",
]


class Instruments:
    """betty_otel's instruments on one meter, made once per meter (`instruments_on`).

    The histogram is recorded at the end of each execution. The active count is kept
    here, per skill, and observed by an up-down counter when the meter collects: a call
    pays two dictionary updates for it, not two measurements of the SDK.
    """

    __slots__ = ("__weakref__", "duration", "lock", "running")

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            DURATION,
            unit=DURATION_UNIT,
            description=DURATION_DESCRIPTION,
            explicit_bucket_boundaries_advisory=BUCKETS,
        )
        self.running: dict[str, int] = {}
        self.lock = threading.Lock()
        meter.create_observable_up_down_counter(
            ACTIVE, callbacks=[self.observe], unit=ACTIVE_UNIT, description=ACTIVE_DESCRIPTION
        )

    def observe(self, options: CallbackOptions) -> list[Observation]:  # noqa: ARG002
        """The running executions per skill, for the meter's collection."""
        from opentelemetry.metrics import Observation  # noqa: PLC0415 - when collected only

        with self.lock:
            running = list(self.running.items())
        return [Observation(count, {ATTR_SKILL: skill}) for skill, count in running]

    def add(self, skill: str, change: int) -> None:
        with self.lock:
            self.running[skill] = self.running.get(skill, 0) + change


def instruments_on(meter: Meter) -> Instruments:
    """The meter's Instruments, made the first time: reconfiguring on the same provider
    leaves one of each (a meter would keep the first counter's callback anyway)."""
    try:
        made = STATE.metric_instruments.get(meter)
    except TypeError:  # a meter of the program's that cannot be weakly referenced
        return Instruments(meter)
    if made is None:
        made = STATE.metric_instruments[meter] = Instruments(meter)
    return made


class Recorder:
    """The instruments executions are recorded in now, and the bound on their labels."""

    __slots__ = ("guard", "instruments")

    def __init__(self, meter: Meter, guard: SeriesGuard) -> None:
        self.instruments = instruments_on(meter)
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
        self.instruments.duration.record(seconds, attributes)


class Started:
    """One execution under way, as its start was recorded: where, which skill, when."""

    __slots__ = ("caller", "recorder", "skill", "start")

    def __init__(self, recorder: Recorder, skill: str, caller: str) -> None:
        self.recorder = recorder
        self.skill = skill
        self.caller = caller
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
        folded = recorder.guard.fold(recorder.guard.skills, skill, ATTR_SKILL)
        started = Started(recorder, folded, caller)
        recorder.instruments.add(folded, 1)
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
        recorder.instruments.add(started.skill, -1)
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

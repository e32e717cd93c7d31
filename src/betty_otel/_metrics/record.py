"""Recording executions into betty_otel's instruments: the hot path of the metrics.

`execution_started` and `execution_ended` bracket one execution (its skill's label and
its duration); `record_execution` records one that was timed elsewhere (a capture). The
active count is the executions open in this process's in-flight registry
(`betty_otel._inflight`, the one the records are written from), counted when collected.
Each reads `STATE.metrics` once: None (nothing would receive metrics) costs one test,
and the metrics SDK is never imported for it. Values come from betty_otel's own record
of the execution, never from its span, and never raise into the program. A duration
waits for the meter's next collection (`betty_otel._metrics.pending`), so the SDK's
cost of a measurement is paid by the collecting thread (or, when many wait, a thread of
their own), not by the call.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from betty_otel._entry import ERROR_STATUSES, STATUSES, canonical_status
from betty_otel._errors import internal_error
from betty_otel._logs import logger
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
from betty_otel._metrics.pending import RECORD_SOON, Pending, Series
from betty_otel._metrics.series import SeriesGuard
from betty_otel._state import STATE

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

__all__ = [
    "Instruments",
    "Recorder",
    "Started",
    "after_fork_in_child",
    "execution_ended",
    "execution_started",
    "instruments_on",
    "record_execution",
]


class Instruments:
    """betty_otel's instruments on one meter, made once per meter (`instruments_on`).

    Executions leave their durations in `pending` (`betty_otel._metrics.pending`), and
    the active count's callback, which every collection of the meter runs before it
    reads (each reader's export or scrape, and the last one at shutdown), records the
    durations waiting into the histogram, then counts the executions open now. So a
    call pays a dictionary update and an append, not the SDK's measurement, and a
    program's provider gets the durations the same way, before its readers read them.
    When many wait, a thread of their own records them before the collection comes.
    """

    __slots__ = ("__weakref__", "duration", "pending", "recording")

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            DURATION,
            unit=DURATION_UNIT,
            description=DURATION_DESCRIPTION,
            explicit_bucket_boundaries_advisory=BUCKETS,
        )
        self.pending = Pending()
        self.recording = threading.RLock()
        """Held while durations taken from pending go into the histogram: a collection
        waits for those a thread is recording, so its data has every one of them."""
        meter.create_observable_up_down_counter(
            ACTIVE, callbacks=[self.observe], unit=ACTIVE_UNIT, description=ACTIVE_DESCRIPTION
        )
        _live.add(self)  # for after_fork_in_child; weakly held

    def observe(self, options: CallbackOptions) -> list[Observation]:  # noqa: ARG002
        """The durations waiting go into the histogram; then the executions open now
        that started in these instruments, per skill, for the meter's collection: 0 for
        a skill that ran here and runs no more (a series not observed would keep its
        last count)."""
        from opentelemetry.metrics import Observation  # noqa: PLC0415 - when collected only

        # Reading the log (openmetrics) imports the conventions of this package: it must
        # not pay for the in-flight registry, which imports the SDK.
        from betty_otel._inflight.hooks import open_runs  # noqa: PLC0415

        self.record_waiting()
        running = dict.fromkeys(self.pending.skills(), 0)
        for run in open_runs():
            started = run.metrics
            if started is not None and started[0].instruments is self:
                running[started[1]] = running.get(started[1], 0) + 1
        return [Observation(count, {ATTR_SKILL: skill}) for skill, count in running.items()]

    def record_soon(self) -> None:
        """Record the durations waiting in a thread of their own, before the collection."""
        worker = threading.Thread(
            target=self.record_waiting, name="betty_otel-metrics-record", daemon=True
        )
        # No new thread late in interpreter shutdown (or none left): the collection will.
        with contextlib.suppress(RuntimeError):
            worker.start()

    def record_waiting(self) -> None:
        """Record the durations waiting, oldest first. A collection waits for those a
        thread is recording; at most a few thousand wait (a thread records them beyond
        that), so it has them all in a fraction of a second. Never raises."""
        try:
            with self.recording:
                taken, overflow = self.pending.take()
                for series, durations in taken.items():
                    attributes = _attributes_of(series)
                    for seconds in durations:
                        self.duration.record(seconds, attributes)
                say = overflow > 0 and not self.pending.said_full
                self.pending.said_full = self.pending.said_full or say
        except Exception:  # noqa: BLE001 - a failing instrument is counted, not raised
            internal_error("recording execution durations in the metrics")
            return
        if say:
            logger(__name__).info(
                "betty_otel: %d executions recorded their own durations (slower): as many "
                "as may wait for the metrics' collection were waiting",
                overflow,
            )

    def forget_parent(self) -> None:
        """A forked child has nothing pending, and locks no thread of its parent holds."""
        self.recording = threading.RLock()
        self.pending.reset()


def _attributes_of(series: Series) -> dict[str, str]:
    """The histogram's attributes of a series (error.type on failures only)."""
    skill, status, caller, error_type = series
    attributes = {ATTR_SKILL: skill, ATTR_STATUS: status, ATTR_CALLER: caller}
    if error_type is not None:
        attributes[ATTR_ERROR_TYPE] = error_type
    return attributes


_live: weakref.WeakSet[Instruments] = weakref.WeakSet()
"""Every Instruments alive, which a forked child clears (after_fork_in_child)."""
_on_meter: weakref.WeakKeyDictionary[Any, Instruments] = weakref.WeakKeyDictionary()
"""The Instruments made on each meter, for as long as the meter lives: kept by
`betty_otel._state.reset`, since the meter keeps them too."""


def after_fork_in_child() -> None:
    """No Instruments of the parent's has anything pending in the child."""
    for made in list(_live):
        made.forget_parent()


def instruments_on(meter: Meter) -> Instruments:
    """The meter's Instruments, made the first time: reconfiguring on the same provider
    leaves one of each (a meter would keep the first counter's callback anyway)."""
    try:
        made = _on_meter.get(meter)
    except TypeError:  # a meter of the program's that cannot be weakly referenced
        return Instruments(meter)
    if made is None:
        made = _on_meter[meter] = Instruments(meter)
    return made


class Recorder:
    """The instruments executions are recorded in now, and the bound on their labels."""

    __slots__ = ("guard", "instruments")

    def __init__(self, meter: Meter, guard: SeriesGuard) -> None:
        self.instruments = instruments_on(meter)
        self.guard = guard

    def record(
        self,
        skill: str,
        status: str,
        caller: str,
        seconds: float,
        error_type: str | None,
    ) -> None:
        """One finished execution's duration (skill already folded): kept for the next
        collection, or recorded now (see `Pending.keep`)."""
        # This runs at the end of every execution: the usual cases are tested here,
        # without a call (a canonical status, a caller admitted already).
        guard = self.guard
        if status not in STATUSES:
            status = canonical_status(status)  # an old tool's word, as the file maps it
        if caller not in guard.callers:
            caller = guard.fold(guard.callers, caller, ATTR_CALLER)
        if status in ERROR_STATUSES:
            error_type = guard.fold(guard.error_types, error_type or status, ATTR_ERROR_TYPE)
        else:
            error_type = None
        series = (skill, status, caller, error_type)
        instruments = self.instruments
        waiting = instruments.pending.keep(series, seconds)
        if not waiting:
            instruments.duration.record(seconds, _attributes_of(series))
        elif waiting == RECORD_SOON:
            instruments.record_soon()


Started = tuple[Recorder, str, str, float]
"""One execution under way, as its start was recorded: the recorder it started in, its
skill (folded), its caller and `time.perf_counter()` at its start. A tuple: every
execution makes one, and a tuple costs the least to make."""


def execution_started(skill: str, caller: str) -> Started | None:
    """An execution's start in the instruments now; None when no metrics are recorded.
    Never raises.

    The execution ends in the instruments it started in, even across a reconfigure, and
    is counted as active in them while it is open (`Instruments.observe`).
    """
    metrics = STATE.metrics
    if metrics is None:
        return None
    try:
        recorder = metrics.recorder
        guard = recorder.guard
        # Every execution starts here: a skill admitted already takes no call.
        folded = skill if skill in guard.skills else guard.fold(guard.skills, skill, ATTR_SKILL)
        started = (recorder, folded, caller, time.perf_counter())
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("recording the start of an execution in the metrics")
        return None
    return started


def execution_ended(started: Started | None, status: str, error_type: str | None) -> None:
    """The execution's duration goes into the histogram.

    error_type: the qualified class of the exception that failed it, if one did.
    Never raises.
    """
    if started is None:
        return
    try:
        recorder, skill, caller, start = started
        recorder.record(skill, status, caller, time.perf_counter() - start, error_type)
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

"""The process-wide state of betty_otel, in one object.

House rule: no module-level mutable state anywhere else. Each field names the
module that owns it; nothing but that module writes it. A forked child resets the
fields that must not be shared with its parent (see the owners' at-fork hooks).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import inspect
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from opentelemetry.sdk.trace import Tracer, TracerProvider

    from betty_otel._inflight.tracker import Tracker
    from betty_otel._inputs import BindPlan
    from betty_otel._metrics.record import Instruments
    from betty_otel._metrics.setup import Metrics
    from betty_otel._redact import RedactionRules
    from betty_otel._setup import Pipeline, ProcessorSwitch
    from betty_otel._setup.processors import BatchFileProcessor

    OwnProvider = tuple[tuple[tuple[str, str], ...], TracerProvider, ProcessorSwitch]

__all__ = ["STATE", "ProcessState"]


class ProcessState:
    """Everything betty_otel keeps for the life of a process.

    A plain class, not a dataclass: a one-shot capture imports this module and must
    not pay for importing dataclasses.
    """

    __slots__ = (
        "batch_processors",
        "bind_plans",
        "default_path",
        "ending",
        "errors_lock",
        "forked",
        "inflight",
        "internal_errors",
        "log_setup",
        "metric_instruments",
        "metrics",
        "own_provider",
        "path_locks",
        "path_locks_lock",
        "pipeline",
        "popen_init",
        "propagate_to_subprocesses",
        "propagate_to_threads",
        "recording_tracer",
        "redaction_rules",
        "setup_lock",
        "shim_log",
        "switches",
        "thread_hooks",
    )

    def __init__(self) -> None:
        self.setup_lock = threading.RLock()
        """Serialises configure/shutdown (owner: _setup)."""
        self.pipeline: Pipeline | None = None
        """The configured pipeline; None until first use or after shutdown (owner: _setup)."""
        self.recording_tracer: Tracer | None = None
        """A tracer that records even when telemetry is disabled (owner: _setup)."""
        self.switches: weakref.WeakKeyDictionary[TracerProvider, ProcessorSwitch] = (
            weakref.WeakKeyDictionary()
        )
        """Our one processor on each program provider, reused on reconfigure (owner: _setup)."""
        self.own_provider: OwnProvider | None = None
        """Our private provider, its one processor, and the OTEL_* settings it was made
        from; reused on reconfigure while they stay the same (owner: _setup)."""
        self.batch_processors: weakref.WeakSet[BatchFileProcessor] = weakref.WeakSet()
        """The live batch processors, reset in a forked child by one hook (owner: _setup)."""
        self.forked = False
        """This process was made by fork, so batching writes synchronously (owner: _setup)."""
        self.inflight: Tracker | None = None
        """This process's executions in flight, once a pipeline was configured (owner:
        _inflight.tracker)."""
        self.errors_lock = threading.Lock()
        self.internal_errors = 0
        """Internal failures logged since start (owner: _errors)."""
        self.path_locks_lock = threading.Lock()
        self.path_locks: dict[str, threading.Lock] = {}
        """One in-process lock per log file, beside flock (owner: _store)."""
        self.default_path: tuple[tuple[str, str], Path] | None = None
        """The log file when none is given, and the ($BETTY_TELEMETRY_FILE, $BETTY_HOME)
        it was resolved for (owner: _store)."""
        self.ending: dict[int, tuple[int, Mapping[str, Any]]] = {}
        """The record of each execution whose span is ending right now, by span id, with
        its trace id: what the file processors map it from (owner: _record)."""
        self.bind_plans: dict[int, tuple[inspect.Signature, BindPlan | None]] = {}
        """Each plain signature's bind plan, by id (owner: _inputs); bounded, pins its
        signatures."""
        self.propagate_to_subprocesses = False
        """Subprocesses get the current trace context in their environment (owner:
        propagation)."""
        self.popen_init: Callable[..., None] | None = None
        """The Popen.__init__ our hook wraps, while the hook is installed (owner: propagation)."""
        self.propagate_to_threads = False
        """Threads and pool tasks run in their starter's trace context (owner: _setup.threads)."""
        self.thread_hooks: tuple[Callable[..., Any], Callable[..., Any]] | None = None
        """The ThreadPoolExecutor.submit and Thread.start our hook wraps, while it is
        installed (owner: _setup.threads)."""
        self.metrics: Metrics | None = None
        """The instruments executions are recorded in; None when nothing would receive
        metrics (owner: _metrics.setup, called by _setup under setup_lock)."""
        self.metric_instruments: weakref.WeakKeyDictionary[Any, Instruments] = (
            weakref.WeakKeyDictionary()
        )
        """betty_otel's instruments on each meter they were made on, reused on reconfigure
        (owner: _metrics.record)."""
        self.redaction_rules: RedactionRules | None = None
        """Process-wide extra redaction rules; None for the defaults (owner: redaction)."""
        self.shim_log: tuple[str, str | None] | None = None
        """The repository (and install-skill --file) of the drop-in shim this process
        imported, whose log is its default (owner: _setup.shimlog)."""
        self.log_setup: Callable[[], None] | None = None
        """A logging configuration to apply before betty_otel first logs, while logging is
        not imported yet (the CLI's handler on stderr; owner: _logs)."""


STATE = ProcessState()

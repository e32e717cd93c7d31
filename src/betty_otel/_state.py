"""The process-wide state of betty_otel, in one object.

House rule: no module-level mutable state anywhere else. Each field names the
module that owns it; nothing but that module writes it. A forked child resets the
fields that must not be shared with its parent (see the owners' at-fork hooks).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import inspect
    from collections.abc import Callable
    from pathlib import Path

    from opentelemetry.sdk.trace import Tracer, TracerProvider

    from betty_otel._inputs import BindPlan
    from betty_otel._redact import RedactionRules
    from betty_otel._setup import Pipeline, Switch

__all__ = ["STATE", "ProcessState"]


@dataclass
class ProcessState:
    """Everything betty_otel keeps for the life of a process."""

    setup_lock: threading.RLock = field(default_factory=threading.RLock)
    """Serialises configure/shutdown (owner: _setup)."""
    pipeline: Pipeline | None = None
    """The configured pipeline; None until first use or after shutdown (owner: _setup)."""
    recording_tracer: Tracer | None = None
    """A tracer that records even when telemetry is disabled (owner: _setup)."""
    switches: weakref.WeakKeyDictionary[TracerProvider, Switch] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    """Our one processor on each program provider, reused on reconfigure (owner: _setup)."""
    forked: bool = False
    """This process was made by fork, so batching writes synchronously (owner: _setup)."""
    errors_lock: threading.Lock = field(default_factory=threading.Lock)
    internal_errors: int = 0
    """Internal failures logged since start (owner: _errors)."""
    path_locks_lock: threading.Lock = field(default_factory=threading.Lock)
    path_locks: dict[str, threading.Lock] = field(default_factory=dict)
    """One in-process lock per log file, beside flock (owner: _store)."""
    default_path: tuple[tuple[str, str], Path] | None = None
    """The log file when none is given, and the ($BETTY_TELEMETRY_FILE, $BETTY_HOME)
    it was resolved for (owner: _store)."""
    bind_plans: dict[int, tuple[inspect.Signature, BindPlan | None]] = field(default_factory=dict)
    """Each plain signature's bind plan, by id (owner: _inputs); bounded, pins its signatures."""
    propagate_to_subprocesses: bool = False
    """Subprocesses get the current trace context in their environment (owner: propagation)."""
    popen_init: Callable[..., None] | None = None
    """The Popen.__init__ our hook wraps, while the hook is installed (owner: propagation)."""
    propagate_to_threads: bool = False
    """Threads and pool tasks run in their starter's trace context (owner: _setup.threads)."""
    thread_hooks: tuple[Callable[..., Any], Callable[..., Any]] | None = None
    """The ThreadPoolExecutor.submit and Thread.start our hook wraps, while it is installed
    (owner: _setup.threads)."""
    redaction_rules: RedactionRules | None = None
    """Process-wide extra redaction rules; None for the defaults (owner: redaction)."""


STATE = ProcessState()

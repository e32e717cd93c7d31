"""The process-wide configuration of betty_otel, in one object, and its two resets.

House rule: module-level mutable state is either a field of `STATE` or a cache,
registry or lock of the one module that owns it, which `reset()` clears and
`after_fork()` renews (the owners are listed below, in the order they run). A memo of
a pure function (a functools cache whose result depends on its arguments only:
compiled patterns, key kinds) is not state: it never makes a process behave other
than a freshly imported one. STATE holds what was configured
(the pipeline, metrics, redaction rules, propagation switches, the shim's log, the
CLI's logging) and what is true of the process itself (made by fork, the failures
counted, the executions in flight, what betty_otel added to providers and patched):
each field names the module that owns it, and nothing but that module writes it.
Like structlog's ``_CONFIG`` and ``reset_defaults``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    import weakref
    from collections.abc import Callable
    from typing import Any, Final

    from opentelemetry.sdk.trace import TracerProvider

    from betty_otel._inflight.tracker import Tracker
    from betty_otel._metrics.setup import Metrics
    from betty_otel._redact import RedactionRules
    from betty_otel._setup import Pipeline, ProcessorSwitch

    OwnProvider = tuple[tuple[tuple[str, str], ...], TracerProvider, ProcessorSwitch]

__all__ = ["CHILD_HOOKS", "RESET_HOOKS", "STATE", "ProcessState", "after_fork", "reset"]

CHILD_HOOKS: Final = (
    "betty_otel._errors",  # first: a later hook that fails is counted
    "betty_otel._store.files",  # the path locks, before anything writes
    "betty_otel._setup.pipeline",  # the setup lock, before anything configures
    "betty_otel._sanitize",  # the default sanitizer's lock
    "betty_otel.exporter",  # the file exporters' locks
    "betty_otel._setup.processors",  # batches: the queued spans are the parent's to write
    "betty_otel._inflight.hooks",  # the executions in flight are the parent's
    "betty_otel._metrics.series",  # the label guards' locks
    "betty_otel._metrics.record",  # nothing pending, recording locks of the child's
    "betty_otel._metrics.provider",  # last: our own metrics made again, on all the above
)
"""The modules whose ``after_fork_in_child()`` `after_fork` calls, in this order (those
imported: a module never imported holds nothing to renew)."""

RESET_HOOKS: Final = (
    "betty_otel._store.location",  # the default log, resolved again from the environment
    "betty_otel._store.files",  # the path locks
    "betty_otel._inputs",  # the bind plans
    "betty_otel._record",  # the records of spans ending
    "betty_otel._sanitize",  # the default sanitizer
    "betty_otel._setup.recording",  # the shared recording tracer
)
"""The modules whose ``on_reset()`` `reset` calls, in this order, to empty their caches."""


class ProcessState:
    """Everything betty_otel keeps for the life of a process.

    A plain class, not a dataclass: a one-shot capture imports this module and must
    not pay for importing dataclasses.
    """

    __slots__ = (
        "forked",
        "inflight",
        "internal_errors",
        "log_setup",
        "metrics",
        "own_provider",
        "pipeline",
        "popen_init",
        "propagate_to_subprocesses",
        "propagate_to_threads",
        "redaction_rules",
        "shim_log",
        "switches",
        "thread_hooks",
    )

    def __init__(self) -> None:
        # Facts that `clear` keeps: what betty_otel added to objects that outlive a
        # configuration (a provider cannot remove a processor) and patched (restored
        # by shutdown), and that this process was made by fork.
        self.forked = False
        """This process was made by fork, so batching writes synchronously (owner: _setup)."""
        self.switches: weakref.WeakKeyDictionary[TracerProvider, ProcessorSwitch] | None = None
        """Our one processor on each program provider, reused on reconfigure; made when
        the first is added, so that a one-shot capture never imports weakref (owner: _setup)."""
        self.own_provider: OwnProvider | None = None
        """Our private provider, its one processor, and the OTEL_* settings it was made
        from; reused on reconfigure while they stay the same (owner: _setup)."""
        self.popen_init: Callable[..., None] | None = None
        """The Popen.__init__ our hook wraps, while the hook is installed (owner: propagation)."""
        self.thread_hooks: tuple[Callable[..., Any], Callable[..., Any]] | None = None
        """The ThreadPoolExecutor.submit and Thread.start our hook wraps, while it is
        installed (owner: _setup.threads)."""
        self.inflight: Tracker | None = None
        """This process's executions in flight, once a pipeline was configured;
        kept by reset, since they run on (owner: _inflight.hooks)."""
        self.clear()

    def clear(self) -> None:
        """The configuration and counters as at import (`reset` shut the pipeline down)."""
        self.pipeline: Pipeline | None = None
        """The configured pipeline; None until first use or after shutdown (owner: _setup)."""
        self.metrics: Metrics | None = None
        """The instruments executions are recorded in; None when nothing would receive
        metrics (owner: _metrics.setup, called by _setup under its setup lock)."""
        self.redaction_rules: RedactionRules | None = None
        """Process-wide extra redaction rules; None for the defaults (owner: redaction)."""
        self.propagate_to_subprocesses = False
        """Subprocesses get the current trace context in their environment (owner:
        propagation)."""
        self.propagate_to_threads = False
        """Threads and pool tasks run in their starter's trace context (owner: _setup.threads)."""
        self.shim_log: tuple[str, str | None] | None = None
        """The repository (and install-skill --file) of the drop-in shim this process
        imported, whose log is its default (owner: _setup.shimlog)."""
        self.log_setup: Callable[[], None] | None = None
        """A logging configuration to apply before betty_otel first logs, while logging is
        not imported yet (the CLI's handler on stderr; owner: _logs)."""
        self.internal_errors = 0
        """Internal failures logged since start (owner: _errors)."""


STATE = ProcessState()


def _call_hooks(modules: tuple[str, ...], hook: str) -> None:
    """Call hook in each of modules that is imported, in order; a failure is counted
    and the next hook still runs."""
    from betty_otel._errors import handle_internal_errors  # noqa: PLC0415 - it imports us

    for name in modules:
        module = sys.modules.get(name)
        if module is not None:
            with handle_internal_errors(f"{name}.{hook}"):
                getattr(module, hook)()


def after_fork() -> None:
    """In a forked child: locks no thread of the parent holds, nothing of the parent's
    to write (its batches, its executions in flight), our own metrics made again.

    Registered once with ``os.register_at_fork``; calls the owners' child hooks in
    the order of CHILD_HOOKS.
    """
    STATE.forked = True
    _call_hooks(CHILD_HOOKS, "after_fork_in_child")


def reset() -> None:
    """Return betty_otel to its state when imported, for tests and long-lived programs.

    Shuts the pipeline down (flushing the file and the collectors, as
    ``betty_otel.shutdown()``), then forgets the configuration (redaction rules,
    propagation, metrics, the shim's log), zeroes `internal_errors` and empties every
    cache (the default log is resolved again from the environment). What betty_otel
    added to objects that outlive it is kept (one processor per provider, one set of
    instruments per meter, our private provider), as are the executions still in flight
    (each is written once when it ends) and that the process was forked.
    """
    setup = sys.modules.get("betty_otel._setup.pipeline")
    if setup is None:  # never configured
        _forget()
        return
    with setup.setup_held():  # no configure() between the shutdown and the forgetting
        setup.shutdown()
        _forget()


def _forget() -> None:
    STATE.clear()
    _call_hooks(RESET_HOOKS, "on_reset")


os.register_at_fork(after_in_child=after_fork)

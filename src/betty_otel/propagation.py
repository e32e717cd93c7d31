"""Executions across process boundaries: the caller and trace context in the environment.

Betty workflows run skills as subprocesses. Three things carry an execution across:

- In: ``TRACEPARENT``/``TRACESTATE`` (W3C Trace Context in the environment, the
  OpenTelemetry specification's environment-variable carrier) make a program's root
  executions children of the process that started it (`environment_context`, read when
  betty_otel is configured). ``BETTY_CALLER``, ``BETTY_WORKFLOW``, ``BETTY_AGENT`` and
  ``BETTY_EXECUTION_ID`` name the caller for ``detect_caller=True`` (`detect_caller`,
  read at each call).
- Out: `subprocess_env` returns an environment that hands the current execution to a
  child process; ``configure(propagate_to_subprocesses=True)`` does it for every
  ``subprocess`` call made inside a recorded execution (`propagate_to_subprocesses`).
"""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from betty_otel._entry import ATTR_SKILL
from betty_otel._errors import handle_internal_errors, internal_error
from betty_otel._ids import ENV_TRACEPARENT, environment_traceparent
from betty_otel._state import STATE

__all__ = [
    "ENV_CALLER",
    "ENV_METADATA",
    "ENV_TRACEPARENT",
    "ENV_TRACESTATE",
    "current_skill",
    "detect_caller",
    "environment_context",
    "propagate_to_subprocesses",
    "root_parent",
    "subprocess_env",
]

ENV_CALLER: Final = "BETTY_CALLER"
ENV_TRACESTATE: Final = "TRACESTATE"
ENV_METADATA: Final = (
    ("BETTY_WORKFLOW", "workflow"),
    ("BETTY_AGENT", "agent"),
    ("BETTY_EXECUTION_ID", "execution_id"),
)
"""Environment variables detect_caller puts into the entry's metadata, and their keys there."""

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_TRACESTATE_MAX_LENGTH: Final = 8192
"""A longer ``TRACESTATE`` is dropped, as the W3C propagator drops the header."""


def current_skill() -> str | None:
    """The skill of the recorded execution whose span is current, if any."""
    attributes = getattr(trace.get_current_span(), "attributes", None)
    skill = attributes.get(ATTR_SKILL) if isinstance(attributes, Mapping) else None
    return skill if isinstance(skill, str) else None


def detect_caller(given: str) -> tuple[str, dict[str, str]]:
    """The caller of an execution starting now, and metadata from the environment.

    The caller is ``$BETTY_CALLER``, else the skill of the enclosing recorded
    execution, else given. ``$BETTY_WORKFLOW``, ``$BETTY_AGENT`` and
    ``$BETTY_EXECUTION_ID`` become the metadata keys ``workflow``, ``agent`` and
    ``execution_id``. Empty or blank variables count as unset.
    """
    environ = os.environ
    caller = environ.get(ENV_CALLER, "").strip() or current_skill() or given
    metadata = {}
    for name, key in ENV_METADATA:
        value = environ.get(name, "").strip()
        if value:
            metadata[key] = value
    return caller, metadata


def environment_context(environ: Mapping[str, str] | None = None) -> Context | None:
    """The parent context that ``TRACEPARENT`` (and ``TRACESTATE``) name; None if none is valid.

    Read as the W3C propagator reads the headers: ``TRACEPARENT`` by
    `betty_otel._ids.parse_traceparent` (as the direct path of a capture reads it),
    ``TRACESTATE`` by the API's TraceState (a malformed one is empty, an overlong one dropped).
    """
    environ = os.environ if environ is None else environ
    try:
        parent = environment_traceparent(environ)
        if parent is None:
            return None
        state = environ.get(ENV_TRACESTATE, "")
        span_context = SpanContext(
            parent.trace_id,
            parent.span_id,
            is_remote=True,
            trace_flags=TraceFlags(parent.flags),
            trace_state=None
            if len(state) > _TRACESTATE_MAX_LENGTH
            else TraceState.from_header([state]),
        )
    except Exception:  # noqa: BLE001 - a malformed environment must not stop telemetry
        internal_error(f"reading ${ENV_TRACEPARENT}")
        return None
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def root_parent(remote: Context | None) -> Context | None:
    """The context a new span starts in: remote when no span is current, else None (current)."""
    if remote is None or trace.get_current_span().get_span_context().is_valid:
        return None
    return remote


def subprocess_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of env (default: os.environ) that hands the current execution to a child.

    Inside a recorded execution, ``TRACEPARENT`` and ``TRACESTATE`` carry its span
    context and ``BETTY_CALLER`` its skill: a child process using betty_otel records
    its root executions as children of this one (and, with ``detect_caller=True``,
    this skill as their caller). Outside one, a plain copy. Use it as
    ``subprocess.run(cmd, env=subprocess_env())``.
    """
    result = dict(os.environ if env is None else env)
    with handle_internal_errors("handing the trace context to a subprocess"):
        span = trace.get_current_span()
        if span.get_span_context().is_valid:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
            result.pop(ENV_TRACEPARENT, None)
            result.pop(ENV_TRACESTATE, None)  # a stale one would describe another trace
            result.update((key.upper(), value) for key, value in carrier.items())
            skill = current_skill()
            if skill is not None:
                result[ENV_CALLER] = skill
    return result


def _all_text(env: object) -> bool:
    """A mapping of str to str: an environment subprocess_env can extend as it is."""
    if not isinstance(env, Mapping):
        return False
    return all(isinstance(key, str) and isinstance(value, str) for key, value in env.items())


def _hooked(original: Callable[..., None], env_index: int) -> Callable[..., None]:
    """Popen.__init__ that passes subprocess_env(env) while a span is current and enabled.

    Anything unusual (bytes in env, an env that cannot be read, a failure of ours)
    leaves the call's arguments exactly as given: Popen then behaves as without us.
    """

    @functools.wraps(original)
    def init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        if STATE.propagate_to_subprocesses and trace.get_current_span().get_span_context().is_valid:
            try:
                positional = len(args) > env_index
                env = args[env_index] if positional else kwargs.get("env")
                if env is None or _all_text(env):
                    new_env = subprocess_env(env)
                    if positional:
                        args = (*args[:env_index], new_env, *args[env_index + 1 :])
                    else:
                        kwargs = {**kwargs, "env": new_env}
            except Exception:  # noqa: BLE001 - never break the program's subprocess call
                internal_error("handing the trace context to a subprocess")
        original(self, *args, **kwargs)

    return init


def propagate_to_subprocesses(enabled: bool) -> None:
    """Turn the subprocess hook on or off (configure's propagate_to_subprocesses option).

    On: ``subprocess.Popen.__init__`` is wrapped once, so every subprocess started
    while a span is current gets `subprocess_env` of its env. Off: the original is
    restored, unless something else wrapped Popen after us (then ours passes through).
    """
    STATE.propagate_to_subprocesses = enabled
    installed = STATE.popen_init
    if enabled and installed is None:
        original = subprocess.Popen.__init__
        try:
            env_index = list(inspect.signature(original).parameters).index("env") - 1
        except (TypeError, ValueError):
            internal_error("hooking subprocess.Popen")
            return
        subprocess.Popen.__init__ = _hooked(original, env_index)  # type: ignore[method-assign]
        STATE.popen_init = original
    elif not enabled and installed is not None:
        current = subprocess.Popen.__dict__.get("__init__")
        if getattr(current, "__wrapped__", None) is installed:
            subprocess.Popen.__init__ = installed  # type: ignore[method-assign,assignment]
            STATE.popen_init = None

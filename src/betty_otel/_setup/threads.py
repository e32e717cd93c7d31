"""Executions across threads: the opt-in hook of ``configure(threads=True)``.

The OpenTelemetry context lives in context variables, which a new thread does not
inherit: an execution recorded in a ``ThreadPoolExecutor`` worker or a
``threading.Thread`` is a root of its own unless the context is carried over. While
the hook is on:

- ``ThreadPoolExecutor.submit`` captures the submitter's context and runs the task in
  it (``loop.run_in_executor`` submits, so it is covered too);
- ``threading.Thread.start`` captures the starter's context and runs the thread's
  ``run`` in it (a subclass's own ``run`` too).

Executions inside then become children of the execution that submitted or started
them, as with opentelemetry-instrumentation-threading, without its exact-version pins
on the OpenTelemetry packages. A pool's worker threads, started by ``submit``, inherit
nothing: each task carries its own submitter's context. Off again (``configure()``
without it, ``shutdown()``), the originals are restored unless something wrapped them
after us (then ours passes everything through). Tasks and threads return and raise
exactly what they would without the hook.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from betty_otel._errors import internal_error
from betty_otel._state import STATE

__all__ = ["propagate_to_threads"]


def _in_context(context: Context, function: Callable[..., Any]) -> Callable[..., Any]:
    """function, run with context attached (and detached after, whatever happens)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        token = otel_context.attach(context)
        try:
            return function(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run


def _hooked_submit(original: Callable[..., Future[Any]]) -> Callable[..., Future[Any]]:
    """ThreadPoolExecutor.submit that runs the task in the submitter's context."""

    @functools.wraps(original)
    def submit(
        self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[Any]:
        context = otel_context.get_current()
        if not (STATE.propagate_to_threads and context):
            return original(self, fn, *args, **kwargs)
        # A worker thread that this submit starts must not keep the submitter's context.
        token = otel_context.attach(Context())
        try:
            return original(self, _in_context(context, fn), *args, **kwargs)
        finally:
            otel_context.detach(token)

    return submit


def _carry(thread: threading.Thread, context: Context) -> Callable[[], None]:
    """Make thread's run run in context; returns what undoes it.

    The context rides on the Thread as an instance ``run``, which shadows the class's
    whatever the subclass, and is dropped when run returns: the Thread may outlive it.
    """
    attributes = vars(thread)
    had = "run" in attributes
    given = attributes.get("run")

    def forget() -> None:
        if had:
            attributes["run"] = given
        else:
            attributes.pop("run", None)

    run = _in_context(context, thread.run)

    def run_then_forget() -> None:
        try:
            run()
        finally:
            forget()

    attributes["run"] = run_then_forget
    return forget


def _hooked_start(original: Callable[[threading.Thread], None]) -> Callable[..., None]:
    """Thread.start that runs the thread in the starter's context."""

    @functools.wraps(original)
    def start(self: threading.Thread) -> None:
        context = otel_context.get_current()
        if not (STATE.propagate_to_threads and context):
            original(self)
            return
        try:
            forget = _carry(self, context)
        except Exception:  # noqa: BLE001 - an odd Thread starts as it would without us
            internal_error("carrying the trace context into a thread")
            original(self)
            return
        try:
            original(self)
        except BaseException:
            forget()  # it never runs (started twice, no threads left): leave it as it was
            raise

    return start


def propagate_to_threads(enabled: bool) -> None:
    """Turn the thread hook on or off (configure's threads option)."""
    STATE.propagate_to_threads = enabled
    installed = STATE.thread_hooks
    if enabled and installed is None:
        originals = (ThreadPoolExecutor.submit, threading.Thread.start)
        ThreadPoolExecutor.submit = _hooked_submit(originals[0])  # type: ignore[method-assign]
        threading.Thread.start = _hooked_start(originals[1])  # type: ignore[method-assign]
        STATE.thread_hooks = originals
    elif not enabled and installed is not None:
        submit, start = installed
        ours = (
            getattr(ThreadPoolExecutor.__dict__.get("submit"), "__wrapped__", None) is submit
            and getattr(threading.Thread.__dict__.get("start"), "__wrapped__", None) is start
        )
        if ours:
            ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
            threading.Thread.start = start  # type: ignore[method-assign]
            STATE.thread_hooks = None

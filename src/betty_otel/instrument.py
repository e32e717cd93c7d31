"""capture_telemetry (wrapt): each call of a decorated function becomes an OTel span.

It records through `betty_otel._run.Run`, the one place where an outcome becomes
the span's betty.* attributes and status (as `TelemetryContext`, re-exported here
from `betty_otel.context`, does). Telemetry never changes what the user's code
returns or raises: an internal failure is logged (logger ``betty_otel``), counted
in ``internal_errors``, and the call goes on.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Iterable
from typing import Any, ParamSpec, TypeVar, overload

import wrapt
from opentelemetry import trace
from opentelemetry.context import Context

from betty_otel._entry import ATTR_CALLER, ATTR_INPUTS, ATTR_SKILL, validate_text
from betty_otel._errors import internal_error
from betty_otel._inflight.hooks import mark_generator
from betty_otel._inputs import bind_inputs
from betty_otel._known_secrets import NO_SECRETS, learned
from betty_otel._redact import REDACTED
from betty_otel._run import DEFAULT_CALLER, Run, finish_run, start_run
from betty_otel._sanitize import Sanitizer, default_sanitizer, to_json_text
from betty_otel._setup import current_pipeline
from betty_otel.context import TelemetryContext
from betty_otel.propagation import detect_caller

__all__ = ["DEFAULT_CALLER", "TelemetryContext", "capture_telemetry"]

P = ParamSpec("P")
R = TypeVar("R")


class _Spec:
    """What one decorated function records, computed once at decoration time."""

    __slots__ = (
        "attributes",
        "caller",
        "capture_inputs",
        "detect_caller",
        "sanitizer",
        "signature",
        "skill",
        "skip_self",
    )

    def __init__(
        self, function: Callable[..., Any], skill: str, caller: str, sanitizer: Sanitizer
    ) -> None:
        self.skill = skill
        self.caller = caller
        self.sanitizer = sanitizer
        self.detect_caller = False
        self.attributes: dict[str, Any] = {ATTR_SKILL: skill, ATTR_CALLER: caller}
        module = getattr(function, "__module__", None)
        qualname = getattr(function, "__qualname__", skill)
        self.attributes["code.function.name"] = f"{module}.{qualname}" if module else qualname
        code = getattr(function, "__code__", None)
        if code is not None:
            self.attributes["code.file.path"] = code.co_filename
            self.attributes["code.line.number"] = code.co_firstlineno
        self.signature: inspect.Signature | None = None
        self.skip_self: bool | None = None
        self.capture_inputs = False

    def enable_inputs(self, function: Callable[..., Any]) -> None:
        try:
            self.signature = inspect.signature(function)
        except (TypeError, ValueError):
            self.signature = None  # a builtin without a signature: inputs as args/kwargs
        else:
            first = next(iter(self.signature.parameters), None)
            # None: no parameters; else whether the first one is named as self/cls.
            self.skip_self = None if first is None else first in ("self", "cls")
        self.capture_inputs = True

    def begin(self, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Run | None:
        """Start a run in the current pipeline; None when telemetry is off or starting failed."""
        current = current_pipeline()
        tracer = current.tracer
        if tracer is None:
            return None
        return self.start(tracer, current.remote_parent, instance, args, kwargs)

    def start(
        self,
        tracer: trace.Tracer,
        remote_parent: Context | None,
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Run | None:
        attributes = self.attributes
        metadata: dict[str, str] = {}
        secrets = NO_SECRETS
        if self.detect_caller:
            try:  # not handle_internal_errors: this is on every call (see start_run)
                caller, metadata = detect_caller(self.caller)
                attributes = {**attributes, ATTR_CALLER: caller}
            except Exception:  # noqa: BLE001 - telemetry must never break the host program
                internal_error("detecting the caller")
        if self.capture_inputs:
            try:  # not handle_internal_errors: this is on every call (see start_run)
                text = to_json_text(self._inputs(self.sanitizer, instance, args, kwargs))
                attributes = {**attributes, ATTR_INPUTS: text}
                if REDACTED in text:  # redaction removed something: learn what it was
                    secrets = learned(
                        secrets,
                        text,
                        lambda: self._inputs(_Arguments(), instance, args, kwargs),
                        self.sanitizer.redactor,
                    )
            except Exception:  # noqa: BLE001 - telemetry must never break the host program
                internal_error("capturing inputs")
        run = start_run(tracer, self.skill, attributes, self.sanitizer, remote_parent)
        if run is not None:
            run.secrets = secrets
            if metadata:
                run.set_metadata(metadata)
        return run

    def _inputs(
        self, sanitizer: Sanitizer, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Arguments by parameter name, defaults applied, self/cls left out, redacted."""
        signature = self.signature
        if signature is None:
            return sanitizer.sanitize({"args": list(args), "kwargs": kwargs})
        skip_self = self.skip_self
        if instance is not None and skip_self is not None:
            # A bound call (method or classmethod): wrapt passes self/cls apart from args.
            return bind_inputs(sanitizer, signature, (instance, *args), kwargs, skip_first=True)
        # Called through the class (Class.method(obj, ...)): leave self/cls out too.
        skip = bool(skip_self) and bool(args)
        return bind_inputs(sanitizer, signature, args, kwargs, skip_first=skip)


class _Arguments(Sanitizer):
    """Converts nothing: with it, `_Spec._inputs` gives a call's arguments by name as
    they were passed, to learn which values redaction removed (see _known_secrets)."""

    def sanitize(self, value: object) -> Any:
        return value


class _FunctionWrapper(wrapt.FunctionWrapper[Any, Any]):
    """A wrapt FunctionWrapper that pickles and copies by reference, like a plain function.

    So decorated skills still go to multiprocessing pools and through copy.deepcopy.
    """

    def __reduce_ex__(self, protocol: object) -> str:
        return str(self.__qualname__)

    def __copy__(self) -> _FunctionWrapper:
        return self

    def __deepcopy__(self, memo: object) -> _FunctionWrapper:
        return self


def _underlying(wrapped: Any) -> Callable[..., Any]:
    """The plain function behind a classmethod/staticmethod object or wrapper chain."""
    function = getattr(wrapped, "__func__", wrapped)
    return inspect.unwrap(function)  # type: ignore[no-any-return]


def _make_wrapper(spec: _Spec, function: Callable[..., Any]) -> Callable[..., Any]:
    """A wrapt wrapper whose span covers the real work of this kind of function."""
    if inspect.isasyncgenfunction(function):
        return _iteration_wrapper(spec, _traced_asyncgen)
    if inspect.iscoroutinefunction(function):
        return _coroutine_wrapper(spec)
    if inspect.isgeneratorfunction(function):
        return _iteration_wrapper(spec, _traced_generator)
    return _sync_wrapper(spec)


def _sync_wrapper(spec: _Spec) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: object, args: Any, kwargs: Any) -> Any:
        run = spec.begin(instance, args, kwargs)
        if run is None:
            return wrapped(*args, **kwargs)
        run.attach()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            finish_run(run, exc)
            raise
        finish_run(run, result=result)
        return result

    return wrapper


def _coroutine_wrapper(spec: _Spec) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Coroutine[Any, Any, Any]],
        instance: object,
        args: Any,
        kwargs: Any,
    ) -> Coroutine[Any, Any, Any]:
        async def traced() -> Any:
            run = spec.begin(instance, args, kwargs)
            if run is None:
                return await wrapped(*args, **kwargs)
            run.attach()
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                finish_run(run, exc)
                raise
            finish_run(run, result=result)
            return result

        return traced()

    return wrapper


def _iteration_wrapper(spec: _Spec, traced: Callable[..., Any]) -> Callable[..., Any]:
    """For generators and async generators: the span covers the iteration.

    It lasts until exhaustion, close or an exception, and is current only while
    the generator's own code runs, never in the consumer between two items.
    """

    def wrapper(wrapped: Callable[..., Any], instance: object, args: Any, kwargs: Any) -> Any:
        generator = wrapped(*args, **kwargs)
        current = current_pipeline()
        tracer = current.tracer
        if tracer is None:
            return generator
        return traced(generator, spec, tracer, current.remote_parent, instance, args, kwargs)

    return wrapper


def _traced_generator(
    generator: Generator[Any, Any, Any],
    spec: _Spec,
    tracer: trace.Tracer,
    remote_parent: Context | None,
    instance: object,
    args: Any,
    kwargs: Any,
) -> Generator[Any, Any, Any]:
    """Runs only once iterated: a generator that is never started records nothing."""
    run = spec.start(tracer, remote_parent, instance, args, kwargs)
    if run is None:  # starting the span failed (logged): iterate untraced
        return (yield from generator)
    mark_generator(run)
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        while True:
            run.attach()
            try:
                if to_throw is not None:
                    exc, to_throw = to_throw, None
                    item = generator.throw(exc)
                else:
                    item = generator.send(to_send)
            finally:
                run.detach()
            try:
                to_send = yield item
            except GeneratorExit:
                generator.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - thrown in by the consumer: pass it on
                to_throw = exc
    except StopIteration as stop:
        finish_run(run, result=None)
        return stop.value
    except GeneratorExit:
        finish_run(run, result=None)  # closed by the consumer: a normal end
        raise
    except BaseException as exc:
        finish_run(run, exc)
        raise


async def _traced_asyncgen(
    generator: AsyncGenerator[Any, Any],
    spec: _Spec,
    tracer: trace.Tracer,
    remote_parent: Context | None,
    instance: object,
    args: Any,
    kwargs: Any,
) -> AsyncGenerator[Any, Any]:
    """Runs only once iterated: an async generator never started records nothing."""
    run = spec.start(tracer, remote_parent, instance, args, kwargs)
    if run is None:  # starting the span failed (logged): iterate untraced
        async for item in generator:
            yield item
        return
    mark_generator(run)
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        while True:
            run.attach()
            try:
                if to_throw is not None:
                    exc, to_throw = to_throw, None
                    item = await generator.athrow(exc)
                else:
                    item = await generator.asend(to_send)
            finally:
                run.detach()
            try:
                to_send = yield item
            except GeneratorExit:
                await generator.aclose()
                raise
            except BaseException as exc:  # noqa: BLE001 - thrown in by the consumer: pass it on
                to_throw = exc
    except StopAsyncIteration:
        finish_run(run, result=None)
    except GeneratorExit:
        finish_run(run, result=None)
        raise
    except BaseException as exc:
        finish_run(run, exc)
        raise


@overload
def capture_telemetry(wrapped: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def capture_telemetry(
    wrapped: None = None,
    /,
    *,
    skill_name: str | None = None,
    caller: str = DEFAULT_CALLER,
    capture_inputs: bool = False,
    sanitize_keys: Iterable[str] = (),
    detect_caller: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def capture_telemetry(
    wrapped: Callable[P, R] | None = None,
    /,
    *,
    skill_name: str | None = None,
    caller: str = DEFAULT_CALLER,
    capture_inputs: bool = False,
    sanitize_keys: Iterable[str] = (),
    detect_caller: bool = False,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Record every call of the decorated function as a span and a Betty entry.

    Use bare (``@capture_telemetry``) or called (``@capture_telemetry(skill_name=...)``).
    Works on functions, coroutine functions, generators and async generators (the
    span covers the awaited body or the whole iteration), methods, classmethods and
    staticmethods. The return value and any exception pass through unchanged.

    Args:
        skill_name: the entry's skill; default is the function's qualified name.
        caller: who runs it (``CLI``, ``API``, ``workflow.compose``, ...).
        capture_inputs: record the arguments by parameter name (self/cls left out),
            secrets redacted. Off by default: inputs may hold personal data.
        sanitize_keys: extra argument/key names to redact, on top of the defaults.
        detect_caller: at each call, the caller is $BETTY_CALLER, else the enclosing
            execution's skill, else caller; $BETTY_WORKFLOW, $BETTY_AGENT and
            $BETTY_EXECUTION_ID go into the metadata (as workflow, agent, execution_id).

    Raises:
        ValueError: skill_name or caller is empty (at decoration time).
    """
    if wrapped is None:
        return functools.partial(
            capture_telemetry,
            skill_name=skill_name,
            caller=caller,
            capture_inputs=capture_inputs,
            sanitize_keys=sanitize_keys,
            detect_caller=detect_caller,
        )
    function = _underlying(wrapped)
    skill = validate_text(
        "skill_name",
        skill_name if skill_name is not None else getattr(function, "__qualname__", None),
    )
    validate_text("caller", caller)
    keys = tuple(sanitize_keys)
    spec = _Spec(function, skill, caller, Sanitizer(keys) if keys else default_sanitizer())
    spec.detect_caller = detect_caller
    if capture_inputs:
        spec.enable_inputs(function)
    return _FunctionWrapper(wrapped, _make_wrapper(spec, function))

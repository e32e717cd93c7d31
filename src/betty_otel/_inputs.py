"""Binding a call's arguments to its parameter names: the inputs a decorated call records.

``bind_inputs`` gives ``{parameter: value}`` with defaults applied; ``*args`` stays a list
and ``**kwargs`` a dict under their own parameter names (secret keys inside are redacted
like anywhere else); ``{"args": [...], "kwargs": {...}}`` when binding fails. It runs on
every decorated call, so plain signatures (no ``*args``, ``**kwargs`` or positional-only
parameters) are bound by a plan computed once per signature instead of by ``inspect``.
"""

from __future__ import annotations

import inspect
from typing import Any, Final

from betty_otel._sanitize import Sanitizer

__all__ = ["BindPlan", "bind_inputs", "on_reset"]

_PLAN_CACHE_SIZE: Final = 2048


class BindPlan:
    """A plain signature's parameter names (positional ones first) and defaults."""

    __slots__ = ("accepted", "defaults", "names", "positional")

    def __init__(self, names: tuple[str, ...], positional: int, defaults: dict[str, Any]) -> None:
        self.names = names
        self.positional = positional
        self.defaults = defaults
        self.accepted = frozenset(names)


_plans: dict[int, tuple[inspect.Signature, BindPlan | None]] = {}
"""Each plain signature's bind plan, by id; bounded, pins its signatures (so an id is
never reused while cached)."""


def on_reset() -> None:
    """Forget the bind plans."""
    _plans.clear()


def bind_inputs(
    sanitizer: Sanitizer,
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    skip_first: bool = False,
) -> dict[str, Any]:
    """Bind call arguments to parameter names, then sanitize.

    Defaults are applied; ``*args`` stays a list and ``**kwargs`` a dict under their
    own parameter names (so a name can't shadow another); with ``skip_first`` the first
    parameter (self/cls) is dropped. If binding fails (the call itself will raise), the
    result is ``{"args": [...], "kwargs": {...}}``. Never raises.
    """
    try:
        fast = _fast_bind(signature, args, kwargs)
    except Exception:  # noqa: BLE001 - hostile arguments: the general path handles them
        fast = None
    if fast is not None:
        if skip_first and fast:
            del fast[next(iter(signature.parameters))]
        result = sanitizer.sanitize(fast)
        return result if isinstance(result, dict) else {"inputs": result}
    try:
        # bind_partial: a call missing arguments still shows what it was given.
        bound = signature.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        arguments: object = bound.arguments
        if skip_first and signature.parameters:
            first = next(iter(signature.parameters.values()))
            if first.kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[first.name] = bound.arguments.get(first.name, ())[1:]
            else:
                bound.arguments.pop(first.name, None)
    except Exception:  # noqa: BLE001 - bad arguments: record what was passed
        try:
            arguments = _unbound_arguments(signature, args, kwargs, skip_first=skip_first)
        except Exception:  # noqa: BLE001 - not even a tuple and a dict
            arguments = {"args": args, "kwargs": kwargs}
    result = sanitizer.sanitize(arguments)
    return result if isinstance(result, dict) else {"inputs": result}


def _fast_bind(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """Bind like bind_partial + apply_defaults for plain signatures, several times faster.

    None when the signature has *args, **kwargs or positional-only parameters, or the
    call does not fit it: inspect handles those (and reports what does not fit).
    """
    cached = _plans.get(id(signature))
    if cached is None or cached[0] is not signature:
        cached = (signature, _bind_plan(signature))
        if len(_plans) < _PLAN_CACHE_SIZE:
            _plans[id(signature)] = cached
    plan = cached[1]
    if plan is None or len(args) > plan.positional:
        return None
    bound = dict(zip(plan.names, args, strict=False))  # fewer args: defaults fill in
    if kwargs:
        if not plan.accepted.issuperset(kwargs) or not bound.keys().isdisjoint(kwargs):
            return None
        bound.update(kwargs)
    if len(bound) < len(plan.names):
        # Defaults after the given arguments (key order differs from inspect's only
        # when keywords skip a parameter; JSON objects are unordered).
        for name, default in plan.defaults.items():
            bound.setdefault(name, default)
    return bound


def _bind_plan(signature: inspect.Signature) -> BindPlan | None:
    """The plan of a plain signature; None for one with *args, **kwargs or positional-only."""
    kinds = inspect.Parameter
    params = list(signature.parameters.values())
    if any(p.kind not in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY) for p in params):
        return None
    positional = sum(1 for p in params if p.kind is kinds.POSITIONAL_OR_KEYWORD)
    defaults = {p.name: p.default for p in params if p.default is not kinds.empty}
    return BindPlan(tuple(p.name for p in params), positional, defaults)


def _unbound_arguments(
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    skip_first: bool,
) -> dict[str, Any]:
    """Arguments of a call that does not fit its signature (the call will raise).

    Leading positional values still get their parameter names, so a secret passed
    as ``password`` is redacted by key; what is left over goes under "args" and
    "kwargs".
    """
    kinds = inspect.Parameter
    names = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    named: dict[str, Any] = dict(zip(names, args, strict=False))
    extra = list(args[len(names) :])
    rest: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in signature.parameters and key not in named:
            named[key] = value
        else:
            rest[key] = value
    if skip_first and names:
        named.pop(names[0], None)
    if extra:
        named["args"] = extra
    if rest:
        named["kwargs"] = rest
    return named

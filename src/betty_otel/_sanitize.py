"""Safe conversion of arbitrary Python values to bounded, strict JSON, secrets redacted.

Values from user code may hold anything: credentials, 10 MB blobs, cycles, objects whose
``repr`` raises. This runs on the decorator's hot path: it never raises, and a small dict
of plain values costs a copy.

Conversion: dataclasses become dicts of their fields, ``model_dump()`` results are used,
enums their value, named tuples dicts, tuples lists, sets sorted lists, NaN/inf strings
(``_leaves`` converts the leaves); iterators are never consumed; anything else is its
``repr``. By key (``_secret_keys``): a secret key's value is replaced whole, whatever its
type; a shaped key's (``session``) when it is a token; a data key's text (``trace_id``)
keeps random-looking strings. Secret values inside every string are redacted.

Budgets: strings are redacted, then cut to ``max_value_chars`` (``_text_budget``: of an
oversized string only what can survive, plus 16 KB, is scanned); containers keep
``max_items`` entries and ``max_depth`` levels; past ``max_total_chars`` of JSON the rest
of each open container becomes one marker. Markers are stable:
``sanitize(sanitize(x)) == sanitize(x)``.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from itertools import islice
from typing import Any, Final

from betty_otel._jsontext import plain_text
from betty_otel._leaves import (
    MAX_TEXT,
    big_int_text,
    dataclass_items,
    json_size,
    key_to_str,
    number_value,
    scalar_text,
    set_items,
)
from betty_otel._redact import (
    REDACTED,
    RedactionRules,
    Redactor,
    named_secret,
    safe_repr,
    secret_positions,
    type_name,
)
from betty_otel._secret_keys import KEY_DATA, KEY_SECRET, KEY_SHAPED
from betty_otel._secret_values import token_shaped
from betty_otel._state import STATE
from betty_otel._text_budget import TextBudget

__all__ = ["Sanitizer", "after_fork_in_child", "default_sanitizer", "on_reset", "to_json_text"]

_CYCLE: Final = "<cycle>"
_DEPTH: Final = "<max depth exceeded>"
_BUDGET: Final = "<truncated: size budget exceeded>"
_TRUNC_KEY: Final = "<truncated>"
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_KEY_CACHE_MAX_LEN: Final = 256  # longer keys are converted uncached (the cache pins them)
_KEY_CACHE_SIZE: Final = 2048
_SCALAR_COST: Final = 24  # JSON chars budgeted for any number, bool or null


class _WalkState:
    """Per-call walk state, so one Sanitizer is safe to share between threads."""

    __slots__ = ("active", "total")

    def __init__(self) -> None:
        self.total = 0  # approximate JSON chars emitted so far
        self.active: set[int] = set()  # ids of containers on the current path (cycles)


class Sanitizer:
    """Redacts secrets and converts any value to a bounded, strict-JSON-safe copy."""

    def __init__(
        self,
        extra_keys: Iterable[str] = (),
        *,
        max_value_chars: int = 4096,
        max_total_chars: int = MAX_TEXT,
        max_depth: int = 20,
        max_items: int = 200,
    ) -> None:
        """Configure extra secret names (exact match, normalised) and the size budgets.

        Budgets are raised to small minimums (64 chars per value, 256 total, depth 1,
        2 items) so every marker fits and a second pass never cuts again.
        """
        self._extra_keys = (extra_keys,) if isinstance(extra_keys, str) else tuple(extra_keys)
        self._max_value_chars = max(int(max_value_chars), 64)
        self._max_total = max(int(max_total_chars), 256)
        self._max_depth = max(int(max_depth), 1)
        self._max_items = max(int(max_items), 2)
        self._use_rules(STATE.redaction_rules)

    def _use_rules(self, rules: RedactionRules | None) -> None:
        """Redact by these process-wide rules from now on (betty_otel.redaction changed)."""
        redactor = Redactor(self._extra_keys, rules)
        # Each short key's sanitized text and kind: per instance (it depends on the rules).
        keys: dict[str, tuple[str, int]] = {}
        self._keys = keys
        self._min_scan = redactor.min_scan
        self._needs_scan = redactor.needs_scan
        # A string redacted, then cut to its budget (``TextBudget.fit``).
        fit_text = TextBudget(redactor, self._max_value_chars).fit
        self._fit_text = fit_text
        self._redactor = redactor
        # Read as one by _key_info: a verdict is cached beside the rules that gave it, so
        # a thread that changes rules meanwhile never finds the old rules' verdict cached.
        self._key_rules = (keys, redactor, fit_text)
        self._rules = rules

    @property
    def redactor(self) -> Redactor:
        """The redactor this sanitizer applies to text (its keys and the current rules)."""
        if STATE.redaction_rules is not self._rules:
            self._use_rules(STATE.redaction_rules)
        return self._redactor

    def sanitize(self, value: object) -> Any:
        """Return a JSON-safe copy (dict/list/str/int/float/bool/None).

        Secrets are redacted by key and by value, and every string is within budget.
        """
        try:
            if STATE.redaction_rules is not self._rules:
                self._use_rules(STATE.redaction_rules)
            if type(value) is dict:
                flat = self._flat(value)
                if flat is not None:
                    return flat
            return self._walk(value, 0, _WalkState())
        except Exception:  # noqa: BLE001 - last resort (e.g. a dict mutated while read)
            return f"<unserializable {type_name(value)}>"

    def _flat(self, value: dict[Any, Any]) -> dict[str, Any] | None:
        """The hot path's usual case: a small dict of known keys and plain scalar values.

        Gives exactly what the full walk gives for such a dict; None (take the full
        walk) at the first key or value that needs more than a copy.
        """
        if len(value) > self._max_items or "value" in value or "Value" in value:
            return None  # a "value" may be secret by its sibling "name" (named_secret)
        keys = self._keys
        min_scan = self._min_scan
        out: dict[str, Any] = {}
        total = 0
        for key, item in value.items():
            info = keys.get(key) if type(key) is str else None
            if info is None:
                return None
            text, key_kind = info
            if text in out:
                return None
            total += len(text) + _SCALAR_COST + (len(item) * 2 if type(item) is str else 0)
            if total > self._max_total:
                return None
            kind = type(item)
            if key_kind == KEY_SECRET:
                out[text] = REDACTED
            elif key_kind and kind is str:  # a shaped or data key's text: the full walk
                return None
            elif (
                (kind is int and _I64_MIN <= item <= _I64_MAX)
                or kind is bool
                or item is None
                or (kind is float and item - item == 0.0)
                or (
                    kind is str
                    and len(item) <= 256
                    and item.isascii()
                    and item.isprintable()
                    and (len(item) < min_scan or not self._needs_scan(item))
                )
            ):
                out[text] = item
            else:
                return None
        return out

    def _keyed(self, value: object, kind: int, depth: int, state: _WalkState) -> Any:
        """A shaped key's token (str, bytes, UUID) is the marker; a data key's text keeps runs."""
        text = str.__str__(value) if isinstance(value, str) else scalar_text(value)
        if text is not None and kind == KEY_DATA:
            return self._leaf(self._fit_text(text, random_runs=False), state)
        if text is not None and token_shaped(text):
            return self._leaf(REDACTED, state)
        result = self._walk(value, depth, state)
        if kind == KEY_SHAPED and isinstance(result, str) and token_shaped(result):
            state.total += json_size(REDACTED) - json_size(result)  # as a second pass counts
            return REDACTED
        return result

    def _key_info(self, key: object) -> tuple[str, int]:
        """The sanitized key text and its kind (``_secret_keys``: secret, shaped, data)."""
        text = key if type(key) is str else key_to_str(key)
        keys, redactor, fit_text = self._key_rules
        info = keys.get(text)
        if info is None:
            info = (fit_text(text), redactor.key_kind(text))
            if len(text) <= _KEY_CACHE_MAX_LEN and len(keys) < _KEY_CACHE_SIZE:
                keys[text] = info
        return info

    def _leaf(self, text: str, state: _WalkState) -> str:
        """Emit a string that has already been through ``_fit_text`` (or is a marker)."""
        state.total += json_size(text)
        return text

    def _walk(self, value: object, depth: int, state: _WalkState) -> Any:
        # Exact-type checks first: the common scalars cost one comparison each.
        if type(value) is str:
            if (
                len(value) <= self._max_value_chars
                and value.isascii()
                and value.isprintable()
                and (len(value) < self._min_scan or not self._needs_scan(value))
            ):
                state.total += json_size(value)
                return value
            return self._leaf(self._fit_text(value), state)
        if type(value) is int:
            if _I64_MIN <= value <= _I64_MAX:
                state.total += _SCALAR_COST
                return value
            return self._leaf(self._fit_text(big_int_text(value)), state)
        if type(value) is float:
            state.total += _SCALAR_COST
            if value - value == 0.0:  # false only for NaN and +-inf
                return value
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if value is None or type(value) is bool:
            state.total += _SCALAR_COST
            return value
        if type(value) is dict:
            return self._walk_mapping(value, value.items(), len(value), depth, state)
        if type(value) is list or type(value) is tuple:
            return self._walk_seq(value, value, len(value), depth, state)
        try:
            return self._convert(value, depth, state)
        except Exception:  # noqa: BLE001 - a hostile object: fall back to its repr
            return self._leaf(self._fit_text(safe_repr(value)), state)

    def _convert(self, value: object, depth: int, state: _WalkState) -> Any:
        """Everything that is not an exact JSON scalar, dict, list or tuple."""
        if isinstance(value, enum.Enum):
            return self._walk(value.value, depth + 1, state)
        if isinstance(value, str):
            return self._walk(str.__str__(value), depth, state)
        if isinstance(value, int):
            return self._walk(int(value), depth, state)
        if isinstance(value, float):
            return self._walk(float(value), depth, state)
        if isinstance(value, Mapping):
            return self._walk_mapping(value, value.items(), len(value), depth, state)
        fields = getattr(type(value), "_fields", None)
        if isinstance(value, tuple) and isinstance(fields, tuple):  # a named tuple: names matter
            pairs = zip(fields, value, strict=False)
            return self._walk_mapping(value, pairs, len(fields), depth, state)
        if isinstance(value, (list, tuple)):
            return self._walk_seq(value, value, len(value), depth, state)
        if isinstance(value, AbstractSet):
            return self._walk_set(value, depth, state)
        text = scalar_text(value)
        if text is not None:
            return self._leaf(self._fit_text(text), state)
        fields_of = dataclass_items(value)
        if fields_of is not None:
            return self._walk_mapping(value, fields_of[1], fields_of[0], depth, state)
        dump = getattr(type(value), "model_dump", None)  # on the type: mocks answer anything
        if callable(dump):
            data = dump(value)
            if isinstance(data, Mapping):
                return self._walk_mapping(value, data.items(), len(data), depth, state)
            return self._walk(data, depth + 1, state)
        if callable(getattr(type(value), "items", None)) and hasattr(type(value), "keys"):
            # Mapping-like but not a Mapping (HTTP header objects): pairs, names kept.
            listed = list(islice(value.items(), self._max_items))  # type: ignore[attr-defined]
            size = len(value) if isinstance(value, Collection) else len(listed)
            return self._walk_mapping(value, listed, size, depth, state)
        if isinstance(value, (Iterator, AsyncIterator)):  # reading it would consume it
            return self._leaf(f"<{type_name(value)} not consumed>", state)
        if isinstance(value, Collection):
            return self._walk_seq(value, value, len(value), depth, state)
        number = number_value(value)
        if number is not None:
            return self._walk(number, depth, state)
        return self._leaf(self._fit_text(safe_repr(value)), state)

    def _item(self, value: object, depth: int, state: _WalkState) -> Any:
        """An item of a mapping or sequence at depth: the commonest values (an int in range,
        a bool, None, a short plain string) counted and kept at once, without `_walk`'s
        fuller checks (they add up on the hot path); anything else walked."""
        if (
            (type(value) is int and _I64_MIN <= value <= _I64_MAX)
            or type(value) is bool
            or value is None
        ):
            state.total += _SCALAR_COST
            return value
        if (
            type(value) is str
            and len(value) < self._min_scan
            and value.isascii()
            and value.isprintable()
        ):
            state.total += len(value) + 2
            return value
        return self._walk(value, depth + 1, state)

    def _enter(self, owner: object, depth: int, state: _WalkState) -> str | None:
        """A marker if the container may not be walked (too deep, or a cycle), else None."""
        if depth > self._max_depth:
            return self._leaf(_DEPTH, state)
        if id(owner) in state.active:
            return self._leaf(_CYCLE, state)
        state.active.add(id(owner))
        return None

    def _walk_mapping(
        self, owner: object, items: Iterable[tuple[Any, Any]], n: int, depth: int, state: _WalkState
    ) -> Any:
        if (marker := self._enter(owner, depth, state)) is not None:
            return marker
        try:
            out: dict[str, Any] = {}
            cap = n if n <= self._max_items else self._max_items - 1
            named = named_secret(owner, self._redactor.is_secret_key)
            for i, (key, value) in enumerate(items):
                # Budget before the item cap, in the same order a second pass sees them.
                if state.total > self._max_total:
                    out[_TRUNC_KEY] = _BUDGET
                    return out
                if i >= cap:
                    break
                text, key_kind = self._key_info(key)
                if text in out:  # "1" and 1: keep the first, so a second pass agrees
                    continue
                state.total += len(text) + 4
                if key_kind == KEY_SECRET or text == named:
                    out[text] = self._leaf(REDACTED, state)
                elif key_kind:
                    out[text] = self._keyed(value, key_kind, depth + 1, state)
                else:
                    out[text] = self._item(value, depth, state)
            if n > cap:
                if state.total > self._max_total:
                    out[_TRUNC_KEY] = _BUDGET
                else:
                    state.total += len(_TRUNC_KEY) + 4
                    out[_TRUNC_KEY] = self._leaf(f"<{n - cap} more items>", state)
            return out
        finally:
            state.active.discard(id(owner))

    def _walk_seq(
        self, owner: object, items: Iterable[Any], n: int, depth: int, state: _WalkState
    ) -> Any:
        if (marker := self._enter(owner, depth, state)) is not None:
            return marker
        try:
            out: list[Any] = []
            cap = n if n <= self._max_items else self._max_items - 1
            secret = self._secret_items(owner)
            for i, item in enumerate(items):
                if state.total > self._max_total:
                    out.append(_BUDGET)
                    return out
                if i >= cap:
                    break
                if secret and i in secret:
                    out.append(self._leaf(REDACTED, state))
                else:
                    out.append(self._item(item, depth, state))
            if n > cap:
                more = f"<{n - cap} more items>"
                out.append(_BUDGET if state.total > self._max_total else self._leaf(more, state))
            return out
        finally:
            state.active.discard(id(owner))

    def _secret_items(self, owner: object) -> set[int] | None:
        """Items of a list or tuple secret by the name before them (first item str or bytes)."""
        if type(owner) is not list and type(owner) is not tuple:
            return None
        if len(owner) < 2 or not isinstance(owner[0], (str, bytes)):
            return None
        return secret_positions(owner, self._redactor.is_secret_key)

    def _walk_set(self, value: AbstractSet[Any], depth: int, state: _WalkState) -> Any:
        n = len(value)
        cap = n if n <= self._max_items else self._max_items - 1
        return self._walk_seq(value, set_items(value, cap), n, depth, state)


_default: Sanitizer | None = None  # the shared one, once built
_default_lock = threading.RLock()


def default_sanitizer() -> Sanitizer:
    """The shared Sanitizer with default keys and budgets (stateless, thread-safe): built
    once, under a lock, so threads asking together get the same one; see on_reset."""
    global _default
    sanitizer = _default
    if sanitizer is None:
        with _default_lock:
            sanitizer = _default = _default or Sanitizer()
    return sanitizer


def on_reset() -> None:
    """Build the shared Sanitizer again on its next use (reset, new redaction rules)."""
    global _default
    with _default_lock:
        _default = None


def after_fork_in_child() -> None:
    """A lock of the child's: a thread of the parent may have held it at the fork."""
    global _default_lock
    _default_lock = threading.RLock()


def to_json_text(value: Any) -> str:
    """Compact JSON text of an already-sanitized value (`_jsontext.plain_text`).

    What the encoder would otherwise convert on its own (orjson: dataclasses, datetimes)
    or rejects (other types, NaN, big ints, surrogates, cycles) is sent through
    ``default_sanitizer()`` first instead, so this never emits unredacted objects and
    never raises.
    """
    try:
        return plain_text(value)
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
        return plain_text(default_sanitizer().sanitize(value))

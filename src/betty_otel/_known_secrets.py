"""Values known to be secret in one execution, and their removal from everything it records.

Redaction finds a secret where it is named or shaped like one: ``login(user, password)``
records ``inputs.password`` redacted, but ``ValueError(f"bad password {password}")``
repeats the same value in a message no rule recognises. So whatever redaction removed
from an execution's inputs or metadata becomes a known secret of that execution
(`learned`), and `scrub` removes every known secret from what else the execution
records: its error message, exception events, metadata and span status description,
and what its code puts on its span, in the file and on the wire. The inputs keep what
redaction left of them: they are where the secrets were learned.

What counts as removed is found the way the sanitizer removes it: the whole value under
a secret key (every string, number and bytes in it), an item secret by what precedes it
(``["--password", "x"]``), and the parts of a string that the value detectors replace.
Values shorter than `MIN_LENGTH` characters are not searched for: a 1-character
password would otherwise be cut out of every word.

The work happens only when redaction removed something (the redacted JSON text holds
the marker): a call without secrets pays one substring test.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from itertools import islice
from typing import Any, Final

from betty_otel._jsontext import JSONDecodeError, dumps, loads
from betty_otel._leaves import bytes_text, dataclass_items, key_to_str
from betty_otel._redact import REDACTED, Redactor, safe_repr, secret_positions
from betty_otel._secret_values import compiled

__all__ = [
    "MIN_LENGTH",
    "NO_SECRETS",
    "Secrets",
    "learned",
    "scrub",
    "scrub_json",
    "scrub_json_text",
    "scrub_values",
]

MIN_LENGTH: Final = 4
"""Known secrets shorter than this are not searched for elsewhere (see the module doc)."""

Secrets = tuple[str, ...]
"""An execution's known secrets, longest first, so a longer one is replaced whole."""
NO_SECRETS: Final[Secrets] = ()

_MAX_DEPTH: Final = 20  # the sanitizer's default depth and item budgets
_MAX_ITEMS: Final = 200
_MAX_NODES: Final = 5000
_MAX_SCAN: Final = 4096 + 16384  # the sanitizer scans no further into a long string
_MAX_SCANNED: Final = 4 * 65536  # text scanned in all, four times the sanitizer's budget
_SCHEME: Final = r"(?:bearer|basic|token)\s+"  # compiled when a secret is learned


def learned(known: Secrets, text: str, raw: Callable[[], object], redactor: Redactor) -> Secrets:
    """known, plus the values redaction removed from raw(), when its redacted JSON text
    shows that it removed something. Never raises: a value that cannot be walked
    teaches what was found before it."""
    if REDACTED not in text:
        return known
    walk = _Walk(redactor)
    with contextlib.suppress(Exception):  # hostile values: keep what was found
        walk.value(raw(), 0)
    found = {value for value in walk.found if _searchable(value)} - set(known)
    if not found:
        return known
    return tuple(sorted((*known, *found), key=len, reverse=True))


def _searchable(value: str) -> bool:
    """Long enough, and not part of the marker (replacing it inside a marker would
    garble the marker, never reveal anything)."""
    return len(value) >= MIN_LENGTH and value not in REDACTED and not value.isspace()


def scrub(text: str, secrets: Secrets) -> str:
    """text with every known secret replaced by the marker, in one pass."""
    if not secrets or not any(secret in text for secret in secrets):
        return text
    return re.compile("|".join(map(re.escape, secrets))).sub(REDACTED, text)


def scrub_json(value: Any, secrets: Secrets) -> Any:
    """A redacted JSON value (dict, list, str, scalars) with the known secrets removed
    from its strings and keys."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {scrub(key, secrets): scrub_json(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub_json(item, secrets) for item in value]
    return value


def scrub_json_text(text: str, secrets: Secrets) -> str:
    """JSON text (betty.inputs, betty.metadata) with the known secrets removed from its
    strings; text that is not JSON is scrubbed as text."""
    if not any(secret in text for secret in secrets) and "\\" not in text:
        return text
    try:
        return dumps(scrub_json(loads(text), secrets)).decode()
    except (JSONDecodeError, TypeError, ValueError):
        return scrub(text, secrets)


def scrub_values(attributes: Mapping[str, Any], secrets: Secrets) -> dict[str, Any]:
    """OpenTelemetry attributes with the known secrets removed from their text values
    (strings, and strings in sequences); other values as they are."""
    return {key: _scrub_attribute(value, secrets) for key, value in attributes.items()}


def _scrub_attribute(value: Any, secrets: Secrets) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, (list, tuple)):
        return [scrub(item, secrets) if isinstance(item, str) else item for item in value]
    return value


class _Walk:
    """One walk of a raw value, collecting what redaction removes from it."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.found: set[str] = set()
        self.nodes = 0
        self.scanned = 0
        self.active: set[int] = set()

    def value(self, value: object, depth: int) -> None:
        """A value whose key is not secret: the parts the value rules remove."""
        if isinstance(value, str):
            self.text(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self.text(bytes_text(value))
        elif isinstance(value, (bool, int, float)) or value is None:
            return
        elif isinstance(value, enum.Enum):
            self.value(value.value, depth + 1)
        else:
            self.container(value, depth)

    def container(self, value: object, depth: int) -> None:
        """Containers as the sanitizer reads them; anything else by its repr."""
        if depth > _MAX_DEPTH or id(value) in self.active or self.nodes > _MAX_NODES:
            return
        self.active.add(id(value))
        try:
            pairs = _pairs(value)
            if pairs is not None:
                for key, item in pairs:
                    self.nodes += 1
                    if self.redactor.is_secret_key(key):
                        self.secret(item, depth + 1)
                    else:
                        self.value(item, depth + 1)
            elif isinstance(value, (list, tuple, AbstractSet)):
                self.items(value, depth)
            else:
                self.text(safe_repr(value))
        finally:
            self.active.discard(id(value))

    def items(self, value: list[Any] | tuple[Any, ...] | AbstractSet[Any], depth: int) -> None:
        """A sequence's items: secret by what precedes them, or each as a value."""
        listed = list(islice(value, _MAX_ITEMS))
        secret: set[int] = set()
        # Only sequences that can hold a name, as the sanitizer reads them.
        if isinstance(value, (list, tuple)) and listed and isinstance(listed[0], (str, bytes)):
            secret = secret_positions(listed, self.redactor.is_secret_key)
        for index, item in enumerate(listed):
            self.nodes += 1
            if index in secret:
                self.secret(item, depth + 1)
            else:
                self.value(item, depth + 1)

    def text(self, text: str) -> None:
        """The parts of text that the value rules replace."""
        if self.scanned > _MAX_SCANNED:
            return
        text = text[:_MAX_SCAN]
        self.scanned += len(text)
        redacted = self.redactor.redact(text)
        if redacted != text:
            for part in _removed_parts(text, redacted):
                self.found.add(part)
                scheme = compiled(_SCHEME, re.IGNORECASE).match(
                    part
                )  # "Bearer abc": the token also alone
                if scheme is not None:
                    self.found.add(part[scheme.end() :])

    def secret(self, value: object, depth: int) -> None:
        """A value under a secret key: every string, number and bytes in it."""
        if isinstance(value, str):
            self.found.add(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self.found.add(bytes_text(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            self.found.add(safe_repr(value))
        elif depth <= _MAX_DEPTH and self.nodes <= _MAX_NODES and id(value) not in self.active:
            self.active.add(id(value))
            try:
                for item in _members(value):
                    self.nodes += 1
                    self.secret(item, depth + 1)
            finally:
                self.active.discard(id(value))


def _pairs(value: object) -> Iterable[tuple[str, Any]] | None:
    """(key, value) pairs of a mapping, a named tuple, a dataclass or a model (its
    ``model_dump()``); None for anything else."""
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = list(islice(value.items(), _MAX_ITEMS))
    elif isinstance(value, tuple) and isinstance(getattr(type(value), "_fields", None), tuple):
        items = zip(type(value)._fields, value, strict=False)  # type: ignore[attr-defined]
    elif (fields := dataclass_items(value)) is not None:
        items = list(fields[1])
    elif callable(getattr(type(value), "model_dump", None)):
        dumped = type(value).model_dump(value)  # type: ignore[attr-defined]
        return _pairs(dumped) if isinstance(dumped, Mapping) else None
    else:
        return None
    return [(key if isinstance(key, str) else key_to_str(key), item) for key, item in items]


def _members(value: object) -> list[Any]:
    """What a value under a secret key holds: a container's items (a mapping's values),
    a dataclass's, model's or plain object's fields."""
    pairs = _pairs(value)
    if pairs is not None:
        return [item for _, item in pairs]
    if isinstance(value, (list, tuple, AbstractSet)):
        return list(islice(value, _MAX_ITEMS))
    fields = getattr(value, "__dict__", None)
    return list(islice(fields.values(), _MAX_ITEMS)) if isinstance(fields, dict) else []


def _removed_parts(text: str, redacted: str) -> list[str]:
    """The parts of text that redaction replaced by the marker to make redacted.

    Redaction only replaces parts with the marker, so the text between two markers
    is found again in text, in order; where it is not (surrogates replaced, a marker
    in the original), what was found so far is returned.
    """
    pieces = redacted.split(REDACTED)
    if len(pieces) == 1 or not text.startswith(pieces[0]):
        return []
    parts = []
    position = len(pieces[0])
    last = len(pieces) - 1
    for index, piece in enumerate(pieces[1:], 1):
        if index == last:
            end = len(text) - len(piece)
            if end <= position or not text.endswith(piece):
                break
        elif not piece:
            continue  # two markers in a row: one part covers both
        else:
            end = text.find(piece, position + 1)
            if end < 0:
                break
        parts.append(text[position:end])
        position = end + len(piece)
    return parts

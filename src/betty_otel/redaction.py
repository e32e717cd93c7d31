"""What betty_otel treats as a secret, and how a program adds to it or allows names.

Secrets are replaced by ``REDACTED`` before anything is put on a span, so neither the
log file nor a collector ever receives them. Three kinds of rule:

- Secret keys (dict keys, parameter names, header names, ``key=value`` in text, XML
  elements, command-line options): ``SECRET_NAMES``, ``SECRET_ENDINGS``, read after
  dropping trailing ``QUALIFIERS``, except ``NOT_SECRET_ENDINGS`` (the rule is spelled
  out in the README). The value of a secret key is replaced whole, whatever its type
  and however text spells it (quoted, a tuple or object repr, a YAML block). The
  value of a ``SHAPED_NAMES`` / ``SHAPED_ENDINGS`` key (``session``) is replaced when
  it is shaped like a token; a key whose last word is one of ``DATA_WORDS``
  (``trace_id``, ``sha256``) keeps random-looking values.
- Secret values found without a key: ``VALUE_RULES`` (PEM blocks, URL passwords,
  Bearer/Basic, JWTs, webhook URLs and the ``VENDOR_TOKENS`` formats).
- Generic rules, as secret scanners have them: a credential-like word after a secret
  name (``my api key is X``), and random-looking strings of credential length
  (mixed-case letters and digits, 20 to 256 characters). Hex strings (git SHAs, trace
  ids, digests), UUIDs, paths and identifiers are not random-looking.

``set_rules`` adds to them for the whole process, for decorators already applied too:
per function, ``capture_telemetry(sanitize_keys=[...])`` and
``TelemetryContext(sanitize_keys=[...])`` add names as before. Rules live here, not in
``configure()``, because they hold for every way of recording (``TelemetryCapture``,
``export --otlp``) and must not be reset by reconfiguring the pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Final, cast

from betty_otel._redact import REDACTED, RedactionRules, Redactor
from betty_otel._secret_keys import (
    DATA_WORDS,
    NOT_SECRET_ENDINGS,
    QUALIFIERS,
    SECRET_ENDINGS,
    SECRET_NAMES,
    SHAPED_ENDINGS,
    SHAPED_NAMES,
    normalise_key,
)
from betty_otel._secret_values import VALUE_RULES, VENDOR_TOKENS
from betty_otel._state import STATE

__all__ = [
    "DATA_WORDS",
    "NOT_SECRET_ENDINGS",
    "QUALIFIERS",
    "REDACTED",
    "SECRET_ENDINGS",
    "SECRET_NAMES",
    "SHAPED_ENDINGS",
    "SHAPED_NAMES",
    "VALUE_RULES",
    "VENDOR_TOKENS",
    "is_secret_key",
    "redact",
    "set_rules",
]

_MAX_PATTERN_CHARS: Final = 1000


def _items(value: object, single: type | tuple[type, ...], argument: str) -> Iterator[object]:
    """The items of argument's value: itself when one item (a str, a pattern), else its
    elements; TypeError naming the argument when it is neither (``None``, a number)."""
    if isinstance(value, single):
        return iter((value,))
    try:
        return iter(cast("Iterable[object]", value))  # checked here, whatever was passed
    except TypeError:
        msg = f"{argument} must be one item or an iterable of them, got {type(value).__name__}"
        raise TypeError(msg) from None


def _names(names: Iterable[str], argument: str) -> frozenset[str]:
    result = set()
    for name in _items(names, str, argument):
        if not isinstance(name, str):
            msg = f"{argument} must hold names (str), got {type(name).__name__}"
            raise TypeError(msg)
        result.add(normalise_key(name))
    return frozenset(result - {""})


def _patterns(
    patterns: Iterable[str | re.Pattern[str]] | re.Pattern[str],
) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in _items(patterns, (str, re.Pattern), "redact_patterns"):
        if isinstance(pattern, re.Pattern) and isinstance(pattern.pattern, str):
            compiled.append(pattern)
            continue
        if not isinstance(pattern, str) or not pattern:
            msg = f"redact_patterns must hold non-empty regexes (str), got {pattern!r:.80}"
            raise TypeError(msg)
        if len(pattern) > _MAX_PATTERN_CHARS:
            msg = f"redact pattern {pattern!r:.80} is over {_MAX_PATTERN_CHARS} characters"
            raise TypeError(msg)  # the error set_rules has always raised for it
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            msg = f"invalid redact pattern {pattern!r:.80}: {exc}"
            raise ValueError(msg) from None
    for regex in compiled:
        if regex.search(""):
            msg = f"redact pattern {regex.pattern!r:.80} matches empty text"
            raise ValueError(msg)
    return tuple(compiled)


def set_rules(
    *,
    redact_keys: Iterable[str] = (),
    allow_keys: Iterable[str] = (),
    redact_patterns: Iterable[str | re.Pattern[str]] | re.Pattern[str] = (),
) -> None:
    """Replace the process-wide additions to the default rules (call with none to reset).

    Args:
        redact_keys: more secret names, matched exactly after normalising (case, and
            ``-_.`` and spaces ignored): ``["tenant_id"]`` also covers ``TenantId``.
        allow_keys: names never redacted by key, even if a rule says so (for example
            ``["session_id"]`` where it is an ordinary number); their values still go
            through the value detectors.
        redact_patterns: regexes (str or compiled, one alone or several) whose every
            match is replaced whole in all text. They run on every string, so keep them specific.

    Raises ``TypeError`` or ``ValueError`` for a bad argument, before changing anything.
    Calling it again replaces the rules: nothing accumulates.
    """
    rules = RedactionRules(
        _names(redact_keys, "redact_keys"),
        _names(allow_keys, "allow_keys"),
        _patterns(redact_patterns),
    )
    # Loaded when rules change only: redact() and is_secret_key() need no sanitizer.
    from betty_otel._sanitize import on_reset  # noqa: PLC0415

    STATE.redaction_rules = rules if rules != RedactionRules() else None
    on_reset()  # the shared Sanitizer is built again, for these rules


def is_secret_key(key: str) -> bool:
    """Whether a key names a secret by the defaults and the rules of ``set_rules``."""
    return Redactor((), STATE.redaction_rules).is_secret_key(key)


def redact(text: str) -> str:
    """Text with every secret value replaced, as betty_otel redacts error messages."""
    return Redactor((), STATE.redaction_rules).redact_text(text)

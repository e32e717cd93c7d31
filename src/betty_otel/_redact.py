"""Redaction: secret keys and secret values replaced inside text, by one ``Redactor``.

Inputs, metadata and error text come from user code and may hold credentials. Every
execution record passes through here on the decorator's hot path, so everything is
compiled at import time, key decisions are cached, and text without any character a
detector needs skips the regexes after one cheap search (``SECRET_TRIGGER``).

What is secret is read from tables: key names by ``_secret_keys`` (``password2``,
``new_password``, ``api_keys``, ``JSESSIONID``, ``mfa_code``, but not ``pad_token`` or
``next_page_token``), key-free value detectors by ``_secret_values`` (PEM blocks, URL
passwords, Bearer/Basic, JWTs, vendor token formats). Inside text, a secret key's value
is also found in these shapes, and replaced (quotes kept):

- ``key=value`` and ``key: value`` pairs: JSON and YAML (``"password": "x"``, also
  with escaped quotes), query strings, environment assignments (``DB_PASSWORD=p@ss;w!``
  runs to the next space), connection strings (``Password=my pass;`` runs to ``;``);
  a ``{...}`` or ``[...]`` value is replaced whole; ``Cookie:`` and
  ``Authorization:`` headers run to the end of the line;
- XML elements ``<password>x</password>`` (attributes are pairs);
- command lines: ``--password x``, and list reprs ``'--password', 'x'`` as
  ``CalledProcessError`` quotes them.

Process-wide extra rules (``RedactionRules``: more secret names, allowed names, extra
patterns) come from ``betty_otel.redaction``. Redaction is repeated to a fixed point,
so redacting twice changes nothing.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from betty_otel._secret_keys import default_secret_key, normalise_key
from betty_otel._secret_values import CONTEXT_RULES, REDACTED, SHORTEST_TOKEN, TOKEN_RULES

__all__ = [
    "REDACTED",
    "SECRET_TRIGGER",
    "RedactionRules",
    "Redactor",
    "hide_secret_args",
    "safe_repr",
    "secret_positions",
    "type_name",
]

SECRET_TRIGGER: Final = re.compile(r"[-:=_.<bB]|[ASEd][0-9A-Za-z]{15}")
"""Every detector needs one of these: text without any match is never changed."""

_SHORTEST_SECRET: Final = 5
"""Shortest text that can hold a secret pair: a three-letter name, "=" and one char."""


@dataclass(frozen=True)
class RedactionRules:
    """Process-wide additions to the default rules (see ``betty_otel.redaction``)."""

    redact_keys: frozenset[str] = frozenset()
    """More secret names, normalised, matched exactly."""
    allow_keys: frozenset[str] = frozenset()
    """Names never secret by key, normalised, matched exactly (value detectors still run)."""
    patterns: tuple[re.Pattern[str], ...] = field(default=())
    """More value detectors: every match is replaced whole."""


# The tables as the pass loop reads them: one entry per trigger, in table order (a tuple
# per rule and an inner loop over its triggers would double the cost of a pass). Token
# rules run only on text holding a long enough word (one C-level search).
_GATES: Final = tuple(
    (trigger, rule.fold_case, rule.pattern, rule.replacement)
    for rule in CONTEXT_RULES
    for trigger in rule.triggers
)
_TOKEN_GATES: Final = tuple(
    (trigger, rule.pattern, rule.replacement) for rule in TOKEN_RULES for trigger in rule.triggers
)
# Every token is a run of SHORTEST_TOKEN word characters: prose and paths rarely hold one.
_LONG_WORD: Final = re.compile(rf"[A-Za-z0-9_.\-]{{{SHORTEST_TOKEN}}}")

# "key: value" pairs are found from their separator: the pattern runs over the reversed
# text (separator, then the key backwards), so only ":" and "=" positions are tried.
# A JSON key may end with an escaped quote (\"), which reads '"\' reversed.
_PAIR_REVERSED: Final = re.compile(
    r"[:=][ \t]*(?:\"\\|'\\|[\"'])?([A-Za-z0-9_.\-]{1,64})(?![A-Za-z0-9_.\-])"
)
_QUOTE_PREFIX: Final = r"(?:[bBrRuUfF]{1,2}(?=[\"']))?"  # "password=b'...'" from a bytes repr
_PAIR_VALUE: Final = re.compile(
    r"=?[ \t]*(?:(?:bearer|basic|token)[ \t]+)?"
    r"(?P<val>\\\"(?:[^\"\\\n]|\\[^\"\n])*(?:\\\")?"
    rf"|{_QUOTE_PREFIX}\"(?:[^\"\\\n]|\\.)*\"?"
    rf"|{_QUOTE_PREFIX}'(?:[^'\\\n]|\\.)*'?"
    r"|(?P<open>[\[{])"
    r"|[^\s,;&\"'`<>(){}\[\]]+)",
    re.IGNORECASE,
)
_ENV_VALUE: Final = re.compile(r"[^\s\"'`]+")
_ENV_KEY: Final = re.compile(r"[A-Z][A-Z0-9_]*")
_EOL_VALUE_KEYS: Final = frozenset({"cookie", "setcookie", "authorization", "proxyauthorization"})
_CLOSING: Final = {"[": "]", "{": "}"}
_XML_ELEMENT: Final = re.compile(
    r"<(?P<tag>[A-Za-z_][\w.:\-]*)(?:\s[^<>]*)?>"
    r"(?P<val>(?:<!\[CDATA\[.*?\]\]>|[^<])*)</(?P=tag)\s*>",
    re.DOTALL,
)
# A quoted option then its quoted value, as a list's repr shows an argv: '--password', 'x'.
_ARGV_REPR: Final = re.compile(
    r"(?P<q>['\"])-{1,2}(?P<flag>[A-Za-z][\w.\-]*)(?P=q),[ \t]*"
    r"(?P<val>b?'(?:[^'\\\n]|\\.)*'|b?\"(?:[^\"\\\n]|\\.)*\")"
)
# An option then its value on a command line: --password x, --token 'a b'.
_ARGV_TEXT: Final = re.compile(
    r"--(?<![\w\-]--)(?P<flag>[A-Za-z][\w.\-]*)[ \t]+"
    r"(?P<val>\"[^\"\n]*\"|'[^'\n]*'|[^\s\"'\-][^\s\"']*)"
)
_OPTION: Final = re.compile(r"-{1,2}([A-Za-z][\w.\-]*)")
# Programs whose password option takes its value attached ("mysql -pSECRET").
_ATTACHED_PASSWORD_OPTION: Final = {
    "mysql": "-p", "mysqldump": "-p", "mysqladmin": "-p", "mysqlimport": "-p",
    "mysqlcheck": "-p", "mysqlshow": "-p", "mariadb": "-p", "mariadb-dump": "-p",
    "sshpass": "-p",
}  # fmt: skip

# -- text of any object --------------------------------------------------------------------


def type_name(value: object) -> str:
    """The qualified name of the value's type, or "object" if even that raises."""
    try:
        return type(value).__qualname__
    except Exception:  # noqa: BLE001 - a hostile metaclass must not break telemetry
        return "object"


def safe_repr(value: object) -> str:
    """``repr``, else ``str``, else a marker: user objects may raise from either."""
    try:
        return repr(value)
    except Exception:  # noqa: BLE001, S110 - fall through to str()
        pass
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        return f"<unrepresentable {type_name(value)}>"


def _fix_surrogates(text: str) -> str:
    """Make text UTF-8 encodable: join valid surrogate pairs, lone surrogates become U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _line_end(text: str, start: int) -> int:
    """Index of the first CR or LF at or after start, else the end of text."""
    ends = [i for i in (text.find("\n", start), text.find("\r", start)) if i >= 0]
    return min(ends) if ends else len(text)


def _bracket_end(text: str, start: int) -> int:
    """Index after the bracket closing the one at start (quotes ignored), else the end."""
    opening = text[start]
    closing = _CLOSING[opening]
    depth = 0
    for index in range(start, len(text)):
        char = text[index]
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return index + 1
    return len(text)


def _quoted(value: str) -> str:
    """The marker inside the value's own quotes and prefix (a quote left open stays open)."""
    if value.startswith('\\"'):
        return '\\"' + REDACTED + ('\\"' if value.endswith('\\"') and len(value) > 3 else "")
    cut = 1 + min(i for i in (value.find('"'), value.find("'")) if i >= 0)
    closed = len(value) > cut and value[-1] == value[cut - 1]
    return value[:cut] + REDACTED + (value[-1] if closed else "")


# -- the redactor --------------------------------------------------------------------------


class Redactor:
    """Decides which keys name secrets and replaces secret values inside text.

    Immutable after construction, so one instance is safe to share between threads.
    """

    def __init__(self, extra_keys: Iterable[str] = (), rules: RedactionRules | None = None) -> None:
        """Add exact secret names (normalised like the defaults) and process-wide rules."""
        if isinstance(extra_keys, str):  # a single name, not its characters
            extra_keys = (extra_keys,)
        rules = rules or RedactionRules()
        extra = frozenset(normalise_key(str(k)) for k in extra_keys) | rules.redact_keys
        self._extra = extra - {""}
        self._allow = rules.allow_keys
        self._patterns = rules.patterns
        self.min_scan: Final = 1 if self._patterns else _SHORTEST_SECRET
        """Shortest text worth scanning (any text when there are extra patterns)."""
        self.trigger: Final = re.compile("") if self._patterns else SECRET_TRIGGER
        """What a text must contain to be scanned at all (anything, with extra patterns)."""

    def is_secret_key(self, key: str) -> bool:
        """Whether a (raw) key names a secret: allowed names never, defaults by the rule."""
        if self._allow and normalise_key(key) in self._allow:
            return False
        if default_secret_key(key):
            return True
        return bool(self._extra) and normalise_key(key) in self._extra

    def redact(self, text: str) -> str:
        """The text made UTF-8 encodable, secret values replaced (to a fixed point)."""
        text = _fix_surrogates(text)
        if len(text) < self.min_scan or self.trigger.search(text) is None:
            return text
        for _ in range(4):  # one pass may expose a match for another
            redacted = self._redact_once(text)
            if redacted == text:
                break
            text = redacted
        return text

    def redact_text(self, text: str) -> str:
        """Redact secret-looking values inside free text (error messages); no truncation.

        A non-str argument is converted (its repr) rather than raised on; never raises.
        """
        try:
            if type(text) is not str:
                text = str.__str__(text) if isinstance(text, str) else safe_repr(text)
            return self.redact(text)
        except Exception:  # noqa: BLE001 - never break the caller's error path
            return "<unrepresentable text>"

    def _redact_once(self, text: str) -> str:
        # The text as it was before this pass is enough for folded triggers: no
        # replacement creates a trigger word.
        lowered = text.lower()
        ran = None  # a rule with several triggers runs once
        for trigger, fold_case, pattern, replacement in _GATES:
            if pattern is not ran and trigger in (lowered if fold_case else text):
                text = pattern.sub(replacement, text)
                ran = pattern
        if len(text) >= SHORTEST_TOKEN and _LONG_WORD.search(text) is not None:
            for trigger, pattern, replacement in _TOKEN_GATES:
                if trigger in text:
                    text = pattern.sub(replacement, text)
        if "</" in text:
            text = _XML_ELEMENT.sub(self._xml_repl, text)
        if "'-" in text or '"-' in text:
            text = _ARGV_REPR.sub(self._argv_repl, text)
        if "--" in text:
            text = _ARGV_TEXT.sub(self._argv_repl, text)
        if "=" in text or ":" in text:
            text = self._redact_pairs(text)
        for pattern in self._patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def _xml_repl(self, match: re.Match[str]) -> str:
        tag = match.group("tag")
        if not self.is_secret_key(tag.rpartition(":")[2]) or not match.group("val"):
            return match.group(0)
        start, end = match.span("val")
        whole = match.start()
        return match.group(0)[: start - whole] + REDACTED + match.group(0)[end - whole :]

    def _argv_repl(self, match: re.Match[str]) -> str:
        if not self.is_secret_key(match.group("flag")):
            return match.group(0)
        value = match.group("val")
        start = match.start("val") - match.start()
        new = _quoted(value) if "'" in value or '"' in value else REDACTED
        return match.group(0)[:start] + new

    def _redact_pairs(self, text: str) -> str:
        """Replace the value of each ``key=value`` / ``key: value`` pair with a secret key.

        Every separator is a candidate, so "url=https://x/?token=abc" reaches the inner
        pair; a candidate inside a value already replaced is skipped.
        """
        size = len(text)
        parts: list[str] = []
        last = 0
        for match in reversed(list(_PAIR_REVERSED.finditer(text[::-1]))):
            key_start, key_end = size - match.end(1), size - match.start(1)
            key = text[key_start:key_end]
            if key_start < last or not self.is_secret_key(key):
                continue
            separator = size - 1 - match.start()
            span = self._value_span(text, key, separator)
            if span is None:
                continue
            start, end, replacement = span
            parts += (text[last:start], replacement)
            last = end
        if not parts:
            return text
        parts.append(text[last:])
        return "".join(parts)

    def _value_span(self, text: str, key: str, separator: int) -> tuple[int, int, str] | None:
        """Where the value of a secret pair lies, and what replaces it; None if empty."""
        value = _PAIR_VALUE.match(text, separator + 1)
        if value is None:
            return None
        start, end = value.span("val")
        if text.startswith(REDACTED, start):  # already replaced: the marker is the value
            return None
        sep = text[separator]
        if sep == ":" and normalise_key(key) in _EOL_VALUE_KEYS:
            return start, _line_end(text, start), REDACTED
        if value.group("open"):
            return start, _bracket_end(text, start), REDACTED
        if '"' in value.group("val") or "'" in value.group("val"):
            return start, end, _quoted(value.group("val"))
        if sep == "=" and start == separator + 1 and _ENV_KEY.fullmatch(key.lstrip("-")):
            env = _ENV_VALUE.match(text, start)  # DB_PASSWORD=p@ss;w0rd! to the space
            return start, env.end() if env else end, REDACTED
        if sep == "=" and text[end : end + 1] == " ":  # "Password=my pass;" in a DSN
            line = text[end : _line_end(text, end)]
            semi = line.find(";")
            if semi > 0 and "=" not in line[:semi]:
                end += semi
        return start, end, REDACTED


def secret_positions(items: Sequence[object], is_secret_key: Callable[[str], bool]) -> set[int]:
    """Indices of a sequence's items that are secrets by what precedes them.

    A pair ``(name, value)`` with a secret name (headers as ``[("Authorization", ...)]``,
    str or bytes); in an argv, the value after a secret option (``--password x``); and
    the attached ``-pSECRET`` of the programs in ``_ATTACHED_PASSWORD_OPTION``.
    """
    found: set[int] = set()
    if len(items) == 2:
        name = _name_text(items[0])
        if name is not None and is_secret_key(name):
            found.add(1)
        return found
    attached = None
    first = _name_text(items[0]) if items else None
    if first is not None:
        attached = _ATTACHED_PASSWORD_OPTION.get(first.rpartition("/")[2])
    for index, item in enumerate(items[:-1]):
        text = _name_text(item)
        if text is None or not text.startswith("-"):
            continue
        option = _OPTION.fullmatch(text)
        if option is not None and is_secret_key(option.group(1)):
            found.add(index + 1)
    if attached is not None:
        found.update(
            i for i, item in enumerate(items)
            if isinstance(item, str) and item.startswith(attached) and len(item) > len(attached)
        )  # fmt: skip
    return found


def _name_text(item: object) -> str | None:
    """A name given as str or bytes (header names come as either), else None."""
    if isinstance(item, str):
        return item
    if isinstance(item, bytes) and len(item) <= 256:
        return item.decode("utf-8", "replace")
    return None


def hide_secret_args(exc: BaseException, redactor: Redactor, text: str) -> str:
    """The text (a message, a traceback) with secret arguments of exceptions replaced.

    An exception with several ``args`` shows them as a tuple repr, ``('login failed',
    'hunter2')``; an argument is secret when its ``__init__`` parameter has a secret
    name (``AuthError(message, password)``), or by ``secret_positions`` (``("password",
    "x")``, ``--token x``). The exception and those it was raised from or during are
    looked at. Other text is left to value redaction. Never raises.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        try:
            shown = _shown_args(current, redactor)
            if shown is not None:
                text = text.replace(*shown)
        except Exception:  # noqa: BLE001, S110 - a hostile exception: value redaction remains
            pass
        current = current.__cause__ or current.__context__
    return text


def _shown_args(exc: BaseException, redactor: Redactor) -> tuple[str, str] | None:
    """``str(exc)`` and the same with secret args replaced; None when nothing is secret."""
    args = exc.args
    if len(args) < 2:
        return None
    secret = secret_positions(args, redactor.is_secret_key) | _secret_parameters(exc, redactor)
    if not secret:
        return None
    text = str(exc)
    if text != str(args):  # a __str__ of its own: only value redaction applies
        return None
    shown = [REDACTED if i in secret else safe_repr(arg) for i, arg in enumerate(args)]
    return text, "(" + ", ".join(shown) + ")"


def _secret_parameters(exc: BaseException, redactor: Redactor) -> set[int]:
    """Positions of args whose ``__init__`` parameter (after self) has a secret name."""
    init = type(exc).__init__
    if init is BaseException.__init__ or not inspect.isfunction(init):
        return set()
    try:
        params = list(inspect.signature(init).parameters.values())[1:]
    except (TypeError, ValueError):
        return set()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {
        i for i, p in enumerate(params) if p.kind in positional and redactor.is_secret_key(p.name)
    }

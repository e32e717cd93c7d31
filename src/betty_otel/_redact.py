"""Redaction: secret keys and secret values replaced inside text, by one ``Redactor``.

Inputs, metadata and error text come from user code and may hold credentials. Every
execution record passes through here on the decorator's hot path, so key decisions are
cached, patterns are compiled on first use, and text without anything a detector needs
skips every pass after one cheap test (``needs_scan``).

What is secret is read from the rule modules, applied in this order by each pass:

- ``_secret_values``: key-free detectors (PEM blocks, URL passwords, Bearer/Basic,
  webhook URLs, JWTs and the vendor token formats);
- XML elements ``<password>x</password>`` and command lines (``--password x``, and
  list reprs ``'--password', 'x'`` as ``CalledProcessError`` quotes them);
- ``_secret_pairs``: the value of a secret key in ``key=value`` / ``key: value`` text,
  whatever its form (quoted, a bracket or call repr, a YAML block, words with spaces);
- ``_secret_shapes``: generic rules (a credential after a secret word, random-looking
  strings of credential length), which a data key's value is spared.

Key names are classified by ``_secret_keys`` (``key_kind``). Process-wide extra rules
(``RedactionRules``: more secret names, allowed names, extra patterns) come from
``betty_otel.redaction``. Redaction is repeated to a fixed point, so redacting twice
changes nothing.
"""

# No ``from __future__ import annotations`` here: RedactionRules' field types must be objects.
# typing compiles a type given as a string, and the first compile() of a process sets up
# Python's AST types, about 2 ms (7%) of a ``betty-telemetry capture``.
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Final, NamedTuple

from betty_otel._secret_keys import (
    KEY_PLAIN,
    KEY_SECRET,
    KEY_SHAPED,
    default_key_kind,
    normalise_key,
)
from betty_otel._secret_pairs import quoted, redact_pairs
from betty_otel._secret_shapes import has_secret_stem, redact_shapes
from betty_otel._secret_values import (
    CONTEXT_RULES,
    REDACTED,
    SHORTEST_TOKEN,
    TOKEN_RULES,
    ValueRule,
    compiled,
    token_shaped,
)

__all__ = [
    "REDACTED",
    "SECRET_TRIGGER",
    "RedactionRules",
    "Redactor",
    "hide_secret_args",
    "named_secret",
    "safe_repr",
    "secret_positions",
    "type_name",
]

SECRET_TRIGGER: Final = re.compile(r"[-:=_.<bB+/@]")
"""A character most detectors need; the others need a long word or a secret word."""
_LONG_ALNUM: Final = r"[0-9A-Za-z]{16}"  # a token with no separator (AKIA..., a random key)

_SHORTEST_SECRET: Final = 5
"""Shortest text that can hold a secret pair: a three-letter name, "=" and one char."""


class RedactionRules(NamedTuple):
    """Process-wide additions to the default rules (see ``betty_otel.redaction``)."""

    redact_keys: frozenset[str] = frozenset()
    """More secret names, normalised, matched exactly."""
    allow_keys: frozenset[str] = frozenset()
    """Names never secret by key, normalised, matched exactly (value detectors still run)."""
    patterns: tuple[re.Pattern[str], ...] = ()
    """More value detectors: every match is replaced whole."""


# The tables as the pass loop reads them: one entry per trigger, in table order (a tuple
# per rule and an inner loop over its triggers would double the cost of a pass). Token
# rules run only on text holding a long enough word, grouped by the first character of
# their trigger (a text lacks most capitals, so most groups are skipped with one set
# lookup).
_GATES: Final = tuple((trigger, rule) for rule in CONTEXT_RULES for trigger in rule.triggers)


def _grouped_by_first_character(
    rules: Iterable[ValueRule],
) -> tuple[tuple[str, tuple[tuple[str, ValueRule], ...]], ...]:
    """(first character, its (trigger, rule) pairs in table order), in order of first
    appearance: one pass over the table (a capture with inputs builds this at start-up)."""
    groups: dict[str, list[tuple[str, ValueRule]]] = {}
    for rule in rules:
        for trigger in rule.triggers:
            groups.setdefault(trigger[0], []).append((trigger, rule))
    return tuple((first, tuple(gates)) for first, gates in groups.items())


_TOKEN_GATES: Final = _grouped_by_first_character(TOKEN_RULES)
# Every token is a run of SHORTEST_TOKEN word characters: prose and paths rarely hold one.
_LONG_WORD: Final = rf"[A-Za-z0-9_.\-]{{{SHORTEST_TOKEN}}}"
_XML_ELEMENT: Final = (
    r"<(?P<tag>[A-Za-z_][\w.:\-]*)(?:\s[^<>]*)?>"
    r"(?P<val>(?:<!\[CDATA\[.*?\]\]>|[^<])*)</(?P=tag)\s*>"
)
# A quoted option then its quoted value, as a list's repr shows an argv: '--password', 'x'.
_ARGV_REPR: Final = (
    r"(?P<q>['\"])-{1,2}(?P<flag>[A-Za-z][\w.\-]*)(?P=q),[ \t]*"
    r"(?P<val>b?'(?:[^'\\\n]|\\.)*'|b?\"(?:[^\"\\\n]|\\.)*\")"
)
# An option then its value on a command line: --password x, --token 'a b'.
_ARGV_TEXT: Final = (
    r"--(?<![\w\-]--)(?P<flag>[A-Za-z][\w.\-]*)[ \t]+"
    r"(?P<val>\"[^\"\n]*\"|'[^'\n]*'|[^\s\"'\-][^\s\"']*)"
)
_OPTION: Final = r"-{1,2}([A-Za-z][\w.\-]*)"
# Programs whose password option takes its value attached ("mysql -pSECRET").
_ATTACHED_PASSWORD_OPTION: Final = {
    "mysql": "-p", "mysqldump": "-p", "mysqladmin": "-p", "mysqlimport": "-p",
    "mysqlcheck": "-p", "mysqlshow": "-p", "mariadb": "-p", "mariadb-dump": "-p",
    "sshpass": "-p",
}  # fmt: skip
_NAMED_VALUE_MAX_KEYS: Final = 8  # {"name": ..., "value": ...} and a few more fields
# Programs whose user option carries "user:password" (curl -u bob:secret).
_USER_PASSWORD_OPTIONS: Final = {"curl": frozenset({"-u", "--user", "-U", "--proxy-user"})}

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


def _default_needs_scan(text: str) -> bool:
    """Whether any detector could change the text: a trigger character, a long word or,
    for the generic rule, a secret word."""
    if SECRET_TRIGGER.search(text) is not None:
        return True
    return compiled(_LONG_ALNUM).search(text) is not None or has_secret_stem(text.lower())


def _always(text: str) -> bool:  # noqa: ARG001 - extra patterns may match any text
    return True


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
        self.needs_scan: Final[Callable[[str], bool]] = (
            _always if self._patterns else _default_needs_scan
        )
        """Whether a text must be scanned at all (any text, with extra patterns)."""

    def key_kind(self, key: str) -> int:
        """The kind of a (raw) key (``_secret_keys``): allowed names plain, extra ones secret."""
        if self._allow and normalise_key(key) in self._allow:
            return KEY_PLAIN
        kind = default_key_kind(key)
        if kind != KEY_SECRET and self._extra and normalise_key(key) in self._extra:
            return KEY_SECRET
        return kind

    def is_secret_key(self, key: str) -> bool:
        """Whether a (raw) key names a secret whatever its value."""
        return self.key_kind(key) == KEY_SECRET

    def secret_value(self, key: str, value: str) -> bool:
        """Whether the value under this key is secret: a secret key, or a shaped one's token."""
        kind = self.key_kind(key)
        return kind == KEY_SECRET or (kind == KEY_SHAPED and token_shaped(value.strip("\"'`")))

    def redact(self, text: str, *, random_runs: bool = True) -> str:
        """The text made UTF-8 encodable, secret values replaced (to a fixed point).

        ``random_runs=False`` for the value of a data key (an id, a digest, a cursor):
        random-looking strings stay, every other detector runs.
        """
        text = _fix_surrogates(text)
        if len(text) < self.min_scan or not self.needs_scan(text):
            return text
        # One pass may expose a match for another. The generic rules run once the tables
        # have nothing left to find (they are the costlier scan, and need no second look
        # unless they changed something).
        for _ in range(4):
            redacted = self._redact_once(text)
            if redacted == text:
                redacted = redact_shapes(text, self.key_kind, random_runs=random_runs)
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
        for trigger, rule in _GATES:
            if rule is not ran and trigger in (lowered if rule.fold_case else text):
                text = rule.pattern.sub(rule.replacement, text)
                ran = rule
        if len(text) >= SHORTEST_TOKEN and compiled(_LONG_WORD).search(text) is not None:
            present = set(text)
            for first, gates in _TOKEN_GATES:
                if first in present:
                    for trigger, rule in gates:
                        if trigger in text:
                            text = rule.pattern.sub(rule.replacement, text)
        if "</" in text:
            text = compiled(_XML_ELEMENT, re.DOTALL).sub(self._xml_repl, text)
        if "'-" in text or '"-' in text:
            text = compiled(_ARGV_REPR).sub(self._argv_repl, text)
        if "--" in text:
            text = compiled(_ARGV_TEXT).sub(self._argv_repl, text)
        if "=" in text or ":" in text:
            text = redact_pairs(text, self.key_kind)
        for pattern in self._patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def _xml_repl(self, match: re.Match[str]) -> str:
        tag = match.group("tag").rpartition(":")[2]
        if not match.group("val") or not self.secret_value(tag, match.group("val")):
            return match.group(0)
        start, end = match.span("val")
        whole = match.start()
        return match.group(0)[: start - whole] + REDACTED + match.group(0)[end - whole :]

    def _argv_repl(self, match: re.Match[str]) -> str:
        value = match.group("val")
        if not self.secret_value(match.group("flag"), value):
            return match.group(0)
        start = match.start("val") - match.start()
        new = quoted(value) if "'" in value or '"' in value else REDACTED
        return match.group(0)[:start] + new


def secret_positions(items: Sequence[object], is_secret_key: Callable[[str], bool]) -> set[int]:
    """Indices of a sequence's items that are secrets by what precedes them.

    A pair ``(name, value)`` with a secret name (headers as ``[("Authorization", ...)]``,
    str or bytes); in an argv, the value after a secret option (``--password x``); and
    the attached ``-pSECRET`` of the programs in ``_ATTACHED_PASSWORD_OPTION`` and the
    ``user:password`` of ``curl -u``.
    """
    found: set[int] = set()
    if len(items) == 2:
        name = _name_text(items[0])
        if name is not None and is_secret_key(name):
            found.add(1)
        return found
    first = _name_text(items[0]) if items else None
    program = first.rpartition("/")[2] if first is not None else ""
    attached = _ATTACHED_PASSWORD_OPTION.get(program)
    user_options = _USER_PASSWORD_OPTIONS.get(program, frozenset())
    for index, item in enumerate(items[:-1]):
        text = _name_text(item)
        if text is None or not text.startswith("-"):
            continue
        option = compiled(_OPTION).fullmatch(text)
        if text in user_options or (option is not None and is_secret_key(option.group(1))):
            found.add(index + 1)
    if attached is not None:
        found.update(
            i for i, item in enumerate(items)
            if isinstance(item, str) and item.startswith(attached) and len(item) > len(attached)
        )  # fmt: skip
    return found


def named_secret(mapping: object, is_secret_key: Callable[[str], bool]) -> str | None:
    """The key of a small dict whose value is secret by the name beside it: ``"value"`` in
    ``{"name": "X-API-Key", "value": ...}`` (HAR headers, Kubernetes env, form fields)."""
    if type(mapping) is not dict or len(mapping) > _NAMED_VALUE_MAX_KEYS:
        return None
    for value_key in ("value", "Value"):
        if value_key in mapping:
            names = (mapping.get(name) for name in ("name", "Name", "key", "Key"))
            if any(isinstance(name, str) and is_secret_key(name) for name in names):
                return value_key
    return None


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
    import inspect  # noqa: PLC0415 - only for exceptions with several args: keeps start-up light

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

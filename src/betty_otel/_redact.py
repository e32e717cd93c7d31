"""Secret rules: which keys name secrets, and which values inside text are secrets.

Inputs, metadata and error text come from user code and may hold credentials. Every
execution record passes through here on the decorator's hot path, so everything is
compiled at import time, key decisions are cached, and text without any character a
detector needs skips the regexes after one cheap search (``SECRET_TRIGGER``).

Secret keys (dict keys, parameter names, and ``key=value`` keys inside text)
    A key is normalised by lowercasing it and removing ``-``, ``_``, ``.`` and spaces, so
    ``apiKey``, ``api-key``, ``API_KEY``, ``api.key`` and ``ApiKey`` are all ``apikey``. It
    is secret when the normalised form equals a name in ``DEFAULT_SECRET_KEYS`` (or in the
    ``extra_keys`` given to ``Redactor``), or ends with one of ``_SECRET_SUFFIXES``
    (password, passwd, passphrase, secret, secretkey, token, apikey, accesskey, privatekey,
    credential, credentials, authorization, cookie), which catches ``db_password``,
    ``githubToken``, ``client_secret`` or ``aws_secret_access_key`` while ordinary names
    such as ``author``, ``max_tokens``, ``tokenizer``, ``keyboard`` or ``pinned`` stay.
    The value of a secret key is replaced whole by ``REDACTED``, whatever its type.

Secret values (``_VALUE_RULES``, then ``key=value`` pairs)
    ``Bearer``/``Basic`` credentials (the scheme word is kept; a credential is one of 8+
    chars with a digit, ``+/=_`` or an inner capital, or any of 24+ chars, so prose such as
    "Basic authentication" survives); JWTs; PEM private key blocks (through the END line,
    or to the end of the text if it is cut off); URL credentials (``scheme://user:pass@``
    becomes ``scheme://user:***REDACTED***@``: the user name is kept, it names the account);
    ``key=value`` / ``key: "value"`` pairs whose key is secret by the rule above (quotes
    kept, a ``Cookie:`` value runs to the end of the line); well-known token formats
    (GitHub ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``/``github_pat_``, ``sk-``, Stripe
    ``sk_live_``/``rk_test_``, Slack ``xox?-``, AWS ``AKIA``/``ASIA``, Google ``AIza``,
    GitLab ``glpat-``, npm ``npm_``), replaced whole. Redaction is repeated to a fixed
    point, so redacting twice changes nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Final, NamedTuple

__all__ = [
    "DEFAULT_SECRET_KEYS",
    "REDACTED",
    "SECRET_TRIGGER",
    "Redactor",
    "safe_repr",
    "type_name",
]

REDACTED: Final = "***REDACTED***"

# -- secret keys ---------------------------------------------------------------------------

# Names (normalised) whose value is a secret when they are the whole key.
DEFAULT_SECRET_KEYS: Final[frozenset[str]] = frozenset(
    {
        "password", "passwd", "pwd", "passphrase", "secret", "secrets", "token",
        "apikey", "accesskey", "secretkey", "accesstoken", "refreshtoken", "idtoken",
        "sessiontoken", "auth", "authorization", "credential", "credentials", "privatekey",
        "clientsecret", "sessionid", "cookie", "setcookie", "xapikey", "bearer", "jwt",
        "signature", "connectionstring", "dsn", "ssn", "creditcard", "cardnumber", "cvv",
        "pin",
    }
)  # fmt: skip
# Names (normalised) whose value is a secret when they end the key. Only words that never
# end an ordinary identifier ("tokens", "author" don't).
_SECRET_SUFFIXES: Final = (
    "password", "passwd", "passphrase", "secret", "secretkey", "token", "apikey",
    "accesskey", "privatekey", "credential", "credentials", "authorization", "cookie",
)  # fmt: skip
# Keys whose value in text runs to the end of the line ("Cookie: a=1; b=2": all of it).
_EOL_VALUE_KEYS: Final = frozenset({"cookie", "setcookie"})

_SHORTEST_NAME: Final = min(map(len, DEFAULT_SECRET_KEYS))
_KEY_CACHE_MAX_LEN: Final = 256  # longer keys are classified uncached (the cache pins them)
_KEY_SEPARATORS: Final = str.maketrans("", "", "-_. ")


def _normalise_key(key: str) -> str:
    """Lowercase and drop ``-_.`` and spaces, so every spelling of a name compares equal."""
    return key.lower().translate(_KEY_SEPARATORS)


def _classify(normalised: str) -> bool:
    return normalised in DEFAULT_SECRET_KEYS or normalised.endswith(_SECRET_SUFFIXES)


@functools.lru_cache(maxsize=4096)
def _default_secret_cached(key: str) -> bool:
    """Cached default decision: the same few parameter names recur on every call."""
    return _classify(_normalise_key(key))


# -- secret values -------------------------------------------------------------------------

# Speed: sre skips fast to a literal or one-charset prefix, but any leading lookbehind or
# alternation makes it try the whole pattern at every position (~1 ms per 4 KB here). So
# each pattern starts with its literal, boundaries are lookbehinds placed after it, and
# every pass is gated by a substring test (the rule's triggers).
_PEM: Final = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----.*?"
    r"(?:-----END[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----|\Z)",
    re.DOTALL,
)
# Greedy password up to the last "@" of the authority: unencoded "@" in passwords happen.
_URL_CREDS: Final = re.compile(r"(://[^\s/?#@:]*:)[^\s/?#]+@")
_AUTH_SCHEME: Final = re.compile(
    r"[Bb](?<![A-Za-z0-9_][Bb])(?:[Ee][Aa][Rr][Ee][Rr]|[Aa][Ss][Ii][Cc])[ \t]+"
    r"([A-Za-z0-9\-._~+/]+=*)"
)
_JWT: Final = re.compile(
    r"eyJ(?<![A-Za-z0-9_\-]eyJ)[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*"
)
_CRED_MARKS: Final = frozenset("0123456789+/=_")


def _looks_like_credential(cred: str) -> bool:
    """Whether the word after Bearer/Basic is a credential rather than prose."""
    if len(cred) >= 24:
        return True
    if len(cred) < 8:
        return False
    return any(c in _CRED_MARKS for c in cred) or any(c.isupper() for c in cred[1:])


def _auth_repl(match: re.Match[str]) -> str:
    """Keep the scheme word, replace a credential after it (prose stays)."""
    if _looks_like_credential(match.group(1)):
        return match.string[match.start() : match.start(1)] + REDACTED
    return match.group(0)


class _ValueRule(NamedTuple):
    """One detector of secret values inside text."""

    triggers: tuple[str, ...]
    """Literals of which every match contains one: the pattern runs only if one is present."""
    fold_case: bool
    """Whether the triggers are looked for in the lowercased text."""
    pattern: re.Pattern[str]
    replacement: str | Callable[[re.Match[str]], str]


def _token_rule(prefix: str, body: str) -> _ValueRule:
    """A vendor token: its literal prefix (not inside a longer word), then its body."""
    escaped = re.escape(prefix)
    pattern = re.compile(f"{escaped}(?<![A-Za-z0-9]{escaped}){body}")
    return _ValueRule((prefix,), False, pattern, REDACTED)


# Applied in this order, before "key: value" pairs: whole blocks and URL/scheme
# credentials first, as a pair would otherwise take "Bearer" as the value and leave the token.
_VALUE_RULES: Final[tuple[_ValueRule, ...]] = (
    _ValueRule(("-----BEGIN",), False, _PEM, REDACTED),  # PEM private key blocks
    _ValueRule(("://",), False, _URL_CREDS, rf"\1{REDACTED}@"),  # URL password, user kept
    _ValueRule(("bearer", "basic"), True, _AUTH_SCHEME, _auth_repl),  # scheme word kept
    _ValueRule(("eyJ",), False, _JWT, REDACTED),
    _token_rule("gh", r"[pousr]_[A-Za-z0-9]{20,}"),  # GitHub
    _token_rule("github_pat_", r"[A-Za-z0-9_]{20,}"),
    _token_rule("sk-", r"[A-Za-z0-9_\-]{20,}"),  # OpenAI, Anthropic, ...
    _token_rule("sk_", r"(?:live|test)_[A-Za-z0-9]{16,}"),  # Stripe
    _token_rule("rk_", r"(?:live|test)_[A-Za-z0-9]{16,}"),
    _token_rule("xox", r"[abeoprs]-[A-Za-z0-9\-]{10,}"),  # Slack
    _token_rule("AKIA", r"[0-9A-Z]{16}"),  # AWS access key ids
    _token_rule("ASIA", r"[0-9A-Z]{16}"),
    _token_rule("AIza", r"[0-9A-Za-z_\-]{35}"),  # Google
    _token_rule("glpat-", r"[A-Za-z0-9_\-]{20,}"),  # GitLab
    _token_rule("npm_", r"[A-Za-z0-9]{36}"),
)
# The table as the pass loop reads it: one entry per trigger, in table order (a tuple per
# rule and an inner loop over its triggers would double the cost of a pass).
_GATES: Final = tuple(
    (trigger, rule.fold_case, rule.pattern, rule.replacement)
    for rule in _VALUE_RULES
    for trigger in rule.triggers
)

# "key: value" pairs are found from their separator: the pattern runs over the reversed
# text (separator, then the key backwards), so only ":" and "=" positions are tried.
_PAIR_REVERSED_ANY: Final = re.compile(
    r"[:=][ \t]*[\"']?([A-Za-z0-9_.\-]{1,64})(?![A-Za-z0-9_.\-])"
)
# Every default name ends with a letter: "10:30" or "T14:30" need no key lookup.
_PAIR_REVERSED: Final = re.compile(
    r"[:=][ \t]*[\"']?([_.\-]{0,8}[A-Za-z][A-Za-z0-9_.\-]{0,63})(?![A-Za-z0-9_.\-])"
)
_PAIR_VALUE: Final = re.compile(
    r"=?[ \t]*(?:(?:bearer|basic|token)[ \t]+)?"
    # An optional b/r/u/f prefix: "password=b'...'" from a repr of bytes.
    r"(?P<val>(?:[bBrRuUfF]{1,2}(?=[\"']))?\"(?:[^\"\\\n]|\\.)*(?P<c1>\")?"
    r"|(?:[bBrRuUfF]{1,2}(?=[\"']))?'(?:[^'\\\n]|\\.)*(?P<c2>')?"
    r"|[^\s,;&\"'`<>(){}\[\]]+)",
    re.IGNORECASE,
)

SECRET_TRIGGER: Final = re.compile(r"[-:=_AJbB]")
"""Every value detector needs one of these characters: text without any is never changed."""


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


# -- the redactor --------------------------------------------------------------------------


class Redactor:
    """Decides which keys name secrets and replaces secret values inside text.

    Immutable after construction, so one instance is safe to share between threads.
    """

    def __init__(self, extra_keys: Iterable[str] = ()) -> None:
        """Add exact secret names (normalised like the defaults, never used as suffixes)."""
        if isinstance(extra_keys, str):  # a single name, not its characters
            extra_keys = (extra_keys,)
        self._extra = frozenset(_normalise_key(str(k)) for k in extra_keys) - {""}
        self.min_scan: Final = min([_SHORTEST_NAME, *map(len, self._extra)]) + 2
        """Shortest text that can hold a secret pair: a name plus "=" and one char."""
        letters = all(name[-1:].isalpha() for name in self._extra)
        self._pair_pattern = _PAIR_REVERSED if letters else _PAIR_REVERSED_ANY

    def is_secret_key(self, key: str) -> bool:
        """Whether a (raw) key names a secret: defaults by the rule, extra keys exactly."""
        if len(key) <= _KEY_CACHE_MAX_LEN:
            if _default_secret_cached(key):
                return True
        elif _classify(_normalise_key(key)):
            return True
        return bool(self._extra) and _normalise_key(key) in self._extra

    def redact(self, text: str) -> str:
        """The text made UTF-8 encodable, secret values replaced (to a fixed point)."""
        text = _fix_surrogates(text)
        if len(text) < self.min_scan or SECRET_TRIGGER.search(text) is None:
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
        if "=" in text or ":" in text:
            text = self._redact_pairs(text)
        return text

    def _redact_pairs(self, text: str) -> str:
        """Replace the value of each ``key=value`` / ``key: value`` pair with a secret key.

        Every separator is a candidate, so "url=https://x/?token=abc" reaches the inner
        pair; a candidate inside a value already replaced is skipped.
        """
        size = len(text)
        matches = list(self._pair_pattern.finditer(text[::-1]))
        parts: list[str] = []
        last = 0
        for match in reversed(matches):  # back to left-to-right order
            key_start, key_end = size - match.end(1), size - match.start(1)
            key = text[key_start:key_end]
            if key_start < last or not self.is_secret_key(key):
                continue
            value = _PAIR_VALUE.match(text, size - match.start())
            if value is None:
                continue
            start, end = value.span("val")
            if _normalise_key(key) in _EOL_VALUE_KEYS:
                end = _line_end(text, start)
                replacement = REDACTED
            elif text[start] in "\"'":
                replacement = (
                    text[start] + REDACTED + (value.group("c1") or value.group("c2") or "")
                )
            else:
                replacement = REDACTED
            parts += (text[last:start], replacement)
            last = end
        if not parts:
            return text
        parts.append(text[last:])
        return "".join(parts)

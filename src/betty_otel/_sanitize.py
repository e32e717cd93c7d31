"""Secret redaction and safe conversion of arbitrary Python values to strict JSON.

Inputs, metadata and error text come from user code and may hold anything: credentials,
10 MB blobs, cycles, objects whose ``repr`` raises. Every execution record passes through
here, on the hot path of the decorator, so the module never raises and keeps the common
case (a small dict of plain values) cheap: everything is compiled at import time, key
decisions are cached, and plain strings skip the regexes after one cheap trigger search.

Secret keys (dict keys, parameter names, and ``key=value`` keys inside text)
    A key is normalised by lowercasing it and removing ``-``, ``_``, ``.`` and spaces, so
    ``apiKey``, ``api-key``, ``API_KEY``, ``api.key`` and ``ApiKey`` are all ``apikey``. It
    is secret when the normalised form equals a name in ``DEFAULT_SECRET_KEYS`` (or in the
    ``extra_keys`` given to ``Sanitizer``), or ends with one of ``_SECRET_SUFFIXES``
    (password, passwd, passphrase, secret, secretkey, token, apikey, accesskey, privatekey,
    credential, credentials, authorization, cookie), which catches ``db_password``,
    ``githubToken``, ``client_secret`` or ``aws_secret_access_key`` while ordinary names
    such as ``author``, ``max_tokens``, ``tokenizer``, ``keyboard`` or ``pinned`` stay.
    Default names: password passwd pwd passphrase secret secrets token apikey accesskey
    secretkey accesstoken refreshtoken idtoken sessiontoken auth authorization credential
    credentials privatekey clientsecret sessionid cookie setcookie xapikey bearer jwt
    signature connectionstring dsn ssn creditcard cardnumber cvv pin.
    The value of a secret key is replaced whole by ``REDACTED``, whatever its type.

Secret values (in every string, and in ``redact_text``)
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

Conversion: dataclasses become dicts of their fields, ``model_dump()`` results are used
(exceptions guarded), enums become their value, date/time values ISO text, UUID, Decimal
and paths ``str``; bytes-like values up to 1024 bytes of valid UTF-8 are decoded, others
become ``"<bytes len=N>"``; sets become sorted lists (iteration order when unsortable),
tuples lists; NaN/inf become ``"NaN"``/``"Infinity"``/``"-Infinity"``; ints outside the
signed 64-bit range become strings; lone surrogates become U+FFFD; non-string dict keys
become ``str`` (``null``/``true``/``false`` for None/bools; on a key collision the first
entry wins); iterators and generators are never consumed (``"<generator not consumed>"``);
anything else is its (redacted, truncated) ``repr``, or ``"<unrepresentable T>"`` when
``repr`` and ``str`` both raise.

Budgets: strings are redacted first, then cut to ``max_value_chars`` with a
``...<truncated N chars>`` suffix (of an oversized string only the part that can survive,
plus a 16 KB margin, is scanned: the rest is dropped unread); containers keep
``max_items`` entries, the last being a ``"<N more items>"`` marker; containers nested
deeper than ``max_depth`` become a marker; once the running JSON size passes
``max_total_chars``, the rest of each open container collapses into one
``"<truncated: size budget exceeded>"`` marker. All markers are stable
under a second pass, so ``sanitize(sanitize(x)) == sanitize(x)``.

Inputs (``bind_inputs``): ``{parameter: value}`` with defaults applied; ``*args`` stays a
list and ``**kwargs`` a dict under their own parameter names (secret keys inside are
redacted like anywhere else); ``{"args": [...], "kwargs": {...}}`` when binding fails.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import heapq
import inspect
import math
import numbers
import re
import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from decimal import Decimal
from itertools import islice
from pathlib import PurePath
from typing import Any, Final

import orjson

__all__ = ["DEFAULT_SECRET_KEYS", "REDACTED", "Sanitizer", "default_sanitizer", "to_json_text"]

REDACTED: Final = "***REDACTED***"

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
# Suffixes are only words that never end an ordinary identifier ("tokens", "author" don't).
_SECRET_SUFFIXES: Final = (
    "password", "passwd", "passphrase", "secret", "secretkey", "token", "apikey",
    "accesskey", "privatekey", "credential", "credentials", "authorization", "cookie",
)  # fmt: skip
_SHORTEST_NAME: Final = min(map(len, DEFAULT_SECRET_KEYS))
_EOL_VALUE_KEYS: Final = frozenset({"cookie", "setcookie"})  # "a=1; b=2": all of it

_CYCLE: Final = "<cycle>"
_DEPTH: Final = "<max depth exceeded>"
_BUDGET: Final = "<truncated: size budget exceeded>"
_TRUNC_KEY: Final = "<truncated>"
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_SMALL_BYTES: Final = 1024
# An oversized string is only scanned this far past the cut: the rest is dropped unread,
# and the patterns treat the end of the scanned window as "the secret goes on".
_SCAN_MARGIN: Final = 16384
_KEY_CACHE_MAX_LEN: Final = 256  # longer keys are classified uncached (the cache pins them)
_KEY_CACHE_SIZE: Final = 2048
_SCALAR_COST: Final = 24  # JSON chars budgeted for any number, bool or null
_CUT_ATTEMPTS: Final = 8
_KEY_SEPARATORS: Final = str.maketrans("", "", "-_. ")
_CRED_MARKS: Final = frozenset("0123456789+/=_")

# Speed: sre skips fast to a literal or one-charset prefix, but any leading lookbehind or
# alternation makes it try the whole pattern at every position (~1 ms per 4 KB here). So
# each pattern starts with its literal, boundaries are lookbehinds placed after it, and
# every pass is gated by a substring test.
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
_TOKEN_RULES: Final = tuple(
    (prefix, re.compile(f"{re.escape(prefix)}(?<![A-Za-z0-9]{re.escape(prefix)}){rest}"))
    for prefix, rest in (
        ("gh", r"[pousr]_[A-Za-z0-9]{20,}"),  # GitHub
        ("github_pat_", r"[A-Za-z0-9_]{20,}"),
        ("sk-", r"[A-Za-z0-9_\-]{20,}"),  # OpenAI, Anthropic, ...
        ("sk_", r"(?:live|test)_[A-Za-z0-9]{16,}"),  # Stripe
        ("rk_", r"(?:live|test)_[A-Za-z0-9]{16,}"),
        ("xox", r"[abeoprs]-[A-Za-z0-9\-]{10,}"),  # Slack
        ("AKIA", r"[0-9A-Z]{16}"),  # AWS access key ids
        ("ASIA", r"[0-9A-Z]{16}"),
        ("AIza", r"[0-9A-Za-z_\-]{35}"),  # Google
        ("glpat-", r"[A-Za-z0-9_\-]{20,}"),  # GitLab
        ("npm_", r"[A-Za-z0-9]{36}"),
    )
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
# Every pattern above needs one of these characters: most plain strings stop here.
_MAYBE_SECRET: Final = re.compile(r"[-:=_AJbB]")
_URL_REPL: Final = rf"\1{REDACTED}@"


def _normalise_key(key: str) -> str:
    """Lowercase and drop ``-_.`` and spaces, so every spelling of a name compares equal."""
    return key.lower().translate(_KEY_SEPARATORS)


def _classify(normalised: str) -> bool:
    return normalised in DEFAULT_SECRET_KEYS or normalised.endswith(_SECRET_SUFFIXES)


@functools.lru_cache(maxsize=4096)
def _default_secret_cached(key: str) -> bool:
    """Cached default decision: the same few parameter names recur on every call."""
    return _classify(_normalise_key(key))


def _looks_like_credential(cred: str) -> bool:
    """Whether the word after Bearer/Basic is a credential rather than prose."""
    if len(cred) >= 24:
        return True
    if len(cred) < 8:
        return False
    return any(c in _CRED_MARKS for c in cred) or any(c.isupper() for c in cred[1:])


def _auth_repl(match: re.Match[str]) -> str:
    if _looks_like_credential(match.group(1)):
        return match.string[match.start() : match.start(1)] + REDACTED
    return match.group(0)


def _fix_surrogates(text: str) -> str:
    """Make text UTF-8 encodable: join valid surrogate pairs, lone surrogates become U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _truncation_suffix(dropped: int) -> str:
    return f"...<truncated {dropped} chars>"


def _type_name(value: object) -> str:
    try:
        return type(value).__qualname__
    except Exception:  # noqa: BLE001 - a hostile metaclass must not break telemetry
        return "object"


def _safe_repr(value: object) -> str:
    """``repr``, else ``str``, else a marker: user objects may raise from either."""
    try:
        return repr(value)
    except Exception:  # noqa: BLE001, S110 - fall through to str()
        pass
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        return f"<unrepresentable {_type_name(value)}>"


def _key_to_str(key: object) -> str:
    """Text for a non-string dict key, spelled as the json module would for scalars."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, (bytes, bytearray)):  # b"password" must still name a secret
        return bytes(key).decode("utf-8", "replace")
    try:
        return str(key.value if isinstance(key, enum.Enum) else key)
    except Exception:  # noqa: BLE001 - a raising __str__, a 5000-digit int
        return f"<unrepresentable key {_type_name(key)}>"


def _json_size(text: str) -> int:
    """Bytes the string takes as JSON: the budget counts what reaches the disk.

    Control characters take 6 bytes (\\u0000) and non-ASCII up to 4 in UTF-8, so
    counting characters could let a line grow several times past the budget.
    """
    if text.isascii() and text.isprintable():
        return len(text) + 2 + text.count('"') + text.count("\\")
    try:
        return len(orjson.dumps(text, option=orjson.OPT_PASSTHROUGH_SUBCLASS))
    except TypeError:  # lone surrogates: an upper bound is enough for a budget
        return len(text) * 6 + 2


def _big_int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # past sys.get_int_max_str_digits()
        return f"<int with {value.bit_length()} bits>"


def _bytes_text(value: bytes | bytearray | memoryview) -> str:
    """Small valid UTF-8 is decoded (usually text read as bytes); anything else a size tag."""
    try:
        size = value.nbytes if isinstance(value, memoryview) else len(value)
        if size <= _SMALL_BYTES:
            return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        pass
    except (ValueError, TypeError):  # a released memoryview
        return f"<{_type_name(value)}>"
    return f"<{_type_name(value)} len={size}>"


def _field_value(obj: object, name: str) -> object:
    try:
        return getattr(obj, name)
    except Exception:  # noqa: BLE001 - e.g. an init=False field never set
        return "<unavailable>"


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


class _BindPlan:
    """A plain signature's parameter names (positional ones first) and defaults."""

    __slots__ = ("accepted", "defaults", "names", "positional")

    def __init__(self, names: tuple[str, ...], positional: int, defaults: dict[str, Any]) -> None:
        self.names = names
        self.positional = positional
        self.defaults = defaults
        self.accepted = frozenset(names)


def _bind_plan(signature: inspect.Signature) -> _BindPlan | None:
    kinds = inspect.Parameter
    params = list(signature.parameters.values())
    if any(p.kind not in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY) for p in params):
        return None
    positional = sum(1 for p in params if p.kind is kinds.POSITIONAL_OR_KEYWORD)
    defaults = {p.name: p.default for p in params if p.default is not kinds.empty}
    return _BindPlan(tuple(p.name for p in params), positional, defaults)


class _State:
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
        max_total_chars: int = 65536,
        max_depth: int = 20,
        max_items: int = 200,
    ) -> None:
        """Configure extra secret names (exact match, normalised) and the size budgets.

        Budgets are raised to small minimums (64 chars per value, 256 total, depth 1,
        2 items) so every marker fits and a second pass never cuts again.
        """
        if isinstance(extra_keys, str):  # a single name, not its characters
            extra_keys = (extra_keys,)
        self._extra = frozenset(_normalise_key(str(k)) for k in extra_keys) - {""}
        self._max_value_chars = max(int(max_value_chars), 64)
        self._max_total = max(int(max_total_chars), 256)
        self._max_depth = max(int(max_depth), 1)
        self._max_items = max(int(max_items), 2)
        # Shortest text a pair can match: a name plus "=" and one char.
        self._min_scan = min([_SHORTEST_NAME, *map(len, self._extra)]) + 2
        # Sanitized text and secrecy of each short key seen: per instance (redaction depends
        # on extra_keys), bounded by refusing new entries once full.
        self._keys: dict[str, tuple[str, bool]] = {}
        self._plans: dict[int, tuple[inspect.Signature, _BindPlan | None]] = {}
        letters = all(name[-1:].isalpha() for name in self._extra)
        self._pair_pattern = _PAIR_REVERSED if letters else _PAIR_REVERSED_ANY

    # -- public API ----------------------------------------------------------------------

    def sanitize(self, value: object) -> Any:
        """Return a JSON-safe copy (dict/list/str/int/float/bool/None).

        Secrets are redacted by key and by value, and every string is within budget.
        """
        try:
            if type(value) is dict:
                flat = self._flat(value)
                if flat is not None:
                    return flat
            return self._walk(value, 0, _State())
        except Exception:  # noqa: BLE001 - last resort (e.g. a dict mutated while read)
            return f"<unserializable {_type_name(value)}>"

    def redact_text(self, text: str) -> str:
        """Redact secret-looking values inside free text (error messages); no truncation."""
        try:
            if type(text) is not str:
                text = str.__str__(text) if isinstance(text, str) else _safe_repr(text)
            return self._redact(_fix_surrogates(text))
        except Exception:  # noqa: BLE001 - never break the caller's error path
            return "<unrepresentable text>"

    def bind_inputs(
        self,
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
            fast = self._fast_bind(signature, args, kwargs)
        except Exception:  # noqa: BLE001 - hostile arguments: the general path handles them
            fast = None
        if fast is not None:
            if skip_first and fast:
                del fast[next(iter(signature.parameters))]
            result = self.sanitize(fast)
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
        result = self.sanitize(arguments)
        return result if isinstance(result, dict) else {"inputs": result}

    def _flat(self, value: dict[Any, Any]) -> dict[str, Any] | None:
        """The hot path's usual case: a small dict of known keys and plain scalar values.

        Gives exactly what the full walk gives for such a dict; None (take the full
        walk) at the first key or value that needs more than a copy.
        """
        if len(value) > self._max_items:
            return None
        keys = self._keys
        min_scan = self._min_scan
        out: dict[str, Any] = {}
        total = 0
        for key, item in value.items():
            info = keys.get(key) if type(key) is str else None
            if info is None:
                return None
            text, secret = info
            if text in out:
                return None
            total += len(text) + _SCALAR_COST + (len(item) * 2 if type(item) is str else 0)
            if total > self._max_total:
                return None
            kind = type(item)
            if secret:
                out[text] = REDACTED
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
                    and (len(item) < min_scan or _MAYBE_SECRET.search(item) is None)
                )
            ):
                out[text] = item
            else:
                return None
        return out

    def _fast_bind(
        self, signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Bind like bind_partial + apply_defaults for plain signatures, several times faster.

        None when the signature has *args, **kwargs or positional-only parameters, or the
        call does not fit it: inspect handles those (and reports what does not fit).
        """
        cached = self._plans.get(id(signature))
        if cached is None or cached[0] is not signature:
            cached = (signature, _bind_plan(signature))
            if len(self._plans) < _KEY_CACHE_SIZE:
                self._plans[id(signature)] = cached
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

    # -- text ----------------------------------------------------------------------------

    def _is_secret(self, key: str) -> bool:
        """Whether a (raw) key names a secret: defaults by the rule, extra keys exactly."""
        if len(key) <= _KEY_CACHE_MAX_LEN:
            if _default_secret_cached(key):
                return True
        elif _classify(_normalise_key(key)):
            return True
        return bool(self._extra) and _normalise_key(key) in self._extra

    def _redact(self, text: str) -> str:
        """Redact to a fixed point: one pass may expose a match for another."""
        if len(text) < self._min_scan or _MAYBE_SECRET.search(text) is None:
            return text
        for _ in range(4):
            redacted = self._redact_once(text)
            if redacted == text:
                break
            text = redacted
        return text

    def _redact_once(self, text: str) -> str:
        # Order matters: whole blocks and URL/scheme credentials go before "key: value"
        # pairs, which would otherwise take "Bearer" as the value and leave the token.
        if "-----BEGIN" in text:
            text = _PEM.sub(REDACTED, text)
        if "://" in text:
            text = _URL_CREDS.sub(_URL_REPL, text)
        lowered = text.lower()
        if "bearer" in lowered or "basic" in lowered:
            text = _AUTH_SCHEME.sub(_auth_repl, text)
        if "eyJ" in text:
            text = _JWT.sub(REDACTED, text)
        for prefix, pattern in _TOKEN_RULES:
            if prefix in text:
                text = pattern.sub(REDACTED, text)
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
            if key_start < last or not self._is_secret(key):
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

    def _text(self, text: str) -> str:
        """Full string treatment: surrogates fixed, secrets redacted, then cut to budget."""
        limit = self._max_value_chars
        if len(text) <= limit:
            redacted = self._redact(_fix_surrogates(text))
            return redacted if len(redacted) <= limit else self._cut(redacted, len(redacted))
        unread = max(0, len(text) - limit - _SCAN_MARGIN)
        redacted = self._redact(_fix_surrogates(text[: limit + _SCAN_MARGIN]))
        return self._cut(redacted, len(redacted) + unread)

    def _cut(self, redacted: str, total: int) -> str:
        """Cut already-redacted text to the budget at a point where no new match appears.

        A cut can create a match (half a marker after "password=" reads as a new value),
        so each candidate is checked and the cut moves back until the result is stable.
        """
        cut = min(self._max_value_chars - len(_truncation_suffix(total)), len(redacted))
        for _ in range(_CUT_ATTEMPTS):
            candidate = redacted[:cut] + _truncation_suffix(total - cut)
            if self._redact(candidate) == candidate:
                return candidate
            space = redacted.rfind(" ", 0, cut - 1)
            cut = space if space > 0 else max(0, cut - 64)
        return _truncation_suffix(total)

    def _key_info(self, key: object) -> tuple[str, bool]:
        """The sanitized key text and whether its value must be redacted."""
        text = key if type(key) is str else _key_to_str(key)
        info = self._keys.get(text)
        if info is None:
            info = (self._text(text), self._is_secret(text))
            if len(text) <= _KEY_CACHE_MAX_LEN and len(self._keys) < _KEY_CACHE_SIZE:
                self._keys[text] = info
        return info

    # -- values --------------------------------------------------------------------------

    def _leaf(self, text: str, st: _State) -> str:
        """Emit a string that has already been through ``_text`` (or is a marker)."""
        st.total += _json_size(text)
        return text

    def _walk(self, value: object, depth: int, st: _State) -> Any:
        # Exact-type checks first: the common scalars cost one comparison each.
        if type(value) is str:
            if (
                len(value) <= self._max_value_chars
                and value.isascii()
                and value.isprintable()
                and (len(value) < self._min_scan or _MAYBE_SECRET.search(value) is None)
            ):
                st.total += _json_size(value)
                return value
            return self._leaf(self._text(value), st)
        if type(value) is int:
            if _I64_MIN <= value <= _I64_MAX:
                st.total += _SCALAR_COST
                return value
            return self._leaf(self._text(_big_int_text(value)), st)
        if type(value) is float:
            st.total += _SCALAR_COST
            if value - value == 0.0:  # false only for NaN and +-inf
                return value
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if value is None or type(value) is bool:
            st.total += _SCALAR_COST
            return value
        if type(value) is dict:
            return self._walk_mapping(value, value.items(), len(value), depth, st)
        if type(value) is list or type(value) is tuple:
            return self._walk_seq(value, value, len(value), depth, st)
        try:
            return self._convert(value, depth, st)
        except Exception:  # noqa: BLE001 - a hostile object: fall back to its repr
            return self._leaf(self._text(_safe_repr(value)), st)

    def _convert(self, value: object, depth: int, st: _State) -> Any:
        """Everything that is not an exact JSON scalar, dict, list or tuple."""
        if isinstance(value, enum.Enum):
            return self._walk(value.value, depth + 1, st)
        if isinstance(value, str):
            return self._walk(str.__str__(value), depth, st)
        if isinstance(value, int):
            return self._walk(int(value), depth, st)
        if isinstance(value, float):
            return self._walk(float(value), depth, st)
        if isinstance(value, Mapping):
            return self._walk_mapping(value, value.items(), len(value), depth, st)
        fields = getattr(type(value), "_fields", None)
        if isinstance(value, tuple) and isinstance(fields, tuple):  # a named tuple: names matter
            pairs = zip(fields, value, strict=False)
            return self._walk_mapping(value, pairs, len(fields), depth, st)
        if isinstance(value, (list, tuple)):
            return self._walk_seq(value, value, len(value), depth, st)
        if isinstance(value, AbstractSet):
            return self._walk_set(value, depth, st)
        if isinstance(value, (dt.date, dt.time)):
            return self._leaf(self._text(value.isoformat()), st)
        if isinstance(value, (uuid.UUID, Decimal, PurePath)):
            return self._leaf(self._text(str(value)), st)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self._leaf(self._text(_bytes_text(value)), st)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = dataclasses.fields(value)
            items = ((f.name, _field_value(value, f.name)) for f in fields)
            return self._walk_mapping(value, items, len(fields), depth, st)
        dump = getattr(type(value), "model_dump", None)  # on the type: mocks answer anything
        if callable(dump):
            data = dump(value)
            if isinstance(data, Mapping):
                return self._walk_mapping(value, data.items(), len(data), depth, st)
            return self._walk(data, depth + 1, st)
        if isinstance(value, (Iterator, AsyncIterator)):  # reading it would consume it
            return self._leaf(f"<{_type_name(value)} not consumed>", st)
        if isinstance(value, Collection):
            return self._walk_seq(value, value, len(value), depth, st)
        if isinstance(value, numbers.Integral):
            return self._walk(int(value), depth, st)
        if isinstance(value, numbers.Real):
            return self._walk(float(value), depth, st)
        return self._leaf(self._text(_safe_repr(value)), st)

    def _enter(self, owner: object, depth: int, st: _State) -> str | None:
        """A marker if the container may not be walked (too deep, or a cycle), else None."""
        if depth > self._max_depth:
            return self._leaf(_DEPTH, st)
        if id(owner) in st.active:
            return self._leaf(_CYCLE, st)
        st.active.add(id(owner))
        return None

    def _walk_mapping(
        self, owner: object, items: Iterable[tuple[Any, Any]], n: int, depth: int, st: _State
    ) -> Any:
        if (marker := self._enter(owner, depth, st)) is not None:
            return marker
        try:
            out: dict[str, Any] = {}
            cap = n if n <= self._max_items else self._max_items - 1
            for i, (key, value) in enumerate(items):
                # Budget before the item cap, in the same order a second pass sees them.
                if st.total > self._max_total:
                    out[_TRUNC_KEY] = _BUDGET
                    return out
                if i >= cap:
                    break
                text, secret = self._key_info(key)
                if text in out:  # "1" and 1: keep the first, so a second pass agrees
                    continue
                st.total += len(text) + 4
                kind = type(value)
                if secret:
                    out[text] = self._leaf(REDACTED, st)
                # The commonest values inlined: a call per item adds up on the hot path.
                elif (
                    (kind is int and _I64_MIN <= value <= _I64_MAX) or kind is bool or value is None
                ):
                    st.total += _SCALAR_COST
                    out[text] = value
                elif (
                    kind is str
                    and len(value) < self._min_scan
                    and value.isascii()
                    and value.isprintable()
                ):
                    st.total += len(value) + 2
                    out[text] = value
                else:
                    out[text] = self._walk(value, depth + 1, st)
            if n > cap:
                if st.total > self._max_total:
                    out[_TRUNC_KEY] = _BUDGET
                else:
                    st.total += len(_TRUNC_KEY) + 4
                    out[_TRUNC_KEY] = self._leaf(f"<{n - cap} more items>", st)
            return out
        finally:
            st.active.discard(id(owner))

    def _walk_seq(self, owner: object, items: Iterable[Any], n: int, depth: int, st: _State) -> Any:
        if (marker := self._enter(owner, depth, st)) is not None:
            return marker
        try:
            out: list[Any] = []
            cap = n if n <= self._max_items else self._max_items - 1
            for i, item in enumerate(items):
                if st.total > self._max_total:
                    out.append(_BUDGET)
                    return out
                if i >= cap:
                    break
                kind = type(item)
                if (kind is int and _I64_MIN <= item <= _I64_MAX) or kind is bool or item is None:
                    st.total += _SCALAR_COST
                    out.append(item)
                elif (
                    kind is str
                    and len(item) < self._min_scan
                    and item.isascii()
                    and item.isprintable()
                ):
                    st.total += len(item) + 2
                    out.append(item)
                else:
                    out.append(self._walk(item, depth + 1, st))
            if n > cap:
                more = f"<{n - cap} more items>"
                out.append(_BUDGET if st.total > self._max_total else self._leaf(more, st))
            return out
        finally:
            st.active.discard(id(owner))

    def _walk_set(self, value: AbstractSet[Any], depth: int, st: _State) -> Any:
        """Sorted (only the kept smallest when large), else iteration order if unsortable."""
        n = len(value)
        cap = n if n <= self._max_items else self._max_items - 1
        try:
            ordered = sorted(value) if n == cap else heapq.nsmallest(cap, value)
        except Exception:  # noqa: BLE001 - mixed or hostile element types
            ordered = list(islice(value, cap))
        return self._walk_seq(value, ordered, n, depth, st)


def _line_end(text: str, start: int) -> int:
    """Index of the first CR or LF at or after start, else the end of text."""
    ends = [i for i in (text.find("\n", start), text.find("\r", start)) if i >= 0]
    return min(ends) if ends else len(text)


@functools.cache
def default_sanitizer() -> Sanitizer:
    """The shared Sanitizer with default keys and budgets (stateless, thread-safe)."""
    return Sanitizer()


_STRICT_OPTS: Final = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def to_json_text(value: Any) -> str:
    """Compact JSON text of an already-sanitized value.

    Anything orjson would otherwise convert on its own (dataclasses, datetimes, subclasses)
    or reject (big ints, surrogates) is sent through ``default_sanitizer()`` first instead,
    so this never emits unredacted objects and never raises.
    """
    try:
        return orjson.dumps(value, option=_STRICT_OPTS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return orjson.dumps(default_sanitizer().sanitize(value)).decode()

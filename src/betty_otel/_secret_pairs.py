"""The value of a secret key inside text: ``key=value`` and ``key: value`` in every shape.

``redact_pairs`` finds each pair from its separator and asks ``key_kind`` about its key
(``api key: x`` is read with the word before ``key``). A secret key's value is
replaced whole, whatever its form, quotes kept:

- quoted, with escaped quotes and ``b''`` prefixes (``"password": "x"``);
- a bracket, call or object repr, through its closing bracket, quotes respected:
  ``password=('a', 'b')``, ``{'password': {'x', 'y'}}``, ``password=SecretStr('x')``,
  ``password=<Secret at 0x1>``;
- written with spaces (YAML, INI, TOML, prose: ``passphrase: correct horse battery``,
  ``password = my pass``): to the end of the line, a closing quote or bracket, or the
  next pair; a YAML block (``key: |`` or an indented value on the next lines) whole;
- otherwise one word (``password=x&user=bob``), with two exceptions: environment
  assignments run to the next space (``DB_PASSWORD=p@ss;w!``), connection strings to
  ``;`` (``Password=my pass;``); ``Cookie:`` and ``Authorization:`` to the line's end.

A ``KEY_SHAPED`` key (``session``) has its value replaced only when it is shaped like
a credential.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from betty_otel._secret_keys import KEY_SECRET, KEY_SHAPED, normalise_key
from betty_otel._secret_values import REDACTED, compiled, token_shaped

__all__ = ["quoted", "redact_pairs"]

# Pairs are found from their separator: the pattern runs over the reversed text
# (separator, then the key backwards), so only ":" and "=" positions are tried.
# A JSON key may end with an escaped quote (\"), which reads '"\' reversed.
_PAIR_REVERSED: Final = r"[:=][ \t]*(?:\"\\|'\\|[\"'])?([A-Za-z0-9_.\-]{1,64})(?![A-Za-z0-9_.\-])"
_QUOTE_PREFIX: Final = r"(?:[bBrRuUfF]{1,2}(?=[\"']))?"  # "password=b'...'" from a bytes repr
_PAIR_VALUE: Final = (
    r"=?>?[ \t]*(?:(?:bearer|basic|token)[ \t]+)?"
    r"(?P<val>(?P<triple>\"\"\"|''')(?:.|\n)*?(?:(?P=triple)|\Z)"
    r"|\\\"(?:[^\"\\\n]|\\[^\"\n])*(?:\\\")?"
    rf"|{_QUOTE_PREFIX}\"(?:[^\"\\\n]|\\.|\"\")*\"?"
    rf"|{_QUOTE_PREFIX}'(?:[^'\\\n]|\\.|'')*'?"
    r"|(?P<open>[\[{(<])"
    r"|(?P<call>[A-Za-z_][\w.]*)\("
    r"|(?P<block>[|>][-+0-9]{0,2})(?=[ \t]*(?:\r?\n|\Z))"
    r"|[^\s,;&\"'`<>(){}\[\]]+)"
)
_ENV_VALUE: Final = r"[^\s\"'`]+"
_ENV_KEY: Final = r"[A-Z][A-Z0-9_]*"
# Where a value written with spaces stops: the next pair, or a quote that closes.
_NEXT_PAIR: Final = r"[,;&][ \t]*[\"']?[A-Za-z_][\w.\-]*[\"']?[ \t]*[:=]|[\"'`](?=[,;)\]}]|[ \t]*$)"
_EOL_VALUE_KEYS: Final = frozenset({"cookie", "setcookie", "authorization", "proxyauthorization"})
# Keys named by the word before them: "api key", "private key", "auth code", "connection string".
_HEAD_WORDS: Final = frozenset({"key", "keys", "code", "string"})
_WORD_BEFORE: Final = r"([A-Za-z][A-Za-z0-9_\-]{0,31}) $"
# A "name" or "key" entry before a "value" entry: HAR headers, Kubernetes env, form fields.
_NAME_BEFORE: Final = r"\b(?:[Nn]ame|[Kk]ey)[\"']?[ \t]*[:=][ \t]*[\"']?([A-Za-z0-9_.\-]{1,64})"
_OPENING: Final = {"[": "]", "{": "}", "(": ")", "<": ">"}
_BRACKETS: Final = r"[()\[\]{}]"
_LABEL: Final = r"[A-Za-z_][\w.]*:"  # "RuntimeError:", "ERROR:" before a message


def redact_pairs(text: str, key_kind: Callable[[str], int]) -> str:
    """Replace the value of each ``key=value`` / ``key: value`` pair with a secret key.

    Every separator is a candidate, so "url=https://x/?token=abc" reaches the inner
    pair; a candidate inside a value already replaced is skipped.
    """
    size = len(text)
    parts: list[str] = []
    last = 0
    for match in reversed(list(compiled(_PAIR_REVERSED).finditer(text[::-1]))):
        key_start, key_end = size - match.end(1), size - match.start(1)
        if key_start < last:
            continue
        key = text[key_start:key_end]
        kind = _pair_kind(text, key, key_start, key_kind)
        if kind not in (KEY_SECRET, KEY_SHAPED):
            continue
        span = _value_span(text, key, key_start, size - 1 - match.start())
        if span is None:
            continue
        start, end, replacement = span
        if kind == KEY_SHAPED:  # only a token: "session: <token> expired" keeps "expired"
            first = (text[start:end].split(None, 1) or [""])[0]
            if not token_shaped(first.strip("\"'`")):
                continue
            if first != text[start:end]:
                end, replacement = start + len(first), REDACTED
        parts += (text[last:start], replacement)
        last = end
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


def _pair_kind(text: str, key: str, key_start: int, key_kind: Callable[[str], int]) -> int:
    """The key's kind; a head word (``key``) is read with the word before it, and a
    ``value`` with the name beside it (``{"name": "X-API-Key", "value": "..."}``)."""
    kind = key_kind(key)
    if kind == KEY_SECRET:
        return kind
    plain = normalise_key(key)
    if plain == "value":
        names = list(compiled(_NAME_BEFORE).finditer(text, max(0, key_start - 160), key_start))
        if names and key_kind(names[-1].group(1)) == KEY_SECRET:
            return KEY_SECRET
    elif plain in _HEAD_WORDS:
        before = compiled(_WORD_BEFORE).search(text, max(0, key_start - 33), key_start)
        if before is not None and key_kind(f"{before.group(1)} {key}") == KEY_SECRET:
            return KEY_SECRET
    return kind


def _value_span(text: str, key: str, key_start: int, separator: int) -> tuple[int, int, str] | None:
    """Where the value of a secret pair lies, and what replaces it; None if there is none."""
    value = compiled(_PAIR_VALUE, re.IGNORECASE).match(text, separator + 1)
    if value is None:
        return _indented_block(text, separator)
    start, end = value.span("val")
    if text.startswith(REDACTED, start):  # already replaced: the marker is the value
        return None
    sep = text[separator]
    spaced = start > separator + 1 and text[start - 1] in " \t"
    if sep == ":" and normalise_key(key) in _EOL_VALUE_KEYS:
        return start, _line_end(text, start), REDACTED
    if value.group("open"):
        return start, _bracket_end(text, start), REDACTED
    if value.group("call"):
        return start, _bracket_end(text, end - 1), REDACTED
    if value.group("block"):
        return start, _block_end(text, separator), REDACTED
    if value.group("triple"):  # a TOML or Python multi-line string
        quotes = value.group("triple")
        return start, end, quotes + REDACTED + quotes
    if '"' in value.group("val") or "'" in value.group("val"):
        return start, end, quoted(value.group("val"))
    if sep == "=" and not spaced and compiled(_ENV_KEY).fullmatch(key.lstrip("-")):
        env = compiled(_ENV_VALUE).match(text, start)  # DB_PASSWORD=p@ss;w0rd! to the space
        return start, env.end() if env else end, REDACTED
    # Written with spaces, or a whole line of an INI or properties file (an option such
    # as "--password=x --user bob" is one word).
    if (
        spaced
        or text[separator - 1 : separator] in (" ", "\t")
        or (_starts_line(text, key_start) and not key.startswith("-"))
    ):
        quote = text[key_start - 1] if key_start and text[key_start - 1] in "'\"" else ""
        return start, _spaced_end(text, start, end, quote), REDACTED
    if sep == "=" and text[end : end + 1] == " ":  # "Password=my pass;" in a DSN
        line = text[end : _line_end(text, end)]
        semi = line.find(";")
        if semi > 0 and "=" not in line[:semi]:
            end += semi
    return start, end, REDACTED


def _starts_line(text: str, key_start: int) -> bool:
    """Whether the key starts its line (INI and properties files: ``password=my pass``),
    or the message after an exception's name (``ValueError: password=my pass``)."""
    line_start = max(text.rfind("\n", 0, key_start), text.rfind("\r", 0, key_start)) + 1
    before = text[line_start:key_start].strip(" \t\"'")
    return before in ("", "export", "set", "-") or compiled(_LABEL).fullmatch(before) is not None


def _spaced_end(text: str, start: int, end: int, quote: str) -> int:
    """The end of an unquoted value written with spaces: its line, up to what ends it.

    The next pair (``, user: bob``), a closing quote (``'...', 'x'``), the quote that
    opened before the key (``-H 'X-Api-Key: a b' https://...``) or a closing bracket
    opened before the value (``{password: a b}``) ends it; trailing blanks are not part
    of it.
    """
    limit = _line_end(text, start)
    if quote and text.find(quote, end, limit) >= 0:
        limit = text.find(quote, end, limit)
    stop = compiled(_NEXT_PAIR).search(text, end, limit)
    if stop is not None:
        limit = stop.start()
    depth = 0
    for bracket in compiled(_BRACKETS).finditer(text, start, limit):
        if bracket.group() in "([{":
            depth += 1
        elif depth == 0:
            limit = bracket.start()
            break
        else:
            depth -= 1
    while limit > end and text[limit - 1] in " \t":
        limit -= 1
    return max(limit, end)


def _indented_block(text: str, separator: int) -> tuple[int, int, str] | None:
    """``key:`` ending its line, the value on more indented lines below (YAML); else None."""
    if text[separator] != ":" or text[separator + 1 :].lstrip(" \t")[:1] not in ("\n", "\r"):
        return None
    end = _block_end(text, separator)
    start = _line_end(text, separator)
    return (start, end, " " + REDACTED) if end > start else None


def _block_end(text: str, separator: int) -> int:
    """The end of the lines after the separator's line that are indented deeper than it."""
    line_start = text.rfind("\n", 0, separator) + 1
    indent = len(text[line_start:separator]) - len(text[line_start:separator].lstrip(" \t"))
    end = _line_end(text, separator)
    position = end
    while position < len(text):
        next_start = position + (2 if text.startswith("\r\n", position) else 1)
        next_end = _line_end(text, next_start)
        line = text[next_start:next_end]
        if line.strip() and len(line) - len(line.lstrip(" \t")) <= indent:
            break
        if line.strip():
            end = next_end
        position = next_end
    return end


def _line_end(text: str, start: int) -> int:
    """Index of the first CR or LF at or after start, else the end of text."""
    ends = [i for i in (text.find("\n", start), text.find("\r", start)) if i >= 0]
    return min(ends) if ends else len(text)


def _bracket_end(text: str, start: int) -> int:
    """Index after the bracket closing the one at start, else the end of text.

    Quoted strings inside are skipped (``('a)', 'b')``); a quote with no closing one on
    its line is an apostrophe, not a string.
    """
    opening = text[start]
    closing = _OPENING[opening]
    depth = 0
    index = start
    size = len(text)
    while index < size:
        char = text[index]
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return index + 1
        elif char in "\"'" and opening != "<":
            close = _string_end(text, index)
            if close > 0:
                index = close
        index += 1
    return size


def _string_end(text: str, start: int) -> int:
    """Index of the quote closing the one at start on the same line (escapes kept), or -1."""
    quote = text[start]
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == quote:
            return index
        if char in "\r\n":
            return -1
        index += 1
    return -1


def quoted(value: str) -> str:
    """The marker inside the value's own quotes and prefix (a quote left open stays open)."""
    if value.startswith('\\"'):
        return '\\"' + REDACTED + ('\\"' if value.endswith('\\"') and len(value) > 3 else "")
    cut = 1 + min(i for i in (value.find('"'), value.find("'")) if i >= 0)
    closed = len(value) > cut and value[-1] == value[cut - 1]
    return value[:cut] + REDACTED + (value[-1] if closed else "")

"""Secrets known by their form rather than a table: the generic rules of secret scanners.

The tables (``_secret_keys``, ``_secret_values``) know names and vendor formats; this
pass (``redact_shapes``) catches what no table lists. It replaces

- a credential-like word after a secret key and linking words (``my api key is X``,
  ``password X`` as netrc writes it, ``token (X)``);
- a random-looking run (``looks_random``) of 20 to 256 base64 characters, wherever it
  is: upper and lower case letters and digits, and few pronounceable words. Hex (git
  SHAs, trace and span ids, digests), UUIDs, paths, identifiers and model names lack
  one of these. Base64 data with a file signature (images, PDFs), ``sha256-`` digests,
  publishable keys (``pk_live_``), typed ids (``msg_01X...``, ``chatcmpl-...``) and the
  values of data keys (``trace_id=``, ``next_token:``) are kept, as is everything when
  the caller says the text is a data key's value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from betty_otel._secret_keys import KEY_DATA, KEY_SECRET, WORDS
from betty_otel._secret_values import REDACTED, compiled, credential_like

__all__ = ["has_secret_stem", "looks_random", "redact_shapes"]

_NOT_VOWELS: Final = str.maketrans("", "", "aeiouyAEIOUY")
_NOT_SEPARATORS: Final = str.maketrans("", "", "+/=_-")

_SHORTEST_RUN: Final = 20
_SHORTEST_NEAR: Final = 12  # "key " and an 8-character credential
_RUN: Final = r"[A-Za-z0-9+/_\-]{20,}={0,2}"  # "=" only as base64 padding: key=value is two
_DIGIT: Final = r"[0-9]"
_PIECE_SEPARATORS: Final = r"[+/=_\-]"
_CAPITALS: Final = r"[A-Z]+"
_TYPED_ID: Final = r"[a-z]{2,12}[_\-][A-Za-z0-9]+"
_DIGEST: Final = r"(?:sha(?:1|224|256|384|512)|md5)[_\-]"
_FILE_SIGNATURES: Final = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR", "JVBERi0", "PHN2Zy", "UEsDB")
_PUBLIC_KEYS: Final = ("pk_live_", "pk_test_")  # Stripe publishable keys: public by design

_STEMS: Final = ("pass", "pwd", "secret", "token", "key", "cred", "auth", "otp")
"""Stems of the secret words, in lowercased text: where the generic rule looks for a name."""
_NAME_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_KEY_CHARS: Final = _NAME_CHARS | {"."}
_QUOTING: Final = " \t\"'\\"  # blanks and quotes (escaped too) between a key and its value
_HEAD_WORDS: Final = frozenset({"key", "keys", "code"})  # read with the word before them
# What may link a secret name to its value.
_LINK: Final = (
    r"(?:[ \t]*(?::|=|:=|=>|->)[ \t]*"
    r"|[ \t]+(?:(?:for|of)[ \t]+\S{1,64}[ \t]+)?(?:(?:is|was|are|of|to|set to|equals)[ \t]+)?"
    r"|[ \t]*[(\[][ \t]*)[\"'`]?"
    r"(?P<val>[^\s\"'`,;()\[\]{}<>*][^\s\"'`,;()\[\]{}<>]*)"
)
_TRAILING: Final = ".,!?:"


def looks_random(run: str) -> bool:
    """Whether a base64/base62 run is random (a key or token), not words or a hex digest.

    Random text in both cases and digits holds few pronounceable words: less than 40% of
    its letters and digits are in them (a random 40-character key about 10%, identifiers,
    paths and model names 60% or more).
    """
    if not _SHORTEST_RUN <= len(run) <= 256 or run.lower() == run or run.upper() == run:
        return False
    if compiled(_DIGIT).search(run) is None:
        return False
    return _word_letters(run) < len(run.translate(_NOT_SEPARATORS)) * 0.4


def _word_letters(run: str) -> int:
    """Letters of the run in words: lowercase ones (a capital may lead) of three or more
    letters, and whole upper-case pieces (``ERR_CONNECTION``), each with a vowel in five.
    """
    total = 0
    for piece in compiled(_PIECE_SEPARATORS).split(run):
        constant = piece.upper() == piece
        for word in (compiled(_CAPITALS) if constant else WORDS).findall(piece):
            if len(word) < 3 or word[0].isdigit() or (not constant and word.isupper()):
                continue
            if len(word) == 3 and not (constant or word.islower()):
                continue
            if (len(word) - len(word.translate(_NOT_VOWELS))) * 5 >= len(word):
                total += len(word)
    return total


def redact_shapes(text: str, key_kind: Callable[[str], int], *, random_runs: bool = True) -> str:
    """The generic pass: credentials after secret words, then random-looking runs.

    Each part first checks, cheaply, what it needs: a secret word's stem; a long text
    with both cases and a digit.
    """
    lowered = text.lower()
    if has_secret_stem(lowered):
        text = _redact_near_words(text, lowered, key_kind)
    if (
        random_runs
        and len(text) >= _SHORTEST_RUN
        and lowered != text
        and text.upper() != text
        and compiled(_DIGIT).search(text) is not None
    ):
        text = _redact_random_runs(text, key_kind)
    return text


def _redact_random_runs(text: str, key_kind: Callable[[str], int]) -> str:
    """Replace random-looking runs. Only words (between blanks) long enough to hold one
    are searched: a regex over the whole text would try a run at every character."""
    long_words = [word for word in text.split() if len(word) >= _SHORTEST_RUN]
    parts: list[str] = []
    last = 0
    position = 0
    for word in long_words:
        position = text.find(word, position)
        for run in compiled(_RUN).finditer(text, position, position + len(word)):
            shown = _random_repl(run, key_kind)
            if shown != run.group(0):
                parts += (text[last : run.start()], shown)
                last = run.end()
        position += len(word)
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


def has_secret_stem(lowered: str) -> bool:
    """Whether lowercased text is long enough for a secret word and a credential, and holds
    a secret word's stem (the generic rule's first test)."""
    return len(lowered) >= _SHORTEST_NEAR and any(stem in lowered for stem in _STEMS)


def _redact_near_words(text: str, lowered: str, key_kind: Callable[[str], int]) -> str:
    """Replace a credential-like word that follows a secret key and linking words."""
    parts: list[str] = []
    last = 0
    seen = 0  # the end of the last name looked at: a stem inside it is the same name
    for stem_start, stem_end in _stem_spans(lowered):
        if stem_start < max(last, seen):
            continue
        start, end = _word_bounds(text, stem_start, stem_end)
        seen = end
        if not _names_secret(text, start, end, key_kind):
            continue
        link = compiled(_LINK).match(text, end)
        if link is None:
            continue
        value = link.group("val").rstrip(_TRAILING)
        if REDACTED in value or not credential_like(value):
            continue
        value_start = link.start("val")
        parts += (text[last:value_start], REDACTED)
        last = value_start + len(value)
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


def _stem_spans(lowered: str) -> list[tuple[int, int]]:
    """Where the stems are, in order (a few ``find`` calls: cheaper than one regex scan)."""
    spans = []
    for stem in _STEMS:
        index = lowered.find(stem)
        while index >= 0:
            spans.append((index, index + len(stem)))
            index = lowered.find(stem, index + 1)
    return sorted(spans)


def _word_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The whole name around a stem found inside it."""
    while end < len(text) and text[end] in _NAME_CHARS:
        end += 1
    return _name_start(text, start, _NAME_CHARS), end


def _name_start(text: str, end: int, chars: frozenset[str]) -> int:
    """Where the name of these characters that ends at ``end`` starts (64 at most)."""
    start = end
    while start > 0 and end - start < 64 and text[start - 1] in chars:
        start -= 1
    return start


def _names_secret(text: str, start: int, end: int, key_kind: Callable[[str], int]) -> bool:
    """Whether the name (with the word before a head word: "api key") is a secret key."""
    word = text[start:end]
    if key_kind(word) == KEY_SECRET:
        return True
    if word.lower() not in _HEAD_WORDS or start < 2 or text[start - 1] != " ":
        return False
    before = _name_start(text, start - 1, _NAME_CHARS)
    return before < start - 1 and key_kind(f"{text[before : start - 1]} {word}") == KEY_SECRET


def _random_repl(match: re.Match[str], key_kind: Callable[[str], int]) -> str:
    """The marker for a random-looking run (its random pieces, in a path); else the run."""
    run = match.group(0)
    if not looks_random(run) or _kept(match, key_kind):
        return run
    pieces = run.split("/")
    if sum(piece.isalpha() and piece.islower() for piece in pieces) >= 2:  # a path
        shown = [REDACTED if looks_random(piece) else piece for piece in pieces]
        if REDACTED in shown:
            return "/".join(shown)
    return REDACTED


def _kept(match: re.Match[str], key_kind: Callable[[str], int]) -> bool:
    """Random-looking data that is no credential: typed ids, digests, files, data keys."""
    run = match.group(0)
    if compiled(_TYPED_ID).fullmatch(run) or compiled(_DIGEST).match(run):
        return True
    if run.startswith(_FILE_SIGNATURES + _PUBLIC_KEYS):
        return True
    text = match.string
    before = text[max(0, match.start() - 80) : match.start()].rstrip(_QUOTING)
    if before.endswith("base64,"):
        return True
    if not before.endswith((":", "=")):
        return False
    key_end = len(before[:-1].rstrip(_QUOTING))
    key_start = _name_start(before, key_end, _KEY_CHARS)
    return key_start < key_end and key_kind(before[key_start:key_end]) == KEY_DATA

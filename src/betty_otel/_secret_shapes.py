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

__all__ = ["SECRET_STEMS", "looks_random", "redact_shapes"]

_VOWELS: Final = frozenset("aeiouyAEIOUY")

_RUN: Final = r"[A-Za-z0-9+/_\-][A-Za-z0-9+/=_\-]{19,}"
_DIGIT: Final = r"[0-9]"
_PIECE_SEPARATORS: Final = r"[+/=_\-]"
_CAPITALS: Final = r"[A-Z]+"
_TYPED_ID: Final = r"[a-z]{2,12}[_\-][A-Za-z0-9]+"
_DIGEST: Final = r"(?:sha(?:1|224|256|384|512)|md5)[_\-]"
_FILE_SIGNATURES: Final = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR", "JVBERi0", "PHN2Zy", "UEsDB")
_PUBLIC_KEYS: Final = ("pk_live_", "pk_test_")  # Stripe publishable keys: public by design
_KEY_BEFORE: Final = r"([A-Za-z0-9_.\-]{1,64})[\"']?[ \t]*[:=][ \t]*[\"']?$"

SECRET_STEMS: Final = r"pass|pwd|secret|token|key|cred|auth|pin|otp"  # noqa: S105 - a regex
"""A secret word's stem, in lowercased text: where the generic rule looks for a name."""
# What may link a secret name to its value.
_NAME: Final = r"[A-Za-z0-9_\-]"
_HEAD_WORDS: Final = frozenset({"key", "keys", "code"})
_LINK: Final = (
    r"(?:[ \t]*(?::|=|:=|=>|->)[ \t]*|[ \t]+(?:(?:is|was|are|of|to|set to|equals)[ \t]+)?"
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
    if not 20 <= len(run) <= 256 or run.lower() == run or run.upper() == run:
        return False
    if compiled(_DIGIT).search(run) is None:
        return False
    alnum = sum(char.isalnum() for char in run)
    return _word_letters(run) < alnum * 0.4


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
            if sum(char in _VOWELS for char in word) * 5 >= len(word):
                total += len(word)
    return total


def redact_shapes(text: str, key_kind: Callable[[str], int], *, random_runs: bool = True) -> str:
    """The generic pass: credentials after secret words, then random-looking runs."""
    text = _redact_near_words(text, key_kind)
    if random_runs and len(text) >= 20:
        text = compiled(_RUN).sub(lambda match: _random_repl(match, key_kind), text)
    return text


def _redact_near_words(text: str, key_kind: Callable[[str], int]) -> str:
    """Replace a credential-like word that follows a secret key and linking words."""
    lowered = text.lower()
    parts: list[str] = []
    last = 0
    for stem in compiled(SECRET_STEMS).finditer(lowered):
        if stem.start() < last:
            continue
        start, end = _word_bounds(text, stem.start(), stem.end())
        if not _names_secret(text, start, end, key_kind):
            continue
        link = compiled(_LINK).match(text, end)
        if link is None:
            continue
        value = link.group("val").rstrip(_TRAILING)
        if not credential_like(value):
            continue
        value_start = link.start("val")
        parts += (text[last:value_start], REDACTED)
        last = value_start + len(value)
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


def _word_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The whole name around a stem found inside it."""
    name = compiled(_NAME)
    while start > 0 and name.match(text, start - 1):
        start -= 1
    while end < len(text) and name.match(text, end):
        end += 1
    return start, end


def _names_secret(text: str, start: int, end: int, key_kind: Callable[[str], int]) -> bool:
    """Whether the name (with the word before a head word: "api key") is a secret key."""
    word = text[start:end]
    if key_kind(word) == KEY_SECRET:
        return True
    if word.lower() not in _HEAD_WORDS or start < 2 or text[start - 1] != " ":
        return False
    before = start - 1
    while before > 0 and compiled(_NAME).match(text, before - 1):
        before -= 1
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
    before = match.string[max(0, match.start() - 80) : match.start()]
    if before.endswith("base64,"):
        return True
    key = compiled(_KEY_BEFORE).search(before)
    return key is not None and key_kind(key.group(1)) == KEY_DATA

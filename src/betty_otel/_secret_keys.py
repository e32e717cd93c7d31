"""Which key names name secrets: the rule, and the tables it reads.

A key is a dict key, a parameter name, a header name, a command-line option, an XML
element or the ``key`` of ``key=value`` inside text. Keys recur on every call, so each
decision is cached; the tables are plain data, documented in the README, and extended
at run time through ``betty_otel.redaction``.

The rule, in order:

1. Split the key into lowercase words at separators (``-_.``, spaces, ``:``), case
   changes and digit runs: ``apiKey2`` -> ``api key 2``, ``X-CSRF-Token`` -> ``x csrf
   token``, ``2fa_code`` -> ``2 fa code``.
2. Drop trailing ``QUALIFIERS`` (version numbers, ``confirmation``, ``value``, ``hash``,
   ...), keeping at least one word: ``password_confirmation``, ``password2``,
   ``token_v2`` and ``secret_value`` are read as ``password``, ``token``, ``secret``.
3. Join the words (``apikey``). ``NOT_SECRET_ENDINGS`` wins first: tokenizer fields
   (``pad_token``, ``eos_token``) and pagination tokens (``next_page_token``,
   ``NextToken``) are not credentials.
4. Secret when the joined name is one of ``SECRET_NAMES`` or ends with one of
   ``SECRET_ENDINGS`` (so ``db_password``, ``githubToken``, ``new_password``,
   ``aws_secret_access_key``, ``JSESSIONID``). Counters such as ``max_tokens``,
   ``total_tokens``, ``token_count`` or ``pad_token_id`` end with another word and stay.
"""

from __future__ import annotations

import functools
import re
from typing import Final

__all__ = [
    "NOT_SECRET_ENDINGS",
    "QUALIFIERS",
    "SECRET_ENDINGS",
    "SECRET_NAMES",
    "default_secret_key",
    "normalise_key",
]

SECRET_NAMES: Final[frozenset[str]] = frozenset(
    {
        # Whole names only: as endings they would catch ordinary words ("spin", "oauth").
        "auth", "pwd", "pin", "pass", "bearer", "jwt", "signature", "sig", "dsn",
        "connectionstring", "connstr", "ssn", "creditcard", "cvv", "cvc", "csrf", "xsrf",
        # framework cookies and settings: Node connect.sid, Laravel, CodeIgniter, Rack,
        # Azure storage AccountKey
        "connectsid", "laravelsession", "cisession", "racksession", "accountkey",
    }
)  # fmt: skip
"""Joined names that are secrets as a whole key (after dropping qualifiers)."""

SECRET_ENDINGS: Final[tuple[str, ...]] = (
    # passwords and secrets, with their plurals
    "password", "passwords", "passwd", "passphrase", "passphrases", "passcode",
    "passcodes", "secret", "secrets", "credential", "credentials",
    # tokens ("tokens" alone counts text tokens: only these plurals are credentials)
    "token", "apitokens", "accesstokens", "authtokens", "refreshtokens", "idtokens",
    "sessiontokens", "bearertokens",
    # keys
    "apikey", "apikeys", "accesskey", "accesskeys", "secretkey", "secretkeys",
    "privatekey", "privatekeys", "signingkey", "signingkeys", "encryptionkey",
    "encryptionkeys", "decryptionkey", "masterkey", "hmackey", "sessionkey", "licensekey",
    # HTTP
    "authorization", "cookie", "cookies", "setcookie",
    # sessions (Java JSESSIONID, PHP PHPSESSID, ASP.NET_SessionId, Django sessionid)
    "sessionid", "sessid",
    # one-time and verification codes
    "otp", "totp", "hotp", "otpcode", "mfacode", "2facode", "twofactorcode",
    "verificationcode", "authcode", "authorizationcode", "securitycode", "smscode",
    "recoverycode", "recoverycodes", "backupcode", "backupcodes", "resetcode",
    # payment cards
    "cardnumber",
)  # fmt: skip
"""Joined-name endings that make a key secret: ``db_password``, ``client_secret``, ..."""

NOT_SECRET_ENDINGS: Final[tuple[str, ...]] = (
    # tokenizer fields of ML libraries: the text of a special token, never a credential
    "bostoken", "eostoken", "padtoken", "unktoken", "septoken", "clstoken", "masktoken",
    "starttoken", "endtoken", "specialtoken",
    # pagination tokens: opaque cursors, useful to keep
    "nexttoken", "pagetoken", "continuationtoken", "resumetoken", "synctoken",
    "paginationtoken", "cursortoken", "prevtoken", "previoustoken",
)  # fmt: skip
"""Joined-name endings that are never secret, even though they end like one."""

QUALIFIERS: Final[frozenset[str]] = frozenset(
    {
        "confirmation", "confirm", "confirmed", "again", "repeat", "repeated", "retype",
        "value", "values", "plain", "plaintext", "raw", "clear", "cleartext", "hash",
        "hashed", "digest", "salt", "enc", "encrypted", "encoded", "b", "base", "old",
        "new", "current", "prev", "previous", "orig", "original", "v", "str",
        "bytes",
    }
)  # fmt: skip
"""Trailing words that qualify a secret without changing what it is (digits too)."""

_WORDS: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SEPARATORS: Final = str.maketrans("", "", "-_. ")
_CACHE_MAX_LEN: Final = 256  # longer keys are classified uncached (the cache pins them)


def normalise_key(key: str) -> str:
    """Lowercase and drop ``-_.`` and spaces: every spelling of a name compares equal."""
    return key.lower().translate(_SEPARATORS)


def _classify(key: str) -> bool:
    """The rule of the module docstring, uncached."""
    words = [word.lower() for word in _WORDS.findall(key)]
    while len(words) > 1 and (words[-1] in QUALIFIERS or words[-1].isdigit()):
        words.pop()
    joined = "".join(words)
    if joined.endswith(NOT_SECRET_ENDINGS):
        return False
    return joined in SECRET_NAMES or joined.endswith(SECRET_ENDINGS)


@functools.lru_cache(maxsize=4096)
def _classify_cached(key: str) -> bool:
    return _classify(key)


def default_secret_key(key: str) -> bool:
    """Whether a (raw) key names a secret by the default rule; cached for short keys."""
    return _classify_cached(key) if len(key) <= _CACHE_MAX_LEN else _classify(key)

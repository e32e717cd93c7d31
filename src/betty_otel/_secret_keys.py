"""Which key names name secrets: the rule, and the tables it reads.

A key is a dict key, a parameter name, a header name, a command-line option, an XML
element or the ``key`` of ``key=value`` inside text. Keys recur on every call, so each
decision is cached; the tables are plain data, documented in the README, and extended
at run time through ``betty_otel.redaction``.

The rule gives a key one of four kinds (``key_kind``):

1. Split the key into lowercase words at separators (``-_.``, spaces, ``:``), case
   changes and digit runs: ``apiKey2`` -> ``api key 2``, ``X-CSRF-Token`` -> ``x csrf
   token``, ``2fa_code`` -> ``2 fa code``. Words run together stay one word
   (``userpass``), which is why the tables compare endings of the joined name.
2. ``KEY_SECRET`` when the joined words are one of ``SECRET_NAMES`` or end with one of
   ``SECRET_ENDINGS`` (``db_password``, ``userpass``, ``githubToken``, ``client_key``,
   ``JSESSIONID``), unless they end with one of ``NOT_SECRET_ENDINGS`` (tokenizer and
   pagination tokens, ``bypass``, ``lowpass``); if not, a trailing word of
   ``QUALIFIERS`` (version numbers, ``confirmation``, ``hash``, ``pem``, ...), or
   ``id`` after ``key``, is dropped and the test repeated: ``password_confirmation``,
   ``token_v2``, ``private_key_pem`` and ``private_key_id`` are secrets.
3. ``KEY_SHAPED`` for ``SHAPED_NAMES`` (``session``, ``sid``, ``code``, ``ticket``) and
   ``SHAPED_ENDINGS`` (``user_session``):
   ordinary words that hold a credential only when their value is shaped like one.
4. ``KEY_DATA`` for identifiers, digests and cursors (the last word is one of
   ``DATA_WORDS``: ``trace_id``, ``sha256``, ``etag``, ...) and for the names that
   ``NOT_SECRET_ENDINGS`` keeps: their values are useful data that merely look random,
   so the generic high-entropy rule leaves them alone (format rules still apply).
5. ``KEY_PLAIN`` otherwise. Counters such as ``max_tokens``, ``token_count`` or
   ``pad_token_id`` end with another word and are plain or data.
"""

from __future__ import annotations

import functools
import re
from typing import Final

__all__ = [
    "DATA_WORDS",
    "KEY_DATA",
    "KEY_PLAIN",
    "KEY_SECRET",
    "KEY_SHAPED",
    "NOT_SECRET_ENDINGS",
    "QUALIFIERS",
    "SECRET_ENDINGS",
    "SECRET_NAMES",
    "SHAPED_ENDINGS",
    "SHAPED_NAMES",
    "WORDS",
    "default_key_kind",
    "normalise_key",
]

KEY_PLAIN: Final = 0
"""An ordinary key: its value goes through the value detectors only."""
KEY_SECRET: Final = 1
"""A secret key: its value is replaced whole, whatever its type."""
KEY_SHAPED: Final = 2
"""A key whose value is replaced when it is shaped like a credential (``session``)."""
KEY_DATA: Final = 3
"""An identifier, digest or cursor: kept even when it looks random."""

SECRET_NAMES: Final[frozenset[str]] = frozenset(
    {
        # Whole names only: as endings they would catch ordinary words ("spin", "oauth").
        "auth", "pin", "bearer", "jwt", "signature", "sig", "hmac", "ssn", "creditcard",
        "cvv", "cvc", "csrf", "xsrf",
        # framework cookies and settings: Node connect.sid, Laravel, CodeIgniter, Rack
        "connectsid", "laravelsession", "cisession", "racksession",
    }
)  # fmt: skip
"""Joined names that are secrets as a whole key."""

SECRET_ENDINGS: Final[tuple[str, ...]] = (
    # passwords and secrets, with their plurals and run-together short forms
    # (userpass, pgpass, dbpwd, rootpw)
    "password", "passwords", "passwd", "pass", "pwd", "pw", "passphrase", "passphrases",
    "passcode", "passcodes", "passkey", "secret", "secrets", "credential", "credentials",
    # tokens ("tokens" alone counts text tokens: only these plurals are credentials)
    "token", "apitokens", "accesstokens", "authtokens", "refreshtokens", "idtokens",
    "sessiontokens", "bearertokens",
    # keys: a key named by what it does or who holds it (a "cache_key" or "partition_key"
    # is not among them)
    "apikey", "apikeys", "accesskey", "accesskeys", "secretkey", "secretkeys",
    "privatekey", "privatekeys", "privkey", "signingkey", "signingkeys", "signkey",
    "encryptionkey", "encryptionkeys", "encryptkey", "decryptionkey", "cryptkey",
    "masterkey", "hmackey", "aeskey", "symmetrickey", "sessionkey", "licensekey",
    "clientkey", "serverkey", "appkey", "authkey", "sharedkey", "sharedaccesskey",
    "sshkey", "deploykey", "rootkey", "adminkey", "writekey", "jwtkey", "saskey",
    "accountkey", "storagekey", "subscriptionkey", "functionskey", "consumerkey",
    # connection strings and DSNs (they hold passwords), wallet seed phrases
    "dsn", "connectionstring", "connstr", "mnemonic", "seedphrase", "recoveryphrase",
    # HTTP, signed URLs (X-Amz-Signature, X-Goog-Signature)
    "authorization", "cookie", "cookies", "setcookie", "amzsignature", "googsignature",
    # sessions (Java JSESSIONID, PHP PHPSESSID, ASP.NET_SessionId, Django sessionid)
    "sessionid", "sessid",
    # one-time and verification codes
    "otp", "totp", "hotp", "otpcode", "mfacode", "2facode", "twofactorcode",
    "verificationcode", "authcode", "authorizationcode", "securitycode", "smscode",
    "recoverycode", "recoverycodes", "backupcode", "backupcodes", "resetcode", "pincode",
    # payment cards
    "cardnumber",
)  # fmt: skip
"""Joined-name endings that make a key secret: ``db_password``, ``client_secret``, ..."""

NOT_SECRET_ENDINGS: Final[tuple[str, ...]] = (
    # tokenizer fields of ML libraries: the text of a special token, never a credential
    "bostoken", "eostoken", "padtoken", "unktoken", "septoken", "clstoken", "masktoken",
    "starttoken", "endtoken", "specialtoken",
    # pagination tokens: opaque cursors that page through what the caller may already
    # read; they grant nothing on their own, and are what one needs to debug paging
    "nexttoken", "pagetoken", "continuationtoken", "resumetoken", "synctoken",
    "paginationtoken", "cursortoken", "prevtoken", "previoustoken",
    # words and passes that end in "pass" (filters, render passes, roads)
    "bypass", "compass", "encompass", "trespass", "surpass", "overpass", "underpass",
    "lowpass", "highpass", "bandpass", "allpass", "multipass", "singlepass", "onepass",
    "twopass", "firstpass", "secondpass", "finalpass", "fullpass", "mainpass", "subpass",
    "prepass", "postpass", "renderpass", "shaderpass", "depthpass", "shadowpass",
    "forwardpass", "backwardpass", "backpass",
    # the shell's previous working directory
    "oldpwd",
)  # fmt: skip
"""Joined-name endings that are never secret, even though they end like one."""

QUALIFIERS: Final[frozenset[str]] = frozenset(
    {
        "confirmation", "confirm", "confirmed", "again", "repeat", "repeated", "retype",
        "value", "values", "plain", "plaintext", "raw", "clear", "cleartext", "hash",
        "hashed", "digest", "salt", "enc", "encrypted", "encoded", "b", "base", "old",
        "new", "current", "prev", "previous", "orig", "original", "v", "str",
        "bytes", "string", "pem", "der", "b64", "base64", "hex", "json", "blob", "data",
        "content", "contents", "material",
    }
)  # fmt: skip
"""Trailing words that qualify a secret without changing what it is (digits too)."""

SHAPED_NAMES: Final[frozenset[str]] = frozenset({"session", "sess", "sid", "code", "ticket"})
"""Joined names secret only when their value is shaped like a credential."""
SHAPED_ENDINGS: Final[tuple[str, ...]] = ("session",)
"""Joined-name endings of the same kind: ``user_session``, ``X-Session``."""

DATA_WORDS: Final[frozenset[str]] = frozenset(
    {
        "id", "ids", "uuid", "uuids", "guid", "ulid", "sha", "sha1", "sha256", "sha512",
        "md5", "hash", "hashes", "digest", "checksum", "crc", "crc32", "etag", "cursor",
        "commit", "revision", "rev", "fingerprint", "nonce",
    }
)  # fmt: skip
"""Last words of keys whose values are identifiers or digests (``trace_id``, ``sha256``)."""

_KEY_WORDS: Final = ("key", "keys")  # "private_key_id", "apikey_id": the id of a secret key
WORDS: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
"""Words of a name: runs of one case (a capital may start a lowercase run) and digits."""
_SEPARATORS: Final = str.maketrans("", "", "-_. ")
_CACHE_MAX_LEN: Final = 256  # longer keys are classified uncached (the cache pins them)


def normalise_key(key: str) -> str:
    """Lowercase and drop ``-_.`` and spaces: every spelling of a name compares equal."""
    return key.lower().translate(_SEPARATORS)


def _secret_words(words: list[str]) -> bool:
    """Step 2 of the rule: the words, then the words without each trailing qualifier."""
    while words:
        joined = "".join(words)
        if joined.endswith(NOT_SECRET_ENDINGS):
            return False
        if joined in SECRET_NAMES or joined.endswith(SECRET_ENDINGS):
            return True
        last = words[-1]
        key_id = last in ("id", "ids") and len(words) > 1 and words[-2].endswith(_KEY_WORDS)
        if len(words) < 2 or not (last in QUALIFIERS or last.isdigit() or key_id):
            return False
        words = words[:-1]
    return False


def _classify(key: str) -> int:
    """The kind the module docstring's rule gives a key, uncached."""
    words = [word.lower() for word in WORDS.findall(key)]
    if not words:
        return KEY_PLAIN
    if _secret_words(words):
        return KEY_SECRET
    joined = "".join(words)
    if joined in SHAPED_NAMES or joined.endswith(SHAPED_ENDINGS):
        return KEY_SHAPED
    if words[-1] in DATA_WORDS or joined.endswith(NOT_SECRET_ENDINGS):
        return KEY_DATA
    return KEY_PLAIN


@functools.lru_cache(maxsize=4096)
def _classify_cached(key: str) -> int:
    return _classify(key)


def default_key_kind(key: str) -> int:
    """The kind of a (raw) key by the default rule; cached for short keys."""
    return _classify_cached(key) if len(key) <= _CACHE_MAX_LEN else _classify(key)

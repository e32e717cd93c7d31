"""Secret values inside text: the detectors that need no key, as one table.

Each detector is a ``ValueRule``: literals (``triggers``) of which every match holds one,
so the pattern runs only when one is present, and the replacement. ``VALUE_RULES`` is
applied in order (``CONTEXT_RULES``, then ``TOKEN_RULES``) by
``betty_otel._redact.Redactor`` before ``key=value`` pairs: whole
blocks and URL/scheme credentials first, as a pair would otherwise take ``Bearer`` as
the value and leave the token. ``VENDOR_TOKENS`` lists the token formats (well-known
prefixes, low false-positive bodies); each match is replaced whole.

Speed: sre skips fast to a literal or one-charset prefix, but any leading lookbehind or
alternation makes it try the whole pattern at every position (~1 ms per 4 KB). So each
pattern starts with its literal and boundaries are lookbehinds placed after it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NamedTuple

__all__ = [
    "CONTEXT_RULES",
    "REDACTED",
    "SHORTEST_TOKEN",
    "TOKEN_RULES",
    "VALUE_RULES",
    "VENDOR_TOKENS",
    "ValueRule",
]

REDACTED: Final = "***REDACTED***"


class ValueRule(NamedTuple):
    """One detector of secret values inside text."""

    name: str
    """What it finds, for the documentation and tests."""
    triggers: tuple[str, ...]
    """Literals of which every match contains one: the pattern runs only if one is present."""
    fold_case: bool
    """Whether the triggers are looked for in the lowercased text."""
    pattern: re.Pattern[str]
    replacement: str | Callable[[re.Match[str]], str]


VENDOR_TOKENS: Final[tuple[tuple[str, str, str], ...]] = (
    # (vendor, literal prefix, body after it). Publishable keys (Stripe pk_live_) are
    # public by design and kept.
    ("GitHub", "gh", r"[pousr]_[A-Za-z0-9]{20,}"),
    ("GitHub fine-grained", "github_pat_", r"[A-Za-z0-9_]{20,}"),
    ("OpenAI, Anthropic (sk-proj-, sk-ant-)", "sk-", r"[A-Za-z0-9_\-]{20,}"),
    ("Stripe secret and restricted keys", "sk_", r"(?:live|test)_[A-Za-z0-9]{16,}"),
    ("Stripe restricted keys", "rk_", r"(?:live|test)_[A-Za-z0-9]{16,}"),
    ("Stripe webhook secrets", "whsec_", r"[A-Za-z0-9]{24,}"),
    ("Slack", "xox", r"[abeoprs]-[A-Za-z0-9\-]{10,}"),
    ("Slack app-level", "xapp-", r"[0-9]-[A-Za-z0-9\-]{20,}"),
    ("AWS access key ids", "AKIA", r"[0-9A-Z]{16}"),
    ("AWS temporary key ids", "ASIA", r"[0-9A-Z]{16}"),
    ("Google API keys", "AIza", r"[0-9A-Za-z_\-]{35}"),
    ("Google OAuth access tokens", "ya29.", r"[0-9A-Za-z_\-]{20,}"),
    ("Google OAuth client secrets", "GOCSPX-", r"[0-9A-Za-z_\-]{20,}"),
    ("GitLab tokens", "gl", r"(?:pat|dt|ptt|rt|oas|cbt|ft|imt|soat|ffct)-[A-Za-z0-9_\-]{20,}"),
    ("Grafana service-account and cloud tokens", "gl", r"(?:sa|c)_[A-Za-z0-9_+/]{32,}=*"),
    ("npm", "npm_", r"[A-Za-z0-9]{36}"),
    ("PyPI", "pypi-", r"[A-Za-z0-9_\-]{50,}"),
    ("Hugging Face", "hf_", r"[A-Za-z0-9]{30,}"),
    ("SendGrid", "SG.", r"[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"),
    ("Twilio API keys", "SK", r"[0-9a-fA-F]{32}(?![0-9A-Za-z])"),
    ("Square", "sq0", r"(?:atp|csp)-[A-Za-z0-9_\-]{22,}"),
    ("Square access tokens", "EAAA", r"[A-Za-z0-9_\-+=]{40,}"),
    ("Shopify", "shp", r"(?:at|ss|ca|pa)_[a-fA-F0-9]{32}"),
    ("DigitalOcean personal access tokens", "dop_v1_", r"[a-f0-9]{64}"),
    ("DigitalOcean OAuth tokens", "doo_v1_", r"[a-f0-9]{64}"),
    ("DigitalOcean refresh tokens", "dor_v1_", r"[a-f0-9]{64}"),
    ("Doppler", "dp.", r"(?:pt|st|ct|sa|scim|audit)\.[A-Za-z0-9]{40,}"),
    ("Postman", "PMAK-", r"[A-Fa-f0-9]{24}-[A-Fa-f0-9]{34}"),
    ("Atlassian API tokens", "ATATT", r"[A-Za-z0-9_\-=]{50,}"),
    ("Vault service, batch and recovery tokens", "hv", r"[sbr]\.[A-Za-z0-9_\-]{24,}"),
    ("Databricks", "dapi", r"[a-f0-9]{32}(?:-[0-9])?"),
    ("Linear", "lin_api_", r"[A-Za-z0-9]{40}"),
    ("Notion integration tokens", "secret_", r"[A-Za-z0-9]{43}(?![A-Za-z0-9])"),
    ("Notion tokens", "ntn_", r"[A-Za-z0-9]{40,}"),
    ("Mailgun", "key-", r"[a-f0-9]{32}(?![0-9A-Za-z])"),
    ("Sentry", "sntry", r"[su]_[A-Za-z0-9_+/=]{40,}"),
    ("New Relic", "NRAK-", r"[A-Z0-9]{27}"),
    ("age secret keys", "AGE-SECRET-KEY-1", r"[0-9A-Z]{58}"),
)
"""Token formats replaced whole wherever they appear: (vendor, prefix, body regex)."""


def _token_rule(vendor: str, prefix: str, body: str) -> ValueRule:
    """A vendor token: its literal prefix (not inside a longer word), then its body."""
    escaped = re.escape(prefix)
    pattern = re.compile(f"{escaped}(?<![A-Za-z0-9]{escaped}){body}")
    return ValueRule(vendor, (prefix,), False, pattern, REDACTED)


_PEM: Final = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----.*?"
    r"(?:-----END[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----|\Z)",
    re.DOTALL,
)
# scheme://user:password@host: the password may hold "/", "#", "+", "?" or "@"; it ends
# at the first "@" after which the host runs, without another "@", to "/?#", a space or
# the end. A port ("host:8080/path?mail=a@b") is not a password.
_URL_CREDS: Final = re.compile(
    r"(://[^\s/?#@:]*:)(?![0-9]+(?:[/?#\s]|$))\S+?@(?=[^\s@/?#]*(?:[\s/?#]|$))"
)
_AUTH_SCHEME: Final = re.compile(
    r"[Bb](?<![A-Za-z0-9_][Bb])(?:[Ee][Aa][Rr][Ee][Rr]|[Aa][Ss][Ii][Cc])[ \t]+"
    r"([A-Za-z0-9\-._~+/]+=*)"
)
_JWT: Final = re.compile(
    r"eyJ(?<![A-Za-z0-9_\-]eyJ)[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*"
)
_SLACK_WEBHOOK: Final = re.compile(r"(hooks\.slack\.com/services/[A-Z0-9]+/[A-Z0-9]+/)[A-Za-z0-9]+")
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


CONTEXT_RULES: Final[tuple[ValueRule, ...]] = (
    ValueRule("PEM private key blocks", ("-----BEGIN",), False, _PEM, REDACTED),
    ValueRule("URL passwords (user kept)", ("://",), False, _URL_CREDS, rf"\1{REDACTED}@"),
    ValueRule("Bearer/Basic credentials", ("bearer", "basic"), True, _AUTH_SCHEME, _auth_repl),
    ValueRule("Slack webhook URLs", ("hooks.slack.com",), False, _SLACK_WEBHOOK, rf"\1{REDACTED}"),
)
"""Detectors of a secret by what surrounds it, in the order they run."""

SHORTEST_TOKEN: Final = 20
"""No rule of TOKEN_RULES matches text shorter than this."""

TOKEN_RULES: Final[tuple[ValueRule, ...]] = (
    ValueRule("JWTs", ("eyJ",), False, _JWT, REDACTED),
    *(_token_rule(*token) for token in VENDOR_TOKENS),
)
"""Detectors of a secret by its own form (case-sensitive prefixes), after CONTEXT_RULES."""

VALUE_RULES: Final = CONTEXT_RULES + TOKEN_RULES
"""All key-free detectors, in the order they run."""

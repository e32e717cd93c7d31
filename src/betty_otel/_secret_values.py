"""Secret values inside text: the detectors that need no key, as one table.

Each detector is a ``ValueRule``: literals (``triggers``) of which every match holds one,
so the pattern runs only when one is present, and the replacement. ``VALUE_RULES`` is
applied in order (``CONTEXT_RULES``, then ``TOKEN_RULES``) by
``betty_otel._redact.Redactor`` before ``key=value`` pairs: whole
blocks and URL/scheme credentials first, as a pair would otherwise take ``Bearer`` as
the value and leave the token. ``VENDOR_TOKENS`` lists the token formats (well-known
prefixes, low false-positive bodies); each match is replaced whole. The forms the
rules and the pairs share are here too: ``token_shaped`` and ``credential_like``.

Cost: a pattern is compiled the first time it is needed (``compiled``), so a process
that records a few plain values never compiles the hundred patterns of the tables.
sre skips fast to a literal or one-charset prefix, but any leading lookbehind or
alternation makes it try the whole pattern at every position (~1 ms per 4 KB). So each
pattern starts with its literal and boundaries are lookbehinds placed after it.
"""

# No ``from __future__ import annotations`` here: ValueRule's field types must be objects.
# typing compiles a type given as a string, and the first compile() of a process sets up
# Python's AST types, about 2 ms (7%) of a ``betty-telemetry capture``.
import functools
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
    "compiled",
    "credential_like",
    "token_shaped",
]

REDACTED: Final = "***REDACTED***"


@functools.cache
def compiled(source: str, flags: int = 0) -> re.Pattern[str]:
    """The regex of source, compiled on first use and then shared (never recompiled)."""
    return re.compile(source, flags)


class ValueRule(NamedTuple):
    """One detector of secret values inside text."""

    name: str
    """What it finds, for the documentation and tests."""
    triggers: tuple[str, ...]
    """Literals of which every match contains one: the pattern runs only if one is present."""
    fold_case: bool
    """Whether the triggers are looked for in the lowercased text."""
    source: str
    """The regex, compiled on first use (``pattern``)."""
    replacement: str | Callable[[re.Match[str]], str]
    flags: int = 0

    @property
    def pattern(self) -> re.Pattern[str]:
        """The compiled regex."""
        return compiled(self.source, self.flags)


# Bodies of generic-looking prefixes ("pa-", "ck-") must hold a digit and a capital, so
# that a slug which starts the same way ("pa-long-page-name") is not a token.
_MIXED: Final = r"(?=[A-Za-z0-9_\-]*[0-9])(?=[A-Za-z0-9_\-]*[A-Z])"

VENDOR_TOKENS: Final[tuple[tuple[str, str, str], ...]] = (
    # (vendor, literal prefix, body after it). Publishable keys (Stripe pk_live_, Mapbox
    # pk.) are public by design and kept.
    # code hosts and registries
    ("GitHub", "gh", r"[pousr]_[A-Za-z0-9]{20,}"),
    ("GitHub fine-grained", "github_pat_", r"[A-Za-z0-9_]{20,}"),
    ("GitLab tokens", "gl",
     r"(?:pat|dt|ptt|rt|oas|cbt|ft|imt|soat|ffct|agent|wt)-[A-Za-z0-9_\-]{20,}"),
    ("GitLab runner registration tokens", "GR1348941", r"[A-Za-z0-9_\-]{20,}"),
    ("npm", "npm_", r"[A-Za-z0-9]{36}"),
    ("PyPI", "pypi-", r"[A-Za-z0-9_\-]{50,}"),
    ("RubyGems", "rubygems_", r"[a-f0-9]{48}"),
    ("NuGet", "oy2", r"[a-z0-9]{43}"),
    ("Docker Hub", "dckr_pat_", r"[A-Za-z0-9_\-]{20,}"),
    ("JFrog API keys", "AKCp", r"[A-Za-z0-9]{60,}"),
    ("JFrog reference tokens", "cmVmd", r"[A-Za-z0-9]{50,}"),
    # AI and vector databases
    ("OpenAI, Anthropic, DeepSeek, OpenRouter (sk-proj-, sk-ant-, sk-or-)", "sk-",
     r"[A-Za-z0-9_\-]{20,}"),
    ("Groq", "gsk_", r"[A-Za-z0-9]{40,}"),
    ("Hugging Face", "hf_", r"[A-Za-z0-9]{30,}"),
    ("Hugging Face organisation tokens", "api_org_", r"[A-Za-z0-9]{30,}"),
    ("Replicate", "r8_", r"[A-Za-z0-9]{30,}"),
    ("Perplexity", "pplx-", r"[A-Za-z0-9]{40,}"),
    ("xAI", "xai-", r"[A-Za-z0-9]{60,}"),
    ("ElevenLabs", "sk_", r"[a-f0-9]{40,}"),
    ("LangSmith", "lsv2_", r"(?:pt|sk)_[A-Za-z0-9_]{30,}"),
    ("LlamaCloud", "llx-", r"[A-Za-z0-9]{30,}"),
    ("Tavily", "tvly-", r"[A-Za-z0-9\-]{24,}"),
    ("Fireworks AI", "fw_", _MIXED + r"[A-Za-z0-9]{20,}"),
    ("Voyage AI", "pa-", _MIXED + r"[A-Za-z0-9_\-]{40,}"),
    ("Pinecone", "pcsk_", r"[A-Za-z0-9_]{40,}"),
    ("Chroma Cloud", "ck-", _MIXED + r"[A-Za-z0-9]{30,}"),
    ("NVIDIA", "nvapi-", r"[A-Za-z0-9_\-]{40,}"),
    ("Cerebras", "csk-", r"[a-z0-9]{40,}"),
    ("Together AI", "tgp_v1_", r"[A-Za-z0-9_\-]{30,}"),
    ("Jina AI", "jina_", r"[A-Za-z0-9_\-]{40,}"),
    ("Firecrawl", "fc-", r"[a-f0-9]{32}"),
    ("turbopuffer", "tpuf_", r"[A-Za-z0-9]{30,}"),
    ("E2B", "e2b_", r"[a-f0-9]{40}"),
    ("Neon", "napi_", r"[A-Za-z0-9]{40,}"),
    # clouds
    ("AWS access key ids", "AKIA", r"[0-9A-Z]{16}"),
    ("AWS temporary key ids", "ASIA", r"[0-9A-Z]{16}"),
    ("AWS key ids (ABIA)", "ABIA", r"[0-9A-Z]{16}"),
    ("AWS key ids (ACCA)", "ACCA", r"[0-9A-Z]{16}"),
    ("AWS key ids (A3T)", "A3T", r"[0-9A-Z]{17}"),
    ("AWS session tokens", "IQoJb3JpZ2lu", r"[A-Za-z0-9+/=]{40,}"),
    ("AWS session tokens (older)", "FwoGZXIvYXdz", r"[A-Za-z0-9+/=]{40,}"),
    ("Amazon Bedrock API keys", "ABSK", r"[A-Za-z0-9+/]{100,}={0,2}"),
    ("Google API keys", "AIza", r"[0-9A-Za-z_\-]{35}"),
    ("Google OAuth access tokens", "ya29.", r"[0-9A-Za-z_\-]{20,}"),
    ("Google OAuth refresh tokens", "1//0", r"[0-9A-Za-z_\-]{30,}"),
    ("Google OAuth client secrets", "GOCSPX-", r"[0-9A-Za-z_\-]{20,}"),
    ("DigitalOcean personal access tokens", "dop_v1_", r"[a-f0-9]{64}"),
    ("DigitalOcean OAuth tokens", "doo_v1_", r"[a-f0-9]{64}"),
    ("DigitalOcean refresh tokens", "dor_v1_", r"[a-f0-9]{64}"),
    ("Heroku", "HRKU-", r"[A-Za-z0-9_\-]{50,}"),
    ("Cloudflare Origin CA keys", "v1.0-", r"[a-f0-9]{24}-[a-f0-9]{100,}"),
    ("Supabase personal tokens", "sbp_", r"[a-f0-9]{40}"),
    ("Supabase secret keys", "sb_secret_", r"[A-Za-z0-9_\-]{20,}"),
    ("Netlify", "nfp_", r"[A-Za-z0-9]{36,}"),
    ("Fly.io", "fo1_", r"[A-Za-z0-9_\-]{40,}"),
    ("Fly.io macaroons", "fm", r"(?:1[ar]|2)_[A-Za-z0-9+/=_\-]{60,}"),
    ("Render", "rnd_", r"[A-Za-z0-9]{30,}"),
    ("Databricks", "dapi", r"[a-f0-9]{32}(?:-[0-9])?"),
    ("Dynatrace", "dt0c01.", r"[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}"),
    ("PlanetScale", "pscale_", r"(?:tkn|oauth|pw)_[A-Za-z0-9_=.\-]{32,}"),
    # secret managers (Doppler service tokens name their environment: dp.st.prd.xxx)
    ("Doppler", "dp.",
     r"(?:pt|st|ct|sa|scim|audit)\.(?:[A-Za-z0-9_\-]{1,40}\.)?[A-Za-z0-9]{40,}"),
    ("Vault service, batch and recovery tokens", "hv", r"[sbr]\.[A-Za-z0-9_\-]{24,}"),
    ("Infisical service tokens", "st.", r"[A-Za-z0-9\-]{8,}\.[A-Za-z0-9]{16,}\.[A-Za-z0-9]{16,}"),
    ("1Password service accounts", "ops_", r"eyJ[A-Za-z0-9+/=_\-]{40,}"),
    ("1Password secret keys", "A3-", r"[A-Z0-9]{6}-[A-Z0-9]{5,11}-[A-Z0-9\-]{11,}"),
    ("Bitwarden Secrets Manager", "0.",
     r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.[A-Za-z0-9]{20,}:[A-Za-z0-9+/=]{20,}"),
    ("Phase service and user tokens", "pss_", r"(?:service|user):v[0-9]:[A-Za-z0-9:]{40,}"),
    ("age secret keys", "AGE-SECRET-KEY-1", r"[0-9A-Z]{58}"),
    # CI, deploys, monitoring
    ("Pulumi", "pul-", r"[a-f0-9]{40}"),
    ("Buildkite", "bkua_", r"[a-f0-9]{40}"),
    ("CircleCI", "CCIPAT_", r"[A-Za-z0-9_]{30,}"),
    ("Octopus Deploy", "API-", r"[A-Z0-9]{26,}"),
    ("Grafana service-account and cloud tokens", "gl", r"(?:sa|c)_[A-Za-z0-9_+/]{32,}=*"),
    ("Grafana API keys", "eyJrIjoi", r"[A-Za-z0-9]{40,}={0,3}"),
    ("Sentry", "sntry", r"[su]_[A-Za-z0-9_+/=]{40,}"),
    ("New Relic", "NRAK-", r"[A-Z0-9]{27}"),
    ("New Relic insert keys", "NRII-", r"[A-Za-z0-9_\-]{32}"),
    ("Postman", "PMAK-", r"[A-Fa-f0-9]{24}-[A-Fa-f0-9]{34}"),
    # messaging and mail
    ("Slack", "xox", r"[abeoprs]-[A-Za-z0-9\-]{10,}"),
    ("Slack app-level", "xapp-", r"[0-9]-[A-Za-z0-9\-]{20,}"),
    ("SendGrid", "SG.", r"[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"),
    ("Brevo", "xkeysib-", r"[a-f0-9]{64}-[A-Za-z0-9]{16}"),
    ("Twilio API keys", "SK", r"[0-9a-fA-F]{32}(?![0-9A-Za-z])"),
    ("Mailgun", "key-", r"[a-f0-9]{32}(?![0-9A-Za-z])"),
    # payments and commerce
    ("Stripe secret and restricted keys", "sk_", r"(?:live|test|prod)_[A-Za-z0-9]{16,}"),
    ("Stripe restricted keys", "rk_", r"(?:live|test|prod)_[A-Za-z0-9]{16,}"),
    ("Stripe webhook secrets", "whsec_", r"[A-Za-z0-9]{24,}"),
    ("Square", "sq0", r"(?:atp|csp)-[A-Za-z0-9_\-]{22,}"),
    ("Square access tokens", "EAAA", r"[A-Za-z0-9_\-+=]{40,}"),
    ("Meta (Facebook, WhatsApp) access tokens", "EAA", r"[A-Za-z0-9]{100,}"),
    ("Shopify", "shp", r"(?:at|ss|ca|pa)_[a-fA-F0-9]{32}"),
    ("Braintree access tokens", "access_token$",
     r"(?:production|sandbox)\$[a-z0-9]{16}\$[a-f0-9]{32}"),
    ("Plaid access tokens", "access-",
     r"(?:sandbox|development|production)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    ("Adyen", "AQE", r"[A-Za-z0-9_\-+/=.]{80,}"),
    # work tools
    ("Atlassian API tokens", "ATATT", r"[A-Za-z0-9_\-=]{50,}"),
    ("Linear", "lin_api_", r"[A-Za-z0-9]{40}"),
    ("Notion integration tokens", "secret_", r"[A-Za-z0-9]{43}(?![A-Za-z0-9])"),
    ("Notion tokens", "ntn_", r"[A-Za-z0-9]{40,}"),
    ("Figma", "figd_", r"[A-Za-z0-9_\-]{30,}"),
    ("Airtable", "pat", r"[A-Za-z0-9]{14}\.[a-f0-9]{64}"),
    ("ClickUp", "pk_", r"[0-9]{4,}_[A-Z0-9]{32}"),
    ("Mapbox secret tokens", "sk.eyJ", r"[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{20,}"),
)  # fmt: skip
"""Token formats replaced whole wherever they appear: (vendor, prefix, body regex)."""


def _token_rule(vendor: str, prefix: str, body: str) -> ValueRule:
    """A vendor token: its literal prefix (not inside a longer word), then its body."""
    escaped = re.escape(prefix)
    source = f"{escaped}(?<![A-Za-z0-9]{escaped}){body}"
    return ValueRule(vendor, (prefix,), False, source, REDACTED)


_CRED_MARKS: Final = frozenset("+/=_!@#$%^&*~-.?")


def credential_like(word: str) -> bool:
    """Whether a word after Bearer/Basic or a secret word is a credential, not prose.

    24 or more characters, or 8 or more whose letters come with two digits or with two
    more kinds of character (capitals, digits, symbols).
    """
    if len(word) >= 24:
        return True
    if len(word) < 8:
        return False
    letters = sum(char.isalpha() for char in word)
    digits = sum(char.isdigit() for char in word)
    kinds = (
        (word.lower() != word)
        + (word.upper() != word)
        + (digits > 0)
        + any(char in _CRED_MARKS for char in word)
    )
    return letters >= 2 and (kinds >= 3 or digits >= 2)


_TOKEN: Final = r"[A-Za-z0-9_\-+/=.~%]{16,512}"  # noqa: S105 - a regex
_TOKEN_SEPARATORS: Final = r"[_\-+/=.~%]"  # noqa: S105 - a regex
_LETTERS_AND_DIGITS: Final = r"[A-Za-z][0-9]|[0-9][A-Za-z]"


def token_shaped(value: str) -> bool:
    """Whether a value looks like a session id or token rather than words or a date.

    16 or more characters of a token alphabet with a piece (between separators) that
    mixes letters and digits, or a piece of 16 or more in both cases:
    ``abcdefghijklmnopqrstuvwxyz123456`` and a UUID are, ``morning-session-2024`` is not.
    """
    if compiled(_TOKEN).fullmatch(value) is None:
        return False
    for piece in compiled(_TOKEN_SEPARATORS).split(value):
        if compiled(_LETTERS_AND_DIGITS).search(piece) or (
            len(piece) >= 16 and piece.lower() != piece and piece.upper() != piece
        ):
            return True
    return False


_PEM: Final = (
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----.*?"
    r"(?:-----END[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----|\Z)"
)
_PUTTY: Final = r"Private-Lines:.*?(?:Private-MAC:[^\r\n]*|\Z)"
# scheme://user:password@host: the password may hold "/", "#", "+", "?" or "@"; it ends
# at the last "@" followed by a host name (then a port, "/?#", a quote, a space or the
# end), within 1024 characters (so that hostile text costs linear time). A port
# ("host:8080/path?mail=a@b") is not a password.
_URL_CREDS: Final = (
    r"(://[^\s/?#@:]*:)(?![0-9]+(?:[/?#\s]|$))\S{0,1024}@"
    r"(?=[A-Za-z0-9.\-]+(?:[:/?#\s\"'<>),;]|$))"
)
# scheme://TOKEN@host: a token as the whole user part (Sentry DSNs, git over HTTPS).
_URL_TOKEN: Final = r"(://)([A-Za-z0-9_\-.~%]{16,})@(?=[A-Za-z0-9])"  # noqa: S105 - a regex
_AUTH_SCHEME: Final = (
    r"[Bb](?<![A-Za-z0-9_][Bb])(?:[Ee][Aa][Rr][Ee][Rr]|[Aa][Ss][Ii][Cc])[ \t]+"
    r"([A-Za-z0-9\-._~+/]+=*)"
)
_JWT: Final = r"eyJ(?<![A-Za-z0-9_\-]eyJ)[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*"
_SLACK_WEBHOOK: Final = r"(hooks\.slack\.com/services/[A-Z0-9]+/[A-Z0-9]+/)[A-Za-z0-9]+"
_DISCORD_WEBHOOK: Final = r"(discord(?:app)?\.com/api/webhooks/[0-9]+/)[A-Za-z0-9_\-]+"
_TEAMS_WEBHOOK: Final = r"(webhook\.office\.com/webhookb2/)[^\s\"'<>]+"
_ORACLE: Final = r"((?:jdbc:oracle:[a-z]+:@?|sqlplus[ \t]+)[^/\s@:\"']+/)[^@\s\"']+(?=@)"
# curl -u user:password (in text that names curl): the option, its user, then the secret.
_CURL_USER: Final = (
    r"(-(?<=[ \t]-)(?:u|-user)(?:[ \t]+|=)(?P<q>[\"'])?[^:\s\"'\-][^:\s\"']*:)"
    r"(?(q)[^\"'\n]+|[^\s\"']+)"
)
_TELEGRAM: Final = r":(?<=[0-9]{5}:)A[A-Za-z0-9_\-]{29,40}(?![A-Za-z0-9_\-])"
_DISCORD_BOT: Final = (
    r"[MNO](?<![A-Za-z0-9_\-][MNO])[A-Za-z0-9_\-]{23,27}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,40}"
)
_AZURE_SECRET: Final = r"Q~(?<=[A-Za-z0-9_~.]{3}[0-9]Q~)[A-Za-z0-9_~.\-]{31,34}"  # noqa: S105
_AZURE_DEVOPS: Final = r"[A-Za-z0-9]{76}AZDO[A-Za-z0-9]{4}"
_TERRAFORM: Final = r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_\-=]{60,}"
_MAILCHIMP: Final = r"[0-9a-f]{32}-us[0-9]{1,2}(?![0-9])"
# Private keys in base64 DER, without PEM armour: PKCS#1 RSA (MIIEpAIBAAKC...), PKCS#8
# RSA (MIIEvQIBADANBgkqhkiG9w0BAQEFAASC...; a public key has AAOC there), EC and Ed25519.
_DER_KEY: Final = (
    r"M(?:II[A-Za-z0-9+/]{3}IBA(?:AKC|DANBgkqhkiG9w0BAQEFAASC)|IGHAgEAMBMGByqGSM49|C4CAQAwBQYDK2Vw)"
    r"[A-Za-z0-9+/=]*(?:(?:\\n|\r?\n)[A-Za-z0-9+/=]+)*"
)
# mysql -pSECRET (attached: "-p db" asks for the password) and sshpass -p SECRET.
_MYSQL_PASSWORD: Final = r"-p(?<=[ \t]-p)[^\s\"'\-][^\s\"']*"  # noqa: S105 - a regex
_SSHPASS_PASSWORD: Final = r"-p(?<=[ \t]-p)[ \t]+[^\s\"'\-][^\s\"']*"  # noqa: S105 - a regex


def _auth_repl(match: re.Match[str]) -> str:
    """Keep the scheme word, replace a credential after it (prose stays)."""
    if credential_like(match.group(1)):
        return match.string[match.start() : match.start(1)] + REDACTED
    return match.group(0)


def _url_token_repl(match: re.Match[str]) -> str:
    """A token-shaped user part of a URL is replaced; a user name stays."""
    return f"://{REDACTED}@" if token_shaped(match.group(2)) else match.group(0)


CONTEXT_RULES: Final[tuple[ValueRule, ...]] = (
    ValueRule("PEM private key blocks", ("-----BEGIN",), False, _PEM, REDACTED, re.DOTALL),
    ValueRule("PuTTY private keys", ("Private-Lines:",), False, _PUTTY, REDACTED, re.DOTALL),
    ValueRule("URL passwords (user kept)", ("://",), False, _URL_CREDS, rf"\1{REDACTED}@"),
    ValueRule("URL tokens as the user", ("://",), False, _URL_TOKEN, _url_token_repl),
    ValueRule("Bearer/Basic credentials", ("bearer", "basic"), True, _AUTH_SCHEME, _auth_repl),
    ValueRule("Slack webhook URLs", ("hooks.slack.com",), False, _SLACK_WEBHOOK, rf"\1{REDACTED}"),
    ValueRule("Discord webhook URLs", ("discord",), True, _DISCORD_WEBHOOK, rf"\1{REDACTED}", re.I),
    ValueRule("Teams webhooks", ("webhook.office.com",), True, _TEAMS_WEBHOOK, rf"\1{REDACTED}"),
    ValueRule("Oracle user/password@", ("jdbc:oracle", "sqlplus"), True, _ORACLE, rf"\1{REDACTED}"),
    ValueRule("curl -u user:password", ("curl",), False, _CURL_USER, rf"\1{REDACTED}"),
    ValueRule("mysql -pSECRET", ("mysql", "mariadb"), True, _MYSQL_PASSWORD, f"-p{REDACTED}"),
    ValueRule("sshpass -p SECRET", ("sshpass",), True, _SSHPASS_PASSWORD, f"-p {REDACTED}"),
)
"""Detectors of a secret by what surrounds it, in the order they run."""

SHORTEST_TOKEN: Final = 20
"""No rule of TOKEN_RULES matches text shorter than this."""

TOKEN_RULES: Final[tuple[ValueRule, ...]] = (
    ValueRule("JWTs", ("eyJ",), False, _JWT, REDACTED),
    *(_token_rule(*token) for token in VENDOR_TOKENS),
    ValueRule("Telegram bot tokens (the bot id kept)", (":A",), False, _TELEGRAM, f":{REDACTED}"),
    ValueRule("Discord bot tokens", (".",), False, _DISCORD_BOT, REDACTED),
    ValueRule("Azure AD client secrets", ("Q~",), False, _AZURE_SECRET, REDACTED),
    ValueRule("Azure DevOps tokens", ("AZDO",), False, _AZURE_DEVOPS, REDACTED),
    ValueRule("Terraform Cloud tokens", (".atlasv1.",), False, _TERRAFORM, REDACTED),
    ValueRule("Mailchimp", ("-us",), False, _MAILCHIMP, REDACTED),
    ValueRule(
        "Base64 private keys",
        ("IBAAKC", "AQEFAASC", "IGHAgEAMBMGByqGSM49", "C4CAQAwBQYDK2Vw"),
        False,
        _DER_KEY,
        REDACTED,
    ),
)
"""Detectors of a secret by its own form (case-sensitive prefixes), after CONTEXT_RULES."""

VALUE_RULES: Final = CONTEXT_RULES + TOKEN_RULES
"""All key-free detectors, in the order they run."""

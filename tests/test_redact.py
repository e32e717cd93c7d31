"""Tests for betty_otel._redact: which keys name secrets, which values in text are secrets."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from betty_otel._redact import REDACTED, Redactor
from betty_otel._sanitize import Sanitizer, to_json_text
from betty_otel.redaction import NOT_SECRET_ENDINGS, SECRET_ENDINGS, SECRET_NAMES
from hostile import HOSTILE

S = Sanitizer()
R = Redactor()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- secret keys ---------------------------------------------------------------------------

SECRET_KEYS = [
    "apiKey", "api-key", "API_KEY", "api.key", "ApiKey", "api key", "x-api-key", "X-Api-Key",
    "password", "PASSWORD", "db_password", "passwd", "pwd", "passphrase", "secret",
    "client_secret", "clientSecret", "aws_secret_access_key", "secret_key", "token",
    "githubToken", "access_token", "refresh_token", "id_token", "csrf-token", "auth",
    "Authorization", "proxy-authorization", "credential", "credentials", "aws.credentials",
    "private_key", "privateKey", "sessionid", "session_id", "cookie", "Set-Cookie", "bearer",
    "jwt", "signature", "connection_string", "dsn", "ssn", "credit_card", "card_number",
    "cvv", "pin", "PIN",
]  # fmt: skip
ORDINARY_KEYS = [
    "author", "authors", "authority", "max_tokens", "tokens", "token_count", "num_tokens",
    "prompt_tokens", "tokenizer", "passage", "keyboard", "monkey", "key", "secretary",
    "pinned", "spinner", "description", "name", "path", "status", "caller", "keys",
    "signature_version", "cookies_enabled", "authentication_method", "passing",
]  # fmt: skip


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys_match_ignoring_case_and_separators_at_any_depth(key: str) -> None:
    """A secret key's value is redacted at top level and inside lists inside dicts."""
    value = {key: "hunter2", "nested": [{"deeper": {key: "hunter2"}}]}
    assert S.sanitize(value) == {key: REDACTED, "nested": [{"deeper": {key: REDACTED}}]}


@pytest.mark.parametrize("key", ORDINARY_KEYS)
def test_ordinary_keys_are_not_redacted(key: str) -> None:
    """No false positives: names that merely contain a secret word keep their value."""
    assert S.sanitize({key: "visible"}) == {key: "visible"}
    assert R.redact_text(f"{key}=visible") == f"{key}=visible"


def test_secret_name_tables_are_in_joined_lowercase_form() -> None:
    """The tables hold lowercase words joined without separators, as the rule compares."""
    for name in (*SECRET_NAMES, *SECRET_ENDINGS, *NOT_SECRET_ENDINGS):
        assert name == name.lower()
        assert not set(name) & set("-_. ")
    assert {"auth", "pin", "cvv"} <= SECRET_NAMES
    assert {"password", "apikey", "authorization", "token"} <= set(SECRET_ENDINGS)


@pytest.mark.parametrize(
    "value",
    ["s3cret", 12345, 1.5, None, True, ["a", "b"], {"user": "bob", "pass": "x"}, b"raw", object()],
)
def test_secret_key_value_is_replaced_whole_whatever_its_type(value: object) -> None:
    """The value of a secret key becomes the marker, even a dict or list (nothing inside leaks)."""
    assert S.sanitize({"credentials": value}) == {"credentials": REDACTED}


def test_extra_keys_add_exact_names_normalised_the_same_way() -> None:
    """extra_keys are normalised like defaults and matched exactly (not as suffixes)."""
    sanitizer = Sanitizer(["Tenant-ID"])
    result = sanitizer.sanitize({"tenant_id": "t1", "tenantId": "t2", "tenant_ids": "t3"})
    assert result == {"tenant_id": REDACTED, "tenantId": REDACTED, "tenant_ids": "t3"}
    assert Redactor(["Tenant-ID"]).redact_text("tenant.id: abc") == f"tenant.id: {REDACTED}"
    assert S.sanitize({"tenant_id": "t1"}) == {"tenant_id": "t1"}  # defaults unaffected
    assert Sanitizer("account").sanitize({"account": 1, "a": 2}) == {"account": REDACTED, "a": 2}


# -- secret values in text -----------------------------------------------------------------

GH = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM_BODY = "MIIEowIBAAKCAQEAvQ7mZ2h1Y3JldEtleUJvZHk="
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"

TEXT_CASES = [
    ("Authorization: Bearer abc123DEF456", "abc123DEF456", f"Authorization: Bearer {REDACTED}"),
    ("header bearer\tabc123def456ghi end", "abc123def456ghi", f"header bearer\t{REDACTED} end"),
    ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", f"Basic {REDACTED}"),
    (f"jwt was {JWT}.", JWT, f"jwt was {REDACTED}."),
    (f"key:\n{PEM}\nafter", PEM_BODY, f"key:\n{REDACTED}\nafter"),
    (f"cut {PEM[:60]}", PEM_BODY[:20], f"cut {REDACTED}"),
    ("postgres://admin:pa55word@db:5432/x", "pa55word", f"postgres://admin:{REDACTED}@db:5432/x"),
    ("redis://:p@ss@cache/0", "p@ss", f"redis://:{REDACTED}@cache/0"),
    ("failed with password=hunter2 for bob", "hunter2", f"failed with password={REDACTED} for bob"),
    ("token: abc.def-123", "abc.def-123", f"token: {REDACTED}"),
    ('api_key="sk live 123"', "sk live 123", f'api_key="{REDACTED}"'),
    ("{'client_secret': 'xyz987'}", "xyz987", f"{{'client_secret': '{REDACTED}'}}"),
    ('{"db_password":"q1w2e3"}', "q1w2e3", f'{{"db_password":"{REDACTED}"}}'),
    ("--password=hunter2 --user bob", "hunter2", f"--password={REDACTED} --user bob"),
    ("GET /x?u=bob&access_token=tk999&p=2", "tk999", f"GET /x?u=bob&access_token={REDACTED}&p=2"),
    ("url=https://h/?token=zz9 ok", "zz9", f"url=https://h/?token={REDACTED} ok"),
    ("Cookie: sid=abc; theme=dark\nnext", "abc", f"Cookie: {REDACTED}\nnext"),
    (f"push with {GH} failed", GH, f"push with {REDACTED} failed"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "11ABCDEFG0123456789", REDACTED),
    ("key sk-proj-AbCdEf0123456789XyZw99 used", "AbCdEf0123456789XyZw99", f"key {REDACTED} used"),
    ("slack xoxb-123456789012-abcdefABCDEF", "123456789012", f"slack {REDACTED}"),
    ("aws AKIAIOSFODNN7EXAMPLE id", "IOSFODNN7EXAMPLE", f"aws {REDACTED} id"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "secret", "expected"), TEXT_CASES)
def test_redact_text_replaces_secret_values_keeping_context(
    text: str, secret: str, expected: str
) -> None:
    """Bearer/Basic, JWT, PEM, URL credentials, key=value pairs and token formats are redacted."""
    out = R.redact_text(text)
    assert out == expected
    assert secret not in out
    assert S.sanitize({"metadata": [text]}) == {"metadata": [expected]}


@pytest.mark.parametrize(
    "text",
    [
        "Basic authentication failed", "the bearer of bad news", "max_tokens: 100",
        "author: Jane Doe", "token_count=5", "https://example.com/a/b?page=2",
        "2025-10-24T14:30:45.123456+00:00", "key: value", "ratio 3:2", "ghp_short",
        "task-sk-not-a-key", "tokens: 12, prompt_tokens=3", "a == b", "",
    ],
)  # fmt: skip
def test_redact_text_leaves_ordinary_text_alone(text: str) -> None:
    """Prose, timestamps, URLs without credentials and counters are not redacted."""
    assert R.redact_text(text) == text


def test_error_text_redaction_is_idempotent_and_handles_non_str() -> None:
    """redact_text twice equals once; a non-str argument is converted, never raised on."""
    once = R.redact_text("Error: password=abc, Bearer xyz12345678, " + GH)
    assert R.redact_text(once) == once
    assert REDACTED in R.redact_text(ValueError("token=abc"))  # type: ignore[arg-type]


SECRET_ALPHABET = st.text("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789", min_size=24)
SECRET_FORMS = [
    "password={}", "token: {}", "api_key='{}'", "Bearer {}", "ghp_{}", "sk-{}",
    "https://user:{}@host/", "Authorization: Basic {}==", '{{"client_secret": "{}"}}',
]  # fmt: skip


@FAST
@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    secret=SECRET_ALPHABET,
    form=st.sampled_from(SECRET_FORMS),
)
def test_generated_secret_never_appears_in_output_and_redaction_is_idempotent(
    before: str, after: str, secret: str, form: str
) -> None:
    """Property: an embedded secret never survives, and a second pass changes nothing."""
    assume(secret not in before + after)
    text = f"{before} {form.format(secret)} {after}"
    out = R.redact_text(text)
    assert secret not in out
    assert R.redact_text(out) == out
    value = S.sanitize({"note": text, "list": [text]})
    assert secret not in to_json_text(value)
    assert S.sanitize(value) == value


@FAST
@given(st.text())
def test_redact_text_is_idempotent_on_arbitrary_text(text: str) -> None:
    """Property: redact_text(redact_text(s)) == redact_text(s), output encodes to UTF-8."""
    once = R.redact_text(text)
    once.encode("utf-8")
    assert R.redact_text(once) == once


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_redact_text_never_raises_on_hostile_values(make: Callable[[], object]) -> None:
    """A hostile object passed as text becomes its repr, redacted, or a marker naming its type."""
    value = make()
    text = R.redact_text(value)  # type: ignore[arg-type]
    try:
        shown = repr(value)
    except RuntimeError:
        assert re.fullmatch(r"<unrepresentable \w+>", text), text
    else:
        assert text == R.redact_text(shown)

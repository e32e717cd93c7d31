"""Faults: the redaction rules as a table of secrets that must not leak, and data that must stay.

Each case is recorded for real (a TelemetryContext on a program's own SDK provider, an
in-memory exporter beside the telemetry file) and checked in the file, the span's
attributes, its events and its status description: a secret appears in none, the
useful data around it survives in the file. Text cases go in as an input, as metadata
and as the message of the exception that ends the block; structured cases (header
pairs, argv lists, header objects, secret-named keys) as an input and as metadata.
"""

from __future__ import annotations

import email.message
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import helpers
from betty_otel import TelemetryContext, capture_telemetry, redaction

pytestmark = pytest.mark.faults

REDACTED = redaction.REDACTED
S = "Zq7Xw9Vt"  # the secret in every case: letters and digits no ordinary text holds


class Case(NamedTuple):
    value: Any
    secret: str
    kept: tuple[str, ...] = ()


TEXT_LEAKS = {
    "url password with slash": Case(f"postgres://app:pa/{S}@db:5432/x", S, ("@db:5432/x",)),
    "url password with hash": Case(f"amqp://guest:gu#{S}@rabbit:5672/", S, ("guest",)),
    "url password with plus": Case(f"redis://:a+{S}@cache/0", S, ("cache/0",)),
    "mongodb+srv": Case(f"mongodb+srv://user:{S}@cluster0.example.net/db", S, ("user",)),
    "json in a string": Case(f'{{"password": "{S}", "user": "bob"}}', S, ("bob",)),
    "escaped json": Case(f'"{{\\"api_key\\": \\"{S}\\"}}"', S, ("api_key",)),
    "yaml line": Case(f"user: bob\npassword: {S}\n", S, ("bob",)),
    "yaml quoted": Case(f'client_secret: "{S}"', S, ("client_secret",)),
    "env with punctuation": Case(f"DB_PASSWORD=p@ss;{S}! next", S, ("next",)),
    "export quoted": Case(f"export API_KEY='a {S}'", S, ("export",)),
    "ado connection string": Case(
        f"Server=db;User ID=sa;Password=my {S};Database=app", S, ("Database=app",)
    ),
    "odbc braces": Case(f"Driver={{x}};PWD={{p;{S}}};Server=s", S, ("Server=s",)),
    "azure account key": Case(f"AccountName=a;AccountKey={S}==;EndpointSuffix=x", S, ()),
    "xml element": Case(f"<login><user>bob</user><password>{S}</password></login>", S, ("bob",)),
    "xml camel element": Case(f"<apiKey>{S}</apiKey>", S, ("apiKey",)),
    "xml attribute": Case(f'<user name="bob" password="{S}"/>', S, ("bob",)),
    "called process error": Case(
        f"Command '['tool', '--password', '{S}']' returned non-zero exit status 1.",
        S,
        ("exit status 1",),
    ),
    "shell command": Case(f"tool --token {S} --user bob", S, ("--user bob",)),
    "option equals": Case(f"tool --api-key={S}", S, ("tool",)),
    "digest authorization": Case(f"Authorization: Digest username=a, response={S}", S, ()),
    "key with digit": Case(f"password2={S}", S, ()),
    "confirmation key": Case(f"password_confirmation: {S}", S, ()),
    "session id": Case(f"sessionid={S}; path=/", S, ("path=/",)),
    "one-time code": Case(f"mfa_code={S}", S, ()),
    "anthropic": Case(f"key sk-ant-api03-{S}{S}{S} used", S, ("used",)),
    "hugging face": Case(f"hf_{S}{S}{S}{S}ab", S, ()),
    "gitlab deploy": Case(f"gldt-{S}{S}{S}", S, ()),
    "stripe webhook": Case(f"whsec_{S}{S}{S}{S}", S, ()),
    "sendgrid": Case(f"SG.{S}{S}.{S}{S}{S}", S, ()),
    "shopify": Case("shpat_" + "0123456789abcdef" * 2, "0123456789abcdef", ()),
    "google oauth": Case(f"ya29.{S}{S}{S}", S, ()),
    "google client secret": Case(f"GOCSPX-{S}{S}{S}", S, ()),
    "vault": Case(f"hvs.{S}{S}{S}{S}", S, ()),
    "pypi": Case(f"pypi-{S * 7}", S, ()),
    "slack webhook": Case(f"https://hooks.slack.com/services/T000/B000/{S}{S}", S, ("T000",)),
}

STRUCTURED_LEAKS = {
    "header pairs": Case(
        [("Accept", "text/html"), ("Authorization", f"Bearer {S}")], S, ("text/html",)
    ),
    "byte header pairs": Case([(b"cookie", f"sid={S}".encode())], S, ("cookie",)),
    "argv option then value": Case(["tool", "--password", S, "--user", "bob"], S, ("bob",)),
    "argv option equals": Case(["tool", f"--token={S}"], S, ("tool",)),
    "argv header": Case(["curl", "-H", f"Authorization: Bearer {S}", "https://x"], S, ("curl",)),
    "mysql attached password": Case(["mysql", "-u", "root", f"-p{S}"], S, ("root",)),
    "framework and versioned names": Case(
        {
            "SECRET_KEY": S, "SESSION_COOKIE": S, "SECURITY_PASSWORD_SALT": S,
            "secret_key_base": S, "master_key": S, "cookie_secret": S, "signing_key": S,
            "encryption_key": S, "csrftoken": S, "_xsrf": S, "JSESSIONID": S, "PHPSESSID": S,
            "connect.sid": S, "laravel_session": S, "new_password": S, "passwords": S,
            "api_keys": S, "old_secret": S, "secret_value": S, "token_v2": S, "otp": S,
            "totp": S, "2fa_code": S, "verification_code": S, "name": "bob",
        },
        S,
        ("bob",),
    ),
}  # fmt: skip

KEPT = {
    "tokenizer fields": {
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
        "sep_token": "[SEP]", "cls_token": "[CLS]", "mask_token": "[MASK]",
        "pad_token_id": 0, "max_new_tokens": 64, "num_tokens": 12, "total_tokens": 99,
        "prompt_tokens": 40, "completion_tokens": 59, "token_count": 3,
        "token_type_ids": [0, 0, 1],
    },
    "pagination": {
        "next_token": "pg-0042", "page_token": "pg-0043", "next_page_token": "pg-0044",
        "continuationToken": "pg-0045", "cursor": "pg-0046", "NextToken": "pg-0047",
    },
    "ordinary text": {
        "note": "Basic authentication failed at 10:30 for https://example.com/a?page=2",
        "port url": "http://host:8080/path?mail=a@b.com",
        "publishable key": "pk_live_0123456789abcdefABCDEF",
    },
}  # fmt: skip


@pytest.fixture
def memory(
    telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> Iterator[tuple[Path, InMemorySpanExporter]]:
    """The telemetry file and the spans in memory; the default redaction rules after."""
    yield telemetry_file, memory_spans
    redaction.set_rules()


def record(value: Any, error: str | None) -> None:
    """One execution with the value as input and metadata; ended by error if given."""
    try:
        with TelemetryContext("faults.redaction", inputs={"value": value}) as run:
            run.set_metadata({"value": value})
            if error is not None:
                raise RuntimeError(error)
    except RuntimeError:
        pass


def the_entry_without(secret: str, memory: tuple[Path, InMemorySpanExporter]) -> dict[str, Any]:
    """The one entry, of one span; no piece of the secret is in the file or the span."""
    path, spans = memory
    helpers.assert_nowhere([secret], path, spans)
    (entry,) = helpers.strict_entries(path)
    (_span,) = spans.get_finished_spans()
    return entry


@pytest.mark.parametrize("case", TEXT_LEAKS.values(), ids=TEXT_LEAKS.keys())
def test_a_secret_inside_text_reaches_neither_the_file_nor_the_span(
    case: Case, memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """As input, metadata and exception message; the data around it stays in the file."""
    record(case.value, case.value)
    entry = the_entry_without(case.secret, memory)
    for kept in case.kept:
        assert kept in entry["inputs"]["value"]
        assert kept in entry["error_message"]
    (span,) = memory[1].get_finished_spans()
    assert REDACTED in (span.status.description or "")


@pytest.mark.parametrize("case", STRUCTURED_LEAKS.values(), ids=STRUCTURED_LEAKS.keys())
def test_a_secret_in_pairs_argv_or_by_name_reaches_neither_the_file_nor_the_span(
    case: Case, memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """Header pairs (str or bytes), argv lists and secret-named keys, as input and metadata."""
    record(case.value, None)
    entry = the_entry_without(case.secret, memory)
    for kept in case.kept:
        assert kept in str(entry["inputs"]["value"])
        assert kept in str(entry["metadata"]["value"])


@pytest.mark.parametrize("values", KEPT.values(), ids=KEPT.keys())
def test_tokenizer_fields_pagination_tokens_and_ordinary_text_are_kept(
    values: dict[str, Any], memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """Not secrets: recorded exactly as given, in the file and on the span."""
    record(values, None)
    (entry,) = helpers.strict_entries(memory[0])
    assert entry["inputs"]["value"] == values
    assert entry["metadata"]["value"] == values


def test_a_header_object_that_is_not_a_mapping_is_recorded_with_its_secrets_redacted(
    memory: tuple[Path, InMemorySpanExporter],
) -> None:
    """An email.message.Message (http.client's headers): names and values kept, secrets not."""
    headers = email.message.Message()
    headers["Accept"] = "text/html"
    headers["Authorization"] = f"Bearer {S}"
    record(headers, None)
    entry = the_entry_without(S, memory)
    assert entry["inputs"]["value"] == {"Accept": "text/html", "Authorization": REDACTED}


class AuthError(Exception):
    def __init__(self, message: str, password: str) -> None:
        super().__init__(message, password)


@capture_telemetry(skill_name="faults.redaction.login")
def login(password: str) -> None:
    raise AuthError("login failed", password)


@capture_telemetry(skill_name="faults.redaction.lookup")
def lookup(key: str, value: str) -> None:
    raise KeyError(key, value)


@capture_telemetry(skill_name="faults.redaction.run")
def run_tool(secret: str) -> None:
    subprocess.run([sys.executable, "-c", "raise SystemExit(1)", "--password", secret], check=True)


@pytest.mark.parametrize(
    ("call", "kept"),
    [
        (lambda: login(S), "login failed"),
        (lambda: lookup("api_key", S), "api_key"),
        (lambda: run_tool(S), "returned non-zero exit status 1"),
    ],
    ids=["secret-named parameter", "name and value args", "CalledProcessError argv"],
)
def test_secret_arguments_of_an_exception_are_redacted_in_message_event_and_status(
    call: Any, kept: str, memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """str() of a multi-arg exception shows a tuple: its secret member never leaks."""
    with pytest.raises(Exception):  # noqa: B017, PT011 - the user's own exception passes through
        call()
    entry = the_entry_without(S, memory)
    assert kept in entry["error_message"]
    assert REDACTED in entry["error_message"]
    (span,) = memory[1].get_finished_spans()
    (event,) = span.events
    assert S not in str(event.attributes)


def test_set_rules_adds_names_and_patterns_allows_names_and_replaces_not_accumulates(
    memory: tuple[Path, InMemorySpanExporter],
) -> None:
    """Rules apply to decorators already applied; a second call replaces the first."""
    redaction.set_rules(
        redact_keys=["tenant_id"], allow_keys=["session_id"], redact_patterns=[r"EMP-\d{6}"]
    )
    record({"TenantId": S, "session_id": 42, "note": "for EMP-123456"}, None)
    (entry,) = helpers.strict_entries(memory[0])
    assert entry["inputs"]["value"] == {
        "TenantId": REDACTED,
        "session_id": 42,
        "note": f"for {REDACTED}",
    }
    assert redaction.is_secret_key("tenant-id")
    redaction.set_rules()
    assert not redaction.is_secret_key("tenant-id")
    assert redaction.is_secret_key("session_id")
    assert redaction.redact("EMP-123456") == "EMP-123456"


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"redact_keys": [1]}, TypeError),
        ({"redact_patterns": ["("]}, ValueError),
        ({"redact_patterns": [".*"]}, ValueError),
        ({"redact_patterns": [b"x"]}, TypeError),
    ],
)
def test_set_rules_rejects_bad_rules_before_changing_anything(
    arguments: dict[str, Any], error: type[Exception]
) -> None:
    """A bad rule raises a clear error and leaves the rules as they were."""
    redaction.set_rules(redact_keys=["tenant_id"])
    try:
        with pytest.raises(error):
            redaction.set_rules(**arguments)
        assert redaction.is_secret_key("tenant_id")
    finally:
        redaction.set_rules()


def test_redaction_is_idempotent_on_every_table_case() -> None:
    """Redacting redacted text changes nothing (the markers are stable)."""
    for case in TEXT_LEAKS.values():
        once = redaction.redact(case.value)
        assert redaction.redact(once) == once
        assert re.search(re.escape(case.secret), once) is None

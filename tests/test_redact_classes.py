"""Redaction, class by class: a secret never reaches the file or the span, whatever its form.

Each class is attacked with many cases: a value of any type under a secret key (as a
structure and as the text of its repr), key names (run together, qualified, shaped by
their value), values (YAML/INI/TOML lines, Python reprs, signed URLs, vendor formats,
connection strings, headers) and the generic rules (a credential after a secret word, a
random string of credential length). Tokens are generated from seeded randomness, so no
real-looking credential is written in this file.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import string
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import helpers
from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry, redaction
from betty_otel.testing import capture_entries
from cli_helpers import run

REDACTED = redaction.REDACTED
S = "Zq7Xw9Vt"  # the secret of hand-written cases: letters and digits no ordinary text holds
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
chars = helpers.token_chars
redacted = helpers.redacted


@pytest.fixture
def memory(
    telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> tuple[Path, InMemorySpanExporter]:
    """The telemetry file and the spans of a program's own provider."""
    return telemetry_file, memory_spans


def recorded_text(memory: tuple[Path, InMemorySpanExporter]) -> str:
    """Everything recorded: the file's bytes and every text on every span."""
    path, spans = memory
    texts = [path.read_text(encoding="utf-8")]
    for span in spans.get_finished_spans():
        texts += [span.name, span.status.description or ""]
        texts += [str(value) for value in (span.attributes or {}).values()]
        texts += [str(e.attributes) for e in span.events]
    return "\n".join(texts)


# -- 1. under a secret key, whatever the value's type --------------------------------------


class Pair(NamedTuple):
    user: str
    password: str


@dataclasses.dataclass
class Login:
    user: str
    password: object


class Plain:
    """An object with a __dict__ and no repr of its own."""

    def __init__(self, secret: str) -> None:
        self.value = secret
        self.items = [secret]


class Shown:
    """An object whose repr shows its fields, as many hand-written classes do."""

    def __init__(self, secret: str) -> None:
        self.token = secret

    def __repr__(self) -> str:
        return f"Shown(value={self.token!r})"


def _generator() -> Iterator[str]:
    yield S


VALUES: dict[str, Callable[[], object]] = {
    "tuple": lambda: ("first", S),
    "list": lambda: ["first", S],
    "set": lambda: {S},
    "frozenset": lambda: frozenset({S}),
    "nested dict": lambda: {"outer": {"inner": [S]}},
    "list of dicts": lambda: [{"v": S}],
    "object with __dict__": lambda: Plain(S),
    "object with a repr": lambda: Shown(S),
    "namespace": lambda: types.SimpleNamespace(value=S, other=[S]),
    "dataclass": lambda: Login("bob", S),
    "named tuple": lambda: Pair("bob", S),
    "deque": lambda: collections.deque([S]),
    "bytes": S.encode,
    "bytearray": lambda: bytearray(S.encode()),
    "ordered dict": lambda: collections.OrderedDict([("k", S)]),
    "tuple in a tuple": lambda: (("a", S),),
    "generator": _generator,
}
SECRET_KEYS = ("password", "api_key", "credentials", "client_secret", "privateKey", "userpass")


@pytest.mark.parametrize("key", SECRET_KEYS)
@pytest.mark.parametrize("make", VALUES.values(), ids=VALUES.keys())
def test_a_secret_keys_value_of_any_type_is_replaced_whole_in_inputs_and_metadata(
    key: str, make: Callable[[], object], memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """Nothing of the value survives, in the file or on the span; the key and the rest stay."""
    with TelemetryContext("classes.value", inputs={key: make(), "user": "bob"}) as run_:
        run_.set_metadata({"settings": {key: make()}})
    assert S not in recorded_text(memory)
    (entry,) = helpers.strict_entries(memory[0])
    assert entry["inputs"] == {key: REDACTED, "user": "bob"}
    assert entry["metadata"] == {"settings": {key: REDACTED}}


@pytest.mark.parametrize("make", VALUES.values(), ids=VALUES.keys())
def test_a_secret_parameters_argument_of_any_type_is_replaced_whole(
    make: Callable[[], object], memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """A decorated function's secret-named parameter, passed positionally or by keyword."""

    @capture_telemetry(skill_name="classes.login", capture_inputs=True)
    def login(user: str, password: object, *rest: object, **options: object) -> None:
        pass

    login("bob", make())
    login("bob", password=make(), db_password=make())
    assert S not in recorded_text(memory)
    first, second = helpers.strict_entries(memory[0])
    assert first["inputs"]["password"] == second["inputs"]["password"] == REDACTED
    assert second["inputs"]["options"] == {"db_password": REDACTED}


@pytest.mark.parametrize("make", VALUES.values(), ids=VALUES.keys())
def test_the_repr_of_a_secret_keys_value_is_replaced_whole_in_text(
    make: Callable[[], object],
) -> None:
    """In a dict repr, keyword arguments, a namespace: the whole value, brackets and all."""
    value = make()
    texts = [
        repr({"password": value, "user": "bob"}),
        f"Config(password={value!r}, user='bob')",
        str(types.SimpleNamespace(api_key=value, user="bob")),
        f"failed with password={value!r}; user=bob",
        f"password: {value!r}\nuser: bob",
    ]
    for text in texts:
        out = redacted(text)
        assert S not in out, text
        assert "bob" in out, text


REPR_TEXTS = {
    "pprint across lines": f"{{'password': ('first',\n              '{S}'),\n 'user': 'bob'}}",
    "json nested": json.dumps({"password": {"value": [S]}, "user": "bob"}),
    "json pretty": json.dumps({"secret": [S, S], "user": "bob"}, indent=2),
    "yaml flow sequence": f"password: [{S}, second]\nuser: bob",
    "yaml block sequence": f"password:\n  - {S}\n  - second\nuser: bob",
    "yaml nested mapping": f"credentials:\n  user: x\n  password: {S}\nuser: bob",
    "yaml block scalar": f"private_key: |\n  line {S}\n  line two\nuser: bob",
    "yaml folded scalar": f"passphrase: >-\n  words {S}\n  more\nuser: bob",
    "php and ruby arrows": f"{{'password' => '{S}', 'user' => 'bob'}}",
    "quoted paren inside": f"password=('a)b', '{S}'); user=bob",
    "secret str repr": f"Settings(db_password=SecretStr('{S}'), user='bob')",
    "object repr": f"{{'token': <Token {S} at 0x7f00>, 'user': 'bob'}}",
    "call in a call": f"Cfg(api_key=Key(value=Inner('{S}')), user='bob')",
}


@pytest.mark.parametrize("text", REPR_TEXTS.values(), ids=REPR_TEXTS.keys())
def test_structured_values_written_as_text_are_replaced_whole(text: str) -> None:
    """Reprs, JSON and YAML of structures under a secret key: none of it survives."""
    out = redacted(text)
    assert S not in out
    assert "bob" in out


def test_a_structured_secret_reaches_neither_the_file_nor_an_error_message_via_the_cli(
    tmp_path: Path,
) -> None:
    """betty-telemetry capture: a list and an object under secret keys, in inputs and metadata."""
    log = tmp_path / "cli.json"
    inputs = json.dumps({"password": [S, {"nested": S}], "cfg": {"userpass": S, "ok": 1}})
    error = f"config was {{'api_key': ('{S}',)}}"
    result = run(
        "capture", "classes.cli", "failure", "5", "CLI", inputs, error,
        "--metadata", json.dumps({"token": {"v": S}}), "--file", str(log),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert S not in log.read_text(encoding="utf-8")
    (entry,) = helpers.strict_entries(log)
    assert entry["inputs"] == {"password": REDACTED, "cfg": {"userpass": REDACTED, "ok": 1}}


def test_telemetry_capture_replaces_structured_secrets_whole(tmp_path: Path) -> None:
    """TelemetryCapture.capture(): inputs, metadata and the error message."""
    log = tmp_path / "capture.json"
    TelemetryCapture(str(log)).capture(
        "classes.capture", "failure", 3.0, "API",
        inputs={"secret": (S,), "pgpass": S}, error_message=f"password=[{S}]",
        metadata={"session": f"{S}abcdefghij1234"},
    )  # fmt: skip
    assert S not in log.read_text(encoding="utf-8")


NAMED_VALUES = {
    "har headers": (
        [{"name": "Authorization", "value": S}, {"name": "Accept", "value": "*/*"}], "*/*"
    ),
    "kubernetes env": (
        {"env": [{"name": "DB_PASSWORD", "value": S}, {"name": "DB_USER", "value": "bob"}]}, "bob"
    ),
    "form field": ({"Key": "api_token", "Value": S, "Label": "bob"}, "bob"),
}  # fmt: skip


@pytest.mark.parametrize(("value", "kept"), NAMED_VALUES.values(), ids=NAMED_VALUES.keys())
def test_a_value_named_by_its_sibling_is_replaced(
    value: object, kept: str, memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """{"name": "X-API-Key", "value": ...}: HAR headers, Kubernetes env, form fields."""
    with TelemetryContext("classes.named", inputs={"v": value}):
        pass
    assert S not in recorded_text(memory)
    (entry,) = helpers.strict_entries(memory[0])
    assert kept in json.dumps(entry["inputs"])


# -- 2. key names ------------------------------------------------------------------------

SECRET_NAMES = [
    # run together
    "userpass", "pgpass", "dbpassword", "mysqlpass", "adminpwd", "rootpw", "dbpasswd",
    "smtppass", "keystorepass", "PGPASSWORD", "MYSQL_PWD", "REDIS_PASS", "db_pw", "passkey",
    # a qualifier after the secret word
    "private_key_pem", "private_key_id", "privateKeyId", "api_key_id", "apikey_id",
    "client_secret_value", "password_b64", "token_json", "credentials_json", "secret_data",
    "signing_key_material", "access_key_id", "aws_access_key_id", "password_hash_v2",
    # keys named by their holder or use
    "client_key", "clientKey", "server_key", "app_key", "APP_KEY", "auth_key", "ssh_key",
    "deploy_key", "shared_key", "SharedAccessKey", "storage_account_key", "write_key",
    "Ocp-Apim-Subscription-Key", "x-functions-key", "consumer_key", "privkey", "jwt_key",
    # signed URLs, DSNs, connection strings, wallets
    "X-Amz-Signature", "X-Goog-Signature", "X-Amz-Security-Token", "X-Amz-Credential",
    "sig", "signature", "SENTRY_DSN", "db_conn_str", "database_connection_string",
    "mnemonic", "seed_phrase", "recovery_phrase", "pin_code",
]  # fmt: skip
PLAIN_NAMES = [
    "bypass", "compass", "lowpass", "highpass", "bandpass", "render_pass", "forward_pass",
    "first_pass", "num_passes", "passenger", "password_policy", "password_min_length",
    "password_changed_at", "private_key_path", "private_key_file", "ssh_key_path",
    "secret_name", "secrets_manager_arn", "token_count", "token_type", "token_url",
    "max_tokens", "tokens", "pad_token_id", "token_type_ids", "cache_key", "partition_key",
    "sort_key", "primary_key", "foreign_key", "idempotency_key", "object_key", "monkey",
    "keyboard", "author", "authority", "session_name", "sessions", "signature_version",
    "OLDPWD", "spin", "zipcode", "status_code",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_run_together_qualified_and_holder_named_keys_are_secret(name: str) -> None:
    """As a dict key, in key=value and key: value text, in JSON, as an XML element."""
    assert redaction.is_secret_key(name)
    for text in (f"{name}={S}", f"{name}: {S}", json.dumps({name: S}), f"<{name}>{S}</{name}>"):
        assert S not in redacted(text), text


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_names_that_only_look_like_secret_names_keep_their_values(name: str) -> None:
    """Filters, render passes, paths to key files, counters, database keys: kept."""
    assert not redaction.is_secret_key(name)
    assert redacted(f"{name}=visible") == f"{name}=visible"


def test_two_word_names_are_read_together() -> None:
    """ "api key: x", "Secret Key = x", "private key is x": the word before a head word counts."""
    for text in (f"api key: {S}", f"Secret Key = {S}", f"Private Key: {S}", f"auth code: {S}"):
        assert S not in redacted(text), text
    assert redacted("cache key: visible") == "cache key: visible"


TOKEN_SHAPED = {
    "letters and digits": "abcdefghijklmnopqrstuvwxyz123456",
    "django session key": chars(1, 32, string.ascii_lowercase + string.digits),
    "uuid": "550e8400-e29b-41d4-a716-446655440000",
    "base64url": chars(2, 43, ALNUM + "-_"),
    "hex": chars(3, 64, HEX),
    "signed cookie": "s%3A" + chars(4, 24) + "." + chars(5, 27),
}
NOT_TOKEN_SHAPED = {
    "number": 42,
    "words": "weekly planning sync",
    "slug": "morning-session-2024-01-15",
    "date": "2024-01-15",
    "short": "abc123",
    "flag": True,
}
SHAPED_KEYS = ("session", "Session", "x-session", "user_session", "sid", "code", "ticket")


@pytest.mark.parametrize("key", SHAPED_KEYS)
@pytest.mark.parametrize("value", TOKEN_SHAPED.values(), ids=TOKEN_SHAPED.keys())
def test_a_session_or_code_holding_a_token_is_redacted(key: str, value: str) -> None:
    """``session`` is an ordinary word; holding a token, it is a credential."""
    assert S not in str(_sanitized({key: value + S}))
    assert _sanitized({key: value}) == {key: REDACTED}
    assert _sanitized({key: value.encode()}) == {key: REDACTED}
    assert value not in redacted(f"GET /cb?{key}={value}&state=ok")
    assert value not in redacted(f'{{"{key}": "{value}"}}')
    assert redacted(f"{key}: {value} has expired") == f"{key}: {REDACTED} has expired"


@pytest.mark.parametrize("key", SHAPED_KEYS)
@pytest.mark.parametrize("value", NOT_TOKEN_SHAPED.values(), ids=NOT_TOKEN_SHAPED.keys())
def test_a_session_or_code_holding_ordinary_data_keeps_it(key: str, value: object) -> None:
    """A session's name, number or date is useful data."""
    assert _sanitized({key: value}) == {key: value}
    assert redacted(f"{key}={value}") == f"{key}={value}"


def _sanitized(inputs: dict[str, object]) -> Any:
    """The inputs as recorded (in memory, as they would be written)."""
    with capture_entries() as entries, TelemetryContext("classes.shaped", inputs=inputs):
        pass
    return entries[0]["inputs"]


# -- 3. values ---------------------------------------------------------------------------

SPACED_VALUES = {
    "yaml": f"user: bob\npassphrase: correct horse {S} staple\nport: 22",
    "yaml indented with comment": f"db:\n  password: my {S} pass  # rotated\n  user: bob",
    "yaml quoted": f"client_secret: 'two {S} words'\nuser: bob",
    "yaml value on the next line": f"password:\n  correct horse {S}\nuser: bob",
    "ini spaced": f"[db]\npassword = my secret {S} pass\nuser = bob",
    "ini unspaced": f"[db]\npassword=my secret {S} pass\nuser=bob",
    "properties": f"spring.datasource.password=my {S} pass\nspring.datasource.username=bob",
    "toml": f'[db]\npassword = "my {S} pass"\nuser = "bob"',
    "toml multi-line": f'[db]\npassword = """\nmy {S}\npass"""\nuser = "bob"',
    "env export quoted": f"export DB_PASSWORD='my {S} pass'\nUSER=bob",
    "in a message": f"bad config line 3: passphrase: correct horse {S} staple; user: bob",
    "in a list repr": f"['passphrase: correct {S} staple', 'user: bob']",
    "in an exception repr": f"ValueError('passphrase: correct {S} staple'), user: bob",
    "yaml flow mapping": f"{{password: a {S} b, user: bob}}",
    "tabs": f"password\t=\tmy {S} pass\nuser\t=\tbob",
    "yaml doubled quote": f"passphrase: 'it''s {S} mine'\nuser: bob",
    "header in a curl command": f"curl -H 'X-Api-Key: a {S}' https://bob.example.com/v1",
}


@pytest.mark.parametrize("text", SPACED_VALUES.values(), ids=SPACED_VALUES.keys())
def test_values_with_spaces_in_yaml_ini_toml_and_messages_are_replaced_whole(text: str) -> None:
    """The whole value, to its line's end, a closing quote or bracket, or the next pair."""
    out = redacted(text)
    assert S not in out
    assert "bob" in out


CONNECTIONS = {
    "postgres url": f"postgresql://app:{S}@db.example.com:5432/app",
    "url password with @ and /": f"mysql://root:p@ss/{S}@db/app",
    "mongodb srv": f"mongodb+srv://user:{S}@cluster0.example.net/db?retryWrites=true",
    "redis no user": f"rediss://:{S}@cache.example.com:6380/0",
    "basic auth in url": f"https://bob:{S}@example.com/private",
    "token as url user": f"https://{chars(130, 40)}{S}@github.com/org/repo.git",
    "sentry dsn": f"https://{chars(131, 32, HEX)}@o1.ingest.sentry.io/42 {S}"[:-9],
    "ado.net": f"Server=db;Database=app;User Id=sa;Password={S};Encrypt=true",
    "ado.net with spaces": f"Server=db;User ID=sa;Password=my {S} pass;Database=app",
    "odbc braces": f"Driver={{ODBC}};Server=s;PWD={{p;{S}}};UID=bob",
    "azure storage": f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={S}==;Suffix=x",
    "service bus": f"Endpoint=sb://x/;SharedAccessKeyName=Root;SharedAccessKey={S}=",
    "jdbc query": f"jdbc:mysql://db:3306/app?user=bob&password={S}&ssl=true",
    "oracle thin": f"jdbc:oracle:thin:scott/{S}@//db:1521/orcl",
    "sqlplus": f"sqlplus scott/{S}@orcl",
    "curl user": f"curl -u bob:{S} https://api.example.com",
    "curl user quoted": f"curl --user 'bob:my {S}' https://api.example.com",
    "mysql attached": f"mysql -h db -u root -p{S} app",
    "sshpass": f"sshpass -p {S} ssh bob@host",
    "har header": json.dumps([{"name": "X-API-Key", "value": S}, {"name": "Accept", "value": "*"}]),
    "kubernetes env": f"env:\n- name: DB_PASSWORD\n  value: {S}\n- name: DB_USER\n  value: bob",
    "authorization bearer": f"Authorization: Bearer {S}abcdef",
    "authorization token scheme": f"Authorization: token {S}",
    "authorization aws4": f"Authorization: AWS4-HMAC-SHA256 Credential=A/1, Signature={S}",
    "authorization digest": f'Authorization: Digest username="bob", response="{S}"',
    "x-api-key header": f"X-API-Key: {S}",
    "cookie": f"Cookie: sessionid={S}; theme=dark",
    "set-cookie": f"Set-Cookie: token={S}; Path=/; HttpOnly",
    "pem in json": json.dumps({"private_key": f"-----BEGIN PRIVATE KEY-----\nMII{S}\n-----END"}),
    "openssh key": f"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl{S}\n-----END OPENSSH PRIVATE KEY",
    "pgp key": f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQdG{S}\n-----END PGP PRIVATE KEY",
    "putty key": f"PuTTY-User-Key-File-3: ssh-rsa\nPrivate-Lines: 1\nAAAA{S}\nPrivate-MAC: ab12",
}  # fmt: skip


@pytest.mark.parametrize("text", CONNECTIONS.values(), ids=CONNECTIONS.keys())
def test_connection_strings_headers_and_key_blocks_lose_their_secrets(text: str) -> None:
    """Passwords in URLs and DSNs, credentials in headers and curl, private key blocks."""
    assert S not in redacted(text)


# -- 4. the generic rules ------------------------------------------------------------------

NEAR_WORDS = [
    f"my api key is {S}12345678", f"The password was {S}!", f"use token ({S}abc)",
    f"machine api.example.com login bob password {S}99", f"secret key = {S}", f"API key {S}0000",
    f"access token -> {S}AbC1", f"client secret: '{S}' (rotate soon)", f"passphrase is {S}#1",
    f"the password for bob@example.com is {S}&3",
]  # fmt: skip


@pytest.mark.parametrize("text", NEAR_WORDS)
def test_a_credential_after_a_secret_word_is_redacted(text: str) -> None:
    """A credential-shaped word after a secret name and linking words (is, was, ->, ...)."""
    assert S not in redacted(text)


def test_prose_after_a_secret_word_is_kept() -> None:
    """Words are not credentials: only credential-shaped values go."""
    for text in (
        "the password is incorrect", "token expired, please sign in again",
        "Secret Manager returned an error", "invalid api key format", "password reset sent",
    ):  # fmt: skip
        assert redacted(text) == text


def test_random_strings_of_credential_length_are_redacted_without_any_context() -> None:
    """Base64 and base62 keys of 32 to 64 characters, alone in text: nearly all are caught.

    A random string is told from words by its mix of cases and digits and the lack of
    pronounceable words; hex strings are kept (digests and ids look the same).
    """
    rng = random.Random(2024)
    alphabets = (ALNUM, ALNUM + "+/", ALNUM + "-_")
    keys = [
        chars(rng.randrange(10**9), rng.choice((32, 40, 48, 64)), rng.choice(alphabets))
        for _ in range(500)
    ]
    caught = sum(key not in redacted(f"config value {key} loaded") for key in keys)
    assert caught >= 490
    for key in ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aB3xY9kL2mN8pQ4rS7tU1vW5zC6dE0fG"):
        assert key not in redacted(f"aws {key} here")


# -- 5. through the whole pipeline ---------------------------------------------------------


def fail_with(text: str) -> None:
    """One recorded execution: the text as input and metadata, then as an exception."""
    with TelemetryContext("classes.pipeline", inputs={"v": text}) as call:
        call.set_metadata({"v": [text]})
        raise RuntimeError(text)


NEAR_TEXTS = {f"near words {number}": text for number, text in enumerate(NEAR_WORDS)}
PIPELINE_TEXTS: dict[str, str] = {**REPR_TEXTS, **SPACED_VALUES, **CONNECTIONS, **NEAR_TEXTS}


@pytest.mark.parametrize("text", PIPELINE_TEXTS.values(), ids=PIPELINE_TEXTS.keys())
def test_each_text_case_reaches_neither_file_nor_span_as_input_metadata_or_error(
    text: str, memory: tuple[Path, InMemorySpanExporter]
) -> None:
    """As an input, as metadata and as the message of the exception that ends the call:
    the file, the span's attributes, its exception event and its status hold no secret."""
    with pytest.raises(RuntimeError):
        fail_with(text)
    assert S not in recorded_text(memory)
    (entry,) = helpers.strict_entries(memory[0])
    assert REDACTED in entry["error_message"]


HOSTILE_TEXTS = {
    "many url schemes": "://a:" * 4000, "stems in one word": "passpasspass" * 1500,
    "curl options": "curl -u " * 2000, "open brackets": "password=(" * 2000,
    "quotes in a value": "password=(" + "'x\"" * 5000, "indented lines": "key:\n" + " \n" * 8000,
}  # fmt: skip


@pytest.mark.parametrize("text", HOSTILE_TEXTS.values(), ids=HOSTILE_TEXTS.keys())
def test_hostile_repetitions_are_redacted_to_a_fixed_point(text: str) -> None:
    """Text built to make the new rules backtrack still comes back, stable and encodable."""
    redacted(text).encode("utf-8")

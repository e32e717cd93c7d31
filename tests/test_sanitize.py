"""Tests for betty_otel._sanitize: secret redaction and safe conversion to strict JSON."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
import json
import math
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from betty_otel._sanitize import (
    DEFAULT_SECRET_KEYS,
    REDACTED,
    Sanitizer,
    default_sanitizer,
    to_json_text,
)

S = Sanitizer()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def strict_json(value: Any) -> Any:
    """Round-trip through strict JSON (no NaN/Infinity), failing on anything else."""

    def reject(name: str) -> None:
        raise AssertionError(f"non-strict JSON constant {name}")

    text = to_json_text(value)
    text.encode("utf-8")  # no lone surrogates
    return json.loads(text, parse_constant=reject)


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
    assert S.redact_text(f"{key}=visible") == f"{key}=visible"


def test_default_secret_keys_are_in_normalised_form() -> None:
    """DEFAULT_SECRET_KEYS holds lowercase names without separators, the documented ones too."""
    for name in DEFAULT_SECRET_KEYS:
        assert name == name.lower()
        assert not set(name) & set("-_. ")
    assert {"password", "apikey", "auth", "authorization", "pin", "cvv"} <= DEFAULT_SECRET_KEYS


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
    assert sanitizer.redact_text("tenant.id: abc") == f"tenant.id: {REDACTED}"
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
    out = S.redact_text(text)
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
    assert S.redact_text(text) == text


def test_error_text_redaction_is_idempotent_and_handles_non_str() -> None:
    """redact_text twice equals once; a non-str argument is converted, never raised on."""
    once = S.redact_text("Error: password=abc, Bearer xyz12345678, " + GH)
    assert S.redact_text(once) == once
    assert REDACTED in S.redact_text(ValueError("token=abc"))  # type: ignore[arg-type]


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
    out = S.redact_text(text)
    assert secret not in out
    assert S.redact_text(out) == out
    value = S.sanitize({"note": text, "list": [text]})
    assert secret not in to_json_text(value)
    assert S.sanitize(value) == value


@FAST
@given(st.text())
def test_redact_text_is_idempotent_on_arbitrary_text(text: str) -> None:
    """Property: redact_text(redact_text(s)) == redact_text(s), output encodes to UTF-8."""
    once = S.redact_text(text)
    once.encode("utf-8")
    assert S.redact_text(once) == once


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=120)
    | st.sampled_from([f"password={GH}", "Bearer abc123DEF456", JWT, "x" * 200]),
    lambda inner: st.lists(inner, max_size=8)
    | st.dictionaries(st.text(max_size=12) | st.sampled_from(["token", "pwd"]), inner, max_size=8)
    | st.tuples(inner, inner)
    | st.frozensets(st.integers(), max_size=5),
    max_leaves=60,
)  # fmt: skip


@FAST
@given(JSONISH)
def test_sanitize_is_idempotent_and_strict_json_under_tight_budgets(value: object) -> None:
    """Property: sanitize(sanitize(x)) == sanitize(x) even when items, depth and sizes are cut."""
    tight = Sanitizer(max_value_chars=64, max_total_chars=400, max_depth=3, max_items=4)
    for sanitizer in (S, tight):
        once = sanitizer.sanitize(value)
        assert sanitizer.sanitize(once) == once
        strict_json(once)
        assert GH not in to_json_text(once)


# -- conversion ----------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: float
    api_key: str = "k-123"


class Model:
    """pydantic-like: has model_dump()."""

    def model_dump(self) -> dict[str, Any]:
        return {"name": "m", "password": "p"}


class BrokenModel:
    def model_dump(self) -> dict[str, Any]:
        raise RuntimeError("boom")

    def __repr__(self) -> str:
        return "BrokenModel()"


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        return "bad-but-str"


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


class BadKey:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __hash__(self) -> int:
        return 1


CONVERSIONS: list[tuple[object, object]] = [
    (Point(1, 2.5), {"x": 1, "y": 2.5, "api_key": REDACTED}),
    (Model(), {"name": "m", "password": REDACTED}),
    (BrokenModel(), "BrokenModel()"),
    (Color.RED, "red"),
    (Level.HIGH, 3),
    (dt.datetime(2025, 1, 2, 3, 4, 5, 123456, dt.timezone.utc), "2025-01-02T03:04:05.123456+00:00"),
    (dt.date(2025, 1, 2), "2025-01-02"),
    (dt.time(3, 4, 5), "03:04:05"),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    (Decimal("1.10"), "1.10"),
    (Decimal("NaN"), "NaN"),
    (PurePosixPath("/tmp/x.txt"), "/tmp/x.txt"),
    (b"hello", "hello"),
    (b"\xff\xfe", "<bytes len=2>"),
    (bytearray(b"x" * 2000), "<bytearray len=2000>"),
    (memoryview(b"abc"), "abc"),
    ({3, 1, 2}, [1, 2, 3]),
    (frozenset({"b", "a"}), ["a", "b"]),
    ((1, "a"), [1, "a"]),
    (float("nan"), "NaN"),
    (float("inf"), "Infinity"),
    (float("-inf"), "-Infinity"),
    (2**64, str(2**64)),
    (-(2**63), -(2**63)),
    (2**63, str(2**63)),
    (10**5000, "<int with 16610 bits>"),
    ("a\ud800b", "a\ufffdb"),
    ("\ud83d\ude00", "\U0001f600"),
    ({1: "a", None: "b", False: "c", 2.5: "d"}, {"1": "a", "null": "b", "false": "c", "2.5": "d"}),
    ({1: "first", "1": "second"}, {"1": "first"}),
    ({BadKey(): 1}, {"<unrepresentable key BadKey>": 1}),
    (BadRepr(), "bad-but-str"),
    (Unrepresentable(), "<unrepresentable Unrepresentable>"),
    (range(3), [0, 1, 2]),
    ({"a": 1}.keys(), ["a"]),
    (Exception("password=x"), f"Exception('password={REDACTED}')"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), CONVERSIONS, ids=lambda v: type(v).__name__)
def test_any_value_converts_to_strict_json(value: object, expected: object) -> None:
    """Dataclasses, model_dump, enums, dates, UUID, Decimal, paths, bytes, sets, NaN, big ints,
    surrogates, odd keys and hostile reprs all convert as documented, as strict JSON."""
    result = S.sanitize(value)
    assert result == expected
    assert strict_json(result) == expected


def test_set_with_unsortable_elements_becomes_a_list() -> None:
    """A set whose elements can't be compared still converts (in iteration order)."""
    result = S.sanitize({1, "a", None})
    assert isinstance(result, list)
    assert sorted(map(str, result)) == ["1", "None", "a"]


def test_generators_and_iterators_are_not_consumed() -> None:
    """An iterator argument is described by type, never read (the caller still needs it)."""
    gen = (i for i in range(3))
    it: Iterator[int] = iter([1, 2])
    assert S.sanitize({"g": gen, "i": it}) == {
        "g": "<generator not consumed>",
        "i": "<list_iterator not consumed>",
    }
    assert list(gen) == [0, 1, 2]
    assert list(it) == [1, 2]


def test_cycles_become_a_marker() -> None:
    """Self-referencing dicts, lists and dataclasses end in "<cycle>" instead of recursing."""
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    lst: list[Any] = [1]
    lst.append(lst)

    @dataclasses.dataclass
    class Node:
        child: Any = None

    node = Node()
    node.child = node
    assert S.sanitize(d) == {"a": 1, "self": "<cycle>"}
    assert S.sanitize(lst) == [1, "<cycle>"]
    assert S.sanitize(node) == {"child": "<cycle>"}
    shared = [1]
    assert S.sanitize([shared, shared]) == [[1], [1]]  # shared, not a cycle


def test_other_objects_use_their_truncated_repr() -> None:
    """An arbitrary object becomes its repr, cut to max_value_chars."""

    class Big:
        def __repr__(self) -> str:
            return "B" * 100_000

    result = Sanitizer(max_value_chars=100).sanitize(Big())
    assert isinstance(result, str)
    assert len(result) <= 100
    assert result.startswith("BBB")


# -- budgets -------------------------------------------------------------------------------


def test_huge_string_is_truncated_with_marker() -> None:
    """A 10 MB string comes back within max_value_chars, ending in a truncation marker."""
    result = S.sanitize("x" * 10_000_000)
    assert isinstance(result, str)
    assert len(result) <= 4096
    assert result.endswith("chars>")
    assert "...<truncated " in result
    assert len(to_json_text(result)) <= 4096 + 2


def test_huge_list_keeps_max_items_with_marker() -> None:
    """A million-item list keeps max_items entries, the last saying how many were dropped."""
    result = S.sanitize(list(range(1_000_000)))
    assert len(result) == 200
    assert result[:3] == [0, 1, 2]
    assert result[-1] == "<999801 more items>"
    big_dict = S.sanitize({f"k{i}": i for i in range(1000)})
    assert len(big_dict) == 200
    assert big_dict["<truncated>"] == "<801 more items>"


def test_total_json_size_stays_within_budget() -> None:
    """However large and wide the value, its JSON stays near max_total_chars."""
    block = "y" * 4000
    value = {f"k{i}": [[block] * 200 for _ in range(50)] for i in range(100)}
    result = S.sanitize(value)
    assert len(to_json_text(result)) <= 65536 + 4096 + 1024
    assert "<truncated: size budget exceeded>" in to_json_text(result)
    small = Sanitizer(max_total_chars=1000).sanitize(["z" * 300] * 50)
    assert len(to_json_text(small)) < 2000


def test_nesting_beyond_max_depth_becomes_marker() -> None:
    """Containers nested deeper than max_depth are replaced by a depth marker."""
    deep: Any = "leaf"
    for _ in range(50):
        deep = [deep]
    text = to_json_text(S.sanitize(deep))
    assert "<max depth exceeded>" in text
    assert text.count("[") == 21
    assert Sanitizer(max_depth=1).sanitize({"a": {"b": {"c": 1}}}) == {
        "a": {"b": "<max depth exceeded>"}
    }


def test_secrets_are_redacted_before_truncation() -> None:
    """A secret straddling the cut point leaks no prefix: redaction runs first."""
    secret = "S3CR3T" * 50
    text = "a" * 4050 + " password=" + secret
    result = S.sanitize(text)
    assert "S3CR" not in result
    assert len(result) <= 4096
    huge_token = "x " + "ghp_" + "Q" * 5_000_000
    assert "QQQQ" not in S.sanitize(huge_token)
    pem = "-----BEGIN PRIVATE KEY-----\n" + "M" * 100_000
    assert "MMMM" not in S.sanitize(pem)


@pytest.mark.parametrize("limit", [64, 100, 4096])
def test_truncated_strings_are_stable_under_a_second_pass(limit: int) -> None:
    """A cut never lands inside a marker so that a second pass would change it."""
    sanitizer = Sanitizer(max_value_chars=limit)
    for pad in range(40):
        text = "p" * (limit - 30 + pad) + " Authorization: Bearer abc123DEF456 token=" + "z" * 90
        once = sanitizer.sanitize(text)
        assert len(once) <= limit
        assert sanitizer.sanitize(once) == once
        assert "abc123" not in once
        assert "zzz" not in once


# -- bind_inputs ---------------------------------------------------------------------------


def greet(name: str, password: str, *extra: Any, greeting: str = "hi", **options: Any) -> None:
    """Signature under test."""


SIG = inspect.signature(greet)


def test_bind_inputs_names_arguments_applies_defaults_and_keeps_var_args_under_their_names() -> (
    None
):
    """Positional and keyword arguments bind by name; *args/**kwargs stay under their names."""
    result = S.bind_inputs(SIG, ("bob", "hunter2", 1, 2), {"api_key": "k", "color": "red"})
    assert result == {
        "name": "bob",
        "password": REDACTED,
        "extra": [1, 2],
        "greeting": "hi",
        "options": {"api_key": REDACTED, "color": "red"},
    }


def test_bind_inputs_redacts_keyword_and_positional_secrets() -> None:
    """f(api_key="x") and f("x") with a parameter named password are both redacted."""

    def f(api_key: str = "") -> None:
        """Keyword secret."""

    def g(password: str) -> None:
        """Positional secret."""

    assert S.bind_inputs(inspect.signature(f), (), {"api_key": "x"}) == {"api_key": REDACTED}
    assert S.bind_inputs(inspect.signature(g), ("x",), {}) == {"password": REDACTED}


def test_bind_inputs_skip_first_drops_self() -> None:
    """skip_first drops the self/cls argument before sanitizing."""

    class C:
        def method(self, x: int, token: str = "t") -> None:
            """Method under test."""

    sig = inspect.signature(C.method)
    assert S.bind_inputs(sig, (C(), 5), {}, skip_first=True) == {"x": 5, "token": REDACTED}

    def varargs(*args: Any) -> None:
        """Only *args: skip_first drops the first positional value."""

    assert S.bind_inputs(inspect.signature(varargs), (C(), 1, 2), {}, skip_first=True) == {
        "args": [1, 2]
    }


def test_bind_inputs_falls_back_when_binding_fails_and_never_raises() -> None:
    """Wrong arguments keep the names they can have; the rest goes under "kwargs"/"args"."""
    result = S.bind_inputs(SIG, ("a",), {"name": "dup", "secret": "s"})
    assert result == {"name": "a", "kwargs": {"name": "dup", "secret": REDACTED}}
    partial = S.bind_inputs(SIG, ("only-name",), {})
    assert partial == {"name": "only-name", "extra": [], "greeting": "hi", "options": {}}
    weird = S.bind_inputs(SIG, None, None)  # type: ignore[arg-type]
    assert isinstance(weird, dict)


# -- never raise, shared instance, JSON text -----------------------------------------------


class Hostile:
    """Raises from everything it can."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(name)

    def __repr__(self) -> str:
        raise RuntimeError("repr")


class BadMapping(dict[str, int]):
    def items(self) -> Any:
        raise RuntimeError("items")


HOSTILE: dict[str, Callable[[], object]] = {
    "hostile": Hostile,
    "bad-mapping": lambda: BadMapping(a=1),
    "nested-hostile": lambda: {"k": [Hostile()]},
    "unrepresentable": Unrepresentable,
    "type": lambda: type,
    "function": lambda: greet,
}


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_sanitize_never_raises_on_hostile_values(make: Callable[[], object]) -> None:
    """Hostile objects produce strict JSON (a marker or repr), never an exception."""
    value = make()  # built here: pytest itself would trip over Hostile while collecting
    strict_json(S.sanitize(value))
    assert isinstance(S.redact_text(value), str)  # type: ignore[arg-type]
    assert isinstance(S.bind_inputs(SIG, (value,), {"k": value}), dict)


def test_default_sanitizer_is_one_shared_instance() -> None:
    """default_sanitizer() is cached: the hot path reuses one instance."""
    assert default_sanitizer() is default_sanitizer()
    assert default_sanitizer().sanitize({"token": "x"}) == {"token": REDACTED}


def test_to_json_text_is_compact_and_never_raises() -> None:
    """to_json_text returns compact str; unsanitized values are sanitized rather than raising."""
    assert to_json_text({"a": [1, "b"], "c": None}) == '{"a":[1,"b"],"c":null}'
    fallback = json.loads(to_json_text({"n": 2**70, "p": Path("/x"), "s": "\ud800"}))
    assert fallback == {"n": str(2**70), "p": "/x", "s": "\ufffd"}
    assert json.loads(to_json_text(Point(1, 2.0))) == {"x": 1, "y": 2.0, "api_key": REDACTED}
    assert isinstance(orjson.loads(to_json_text("x")), str)
    assert math.isfinite(orjson.loads(to_json_text(1.5)))

"""The public face of the redaction rules (`betty_otel.redaction`): what `set_rules` changes.

- Rules add to the defaults, for the whole process; each call replaces the last (and a call
  with none resets), nothing accumulates.
- ``redact_keys`` are matched exactly after normalising case and ``-_.``/spaces;
  ``allow_keys`` win over every key rule, yet their values still meet the value detectors;
  ``redact_patterns`` replace every match whole, a compiled pattern with its own flags.
- A sanitizer shared by threads never keeps a key's verdict of the old rules for new ones.
- One name or pattern may be given alone; a bad argument raises a TypeError or ValueError
  that names it, before anything changes.

test_faults_redaction pins the rules on recorded entries and spans, and the first rejections.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from betty_otel import redaction
from betty_otel._sanitize import Sanitizer
from betty_otel.redaction import REDACTED, is_secret_key, redact, set_rules

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghijklmnop"


@pytest.fixture(autouse=True)
def _default_rules() -> Iterator[None]:
    """Every test starts and ends with the default rules (they are process-wide)."""
    set_rules()
    yield
    set_rules()


def test_the_public_names_are_exported_from_betty_otel_redaction() -> None:
    assert {"set_rules", "is_secret_key", "redact", "REDACTED"} <= set(redaction.__all__)
    assert REDACTED == "***REDACTED***"


def test_set_rules_takes_keyword_arguments_only() -> None:
    with pytest.raises(TypeError):
        set_rules(["tenant_id"])  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "spelling", ["tenant_id", "TenantId", "tenant-id", "TENANT.ID", "Tenant Id"]
)
def test_an_added_name_covers_every_spelling_of_it(spelling: str) -> None:
    set_rules(redact_keys=["Tenant ID"])
    assert is_secret_key(spelling)


@pytest.mark.parametrize("other", ["tenant", "tenant_ids", "my_tenant_id", "tenant_id_hint", "t"])
def test_an_added_name_is_matched_exactly_not_as_a_part(other: str) -> None:
    set_rules(redact_keys=["tenant_id"])
    assert not is_secret_key(other)


def test_added_names_add_to_the_defaults() -> None:
    set_rules(redact_keys=["tenant_id"])
    assert is_secret_key("password")
    assert is_secret_key("api_key")


def test_one_name_alone_is_one_name_not_its_characters() -> None:
    set_rules(redact_keys="tenant_id", allow_keys="password")
    assert is_secret_key("tenant_id")
    assert not is_secret_key("t")
    assert not is_secret_key("password")


def test_any_iterable_of_names_is_taken() -> None:
    set_rules(redact_keys=(name for name in ["tenant_id"]), allow_keys={"password": 1})
    assert is_secret_key("tenant_id")
    assert not is_secret_key("password")


@pytest.mark.parametrize("spelling", ["password", "PASSWORD", "Pass-Word"])
def test_an_allowed_name_is_never_redacted_by_key_in_any_spelling(spelling: str) -> None:
    set_rules(allow_keys=["password"])
    assert not is_secret_key(spelling)
    assert redact(f"{spelling}=hunter2") == f"{spelling}=hunter2"
    assert is_secret_key("api_key")  # the other defaults stay


def test_an_allowed_name_wins_over_an_added_one() -> None:
    set_rules(redact_keys=["x_id"], allow_keys=["X-Id"])
    assert not is_secret_key("x_id")


def test_the_value_of_an_allowed_name_still_meets_the_value_detectors() -> None:
    set_rules(allow_keys=["password"])
    assert redact(f"password={JWT}") == f"password={REDACTED}"


def test_a_pattern_replaces_every_match_whole_case_as_written() -> None:
    set_rules(redact_patterns=[r"EMP-\d+"])
    assert redact("EMP-12 then EMP-345, emp-6") == f"{REDACTED} then {REDACTED}, emp-6"


def test_a_compiled_pattern_keeps_its_flags_and_may_be_given_alone() -> None:
    set_rules(redact_patterns=re.compile(r"emp-\d+", re.IGNORECASE))
    assert redact("EMP-12 and emp-3") == f"{REDACTED} and {REDACTED}"


def test_a_pattern_of_exactly_the_length_limit_is_taken() -> None:
    set_rules(redact_patterns=["x" * 1000])
    assert redact("x" * 1000) == REDACTED


def test_each_call_replaces_the_previous_rules() -> None:
    set_rules(redact_keys=["tenant_id"], allow_keys=["password"], redact_patterns=[r"EMP-\d+"])
    set_rules(redact_keys=["org_id"])
    assert is_secret_key("org_id")
    assert not is_secret_key("tenant_id")
    assert is_secret_key("password")
    assert redact("EMP-1") == "EMP-1"


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"redact_keys": 5}, TypeError, "redact_keys must be one item or an iterable"),
        ({"allow_keys": None}, TypeError, "allow_keys must be one item or an iterable"),
        ({"redact_patterns": 5}, TypeError, "redact_patterns must be one item or an iterable"),
        ({"allow_keys": [b"password"]}, TypeError, "allow_keys must hold names (str), got bytes"),
        ({"redact_keys": ["ok", None]}, TypeError, "redact_keys must hold names (str)"),
        ({"redact_patterns": [""]}, TypeError, "non-empty regexes"),
        ({"redact_patterns": re.compile(b"x")}, TypeError, "non-empty regexes"),
        ({"redact_patterns": ["x" * 1001]}, TypeError, "over 1000 characters"),
        ({"redact_patterns": ["[a-"]}, ValueError, "invalid redact pattern '[a-'"),
        ({"redact_patterns": ["x?"]}, ValueError, "matches empty text"),
        ({"redact_patterns": [re.compile("(?:)")]}, ValueError, "matches empty text"),
    ],
)
def test_a_bad_argument_raises_an_error_naming_it_and_changes_nothing(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    set_rules(redact_keys=["tenant_id"], allow_keys=["password"], redact_patterns=[r"EMP-\d+"])
    with pytest.raises(error, match=re.escape(message)):
        set_rules(**arguments)
    assert is_secret_key("tenant_id")
    assert not is_secret_key("password")
    assert redact("EMP-1") == REDACTED


def test_a_key_judged_while_the_rules_change_is_never_cached_under_the_new_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sanitizer shared by threads: while one thread judges a key by the old rules,
    another changes the rules and sanitizes. The old verdict ('not secret') must not be
    kept for the new rules, which name the key a secret: every later call redacts it."""
    sanitizer = Sanitizer()
    old_redactor = sanitizer.redactor
    judge = old_redactor.key_kind

    def judged_while_rules_change(key: str) -> int:
        kind = judge(key)  # the old rules' verdict: not secret
        set_rules(redact_keys=["tenant_ref"])
        assert sanitizer.sanitize({"other": 1}) == {"other": 1}  # another thread's call
        return kind

    monkeypatch.setattr(old_redactor, "key_kind", judged_while_rules_change)
    assert sanitizer.sanitize({"tenant_ref": "t-1"}) == {"tenant_ref": "t-1"}  # judged before
    assert sanitizer.sanitize({"tenant_ref": "t-1"}) == {"tenant_ref": REDACTED}
    assert sanitizer.sanitize([{"tenant_ref": "t-1"}]) == [{"tenant_ref": REDACTED}]

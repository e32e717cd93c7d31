"""Redaction keeps useful data: a benign corpus that must come back unchanged.

The generic rules (random-looking strings, credentials after secret words) would be
worthless if they ate identifiers, digests, paths, images or prose. This corpus holds
what telemetry really carries: UUIDs, trace and span ids, git SHAs, sha256 digests,
paths, base64 images, tokenizer and pagination fields, model names, ids of LLM APIs,
URLs, config text without secrets, tracebacks and English prose. Every item must come
back unchanged from ``redaction.redact`` and from a real recording: the
over-redaction rate on it is zero.

Pagination tokens (``next_token``, ``page_token``, ``NextToken``, ``cursor``) are kept,
even when random-looking: they are opaque cursors over data the caller may already
read, they grant nothing on their own, and they are what one needs to debug paging.
A known credential format under such a name is still redacted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from pathlib import Path
from typing import Any

import pytest

import helpers
from betty_otel import TelemetryContext, redaction
from betty_otel.testing import capture_entries

REDACTED = redaction.REDACTED
RNG = random.Random(16)
ALNUM = string.ascii_letters + string.digits


def _hex(n: int) -> str:
    return "".join(RNG.choice("0123456789abcdef") for _ in range(n))


def _b64(n: int) -> str:
    return base64.b64encode(RNG.randbytes(n)).decode()


def _random_id(n: int) -> str:
    return "".join(RNG.choice(ALNUM) for _ in range(n))


_PNG_1PX = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5Er"
    "kJggg=="
)


def _identifiers() -> list[str]:
    """UUIDs, trace and span ids, SHAs and digests, as telemetry shows them."""
    items: list[str] = []
    for _ in range(20):
        u = uuid.UUID(int=RNG.getrandbits(128), version=4)
        trace, span = _hex(32), _hex(16)
        items += [str(u), str(u).upper(), u.hex, f"{{{u}}}", f"urn:uuid:{u}"]
        items += [trace, span, f"00-{trace}-{span}-01", f"trace_id={trace} span_id={span}"]
        items += [_hex(40), _hex(7), hashlib.sha256(RNG.randbytes(8)).hexdigest()]
        items += [f"sha256:{_hex(64)}", f"md5 {_hex(32)}", f"commit {_hex(40)}"]
        items += ["sha384-" + base64.b64encode(hashlib.sha384(RNG.randbytes(8)).digest()).decode()]
        items += ["sha256-" + base64.b64encode(hashlib.sha256(RNG.randbytes(8)).digest()).decode()]
    return items


def _paths_and_files() -> list[str]:
    """Paths, URIs, base64 images and other blobs that carry no credential."""
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0" + RNG.randbytes(400)).decode()
    gif = base64.b64encode(b"GIF89a" + RNG.randbytes(60)).decode()
    pdf = base64.b64encode(b"%PDF-1.7\n" + RNG.randbytes(200)).decode()
    return [
        "/home/User1/Projects/MyApp2/src/main.py",
        r"C:\Users\JohnDoe\AppData\Local\Temp\tmp8x7kq2_a.json",
        "C:/Users/JohnDoe/AppData/Local/Programs/Python/Python312/Lib/site-packages",
        "/usr/lib/python3.11/site-packages/opentelemetry/sdk/trace/__init__.py",
        "/var/folders/3x/k2l9mn8p4q7r_abc123def/T/pytest-of-user/pytest-42/test0",
        "s3://my-bucket-2024/uploads/2024/01/15/Report_Final_v2.pdf",
        "gs://ml-models-prod/checkpoints/Llama3-8B/step-001200/model.safetensors",
        "~/.cache/huggingface/hub/models--meta-llama--Llama-3.1-8B-Instruct/snapshots",
        f"data:image/png;base64,{_PNG_1PX}",
        f"data:image/jpeg;base64,{jpeg}",
        f"data:image/gif;base64,{gif}",
        f"data:application/pdf;base64,{pdf}",
        _PNG_1PX,
        jpeg,
        f'<img src="data:image/png;base64,{_PNG_1PX}" alt="logo">',
        json.dumps({"image": f"data:image/jpeg;base64,{jpeg}", "caption": "a cat"}),
    ]


def _names() -> list[str]:
    """Model names, package names, ids of LLM APIs, cloud and cluster names, versions."""
    return [
        "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4",
        "mistralai/Mixtral-8x7B-Instruct-v0.1", "sentence-transformers/all-MiniLM-L6-v2",
        "BAAI/bge-large-en-v1.5", "HuggingFaceH4/zephyr-7b-beta", "TheBloke/Llama-2-7B-Chat-GGUF",
        "microsoft/Phi-3-mini-4k-instruct", "gpt-4o-mini-2024-07-18", "claude-3-5-sonnet-20241022",
        "text-embedding-3-small", "opentelemetry-exporter-otlp-proto-http==1.27.0",
        f"chatcmpl-{_random_id(29)}", f"msg_01{_random_id(22)}", f"toolu_01{_random_id(22)}",
        f"call_{_random_id(24)}", f"req_{_random_id(24)}", f"pi_3{_random_id(23)}",
        "arn:aws:iam::123456789012:role/MyServiceRole-Prod2024",
        "arn:aws:lambda:us-east-1:123456789012:function:ProcessOrders2",
        "my-service-v2-deployment-7d9f8b6c5-x2k4p", "registry.example.com/team/api:v1.2.3-rc1",
        "AbstractSingletonProxyFactoryBean", "HTTPConnectionPool2Manager",
        "UTF8StringDecoderV2Impl",
        "test_sanitize_handles_Unicode2Surrogates", "Windows10Pro-x64-Build19045",
        "2024-01-15T10:30:00.123456+00:00", "P1DT2H30M", "v1.2.3-rc1+build.20240115",
        "bob@example.com", "192.168.1.10:8080", "fe80::1ff:fe23:4567:890a", "00:1A:2B:3C:4D:5E",
        "pk_live_0123456789abcdefABCDEF", "en_core_web_sm-3.7.1", "ERR_CONNECTION_REFUSED",
    ]  # fmt: skip


def _text() -> list[str]:
    """Prose, URLs, configs, queries, logs and tracebacks with ordinary words."""
    return [
        "The quick brown fox jumps over the lazy dog. Tokens used: 1234 of 4096.",
        "Please enter your password", "the password is incorrect", "password reset email sent",
        "token limit exceeded: 4096 tokens", "token expired, please sign in again",
        "invalid api key format", "The secret ingredient is love", "the key insight is caching",
        "Basic authentication failed at 10:30", "the bearer of bad news",
        "authentication failed for user bob", "session started at 10:30 for user bob",
        "KeyError: 'token'", "pin the version to 2.1.0", "Secret Manager returned 503",
        "Using model sentence-transformers/all-MiniLM-L6-v2 with max_tokens=512",
        "https://example.com/search?q=redaction&page=2&limit=50&sort=desc",
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s",
        "http://host:8080/path?mail=a@b.com", "https://api.example.com/v1/users/42/orders?page=3",
        "host: db.example.com\nport: 5432\nuser: bob\ndatabase: orders",
        "[server]\nhost = 0.0.0.0\nport = 8080\nworkers = 4",
        'name = "betty"\nversion = "1.0.0"\n[tool.ruff]\nline-length = 100',
        "SELECT id, name FROM users WHERE created_at > '2024-01-01' ORDER BY id LIMIT 50",
        "max_tokens=512, temperature=0.7, top_p=0.95, pad_token_id=0, eos_token_id=2",
        "pad_token: <pad>\neos_token: </s>\ntoken_count: 12\ntokens: ['Hello', 'world']",
        "next_page_token present: fetching page 3 of 10",
        "INFO 2024-01-15 10:30:00,123 worker[4242]: processed 128 items in 3.2s",
        "Traceback (most recent call last):\n"
        '  File "/app/src/handlers/PaymentProcessor2.py", line 42, in process\n'
        "    raise KeyError('api_version')\nKeyError: 'api_version'",
        "HTTPConnectionPool(host='localhost', port=8080): Max retries exceeded with url: /v1",
        "subprocess.CalledProcessError: Command '['git', 'push', 'origin', 'main']' returned 1",
        "def add(a, b):\n    return a + b  # the key function",
    ]  # fmt: skip


BENIGN = _identifiers() + _paths_and_files() + _names() + _text()


@pytest.mark.parametrize("text", BENIGN, ids=[f"{i}:{t[:30]}" for i, t in enumerate(BENIGN)])
def test_benign_text_is_never_redacted(text: str) -> None:
    """Identifiers, digests, paths, images, names, configs and prose come back unchanged."""
    assert redaction.redact(text) == text


def test_the_over_redaction_rate_on_the_benign_corpus_is_zero() -> None:
    """Recorded for real, as inputs and metadata: every item of the corpus is in the entry."""
    chunks = [BENIGN[start : start + 100] for start in range(0, len(BENIGN), 100)]
    with capture_entries() as entries:
        for chunk in chunks:
            with TelemetryContext("benign", inputs={"items": chunk}) as call:
                call.set_metadata({"items": chunk})
    recorded = [item for entry in entries for item in entry["inputs"]["items"]]
    changed = [item for item, kept in zip(BENIGN, recorded, strict=True) if item != kept]
    assert len(BENIGN) >= 300
    assert changed == []
    assert [entry["metadata"] for entry in entries] == [{"items": chunk} for chunk in chunks]


TOKENIZER = {
    "max_tokens": 512, "max_new_tokens": 64, "token_count": 42, "num_tokens": 7,
    "total_tokens": 99, "prompt_tokens": 40, "completion_tokens": 59,
    "tokens": ["Hello", ",", " world"], "token_ids": [15496, 11, 995],
    "token_type_ids": [0, 0, 1], "input_ids": [101, 2023, 102], "attention_mask": [1, 1, 1],
    "pad_token": "<pad>", "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>",
    "sep_token": "[SEP]", "cls_token": "[CLS]", "mask_token": "[MASK]",
    "pad_token_id": 0, "eos_token_id": 2, "bos_token_id": 1, "special_tokens": ["<s>"],
}  # fmt: skip
PAGINATION = {
    "next_token": _b64(48), "page_token": "CiAK" + _random_id(40),
    "next_page_token": _random_id(32),
    "NextToken": "AQICAHh" + _random_id(60), "nextPageToken": _b64(30), "cursor": _b64(24),
    "continuationToken": _b64(36), "prev_token": _random_id(28), "resume_token": _b64(24),
    "sync_token": _random_id(40), "pagination_token": _b64(40), "after": "cursor:" + _b64(18),
}  # fmt: skip
DATA_KEYS = {
    "id": f"chatcmpl-{_random_id(29)}", "request_id": _random_id(27), "run_id": _random_id(27),
    "message_id": f"msg_01{_random_id(22)}", "client_id": _random_id(32),
    "trace_id": _hex(32), "span_id": _hex(16), "commit": _hex(40), "etag": f'"{_b64(24)}"',
    "sha256": hashlib.sha256(b"x").hexdigest(), "checksum": _b64(32), "uuid": str(uuid.uuid4()),
    "fingerprint": _b64(32), "nonce": _b64(16), "digest": _b64(32), "revision": _random_id(40),
}  # fmt: skip


@pytest.mark.parametrize(
    "values", [TOKENIZER, PAGINATION, DATA_KEYS], ids=["tokenizer", "pagination", "data keys"]
)
def test_tokenizer_pagination_and_id_fields_are_recorded_exactly(
    values: dict[str, Any], telemetry_file: Path
) -> None:
    """In inputs and metadata, in the file, even when the values look random."""
    with TelemetryContext("benign.fields", inputs=values) as call:
        call.set_metadata({"response": values})
    (entry,) = helpers.strict_entries(telemetry_file)
    assert entry["inputs"] == values
    assert entry["metadata"] == {"response": values}


@pytest.mark.parametrize("values", [PAGINATION, DATA_KEYS], ids=["pagination", "data keys"])
def test_random_looking_cursors_and_ids_are_kept_in_text_too(values: dict[str, Any]) -> None:
    """As JSON, as a query string and as YAML: a data key's value is not a credential."""
    as_json = json.dumps(values)
    assert redaction.redact(as_json) == as_json
    for key, value in values.items():
        for text in (f"{key}={value}", f"{key}: {value}", f'"{key}": "{value}"'):
            assert redaction.redact(text) == text


def test_the_same_random_string_under_an_ordinary_key_is_redacted() -> None:
    """What keeps a cursor is its key: a random string of credential length elsewhere goes."""
    value = PAGINATION["next_page_token"]
    assert value not in redaction.redact(f"note: {value}")
    assert value not in redaction.redact(f"loaded {value} from the vault")


def test_a_known_credential_under_a_pagination_or_id_key_is_still_redacted() -> None:
    """Format rules apply under every key: a GitHub token named next_token is a token."""
    token = "ghp_" + _random_id(36)
    for key in ("next_token", "page_token", "cursor", "request_id", "trace_id"):
        with capture_entries() as entries, TelemetryContext("benign", inputs={key: token}):
            pass
        assert entries[0]["inputs"] == {key: REDACTED}
        assert token not in redaction.redact(f"{key}={token}")

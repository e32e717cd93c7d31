"""``betty-telemetry capture`` as Betty's scripts run it: positional arguments only.

Such a line is read without argparse (`betty_otel.cli.capture.plain_capture`); it must
read exactly what the parser reads, leave every other line to the parser, load neither
argparse nor orjson, and redact the inputs it is given as completely as any other path.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import pytest

from betty_otel.cli.capture import plain_capture
from betty_otel.cli.commandline import build_parser
from cli_helpers import CLI, run, run_main
from helpers import read_entries, token_chars

REDACTED = "***REDACTED***"
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACE"))}
"""The environment without OTel settings: a capture takes the direct path."""

PLAIN_LINES = [
    ["capture", "plugin.build", "success", "320", "CLI"],
    ["capture", "agent.run", "success", "1500", "API", '{"agent": "api.designer"}'],
    ["capture", "a", "failure", "80", "workflow.compose", '{"path": "x.yaml"}', "missing name"],
    ["capture", "", "bogus", "x", "", "not json", ""],  # invalid, but read alike
    ["capture", "s k", "success", "1e3", "c=1", "{}", "a -b --c"],
]
NOT_PLAIN_LINES = [
    ["capture", "a", "success", "1", "CLI", "--file", "t.json"],
    ["capture", "a", "success", "1", "CLI", "--metadata", "{}"],
    ["capture", "--file=t.json", "a", "success", "1", "CLI"],
    ["capture", "a", "success", "-5", "CLI"],  # a negative number, or an option: the parser's
    ["capture", "a", "success", "1", "CLI", "-"],
    ["capture", "a", "success", "1", "CLI", "--"],
    ["capture", "a", "success", "1", "CLI", "-h"],
    ["capture", "a", "success", "1"],  # too few: the parser says which are missing
    ["capture", "a", "success", "1", "CLI", "{}", "boom", "extra"],  # too many
    ["query", "a", "success", "1", "CLI"],
    [],
]


@pytest.mark.parametrize("line", PLAIN_LINES)
def test_a_plain_capture_line_reads_as_the_parser_reads_it(line: list[str]) -> None:
    """Every argument the parser names, with the same value (absent ones None)."""
    parsed = vars(build_parser("capture").parse_args(line))
    plain = plain_capture(line)
    assert plain is not None
    assert {name: getattr(plain, name) for name in parsed} == parsed


@pytest.mark.parametrize("line", NOT_PLAIN_LINES)
def test_any_other_line_is_left_to_the_parser(line: list[str]) -> None:
    """Options, a word that may be one, or a wrong count: None, so the parser reads it."""
    assert plain_capture(line) is None


def test_a_line_left_to_the_parser_still_captures(tmp_path: Path) -> None:
    """The check above can fail: a negative-looking word goes to the parser, which takes
    it as the duration; the capture then refuses it as a negative duration (status 1)."""
    path = tmp_path / "telemetry.json"
    result = run("capture", "a", "success", "-5", "CLI", "--file", str(path))
    assert result.returncode == 1
    assert "duration" in result.stderr
    assert not path.exists()


def test_a_plain_capture_with_inputs_loads_neither_argparse_nor_orjson(tmp_path: Path) -> None:
    """The line Betty's scripts run, with inputs to redact: no parser, no orjson (which
    imports dataclasses, inspect and uuid), no SDK; the entry is written redacted."""
    path = tmp_path / "telemetry.json"
    argv = ["capture", "a", "success", "1", "CLI", '{"password": "hunter22", "n": 1e16}', "x"]
    result, loaded = run_main(
        argv, {**CLEAN_ENV, "BETTY_TELEMETRY_FILE": str(path)}, modules="sorted(sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    heavy = ("argparse", "gettext", "orjson", "dataclasses", "inspect", "uuid", "opentelemetry")
    assert [name for name in loaded if name.partition(".")[0] in heavy] == []
    assert "betty_otel._sanitize" in loaded
    assert read_entries(path)[0]["inputs"] == {"password": REDACTED, "n": 1e16}


def secret_inputs() -> tuple[dict[str, str], list[str]]:
    """Inputs holding one secret of each class, and the secrets themselves."""
    alnum = string.ascii_letters + string.digits
    password = "Pw-" + token_chars(40, 20)
    github = "ghp_" + token_chars(41, 36)
    signature = token_chars(42, 64, "0123456789abcdef")
    url_password = token_chars(43, 18, alnum)
    inputs = {
        "db_password": password,  # a secret by its key
        "note": f"deploy with token {github} please",  # a vendor token inside prose
        "download": (  # a signed URL, and a URL with a password
            "https://b.s3.amazonaws.com/k.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Expires=3600&X-Amz-Signature={signature}"
        ),
        "mirror": f"https://bob:{url_password}@mirror.example.com/repo",
    }
    return inputs, [password, github, signature, url_password]


@pytest.mark.parametrize("plain", [True, False], ids=["plain line", "with --file"])
def test_the_console_script_redacts_every_class_of_secret_in_inputs(
    tmp_path: Path, plain: bool
) -> None:
    """Through the installed console script, by the plain line and by the parser: each
    secret is gone from what is printed and written, and the rest of each value stays."""
    path = tmp_path / "telemetry.json"
    inputs, secrets = secret_inputs()
    where = [] if plain else ["--file", str(path)]
    env = {**CLEAN_ENV, "BETTY_TELEMETRY_FILE": str(path)}
    result = run("capture", "deploy", "success", "12", "CLI", json.dumps(inputs), *where, env=env)
    assert result.returncode == 0, result.stderr
    assert CLI.exists()
    written = path.read_text(encoding="utf-8")
    for secret in secrets:
        assert secret not in written
        assert secret not in result.stdout
    entry = read_entries(path)[0]
    assert entry["inputs"]["db_password"] == REDACTED
    assert entry["inputs"]["note"] == f"deploy with token {REDACTED} please"
    assert entry["inputs"]["download"].endswith(f"X-Amz-Signature={REDACTED}")
    assert entry["inputs"]["mirror"] == f"https://bob:{REDACTED}@mirror.example.com/repo"

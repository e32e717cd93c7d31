"""Unit tests of the telemetry file store: paths, layouts, edge files, files it must not write.

Every layout a log may have is read and appended to without rewriting old entries;
foreign content is moved aside, never overwritten; symlinks, directories and FIFOs at
the path are refused; files are 0600 and folders 0700. Everything runs on real files in
tmp_path; the only monkeypatching sets the environment, injects faults or counts the bytes
the store reads and writes. Write faults, rotation and repair: test_store_*.py.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from betty_otel._store import (
    DEFAULT_PATH,
    ENV_FILE,
    StoreError,
    TelemetryStore,
    check_file,
    default_path,
    encode_entry,
    resolve_path,
)
from helpers import (
    BOM,
    INVALID_NAME,
    append_entries,
    canonical,
    indent2,
    is_betty_record,
    load_strict,
    make_entry,
    read_backward,
    read_forward,
    umask_zero,  # noqa: F401 - a fixture, used by name
)
from store_helpers import LAYOUTS, TORN_NAME, assert_readers_agree, collect_damage, tricky_entries

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


EMPTY_LAYOUTS: dict[str, bytes] = {
    "zero_bytes": b"",
    "empty_array": b"[]",
    "empty_array_newline": b"[\n]",
    "empty_array_canonical": b"[\n]\n",
    "empty_array_spaced": b"  [ \t ] \n",
    "empty_array_crlf": b"[\r\n]\r\n",
    "whitespace_only": b"  \n\t\n",
    "bom_only": BOM,
    "bom_empty_array": BOM + b"[]",
}


# ---------------------------------------------------------------------------
# paths and encoding
# ---------------------------------------------------------------------------


def test_resolve_path_prefers_argument_then_env_then_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """resolve_path: the argument wins, then $BETTY_TELEMETRY_FILE, then registry/telemetry.json
    (under the Betty root, else the working directory: see test_trust_location.py)."""
    monkeypatch.delenv(ENV_FILE, raising=False)
    assert Path("registry") / "telemetry.json" == DEFAULT_PATH
    assert resolve_path() == default_path()
    assert resolve_path().is_absolute()
    assert resolve_path().parts[-2:] == DEFAULT_PATH.parts
    assert resolve_path("") == default_path()
    monkeypatch.setenv(ENV_FILE, str(tmp_path / "env.json"))
    assert resolve_path() == tmp_path / "env.json"
    assert resolve_path(tmp_path / "arg.json") == tmp_path / "arg.json"
    assert TelemetryStore().path == tmp_path / "env.json"


def test_encode_entry_is_one_compact_line() -> None:
    """encode_entry gives compact JSON with no raw newline, even for multi-line text."""
    line = encode_entry({"a": "x\ny", "b": [1, 2], "c": "ü"})
    assert line == b'{"a":"x\\ny","b":[1,2],"c":"\xc3\xbc"}'
    assert b"\n" not in line


# ---------------------------------------------------------------------------
# layouts and edge files
# ---------------------------------------------------------------------------


def test_missing_file_is_an_empty_log(log_path: Path) -> None:
    """A missing file reads as an empty log, checks as ok, and reading does not create it."""
    assert read_forward(log_path) == []
    assert read_backward(log_path) == []
    report = check_file(log_path)
    assert not report.exists
    assert report.ok
    assert report.entries == 0
    assert not log_path.exists()


def test_fresh_file_has_the_canonical_layout(log_path: Path, store: TelemetryStore) -> None:
    """A new file is exactly ``[\\n{..},\\n{..}\\n]\\n`` and stays canonical across appends."""
    first, second, third = make_entry(1), make_entry(2), make_entry(3)
    store.append([first, second])
    assert log_path.read_bytes() == (
        b"[\n" + orjson.dumps(first) + b",\n" + orjson.dumps(second) + b"\n]\n"
    )
    store.append([third])
    assert log_path.read_bytes() == canonical([first, second, third])
    assert load_strict(log_path) == [first, second, third]


def test_empty_batches_change_nothing(log_path: Path, store: TelemetryStore) -> None:
    """append([]) and append_encoded([]) write nothing: no file, no trailing comma."""
    store.append([])
    assert not log_path.exists()
    store.append([make_entry(1)])
    before = log_path.read_bytes()
    store.append([])
    store.append_encoded([])
    assert log_path.read_bytes() == before
    assert load_strict(log_path) == [make_entry(1)]


def test_append_encoded_writes_the_given_lines(log_path: Path, store: TelemetryStore) -> None:
    """append_encoded appends pre-encoded lines exactly as given."""
    store.append_encoded([encode_entry(make_entry(1)), b'{"raw":true}'])
    assert log_path.read_bytes() == b"[\n" + orjson.dumps(make_entry(1)) + b',\n{"raw":true}\n]\n'


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_readers_understand_every_layout(log_path: Path, layout: str) -> None:
    """Forward and newest-first readers return the same entries, in reverse, for any layout."""
    entries = tricky_entries()
    log_path.write_bytes(LAYOUTS[layout](entries))
    assert_readers_agree(log_path, entries)
    report = check_file(log_path)
    assert report.ok
    assert report.entries == len(entries)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_append_keeps_every_old_entry_in_any_layout(log_path: Path, layout: str) -> None:
    """Appending to any valid layout keeps json.load working and old entries unchanged."""
    entries = tricky_entries()
    log_path.write_bytes(LAYOUTS[layout](entries))
    new = [make_entry(10), make_entry(11)]
    append_entries(log_path, new)
    assert load_strict(log_path) == entries + new
    assert_readers_agree(log_path, entries + new)
    # A second writer (a fresh descriptor) appends after the first one's entries.
    append_entries(log_path, [make_entry(12)])
    assert load_strict(log_path) == [*entries, *new, make_entry(12)]
    assert_readers_agree(log_path, [*entries, *new, make_entry(12)])
    report = check_file(log_path)
    assert report.ok
    assert report.entries == len(entries) + 3


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_append_never_rewrites_existing_entries(log_path: Path, layout: str) -> None:
    """The bytes of every existing entry stay in place: only the closing bracket is replaced."""
    original = LAYOUTS[layout](tricky_entries())
    log_path.write_bytes(original)
    append_entries(log_path, [make_entry(10)])
    after = log_path.read_bytes()
    last_brace = original.rstrip(b" \t\r\n")[:-1].rstrip(b" \t\r\n")
    if original.startswith(BOM):  # the BOM is replaced by spaces so that json.load works
        assert after.startswith(b"   ")
        last_brace = b"   " + last_brace[len(BOM) :]
    assert after.startswith(last_brace)
    # An indented last element and a bracket with no newline after it may be an old Betty
    # writer whose final newline is still to land there: a blank line takes it.
    late = b"\n" if re.search(rb"\n[ \t]+}\n]\Z", original) else b""
    assert after[len(last_brace) :] == b",\n" + late + orjson.dumps(make_entry(10)) + b"\n]\n"


@pytest.mark.parametrize("layout", sorted(EMPTY_LAYOUTS))
def test_empty_files_read_empty_and_accept_appends(log_path: Path, layout: str) -> None:
    """0-byte, whitespace, ``[]``, ``[\\n]`` and BOM-only files are empty logs that take
    appends; check calls the ones without a JSON value (json.load fails on them) a problem."""
    log_path.write_bytes(EMPTY_LAYOUTS[layout])
    assert_readers_agree(log_path, [])
    report = check_file(log_path)
    assert report.empty is (b"[" not in EMPTY_LAYOUTS[layout])
    assert report.ok is not report.empty
    new = [make_entry(1), make_entry(2)]
    append_entries(log_path, new)
    assert load_strict(log_path) == new
    assert_readers_agree(log_path, new)
    append_entries(log_path, [make_entry(3)])
    assert load_strict(log_path) == [*new, make_entry(3)]


def test_bom_is_overwritten_with_spaces(log_path: Path) -> None:
    """A UTF-8 BOM is replaced in place by three spaces, so json.load(open(p)) works."""
    entries = [make_entry(1)]
    log_path.write_bytes(BOM + indent2(entries))
    with pytest.raises(json.JSONDecodeError):
        load_strict(log_path)  # the reason for overwriting it
    append_entries(log_path, [make_entry(2)])
    data = log_path.read_bytes()
    assert data.startswith(b"   [")
    assert load_strict(log_path) == [make_entry(1), make_entry(2)]


def test_a_file_with_a_bom_moved_aside_keeps_its_bytes_as_they_were(log_path: Path) -> None:
    """A file that starts like an array behind a BOM but is no array of entries is moved
    aside byte for byte: the BOM is overwritten only in a log that is kept (the moved
    file had spaces in its place)."""
    content = BOM + b"[section]\nkey=value\n]\n"
    log_path.write_bytes(content)
    append_entries(log_path, [make_entry(1)])
    (aside,) = (item for item in log_path.parent.iterdir() if ".invalid-" in item.name)
    assert aside.read_bytes() == content
    assert load_strict(log_path) == [make_entry(1)]


def test_append_reads_a_bounded_amount_of_a_big_file(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append reads and writes a bounded number of bytes, not a multiple of the file size."""
    line = orjson.dumps(make_entry(0))
    count = 40_000
    log_path.write_bytes(b"[\n" + b",\n".join([line] * count) + b"\n]\n")
    size = log_path.stat().st_size
    assert size > 10_000_000

    read: list[int] = []
    written: list[int] = []
    real_pread, real_pwrite = os.pread, os.pwrite

    def counting_pread(fd: int, length: int, offset: int) -> bytes:
        data = real_pread(fd, length, offset)
        read.append(len(data))
        return data

    def counting_pwrite(fd: int, data: Any, offset: int) -> int:
        done = real_pwrite(fd, data, offset)
        written.append(done)
        return done

    monkeypatch.setattr(os, "pread", counting_pread)
    monkeypatch.setattr(os, "pwrite", counting_pwrite)
    store = TelemetryStore(log_path)
    try:
        for number in range(3):
            read.clear()
            written.clear()
            store.append([make_entry(number)])
            assert sum(read) <= 256 * 1024, f"append {number} read {sum(read)} bytes of {size}"
            assert sum(written) <= len(line) + 16
    finally:
        store.close()
    monkeypatch.undo()
    report = check_file(log_path)
    assert report.ok
    assert report.entries == count + 3


# ---------------------------------------------------------------------------
# foreign content, symlinks, directories, permissions
# ---------------------------------------------------------------------------

FOREIGN: dict[str, bytes] = {
    "json_object": b'{"entries": [1, 2, 3]}\n',
    "json_lines": b'{"skill": "a"}\n{"skill": "b"}\n',
    "binary": bytes(range(256)) * 3,
    "nul_bytes": b"\x00" * 100,
    "text": b"hello, world\n",
    "bom_object": BOM + b'{"a": 1}',
    "json_string": b'"[not an array]"',
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_foreign_content_is_moved_aside_not_overwritten(
    log_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-array file is renamed to .invalid-<UTC> (bytes intact) with a warning."""
    original = FOREIGN[kind]
    log_path.write_bytes(original)
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        append_entries(log_path, [make_entry(1)])
    moved = [p for p in log_path.parent.iterdir() if p.name.startswith("telemetry.json.invalid-")]
    assert len(moved) == 1
    assert INVALID_NAME.match(moved[0].name), moved[0].name
    assert moved[0].read_bytes() == original
    assert load_strict(log_path) == [make_entry(1)]
    assert log_path.read_bytes() == canonical([make_entry(1)])
    warnings = [r for r in caplog.records if is_betty_record(r) and r.levelno == logging.WARNING]
    assert any("not a JSON array" in r.getMessage() for r in warnings)
    assert any(moved[0].name in r.getMessage() for r in warnings)


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_readers_and_check_report_foreign_content_without_writing(
    log_path: Path, kind: str
) -> None:
    """Readers yield nothing from a non-array file, report it as damage, and leave it untouched."""
    log_path.write_bytes(FOREIGN[kind])
    damage, report = collect_damage()
    assert read_forward(log_path, on_damage=report) == []
    assert read_backward(log_path, on_damage=report) == []
    assert [d.reason for d in damage] == ["not a JSON array"] * 2
    result = check_file(log_path)
    assert result.not_array
    assert not result.ok
    assert log_path.read_bytes() == FOREIGN[kind]
    assert list(log_path.parent.iterdir()) == [log_path]


def test_file_replaced_by_foreign_content_later_is_moved_aside(log_path: Path) -> None:
    """A file that turns into non-array content under an open store is moved aside next time."""
    store = TelemetryStore(log_path)
    try:
        store.append([make_entry(1)])
        with log_path.open("r+b") as handle:  # same inode, new content
            handle.truncate(0)
            handle.write(b'{"jsonl": 1}\n{"jsonl": 2}\n')
        store.append([make_entry(2)])
        store.append([make_entry(3)])
    finally:
        store.close()
    assert load_strict(log_path) == [make_entry(2), make_entry(3)]
    moved = [p for p in log_path.parent.iterdir() if INVALID_NAME.match(p.name)]
    assert [p.read_bytes() for p in moved] == [b'{"jsonl": 1}\n{"jsonl": 2}\n']


@pytest.mark.usefixtures("umask_zero")
def test_files_are_0600_and_folders_0700_even_under_umask_zero(tmp_path: Path) -> None:
    """The log, its torn-tail copies and every folder created for it are private to the owner."""
    path = tmp_path / "a" / "b" / "c" / "telemetry.json"
    append_entries(path, [make_entry(1)])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    with path.open("ab") as handle:
        handle.write(b',\n{"torn": ')
    store = TelemetryStore(path)
    try:
        assert store.repair() > 0
    finally:
        store.close()
    torn = [p for p in path.parent.iterdir() if TORN_NAME.match(p.name)]
    assert len(torn) == 1
    assert stat.S_IMODE(torn[0].stat().st_mode) == 0o600


@pytest.mark.usefixtures("umask_zero")
def test_existing_folder_permissions_are_left_alone(tmp_path: Path) -> None:
    """The store only sets the mode of folders it creates."""
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    append_entries(folder / "telemetry.json", [make_entry(1)])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "telemetry.json").stat().st_mode) == 0o600


def test_symlink_to_a_file_is_refused(log_path: Path, tmp_path: Path) -> None:
    """A symlink at the path is refused with StoreError; its target is not written."""
    target = tmp_path / "target.json"
    target.write_bytes(b"[]")
    log_path.symlink_to(target)
    store = TelemetryStore(log_path)
    with pytest.raises(StoreError) as info:
        store.append([make_entry(1)])
    assert info.value.errno == errno.ELOOP
    with pytest.raises(StoreError):
        store.repair()
    store.close()
    assert target.read_bytes() == b"[]"
    assert log_path.is_symlink()


def test_dangling_symlink_is_refused_and_target_not_created(log_path: Path, tmp_path: Path) -> None:
    """A dangling symlink at the path is refused; the file it points to is not created."""
    target = tmp_path / "elsewhere" / "target.json"
    target.parent.mkdir()
    log_path.symlink_to(target)
    with pytest.raises(StoreError):
        append_entries(log_path, [make_entry(1)])
    assert not target.exists()
    assert log_path.is_symlink()


def test_symlink_swapped_in_after_open_is_refused(log_path: Path, tmp_path: Path) -> None:
    """A store that already has the file open notices the path became a symlink and refuses it."""
    store = TelemetryStore(log_path)
    try:
        store.append([make_entry(1)])
        target = tmp_path / "target.json"
        target.write_bytes(b"[]")
        log_path.rename(tmp_path / "old.json")
        log_path.symlink_to(target)
        with pytest.raises(StoreError):
            store.append([make_entry(2)])
    finally:
        store.close()
    assert target.read_bytes() == b"[]"
    assert load_strict(tmp_path / "old.json") == [make_entry(1)]


def test_directory_at_the_path_raises(log_path: Path) -> None:
    """A directory where the file should be raises OSError and is left as it is."""
    log_path.mkdir()
    with pytest.raises(OSError, match=r"[Ii]s a directory|not a regular file"):
        append_entries(log_path, [make_entry(1)])
    assert log_path.is_dir()
    assert list(log_path.iterdir()) == []


def test_fifo_at_the_path_is_refused(log_path: Path) -> None:
    """A FIFO at the path is not a regular file: StoreError, nothing blocks."""
    os.mkfifo(log_path)
    # O_RDWR on a FIFO does not block on Linux; the store then refuses the non-regular file.
    with pytest.raises(StoreError, match="not a regular file"):
        append_entries(log_path, [make_entry(1)])

"""The stats summary beside the log: stats from it always equal a whole read of the file."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel._store import check_file, iter_entries, log_files
from betty_otel.query import GroupStats, stats
from betty_otel.query.summary import summary_path
from helpers import append_entries, make_entry, repair_file
from legacy_writer import legacy_append

Figures = dict[Any, tuple[Any, ...]]


def figures(result: dict[Any, GroupStats]) -> Figures:
    """Every figure of every group (the mean rounded: its last digits depend on the order)."""
    return {
        key: (
            g.count,
            g.statuses,
            g.original_statuses,
            g.failures,
            g.durations,
            g.p50,
            g.p95,
            g.p99,
            g.max,
            None if g.mean is None else round(g.mean, 6),
        )
        for key, g in result.items()
    }


def recount(path: Path, tmp: Path, **kwargs: Any) -> Figures:
    """Stats of a fresh copy of the log (its rotated files too: a torn old-layout tail an
    append set aside is one), in a folder with no summary: a whole read."""
    folder = tmp / f"recount-{len(list(tmp.iterdir()))}"
    folder.mkdir()
    for file in log_files(path):
        if file.exists():
            shutil.copyfile(file, folder / file.name)
    return figures(stats(folder / path.name, **kwargs))


def varied(number: int) -> dict[str, Any]:
    return make_entry(
        number,
        skill=["a", "b", "caf\u00e9", 'q"uote'][number % 4],
        status=["success", "failure", "failed", "timeout"][number % 3],
        caller=["CLI", "API"][number % 2],
        duration_ms=[1.5, 3, 0.25, 1e6, None, "7"][number % 6] if number % 4 else number * 0.5,
    )


# ops: ("append", n) ours, ("legacy", n) the original writer, ("truncate", fraction),
# ("torn", n) a torn tail of n bytes of an entry, ("repair", 0), ("stats", by)
OPS = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 4)),
    st.tuples(st.just("legacy"), st.integers(1, 2)),
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("torn"), st.integers(1, 60)),
    st.tuples(st.just("repair"), st.just(0)),
    st.tuples(st.just("stats"), st.sampled_from(["skill", "caller", "status"])),
)


def apply(path: Path, op: tuple[str, Any], counter: list[int]) -> None:
    kind, arg = op
    if kind == "append":
        append_entries(path, [varied(counter[0] + i) for i in range(arg)])
        counter[0] += arg
    elif kind == "legacy":
        for _ in range(arg):
            with contextlib.suppress(json.JSONDecodeError):  # it cannot load a damaged file
                legacy_append(path, varied(counter[0]))
            counter[0] += 1
    elif kind == "truncate" and path.exists():
        os.truncate(path, int(path.stat().st_size * arg))
    elif kind == "torn" and path.exists():
        with path.open("ab") as handle:
            handle.write(b',\n{"timestamp": "2025-10-24T14:00:00+00:00", "skill": "x"'[:arg])
    elif kind == "repair" and path.exists():
        repair_file(path)
    elif kind == "stats":
        stats(path, by=arg)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(OPS, max_size=12))
def test_stats_from_the_summary_equal_a_whole_read_after_any_history(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, Any]]
) -> None:
    """Appends, legacy whole-file rewrites, truncations, torn tails and repairs, with stats
    calls (which write the summary) in between: every stats equals a whole read of a copy."""
    tmp = tmp_path_factory.mktemp("history")
    path = tmp / "log" / "telemetry.json"
    path.parent.mkdir()
    counter = [0]
    for op in ops:
        apply(path, op, counter)
        for by in ("skill", "caller", "status"):
            assert figures(stats(path, by=by)) == recount(path, tmp, by=by), (op, by)


def test_appends_after_the_summary_are_read_and_the_summary_moves_on(tmp_path: Path) -> None:
    """Past the summary's rewrite threshold (1 MiB appended), the summary is extended with
    the new bytes, and stays equal to a whole read through later appends."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [varied(i) for i in range(200)])
    assert figures(stats(path)) == recount(path, tmp_path)
    first = summary_path(path).read_bytes()
    for start in range(200, 6200, 1000):
        append_entries(path, [varied(i) for i in range(start, start + 1000)])
        assert figures(stats(path)) == recount(path, tmp_path)
    assert summary_path(path).read_bytes() != first
    assert figures(stats(path, by="caller")) == recount(path, tmp_path, by="caller")


def test_key_filters_are_answered_the_same_way_as_a_whole_read(tmp_path: Path) -> None:
    """A filter on the grouping key uses the summary; other filters read every entry;
    either way the figures are those of a whole read."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [varied(i) for i in range(120)])
    stats(path)
    stats(path, by="status")
    append_entries(path, [varied(i) for i in range(120, 140)])
    cases: list[dict[str, Any]] = [
        {"skill": ["a", "caf\u00e9"]},
        {"by": "status", "status": "failure"},
        {"by": "caller", "caller": "API", "skill": "a"},
        {"status": "failed", "min_duration_ms": 1},
        {"skill": "zzz"},
    ]
    for kwargs in cases:
        assert figures(stats(path, **kwargs)) == recount(path, tmp_path, **kwargs), kwargs


@pytest.mark.parametrize(
    "kwargs",
    [
        {"by": "status", "status": "failure"},
        {"by": "status", "status": "FAILED", "ignore_case": True},
        {"by": "caller", "caller": "cli", "ignore_case": True},
        {"skill": ["A", "CAF\u00c9"], "ignore_case": True},
        {"skill": "A"},
    ],
)
def test_a_key_filter_selects_groups_by_the_filters_own_rule(
    tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    """Through the summary, the grouping key is matched as every entry is on a whole read:
    statuses by their meaning (``failed`` is a failure) and ``ignore_case``. A ``since``
    that every entry passes forces the entry-by-entry read to compare with."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [varied(i) for i in range(60)])
    stats(path, by=kwargs.get("by", "skill"))  # the summary exists
    entry_by_entry = figures(stats(path, since="2000-01-01T00:00:00Z", **kwargs))
    assert figures(stats(path, **kwargs)) == entry_by_entry


def test_a_key_filter_selects_the_whole_group_a_non_string_key_shares(tmp_path: Path) -> None:
    """A skill 5 and a skill "5" share the group "5", and the filter "5" selects that group
    whole (a group that is shown can be selected): the same with the summary or without."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [make_entry(1, skill=5), make_entry(2, skill="5")])
    stats(path)
    assert stats(path, skill="5")["5"].count == 2
    assert stats(path, skill="5", since="2000-01-01")["5"].count == 2  # a whole read
    assert stats(path)["5"].count == 2


def test_rotated_backups_keep_their_summary(tmp_path: Path) -> None:
    """Each file of a rotated log has its own record (by inode), kept across rotations."""
    path = tmp_path / "telemetry.json"
    for start in range(0, 400, 40):
        append_entries(path, [varied(i) for i in range(start, start + 40)], max_bytes=8000)
        assert figures(stats(path)) == figures(stats(path)), start
        total = sum(g.count for g in stats(path).values())
        assert total == len(list(iter_entries(path)))


# -- the summary file -----------------------------------------------------------


def test_the_summary_is_private_and_never_taken_for_a_log_file(tmp_path: Path) -> None:
    """telemetry.json.stats is mode 0600 and no reader lists it as a backup or reads it."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [make_entry(i) for i in range(30)], max_bytes=3000, backups=2)
    stats(path)
    summary = summary_path(path)
    assert summary.name == "telemetry.json.stats"
    assert stat.S_IMODE(summary.stat().st_mode) == 0o600
    assert summary not in log_files(path)
    assert check_file(path).ok
    append_entries(path, [make_entry(i) for i in range(30, 60)], max_bytes=3000, backups=2)
    assert summary.exists()
    assert summary not in log_files(path)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("telemetry")) == []


DAMAGE = [
    lambda data: data[: len(data) // 2],
    lambda data: data[:40] + bytes([data[40] ^ 1]) + data[41:],
    lambda data: data[:-9] + b"\x00" * 9,
    lambda _data: b"",
    lambda data: data.replace(b'"end":', b'"end":-', 1),
]


@pytest.mark.faults
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_summary_is_ignored_and_rebuilt(tmp_path: Path, damage: Any) -> None:
    """A summary cut short, with a flipped bit, zeroed, empty or edited is never used."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [varied(i) for i in range(50)])
    stats(path)
    summary = summary_path(path)
    summary.write_bytes(damage(summary.read_bytes()))
    append_entries(path, [varied(i) for i in range(50, 60)])
    assert figures(stats(path)) == recount(path, tmp_path)
    append_entries(path, [varied(i) for i in range(60, 70)])
    assert figures(stats(path)) == recount(path, tmp_path)


@pytest.mark.faults
def test_a_summary_of_another_file_is_not_used(tmp_path: Path) -> None:
    """A summary copied from another log (another inode, other bytes) is ignored."""
    other = tmp_path / "other" / "telemetry.json"
    other.parent.mkdir()
    append_entries(other, [make_entry(i, skill="other") for i in range(500)])
    stats(other)
    path = tmp_path / "telemetry.json"
    append_entries(path, [make_entry(i) for i in range(5)])
    shutil.copyfile(summary_path(other), summary_path(path))
    summary_path(path).chmod(0o600)
    assert figures(stats(path)) == recount(path, tmp_path)


@pytest.mark.faults
def test_a_same_size_rewrite_is_noticed(tmp_path: Path) -> None:
    """The file rewritten in place to the same size (another status of the same length):
    the summarised bytes differ, so the file is read whole."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [make_entry(i, status="success") for i in range(20)])
    stats(path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"success"', b'"timeout"'))
    assert stats(path)["workflow.step1"].statuses == {"timeout": 3}
    assert figures(stats(path)) == recount(path, tmp_path)


@pytest.mark.faults
def test_a_symlink_at_the_summary_name_is_replaced_never_followed(tmp_path: Path) -> None:
    """A symbolic link planted at the summary's name: its target is neither read nor written."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [make_entry(i) for i in range(5)])
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    summary_path(path).symlink_to(victim)
    assert figures(stats(path)) == recount(path, tmp_path)
    assert victim.read_bytes() == b"keep me"
    assert not summary_path(path).is_symlink()


@pytest.mark.faults
def test_a_file_that_is_not_a_summary_is_never_replaced(tmp_path: Path) -> None:
    """Something else at the summary's name (a user's file) is left as it is."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [make_entry(i) for i in range(5)])
    summary_path(path).write_bytes(b"[1, 2, 3]\n")
    assert figures(stats(path)) == recount(path, tmp_path)
    assert summary_path(path).read_bytes() == b"[1, 2, 3]\n"


@pytest.mark.faults
def test_a_summary_others_can_write_is_not_read(tmp_path: Path) -> None:
    """A group- or world-writable summary could have been planted: it is not read."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [make_entry(i) for i in range(5)])
    stats(path)
    summary = summary_path(path)
    summary.chmod(0o666)
    before = summary.stat().st_ino
    append_entries(path, [make_entry(i) for i in range(5, 8)])
    assert figures(stats(path)) == recount(path, tmp_path)
    assert summary.stat().st_ino != before  # rebuilt, private again
    assert stat.S_IMODE(summary.stat().st_mode) == 0o600


@pytest.mark.faults
def test_stats_in_a_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When no file can be created beside the log (a read-only folder: the tests run as
    root, so creation is refused by injection), stats works and leaves nothing behind."""
    path = tmp_path / "telemetry.json"
    append_entries(path, [varied(i) for i in range(40)])
    real_open = os.open

    def refuse_creation(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT and Path(file).parent == tmp_path:
            raise PermissionError(errno.EACCES, "Read-only folder", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_creation)
    first = figures(stats(path))
    assert figures(stats(path, by="status")) == recount(path, tmp_path, by="status")
    monkeypatch.undo()
    assert first == recount(path, tmp_path)
    left = [p.name for p in tmp_path.iterdir() if not p.name.startswith("recount-")]
    assert left == ["telemetry.json"]  # no summary, no temporary file

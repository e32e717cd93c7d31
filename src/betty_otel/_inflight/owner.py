"""Who owns an in-flight record, and whether that owner is provably gone.

An owner is one process: its host, the machine's boot id, its pid, its start time (clock
ticks since boot, field 22 of ``/proc/<pid>/stat``: a reused pid has another one) and its
pid namespace (a pid names nothing in another namespace). `judge` compares a record's
owner with what this machine says now:

- another host, or another pid namespace: ``unknown`` (nothing here can tell);
- the same host and another boot id: ``abandoned`` (the machine rebooted);
- the same host and boot: ``abandoned`` when the pid is gone, a zombie, or names a
  process with another start time (the pid was reused); else ``running``.

A fact that cannot be read here (no ``/proc``: not Linux) counts for the owner: the
verdict is then ``running`` or ``unknown``, never ``abandoned`` on a guess.

Test seam: the boot id is read from ``$BETTY_OTEL_BOOT_ID_FILE`` when it is set (default
``/proc/sys/kernel/random/boot_id``), so a test simulates a reboot by pointing a
reaper at a file holding another id.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final, Literal, NamedTuple

__all__ = [
    "BOOT_ID_ENV",
    "STATES",
    "Judge",
    "Owner",
    "State",
    "Verdict",
    "judge",
    "owner_of",
    "this_process",
]

BOOT_ID_ENV: Final = "BETTY_OTEL_BOOT_ID_FILE"
_BOOT_ID_FILE: Final = "/proc/sys/kernel/random/boot_id"
_GONE_STATES: Final = frozenset("ZXx")
"""Process states of /proc/<pid>/stat that run no more code: zombie, dead."""
_MAX_TEXT: Final = 255
"""The longest host name, boot id or namespace accepted from a record."""

State = Literal["running", "abandoned", "unknown"]
STATES: Final = ("running", "abandoned", "unknown")


class Owner(NamedTuple):
    """The process that owns a record; a fact that could not be read is None."""

    host: str
    boot_id: str | None
    pid: int
    start_ticks: int | None
    pid_ns: str | None

    def as_json(self) -> dict[str, Any]:
        """The owner as a record holds it."""
        return self._asdict()


class Verdict(NamedTuple):
    """A judgement: the state, and why (a phrase for messages, e.g. ``it rebooted``)."""

    state: State
    reason: str


def _read_text(path: str, limit: int = 4096) -> str | None:
    """The start of a small file as text, or None when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return os.read(fd, limit).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _boot_id() -> str | None:
    """This boot's id (see the module docstring for the test seam)."""
    text = _read_text(os.environ.get(BOOT_ID_ENV) or _BOOT_ID_FILE)
    if text is None:
        return None
    text = text.strip().lower()
    return text[:_MAX_TEXT] or None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of a pid from /proc, or None when it has no entry.

    The command name (field 2) may hold spaces and parentheses: the fields are counted
    after its last closing parenthesis.
    """
    text = _read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")[:_MAX_TEXT]  # noqa: PTH115 - str in, str out
    except OSError:
        return None


def _host() -> str:
    return os.uname().nodename[:_MAX_TEXT]


def this_process() -> Owner:
    """The owner this process writes into its records (read anew: a fork changes it)."""
    pid = os.getpid()
    stat = _proc_stat(pid)
    return Owner(_host(), _boot_id(), pid, None if stat is None else stat[1], _pid_namespace())


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= _MAX_TEXT else None


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def owner_of(
    value: object, seen: dict[tuple[Any, ...], Owner | None] | None = None
) -> Owner | None:
    """The owner a record names, or None when it names none validly.

    seen: the answers so far, by the owner's five values (the records of one process
    name the same owner: each is checked once).
    """
    if not isinstance(value, Mapping):
        return None
    if seen is None:
        return _owner_of(value)
    key = tuple(map(value.get, Owner._fields))
    try:
        return seen[key]
    except KeyError:
        found = seen[key] = _owner_of(value)
        return found
    except TypeError:  # an unhashable value: no owner
        return None


def _owner_of(value: Mapping[str, Any]) -> Owner | None:
    host, pid = _text(value.get("host")), _whole(value.get("pid"))
    if host is None or pid is None or pid <= 0:
        return None
    ticks = _whole(value.get("start_ticks"))
    return Owner(host, _text(value.get("boot_id")), pid, ticks, _text(value.get("pid_ns")))


def _process_state(owner: Owner) -> Verdict:
    """Same host, boot and namespace: is the pid still the owner?"""
    where = f"process {owner.pid} on {owner.host}"
    try:
        os.kill(owner.pid, 0)  # signal 0: is there such a process? (sends nothing)
    except ProcessLookupError:
        return Verdict("abandoned", f"{where} is no longer running")
    except PermissionError:
        pass  # another user's process: it exists
    except (OverflowError, ValueError):
        return Verdict("abandoned", f"{where} cannot exist (no such pid)")
    stat = _proc_stat(owner.pid)
    if stat is None:  # no /proc (not Linux) or hidden from us (hidepid): it may be the owner
        return Verdict("running", f"{where} is running")
    letter, ticks = stat
    if letter in _GONE_STATES:
        return Verdict("abandoned", f"{where} is no longer running (it exited)")
    if owner.start_ticks is not None and ticks != owner.start_ticks:
        return Verdict("abandoned", f"{where} is gone: its pid now names another process")
    return Verdict("running", f"{where} is running")


class Judge:
    """`judge` for many records at once: each owner is judged once."""

    def __init__(self) -> None:
        self.here = this_process()
        self.verdicts: dict[Owner, Verdict] = {}

    def __call__(self, owner: Owner) -> Verdict:
        verdict = self.verdicts.get(owner)
        if verdict is None:
            verdict = self.verdicts[owner] = judge(owner, self.here)
        return verdict


def judge(owner: Owner, here: Owner) -> Verdict:
    """The state of owner's executions, as seen by the process here (see the module docstring)."""
    if owner.host != here.host:
        return Verdict("unknown", f"process {owner.pid} runs on another host, {owner.host}")
    if owner.boot_id and here.boot_id and owner.boot_id != here.boot_id:
        return Verdict("abandoned", f"process {owner.pid} on {owner.host} is gone: it rebooted")
    if owner.pid_ns != here.pid_ns:
        return Verdict("unknown", f"process {owner.pid} runs in another pid namespace")
    return _process_state(owner)

"""The drop-in fallback's helper: betty_otel in a process of the installing interpreter.

Part of `betty_otel.dropin_fallback` (copied beside the shims with it; standard library
only, Python 3.6 syntax). A `Helper` runs ``betty_otel.dropin.serve`` with the
interpreter that installed the shims, isolated from what the skill's interpreter was
started with: ``-I`` (no ``PYTHON*`` variable, user site or script folder is read) and
no ``PYTHON*`` variable in its environment, so ``PYTHONHOME``, ``PYTHONPATH`` or ``-E``
given to the skill never reach it. It must say it is ready before it is used; then it
answers one JSON request a line with one JSON reply a line, each within a deadline.
Anything else (it does not start, ends, stops reading, answers late or garbled) raises
`UnreachableError`, and the helper is stopped. A process has one (`HelperSlot`): started
on first use, never shared with a forked child, given up for good once it failed.

What a request carries is plain JSON (`plain_fields`; `call_inputs` a decorated call's
arguments by name; `outcome_of` an exception, in betty_otel's words): betty_otel redacts
it in the helper, except the values under the decorator's sanitize_keys, which never
leave the skill's process (nor does their text, taken out of the error message).
"""

import json
import os
import select
import subprocess
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ANSWER_TIMEOUT",
    "REDACTED",
    "START_TIMEOUT",
    "Helper",
    "HelperBusyError",
    "HelperSlot",
    "UnreachableError",
    "call_inputs",
    "outcome_of",
    "plain_fields",
    "text_of",
]

START_TIMEOUT = 60.0
"""Seconds the helper may take to start (importing betty_otel on a busy machine)."""
ANSWER_TIMEOUT = 60.0
"""Seconds the helper may take to answer (betty_otel waits at most lock_timeout for the file)."""
_SERVE = (
    "import json, site, sys\n"
    "for path in json.loads(sys.argv[1]):\n"
    "    if path not in sys.path:\n"
    "        site.addsitedir(path)\n"
    "from betty_otel.dropin import serve\n"
    "sys.exit(serve())\n"
)
"""The helper's program: betty_otel.dropin.serve, imported where the installing
interpreter imports it from (its site folders, with their .pth files)."""
REDACTED = "***REDACTED***"
"""What a value under one of the sanitize_keys becomes."""
_MAX_DEPTH = 64
"""Levels of nesting a request keeps (betty_otel cuts deeper ones itself)."""


class UnreachableError(Exception):
    """The helper cannot be had: it did not start, ended, or did not answer in time."""


class HelperBusyError(UnreachableError):
    """The helper cannot be had for this request only: the thread asking is the one
    using it (a signal handler that records while the code it interrupted talks to the
    helper), or another thread kept it longer than any request may take. The helper
    stays in use; this request is written without it."""


class _Turn:
    """The lock that the threads of a process take in turn to use the helper.

    busy is set while the holder talks to the helper (a request and its reply on one
    pipe, or the start). Re-entered by the holder's own thread (a signal handler that
    records): while busy it raises HelperBusyError, since the pipe is mid-exchange; else
    the handler may use the helper, as the frame it interrupted is not using it. Another
    thread waits at most as long as a start and one request may take.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.busy = False

    def __enter__(self) -> None:
        if not self.lock.acquire(timeout=START_TIMEOUT + ANSWER_TIMEOUT):
            raise HelperBusyError("another thread kept the helper too long")
        if self.busy:  # only its holder's thread gets here while busy: a signal handler
            self.lock.release()
            raise HelperBusyError("the helper is busy with the request this thread was making")
        self.busy = True

    def __exit__(self, *exc_info: object) -> None:
        self.busy = False
        self.lock.release()


class Helper:
    """betty_otel.dropin.serve in a child process, for the process that started it (pid)."""

    def __init__(self, python: str, paths: "list[str]") -> None:
        """Start it and wait until it says it is ready.

        Raises:
            UnreachableError: it could not be started or did not say it is ready in time.
        """
        self.pid = os.getpid()
        self.turn = _Turn()
        self.stopped = False
        """Stopped: it failed, or an exchange with it was cut short (see ask)."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        try:
            self.process = subprocess.Popen(
                [python, "-I", "-c", _SERVE, json.dumps(paths)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # A closed stderr is given as /dev/null: a pipe of ours may hold its number.
                stderr=None if _is_open(2) else subprocess.DEVNULL,
                env=environ,
            )
        except (OSError, ValueError) as exc:
            raise UnreachableError(str(exc)) from None
        requests, replies = self.process.stdin, self.process.stdout
        assert requests is not None  # asked for as PIPE
        assert replies is not None
        self.stdin, self.stdout = requests.fileno(), replies.fileno()
        os.set_blocking(self.stdin, False)  # a helper that stops reading never blocks us
        try:
            if self._reply(time.monotonic() + START_TIMEOUT).get("ready") is not True:
                raise UnreachableError("it did not say it is ready")
        except BaseException:
            self.stop()
            raise

    def ask(self, request: "dict[str, Any]") -> "dict[str, Any]":
        """The helper's reply to request (plain JSON values), within ANSWER_TIMEOUT.

        Anything else raised meanwhile (Ctrl-C, a signal handler's exception) stops the
        helper: its reply would be read as the next request's. The next ask starts another.

        Raises:
            UnreachableError: it ended, stopped reading or did not answer in time.
        """
        data = (json.dumps(request) + "\n").encode("ascii")
        with self.turn:
            try:
                return self._exchange(data)
            except UnreachableError:
                raise
            except BaseException:
                self.stop()
                raise

    def _exchange(self, data: bytes) -> "dict[str, Any]":
        """Write one request, read its reply."""
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while data:
            if self.process.poll() is not None:
                raise UnreachableError(f"it ended (exit status {self.process.returncode})")
            left = max(0.0, deadline - time.monotonic())
            if not select.select([], [self.stdin], [], left)[1]:
                raise UnreachableError("it stopped reading")
            try:
                data = data[os.write(self.stdin, data) :]
            except BlockingIOError:
                continue
            except OSError as exc:
                raise UnreachableError(str(exc)) from None
        return self._reply(deadline)

    def _reply(self, deadline: float) -> "dict[str, Any]":
        chunks = []  # type: list[bytes]
        while not chunks or not chunks[-1].endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.stdout], [], [], left)[0]:
                raise UnreachableError(f"it did not answer in {ANSWER_TIMEOUT:g} s")
            chunk = os.read(self.stdout, 1 << 20)
            if not chunk:
                raise UnreachableError(f"it ended (exit status {self.process.poll()})")
            chunks.append(chunk)
        try:
            reply = json.loads(b"".join(chunks).decode("utf-8"))
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise UnreachableError("it answered something else")
        return reply

    def stop(self) -> None:
        """End the helper and let go of its pipes."""
        self.stopped = True
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except (OSError, subprocess.SubprocessError):
            pass
        self.forget()

    def forget(self) -> None:
        """Let go of the pipes only (in a forked child: the helper is its parent's)."""
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except (OSError, ValueError):
                pass


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class HelperSlot:
    """This process's helper: started on first use, one per process (a forked child
    starts its own), given up for good once it failed (the reason is kept)."""

    def __init__(self) -> None:
        self.helper = None  # type: Helper | None
        self.unreachable = None  # type: str | None
        self.turn = _Turn()

    def ask(self, installed: "dict[str, Any]", request: "dict[str, Any]") -> "dict[str, Any]":
        """The reply of this process's helper (installed: the shim's INSTALLED) to request.

        Raises:
            HelperBusyError: the helper cannot be had for this request (it is kept).
            UnreachableError: no helper can be had, now or since it failed.
        """
        with self.turn:
            helper = self.helper
            if helper is None or helper.pid != os.getpid() or helper.stopped:
                if helper is not None:  # a forked child's copy of its parent's pipes, or
                    helper.forget()  # one stopped when an exchange was cut short
                    self.helper = None
                if self.unreachable is not None:
                    raise UnreachableError(self.unreachable)
                python = str(installed.get("python") or "")
                try:
                    if not python:
                        raise UnreachableError("the shim names no interpreter")
                    helper = self.helper = Helper(python, list(installed.get("paths") or ()))
                except UnreachableError as exc:
                    self.unreachable = str(exc)
                    raise
        try:
            return helper.ask(request)
        except HelperBusyError:
            raise
        except UnreachableError as exc:
            with self.turn:
                self.give_up(str(exc))
            raise

    def give_up(self, reason: str) -> None:
        """Stop the helper; every later ask raises UnreachableError(reason)."""
        helper, self.helper = self.helper, None
        if helper is not None:
            helper.stop()
        self.unreachable = reason

    def after_fork_in_child(self) -> None:
        """In a forked child: let go of the parent's helper (the child starts its own)."""
        helper, self.helper = self.helper, None
        self.turn = _Turn()
        if helper is not None:
            helper.forget()


def call_inputs(signature: Any, args: Any, kwargs: Any) -> "dict[str, Any]":
    """A call's arguments by parameter name, defaults applied, ``self`` or ``cls`` left
    out (as betty_otel binds them); ``args`` and ``kwargs`` as given when signature is
    None or they do not bind."""
    try:
        bound = signature.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        named = dict(bound.arguments)
    except (AttributeError, TypeError):
        return {"args": list(args), "kwargs": kwargs}
    first = next(iter(named), None)
    if first in ("self", "cls"):
        del named[first]
    return named


def plain_fields(
    fields: "dict[str, Any]", hidden: "frozenset[str]" = frozenset(), limit: int = 100_000
) -> "dict[str, Any]":
    """fields as plain JSON values (`_plain`, at most limit values): hidden keys (lower
    case) redacted in the inputs and metadata, and the text of the values they removed
    taken out of the error message too."""
    removed = []  # type: list[str]
    budget = [limit, 0]  # values left, depth now
    plain = {}
    for name, value in fields.items():
        keys = hidden if name in ("inputs", "metadata") else frozenset()
        plain[name] = _plain(value, keys, removed, budget)
    message = plain.get("error_message")
    if isinstance(message, str):
        for secret in removed:
            if len(secret) >= 4:  # shorter ones would blank out ordinary words
                message = message.replace(secret, REDACTED)
        plain["error_message"] = message
    return plain


def _plain(value: Any, hidden: "frozenset[str]", removed: "list[str]", budget: "list[int]") -> Any:
    """value as plain JSON values for betty_otel to redact: a mapping's keys as text,
    sequences and sets as lists, other objects as their repr; values under a hidden key
    become REDACTED (their text kept in removed). At most budget[0] values and
    _MAX_DEPTH levels (cycles included): beyond, a marker."""
    budget[0] -= 1
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if budget[0] <= 0 or budget[1] >= _MAX_DEPTH:
        return "<left out: too large or too deep>"
    if isinstance(value, datetime):
        return value.isoformat()
    if not isinstance(value, (dict, list, tuple, set, frozenset)):
        return text_of(value, repr)
    budget[1] += 1
    try:
        if not isinstance(value, dict):
            return [_plain(item, hidden, removed, budget) for item in value]
        plain = {}
        for key, item in value.items():
            name = key if isinstance(key, str) else text_of(key)
            if name.lower() in hidden:
                removed.append(text_of(item))
                plain[name] = REDACTED
            else:
                plain[name] = _plain(item, hidden, removed, budget)
        return plain
    finally:
        budget[1] -= 1


def text_of(value: Any, show: "Callable[[Any], str]" = str) -> str:
    """show(value) (str by default); a marker when the user's __str__ or __repr__ raises."""
    try:
        return str(show(value))
    except Exception:  # noqa: BLE001 - a user's __str__ or __repr__ may raise anything
        return f"<unrepresentable {type(value).__name__}>"


def outcome_of(exc: BaseException) -> "tuple[str, str | None]":
    """(status, error message) of an exception that ended an execution, in betty_otel's
    words (``Type: message``; a timeout, an error that is no Exception, an exit code)."""
    if isinstance(exc, SystemExit):
        if exc.code is None or exc.code == 0:
            return "success", None
        return "failure", f"Exited with code {text_of(exc.code)}"
    message = text_of(exc)
    described = type(exc).__name__ + (": " + message if message else "")
    if any(kind.__name__ == "TimeoutError" for kind in type(exc).__mro__):
        return "timeout", described
    return ("failure" if isinstance(exc, Exception) else "error"), described

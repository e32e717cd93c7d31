"""The drop-in fallback's helper: betty_otel in a process of the installing interpreter.

Part of `betty_otel.dropin_fallback` (copied beside the shims with it; standard library
only, Python 3.6 syntax). A `Helper` runs ``betty_otel.dropin.serve`` with the
interpreter that installed the shims, isolated from what the skill's interpreter was
started with: ``-I`` (no ``PYTHON*`` variable, user site or script folder is read) and
no ``PYTHON*`` variable in its environment, so ``PYTHONHOME``, ``PYTHONPATH`` or ``-E``
given to the skill never reach it. It must say it is ready before it is used; then it
answers one JSON request a line with one JSON reply a line, each within a deadline.
Anything else (it does not start, ends, stops reading, answers late or garbled) raises
`UnreachableError`, and the helper is stopped.
"""

import json
import os
import select
import subprocess
import threading
import time
from typing import Any

__all__ = ["ANSWER_TIMEOUT", "START_TIMEOUT", "Helper", "UnreachableError"]

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


class UnreachableError(Exception):
    """The helper cannot be had: it did not start, ended, or did not answer in time."""


class Helper:
    """betty_otel.dropin.serve in a child process, for the process that started it (pid)."""

    def __init__(self, python: str, paths: "list[str]") -> None:
        """Start it and wait until it says it is ready.

        Raises:
            UnreachableError: it could not be started or did not say it is ready in time.
        """
        self.pid = os.getpid()
        self.lock = threading.Lock()
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

        Raises:
            UnreachableError: it ended, stopped reading or did not answer in time.
        """
        data = (json.dumps(request) + "\n").encode("ascii")
        with self.lock:
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

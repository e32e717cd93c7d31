"""Child processes of stats: forked to run one piece of work, killed and reaped after.

Used by the parallel read's helper (`betty_otel.query.parallel`) and by the summary's
proof (`betty_otel.query.proof`). Whoever forks decides when it may (no other thread:
`parts.start_method`); here, the child never returns into the caller's code, and a
child is always reaped, within a bound.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Final

__all__ = ["fork_child", "reap", "stop_child"]

logger = logging.getLogger(__name__)

_REAP_SECONDS: Final = 10.0
"""How long to wait for a killed child to be reaped (a bound, never reached in practice)."""


def fork_child(work: Callable[[int], None]) -> tuple[int, int]:
    """Fork a child that runs work(the write end of a pipe) and exits: (its pid, the read end).

    The child never returns into the caller's code, not even on a signal (all are blocked
    until its own try block), and leaves with os._exit: 0 when work returned, else 1.
    """
    reading, writing = os.pipe()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                os.close(reading)
                work(writing)
                code = 0
            finally:
                os._exit(code)
    except OSError:
        os.close(reading)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(writing)
    return pid, reading


def stop_child(pid: int) -> int | None:
    """Kill and reap a forked child; its exit status when it had ended by itself."""
    ended, status = os.waitpid(pid, os.WNOHANG)
    if ended:
        return os.waitstatus_to_exitcode(status)
    os.kill(pid, signal.SIGKILL)
    reap(lambda: os.waitpid(pid, os.WNOHANG)[0] or None)
    return None


def reap(poll: Callable[[], int | None]) -> None:
    """Wait for a killed child (poll: its exit status, None while it runs), at most
    _REAP_SECONDS: a bound never reached in practice, so that nothing hangs on it."""
    deadline = time.monotonic() + _REAP_SECONDS
    while poll() is None:
        if time.monotonic() > deadline:
            logger.warning("betty_otel: stats child process not reaped in %s s", _REAP_SECONDS)
            return
        time.sleep(0.001)

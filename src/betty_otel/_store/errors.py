"""The errors of the telemetry file: the only ones its readers and writers raise."""

from __future__ import annotations

__all__ = ["LockTimeoutError", "StoreError"]


class StoreError(OSError):
    """The telemetry file could not be read, or appended to (then nothing was written).

    An OSError, so ``except OSError`` keeps working; ``errno`` and ``filename`` say
    what and where (``EISDIR``/``EINVAL`` for a path that is not a regular file).
    """


class LockTimeoutError(StoreError):
    """The file lock was not obtained within the configured wait."""

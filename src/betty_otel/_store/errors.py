"""What a failed append raises."""

from __future__ import annotations

__all__ = ["LockTimeoutError", "StoreError"]


class StoreError(OSError):
    """The telemetry file could not be appended to; nothing was written."""


class LockTimeoutError(StoreError):
    """The file lock was not obtained within the configured wait."""

"""One string within its budget: secrets redacted first, then cut where no new secret appears.

The sanitizer's rule for every string it emits (values, keys, reprs). Redaction comes
before the cut, so a secret is never half kept; an oversized string is scanned only
a margin past the cut, the rest dropped unread; and the cut itself is checked, since
cutting can create a match (half a marker after ``password=`` reads as a value).
"""

from __future__ import annotations

from typing import Final

from betty_otel._leaves import truncation_suffix
from betty_otel._redact import Redactor

__all__ = ["TextBudget"]

# An oversized string is only scanned this far past the cut: the rest is dropped unread,
# and the patterns treat the end of the scanned window as "the secret goes on".
_SCAN_MARGIN: Final = 16384
_CUT_ATTEMPTS: Final = 8


class TextBudget:
    """Fits text to at most limit characters, redacted by redactor."""

    __slots__ = ("_limit", "_redactor")

    def __init__(self, redactor: Redactor, limit: int) -> None:
        self._redactor = redactor
        self._limit = limit

    def fit(self, text: str, *, random_runs: bool = True) -> str:
        """Surrogates fixed, secrets redacted (``Redactor.redact``), then cut to budget."""
        limit = self._limit
        if len(text) <= limit:
            redacted = self._redactor.redact(text, random_runs=random_runs)
            if len(redacted) <= limit:
                return redacted
            return self._cut(redacted, len(redacted), random_runs=random_runs)
        unread = max(0, len(text) - limit - _SCAN_MARGIN)
        redacted = self._redactor.redact(text[: limit + _SCAN_MARGIN], random_runs=random_runs)
        return self._cut(redacted, len(redacted) + unread, random_runs=random_runs)

    def _cut(self, redacted: str, total: int, *, random_runs: bool) -> str:
        """Cut redacted text to the budget where no new match appears: a cut can create one
        (half a marker after "password=" reads as a value), so the cut moves back until stable.
        """
        cut = min(self._limit - len(truncation_suffix(total)), len(redacted))
        for _ in range(_CUT_ATTEMPTS):
            candidate = redacted[:cut] + truncation_suffix(total - cut)
            if self._redactor.redact(candidate, random_runs=random_runs) == candidate:
                return candidate
            space = redacted.rfind(" ", 0, cut - 1)
            cut = space if space > 0 else max(0, cut - 64)
        return truncation_suffix(total)

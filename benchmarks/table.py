"""One row of the benchmark table: what `python3 dev.py bench` collects from every script.

Each script prints its own detail for people, and one machine-readable line per target
(`emit`), so `dev.py bench` can run them all and print a single table. A target is a
ratio measured within one run (machines are noisy; absolute times are not compared).
"""

from __future__ import annotations

import json
import operator
from dataclasses import asdict, dataclass

__all__ = ["ROW_PREFIX", "Row", "emit"]

ROW_PREFIX = "BENCH-ROW "
"""Marks a line of a script's output as a table row (JSON follows)."""

_COMPARE = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Row:
    """One target: what was measured, against what, the ratio and the goal.

    Args:
        target: what is measured, e.g. "decorator, batch export".
        ours: our figure in words, e.g. "61.2 µs/call".
        baseline: the baseline in words, e.g. "OTel decorator 52.0 µs/call".
        ratio: ours / baseline (or the case's own ratio, e.g. 20 MB time / 2 MB time).
        goal: "<= 1.3" or ">= 50".
    """

    target: str
    ours: str
    baseline: str
    ratio: float
    goal: str

    @property
    def met(self) -> bool:
        """True when the ratio meets the goal."""
        op, _, bound = self.goal.partition(" ")
        return bool(_COMPARE[op](self.ratio, float(bound)))


def emit(row: Row) -> None:
    """Print the row for `dev.py bench` (and a readable line for people)."""
    verdict = "met" if row.met else "MISSED"
    print(
        f"  {row.target}: {row.ours} vs {row.baseline}: {row.ratio:.2f}x "
        f"(goal {row.goal}x, {verdict})"
    )
    print(ROW_PREFIX + json.dumps({**asdict(row), "met": row.met}), flush=True)

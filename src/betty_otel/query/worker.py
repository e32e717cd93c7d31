"""The helper process of a parallel stats read, in a new interpreter.

Started by `betty_otel.query.parallel.Helper` when it cannot fork, never by hand
(`betty_otel.query.parallel.worker_command`: the interpreter takes the parent's
``sys.path``, then calls `main`): it runs `betty_otel.query.tally.serve_parts` with
its notes on standard output. The argument is one JSON object (the inherited
descriptors of the log and of the output file, size, split points, grouping, what
the pattern captures, the summary's seed); the filters come pickled on standard
input, from the parent.
"""

from __future__ import annotations

import pickle
import sys

import orjson

from betty_otel.query.blocks import line_pattern
from betty_otel.query.tally import serve_parts


def main(argument: str) -> None:
    """Read the parts described by argument (see the module's docstring)."""
    options = orjson.loads(argument)
    filters = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from our parent process
    pattern = line_pattern(stamp=options["stamp"], caller=options["caller"])
    serve_parts(
        options["fd"], options["size"], options["points"], options["by"], filters, pattern,
        capture=options["capture"], out=options["out"], notes=sys.stdout.fileno(),
    )  # fmt: skip

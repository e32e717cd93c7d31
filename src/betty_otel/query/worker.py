"""The helper process of a parallel stats read: ``python -m betty_otel.query.worker ARGS``.

Started by `betty_otel.query.parts.Helper`, never by hand. It reads the parts of
the file open at the inherited descriptor from the last one down, writes each
result (`encode_part`) to the inherited output file and then the part's index on
standard output, until every part is done, its parent is gone or it is killed.
ARGS is one JSON object (descriptors, size, split points, grouping, what the
pattern captures); the filters come pickled on standard input, from the parent.
"""

from __future__ import annotations

import os
import pickle
import sys

import orjson

from betty_otel.query.parts import encode_part
from betty_otel.query.scan import line_pattern
from betty_otel.query.tally import tally_part


def main(argument: str) -> None:
    """Read the parts described by argument (see the module's docstring)."""
    parent = os.getppid()
    options = orjson.loads(argument)
    filters = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from our parent process
    pattern = line_pattern(stamp=options["stamp"], caller=options["caller"])
    points: list[int] = options["points"]
    for index in range(len(points) - 2, 0, -1):
        part = tally_part(
            options["fd"], options["size"], points, index, options["by"], filters, pattern,
            capture=options["capture"],
        )  # fmt: skip
        view = memoryview(encode_part(part))
        while view:
            view = view[os.write(options["out"], view) :]
        os.write(1, b"%d\n" % index)
        if os.getppid() != parent:
            return  # the parent is gone: nobody will read the rest


if __name__ == "__main__":
    main(sys.argv[1])

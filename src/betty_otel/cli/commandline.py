"""The command line of betty-telemetry: its commands, their options and examples.

The argument types and the options several commands share are in
`betty_otel.cli.arguments`; the program's name, its commands and errors in
`betty_otel.cli.names` (re-exported here).

Only the standard library is imported here, so ``--help`` and usage errors are quick.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

from betty_otel.cli.arguments import (
    add_file,
    add_filters,
    limit_count,
    non_negative_int,
    seconds,
)
from betty_otel.cli.names import COMMANDS, DISTRIBUTION, PROG, CommandError, UsageError

__all__ = [
    "COMMANDS",
    "DISTRIBUTION",
    "FORMATS",
    "PROG",
    "CommandError",
    "UsageError",
    "build_parser",
]

FORMATS: Final = ("table", "json", "jsonl")


class _Version(argparse.Action):
    """--version: the installed package's version, read from its metadata only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the version of betty-otel and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        _namespace: argparse.Namespace,
        _values: object,
        _option_string: str | None = None,
    ) -> None:
        from importlib import metadata  # noqa: PLC0415 - costly; only --version needs it

        try:
            version = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError:  # run from a source tree, not installed
            version = "unknown (betty-otel is not installed)"
        sys.stdout.write(f"{PROG} {version}\n")
        parser.exit()


# ---------------------------------------------------------------------------
# Help texts
# ---------------------------------------------------------------------------

_EXAMPLES: Final = {
    "main": f"""examples:
  {PROG} capture api.validate success 412.5 CLI '{{"path": "skills/x"}}'
  {PROG} query --status failure --limit 10
  {PROG} stats --by caller --since 7d
  {PROG} trace 3a0809d08b85eb88aa2c0a7e32c9e85d
  {PROG} tail -f
  {PROG} running
  {PROG} check || {PROG} repair
  {PROG} export --otlp --endpoint http://localhost:4318
  {PROG} install-skill ~/betty
  {PROG} report --since 7d -o report.html

Run '{PROG} COMMAND --help' for a command's options.

Exit status: 0 success; 1 an error, printed on stderr as 'Error: ...', which
includes a log that does not exist (query, stats, trace, tail without -f,
check, repair, export, report: a mistyped --file never looks like an empty
log), and check finding a problem; 2 a usage error; 130 interrupted.""",
    "capture": f"""examples:
  {PROG} capture api.validate success 412.5 CLI
  {PROG} capture api.validate failure 80 workflow.compose '{{"path": "x.yaml"}}' 'missing name'
  {PROG} capture docs.build success 1200 CLI '{{}}' --metadata '{{"attempt": 2}}'

STATUS is one of: success, failure, timeout, error, pending. Nothing is written
when an argument is invalid.""",
    "query": f"""examples:
  {PROG} query                              # the 20 newest entries
  {PROG} query --status failure --limit 10  # the 10 newest failures
  {PROG} query --skill api.validate --since 2h --format jsonl
  {PROG} query --status failure --status error --min-duration 1000 --limit all
  {PROG} query -i --caller cli               # cli, CLI and Cli alike

Newest first by timestamp. --format defaults to a table on a terminal and to
JSON when the output is piped. Exit status 1 if the log does not exist.""",
    "stats": f"""examples:
  {PROG} stats                       # per skill
  {PROG} stats --by caller --since 1d
  {PROG} stats --skill api.validate --by status --format json
  {PROG} stats --format openmetrics > /var/lib/node_exporter/betty.prom

Per group: count, failures (failure + error + timeout), failure rate, and
duration percentiles by linear interpolation between the nearest ranks.
--format openmetrics prints the durations as the histogram
betty_execution_duration_seconds by skill, status and caller instead (the
live metric's buckets; OpenMetrics text ending in # EOF, for node_exporter's
textfile collector; --by does not apply). Exit status 1 if the log does not
exist.""",
    "trace": f"""examples:
  {PROG} trace 3a0809d08b85eb88aa2c0a7e32c9e85d
  {PROG} trace 3a0809d08b85eb88aa2c0a7e32c9e85d --format json

Prints the executions of one trace as a tree (parent -> children by
parent_span_id), siblings in order of start time. Past 16 levels lines stay at
that indentation and show [depth N]. --format json nests the same tree
({{"entry", "children"}}); jsonl prints one {{"depth", "entry"}} a line, depth
first, which parsers with a nesting limit read at any depth. A cycle of
parents, a self-parent, a parent not in the log or a shared span id is broken
and noted on the execution ([...] in the tree, "note" in JSON); damage is
also reported on stderr. TRACE_ID is any id the log holds (W3C's are 32 hex
digits); one that looks like a path exits with status 2.
Exit status 1 if the log does not exist or holds no entry of the trace.""",
    "tail": f"""examples:
  {PROG} tail               # the 10 newest entries, oldest first
  {PROG} tail -n 50 -f      # then follow new entries until Ctrl-C
  {PROG} tail -f --format jsonl | jq .skill

Following survives rotation and replacement of the file; Ctrl-C exits with 0.
Without -f, exit status 1 if the log does not exist; with -f, a log that does
not exist yet is waited for (said on stderr).""",
    "check": f"""examples:
  {PROG} check
  {PROG} check --file registry/telemetry.json

Checks the file and its rotated backups: entry count, torn tail, damaged
regions (with byte offsets), not a JSON array, entries in the old tools'
layout; each problem is followed by what fixes it. Exit status 1 on any
problem, or when the log does not exist.""",
    "repair": f"""examples:
  {PROG} repair
  {PROG} repair --file registry/telemetry.json
  {PROG} repair --max-age 7d      # also executions of other hosts silent for 7 days

Cuts a torn tail (an interrupted append) back to the last complete entry
under the file lock, saving the removed bytes beside the file. Never removes
a complete entry. Then records each abandoned execution (its process died:
see '{PROG} running') as one final error entry, exactly once. Exit status 1
if problems remain.""",
    "running": f"""examples:
  {PROG} running
  {PROG} running --format json

Lists the executions in flight (records beside the log, written for every
execution that runs longer than inflight_after, 1 s by default), oldest start
first, with their state: running (its process is alive), abandoned (its
process is gone, or the machine rebooted: repair records it) or unknown (it
runs on another host). Exit status 0, also when nothing is in flight.""",
    "export": f"""examples:
  {PROG} export --otlp --endpoint http://localhost:4318
  {PROG} export --otlp --protocol grpc --endpoint http://localhost:4317 --since 7d
  OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 {PROG} export --otlp

Replays entries (oldest first) as spans with their original times (end =
timestamp, start = end - duration), ids and parent links (entries without ids
get stable ids derived from their content), ERROR status for failure / error /
timeout, and the betty.* attributes. Shows progress on stderr when it is a
terminal. Exit status 1 if the log does not exist, or if the collector rejects
the spans or cannot be reached.""",
    "install-skill": f"""examples:
  {PROG} install-skill              # the Betty repository holding the working directory
  {PROG} install-skill ~/betty      # or BETTY_HOME, when set
  {PROG} install-skill ~/betty --file /var/log/betty/telemetry.json

Writes skills/telemetry.capture/telemetry_capture.py and telemetry_utils.py,
thin shims over betty_otel: skills that import the original telemetry.capture
skill (from telemetry_utils import capture_telemetry, TelemetryContext; from
telemetry_capture import TelemetryCapture) or run its script from a shell now
write through betty_otel, unchanged, whichever Python runs them: one that cannot
import betty_otel uses this interpreter's (betty_otel_fallback.py, written
beside them), else runs the skill without telemetry, with a warning. Files
already there are renamed to <name>.orig-<UTC time> first, never overwritten.
Without BETTY_REPO: $BETTY_HOME, else the nearest folder up from here holding
registry/ and skills/, agents/ or workflows/. Without --file, the skills write
the repository's registry/telemetry.json.""",
    "report": f"""examples:
  {PROG} report                          # report.html of the whole log
  {PROG} report --since 7d -o week.html
  {PROG} report --skill api.validate --status failure
  {PROG} report --trace-id 3a0809d08b85eb88aa2c0a7e32c9e85d -o trace.html

One self-contained HTML page that opens offline: executions over time by
status, per-skill counts, failure rates and p50/p95/p99 with their trends, the
newest failures, the slowest executions, trace waterfalls (the slowest traces,
or those of --trace-id) and the log's health. Shows progress on stderr when it
is a terminal. Needs the report extra: pip install 'betty-otel[report]'. Exit
status 1 if it is missing, or if the log does not exist.""",
}


# ---------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------

_FORMATTER: Final = argparse.RawDescriptionHelpFormatter
"""How help and usage are formatted (examples kept as written), at the terminal's width."""
_BUILD_WIDTH: Final = 80


def _formatter_while_building(prog: str) -> argparse.HelpFormatter:
    """The formatter argparse makes at every add_argument, only to check its metavar.

    Given a width, it does not ask the terminal for one, which imports shutil (with
    bz2, lzma and zlib): about 5% of a capture's start-up. build_parser puts `_FORMATTER`
    back before anything is formatted.
    """
    return _FORMATTER(prog, width=_BUILD_WIDTH)


def _subparser(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=_EXAMPLES[name],
        formatter_class=_formatter_while_building,
    )
    if name != "install-skill":
        add_file(parser)
    return parser


def _add_capture(commands: Any) -> None:
    capture = _subparser(commands, "capture", "record one execution")
    capture.add_argument("skill", metavar="SKILL")
    capture.add_argument("status", metavar="STATUS")
    capture.add_argument("duration_ms", metavar="DURATION_MS")
    capture.add_argument("caller", metavar="CALLER")
    capture.add_argument("inputs", nargs="?", metavar="INPUTS_JSON", help="a JSON object")
    capture.add_argument("error_message", nargs="?", metavar="ERROR_MESSAGE")
    capture.add_argument("--metadata", metavar="JSON", help="a JSON object of metadata")


def _add_reads(commands: Any) -> None:
    """query, stats and trace."""
    query = _subparser(commands, "query", "list entries, newest first")
    add_filters(query)
    query.add_argument(
        "--limit",
        type=limit_count,
        default=20,
        metavar="N",
        help="at most N entries (default 20; 'all': no limit)",
    )
    query.add_argument("--format", choices=FORMATS, help="table, json or jsonl")

    stats = _subparser(commands, "stats", "counts, failure rates and duration percentiles")
    stats.add_argument("--by", choices=("skill", "caller", "status"), default="skill")
    add_filters(stats)
    stats.add_argument(
        "--format",
        choices=("table", "json", "openmetrics"),
        help="table, json or openmetrics (the durations as a Prometheus histogram)",
    )

    trace = _subparser(commands, "trace", "the tree of executions of one trace")
    trace.add_argument("trace_id", metavar="TRACE_ID")
    trace.add_argument(
        "--format", choices=("tree", "json", "jsonl"), default="tree", help="tree, json or jsonl"
    )


def _add_tail(commands: Any) -> None:
    tail = _subparser(commands, "tail", "the newest entries, then (-f) new ones as they come")
    tail.add_argument(
        "-n", "--lines", type=non_negative_int, default=10, metavar="N", help="default 10"
    )
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    tail.add_argument(
        "--interval", type=seconds, default=0.5, metavar="SECONDS", help="poll interval"
    )
    tail.add_argument("--format", choices=("table", "jsonl"), help="table or jsonl")


def _add_export(commands: Any) -> None:
    export = _subparser(commands, "export", "replay entries to an OTLP collector as spans")
    export.add_argument("--otlp", action="store_true", help="export over OTLP")
    export.add_argument(
        "--endpoint", metavar="URL", help="collector URL (default: OTEL_EXPORTER_OTLP_* settings)"
    )
    export.add_argument("--protocol", choices=("http/protobuf", "grpc"), default="http/protobuf")
    export.add_argument("--service-name", metavar="NAME", help="resource service.name")
    export.add_argument(
        "--batch-size", type=non_negative_int, default=512, metavar="N", help="spans per request"
    )
    export.add_argument(
        "--timeout", type=seconds, default=10.0, metavar="SECONDS", help="per request"
    )
    add_filters(export)


def _add_report(commands: Any) -> None:
    report = _subparser(commands, "report", "write a self-contained HTML report of the log")
    report.add_argument(
        "-o", "--output", default="report.html", metavar="PATH", help="default: report.html"
    )
    add_filters(report)


def _add_checks(commands: Any) -> None:
    """check and repair."""
    _subparser(commands, "check", "validate the file without changing it")
    repair = _subparser(
        commands, "repair", "fix a torn tail and record abandoned executions, keeping every entry"
    )
    repair.add_argument(
        "--max-age",
        metavar="DURATION",
        help="also record executions of other hosts silent for longer: 30m, 12h, 7d, 1w",
    )


def _add_running(commands: Any) -> None:
    running = _subparser(commands, "running", "the executions in flight and their state")
    running.add_argument("--format", choices=FORMATS, help="table, json or jsonl")


def _add_install(commands: Any) -> None:
    install = _subparser(
        commands, "install-skill", "make an existing Betty repository use betty_otel"
    )
    install.add_argument(
        "repo", nargs="?", metavar="BETTY_REPO", help="the repository (default: the one found)"
    )
    add_file(install, "the log the installed skills write ($BETTY_TELEMETRY_FILE still wins)")


_FAMILIES: Final = (
    (("capture",), _add_capture),
    (("query", "stats", "trace"), _add_reads),
    (("tail",), _add_tail),
    (("check", "repair"), _add_checks),
    (("running",), _add_running),
    (("export",), _add_export),
    (("install-skill",), _add_install),
    (("report",), _add_report),
)
"""The commands each adder defines, in the order --help lists them."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of betty-telemetry (every command, with examples).

    command: define only the commands of its family, which parses a command line naming
    it alike, and sooner (Betty scripts start ``capture`` once per skill execution).
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Record, read, check and export the Betty telemetry log (telemetry.json).",
        epilog=_EXAMPLES["main"],
        formatter_class=_formatter_while_building,
    )
    parser.add_argument("-V", "--version", action=_Version)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for names, add in _FAMILIES:
        if command is None or command in names:
            add(commands)
    for built in (parser, *commands.choices.values()):
        built.formatter_class = _FORMATTER  # help and usage errors at the terminal's width
    return parser

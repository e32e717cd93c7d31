"""A real OTLP collector for tests: ``rotel-agent`` on loopback, spans read back from its log.

``RotelCollector`` starts the ``rotel-agent`` binary shipped by the PyPI package ``rotel``
(a test extra) in the foreground, listening for OTLP/HTTP and OTLP/gRPC on two free
loopback ports, with the ``blackhole`` exporter and the *detailed* debug log of traces.
Everything the agent prints (stdout and stderr, in order) goes to a file in a private
temporary directory; ``spans()`` parses that debug log back into ``ReceivedSpan`` records,
and ``raw_output()`` returns the text verbatim for "this never left the process" checks.

What the detailed debug log looks like (rotel 0.0.1a15; one ``write()`` per request)::

    ResourceSpans #0
    Resource SchemaURL:
    Resource attributes:                       (absent when there are none)
         -> service.name: Str(svc)
    ScopeSpans #0
    ScopeSpans SchemaURL:
    InstrumentationScope my.scope 1.2.3        (absent without a scope)
    Span #0
        Trace ID       : 3a0809d08b85eb88aa2c0a7e32c9e85d
        Parent ID      :                        (empty for a root span)
        ID             : 2a7f9de7735ad917
        Name           : child
        Kind           : SPAN_KIND_INTERNAL
    Start time: 1795636125771385004
    End time: 1795636125771826639
        Status code    : STATUS_CODE_ERROR     (both status lines absent when the
        Status message : it failed              request carried no status at all)
    Attributes:                                (absent when there are none)
         -> s: Str(hello world)
         -> i: Int(42)
         -> b: Bool(true)
         -> f: Double(1.5)
         -> a: Slice(Str(a), Str(b))
    Events:
    SpanEvent #0
         -> Name: exception
         -> Timestamp: 1795636125771801182
         -> DroppedAttributesCount: 0
         -> Attributes::
              -> exception.message: Str(boom)
    Links:
    SpanLink #0
         -> Trace ID: ...
         -> ID: ...
         -> TraceState:
         -> DroppedAttributesCount: 0
         -> Attributes::
              -> k: Str(v)

Values are printed raw: no quoting, no escaping, no truncation (a 200 kB string comes
out whole). A value containing newlines continues on the following physical lines, and
``)`` inside a ``Str(...)`` is not escaped; the parser therefore treats every line that
does not look like one of the structural lines above as the continuation of the previous
value, and strips the one closing ``)`` at the very end. Only an attribute value that
itself contains a line shaped like a structural line can fool it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pytest

__all__ = [
    "AGENT_ENV_VAR",
    "AttributeValue",
    "CollectorError",
    "CollectorTimeoutError",
    "ReceivedEvent",
    "ReceivedLink",
    "ReceivedSpan",
    "RotelCollector",
    "find_rotel_agent",
    "free_port",
    "parse_spans",
    "rotel_collector",
]

AttributeValue = str | int | float | bool
"""A parsed attribute value. ``Slice``/``Map``/``Bytes``/``Empty`` stay as printed text."""

AGENT_ENV_VAR = "BETTY_OTEL_TEST_ROTEL_AGENT"
"""Environment variable naming an explicit ``rotel-agent`` binary (overrides discovery)."""

_POLL_INTERVAL = 0.02


class CollectorError(RuntimeError):
    """The collector could not be found, started, or it died."""


class CollectorTimeoutError(AssertionError):
    """The expected spans did not arrive in time (an AssertionError, so pytest shows it as
    a test failure with the collector's output in the message)."""


# --------------------------------------------------------------------------- binary + ports


def find_rotel_agent() -> Path:
    """Path of the ``rotel-agent`` binary: ``$BETTY_OTEL_TEST_ROTEL_AGENT``, else the one
    inside the installed ``rotel`` package, else ``rotel-agent`` on ``PATH``."""
    tried: list[str] = []
    override = os.environ.get(AGENT_ENV_VAR)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise CollectorError(f"${AGENT_ENV_VAR}={override!r} is not an executable file")
    spec = importlib.util.find_spec("rotel")  # does not import (run) the package
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "rotel-agent"
            tried.append(str(candidate))
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    else:
        tried.append("the 'rotel' package (not installed)")
    on_path = shutil.which("rotel-agent")
    if on_path is not None:
        return Path(on_path)
    tried.append("'rotel-agent' on PATH")
    raise CollectorError(
        "rotel-agent binary not found (tried: "
        + "; ".join(tried)
        + "). Install the test extra: pip install -e '.[test]' (it pulls in 'rotel'), "
        f"or point ${AGENT_ENV_VAR} at a rotel-agent binary."
    )


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free on 127.0.0.1 a moment ago."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (another process may still take
    it; ``RotelCollector`` retries with fresh ports when its bind fails)."""
    return _free_ports(1)[0]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- parsed records


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    timestamp_ns: int
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    attribute_types: dict[str, str] = field(default_factory=dict)
    """Rotel's type tag per attribute: Str, Int, Double, Bool, Slice, Map, Bytes, Empty."""
    dropped_attributes_count: int = 0


@dataclass(frozen=True)
class ReceivedLink:
    trace_id: str
    span_id: str
    trace_state: str = ""
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    attribute_types: dict[str, str] = field(default_factory=dict)
    dropped_attributes_count: int = 0


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector received it.

    ``trace_id`` is 32 and ``span_id``/``parent_span_id`` 16 lowercase hex digits (the same
    as ``format(ctx.trace_id, "032x")``); ``parent_span_id`` is None for a root span.
    ``status_code`` is "Unset", "Ok" or "Error"; ``kind`` is "Internal", "Server",
    "Client", "Producer", "Consumer" or "Unspecified".
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_time_ns: int
    end_time_ns: int
    status_code: str
    status_message: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    attribute_types: dict[str, str] = field(default_factory=dict)
    events: list[ReceivedEvent] = field(default_factory=list)
    links: list[ReceivedLink] = field(default_factory=list)
    resource_attributes: dict[str, AttributeValue] = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""

    @property
    def duration_ns(self) -> int:
        return self.end_time_ns - self.start_time_ns

    def event(self, name: str) -> ReceivedEvent:
        """The first event called ``name``; AssertionError listing the events if none is."""
        for event in self.events:
            if event.name == name:
                return event
        names = [e.name for e in self.events]
        raise AssertionError(f"span {self.name!r} has no event {name!r}; events: {names}")


# --------------------------------------------------------------------------- parser

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\s+(?:TRACE|DEBUG|INFO|WARN|ERROR)\s"
)
_STRUCTURAL = re.compile(
    r"(?:ResourceSpans #\d+|Resource SchemaURL:.*|Resource attributes:|ScopeSpans #\d+"
    r"|ScopeSpans SchemaURL:.*|InstrumentationScope .*|Span #\d+"
    r"|    (?:Trace ID|Parent ID|ID|Name|Kind|Status code|Status message) +:.*"
    r"|Start time: .*|End time: .*|Attributes:|Events:|SpanEvent #\d+|Links:|SpanLink #\d+"
    r"| {5}-> .*| {10}-> .*)"
)
_SPAN_FIELD = re.compile(
    r"    (?P<field>Trace ID|Parent ID|ID|Name|Kind|Status code|Status message) +: ?(?P<value>.*)",
    re.DOTALL,
)
_ATTRIBUTE = re.compile(
    r" +-> (?P<key>[^\n]+?): "
    r"(?P<value>(?P<type>Str|Int|Double|Bool|Bytes|Slice|Map)\((?P<inner>.*)\)|Empty)",
    re.DOTALL,
)
_FIELD = re.compile(r" +-> (?P<key>[^\n:]+):(?: (?P<value>.*))?", re.DOTALL)
_STATUS = {"STATUS_CODE_UNSET": "Unset", "STATUS_CODE_OK": "Ok", "STATUS_CODE_ERROR": "Error"}


def _logical_lines(text: str) -> Iterator[str]:
    """Physical lines joined into logical ones: a line that is not structural continues
    the value on the previous line (values are printed raw, newlines included). Rotel's
    own log lines are dropped, and so is a trailing line without its newline."""
    current: str | None = None
    complete, _, _ = text.rpartition("\n")
    for line in complete.split("\n") if complete else []:
        if _LOG_LINE.match(_ANSI.sub("", line)):  # rotel's own log (colour codes or not)
            if current is not None:
                yield current
            current = None
        elif _STRUCTURAL.fullmatch(line):
            if current is not None:
                yield current
            current = line
        elif current is not None:
            current += "\n" + line
        # else: noise before the first block (cannot happen with rotel's output)
    if current is not None:
        yield current


def _parse_attribute(line: str) -> tuple[str, AttributeValue, str]:
    match = _ATTRIBUTE.fullmatch(line)
    if match is None:  # unknown shape: keep the text, never lose data
        key, _, value = line.strip().removeprefix("-> ").partition(": ")
        return key, value, "Raw"
    key = match["key"]
    kind = match["type"] or "Empty"
    inner = match["inner"]
    if kind == "Str":
        return key, inner, kind
    if kind == "Int":
        return key, int(inner), kind
    if kind == "Double":
        return key, float(inner), kind  # Rust prints inf, -inf, NaN, "2" for 2.0
    if kind == "Bool":
        return key, inner == "true", kind
    return key, match["value"], kind  # Slice(...), Map(...), Bytes([..]), Empty


@dataclass
class _EventBuilder:
    fields: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)


@dataclass
class _SpanBuilder:
    resource: dict[str, AttributeValue]
    scope: tuple[str, str]
    fields: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    events: list[_EventBuilder] = field(default_factory=list)
    links: list[_EventBuilder] = field(default_factory=list)

    def build(self) -> ReceivedSpan | None:
        f = self.fields
        if not f.get("Trace ID") or not f.get("ID"):
            return None
        status = f.get("Status code", "STATUS_CODE_UNSET")
        return ReceivedSpan(
            trace_id=f["Trace ID"].strip().lower(),
            span_id=f["ID"].strip().lower(),
            parent_span_id=f.get("Parent ID", "").strip().lower() or None,
            name=f.get("Name", ""),
            kind=f.get("Kind", "SPAN_KIND_UNSPECIFIED").removeprefix("SPAN_KIND_").title(),
            start_time_ns=int(f.get("Start time", "0")),
            end_time_ns=int(f.get("End time", "0")),
            status_code=_STATUS.get(status, status),
            status_message=f.get("Status message", ""),
            attributes=self.attributes,
            attribute_types=self.types,
            events=[
                ReceivedEvent(
                    name=e.fields.get("Name", ""),
                    timestamp_ns=int(e.fields.get("Timestamp", "0") or 0),
                    attributes=e.attributes,
                    attribute_types=e.types,
                    dropped_attributes_count=int(e.fields.get("DroppedAttributesCount") or 0),
                )
                for e in self.events
            ],
            links=[
                ReceivedLink(
                    trace_id=link.fields.get("Trace ID", "").lower(),
                    span_id=link.fields.get("ID", "").lower(),
                    trace_state=link.fields.get("TraceState", ""),
                    attributes=link.attributes,
                    attribute_types=link.types,
                    dropped_attributes_count=int(link.fields.get("DroppedAttributesCount") or 0),
                )
                for link in self.links
            ],
            resource_attributes=dict(self.resource),
            scope_name=self.scope[0],
            scope_version=self.scope[1],
        )


def parse_spans(text: str) -> list[ReceivedSpan]:
    """Every span in rotel's ``--debug-log traces --debug-log-verbosity detailed`` output,
    in the order printed. Incomplete trailing text (no newline yet) is ignored."""
    spans: list[ReceivedSpan] = []
    resource: dict[str, AttributeValue] = {}
    scope = ("", "")
    span: _SpanBuilder | None = None
    item: _EventBuilder | None = None  # current event or link
    section = ""

    def finish() -> None:
        nonlocal span, item
        if span is not None:
            built = span.build()
            if built is not None:
                spans.append(built)
        span, item = None, None

    for line in _logical_lines(text):
        if line.startswith("ResourceSpans #"):
            finish()
            resource, scope, section = {}, ("", ""), "resource"
        elif line == "Resource attributes:":
            section = "resource_attributes"
        elif line.startswith(("Resource SchemaURL:", "ScopeSpans SchemaURL:")):
            pass
        elif line.startswith("ScopeSpans #"):
            finish()
            scope, section = ("", ""), "scope"
        elif line.startswith("InstrumentationScope "):
            name, _, version = line.removeprefix("InstrumentationScope ").rpartition(" ")
            scope = (name, version) if name else (version, "")
        elif line.startswith("Span #"):
            finish()
            span, section = _SpanBuilder(resource=resource, scope=scope), "span"
        elif span is not None and (m := _SPAN_FIELD.fullmatch(line)):
            span.fields[m["field"]] = m["value"]
        elif span is not None and line.startswith(("Start time: ", "End time: ")):
            label, _, number = line.partition(": ")
            span.fields[label] = number.strip()
        elif line == "Attributes:":
            section = "span_attributes"
        elif line in ("Events:", "Links:"):
            section = line[:-1].lower()
        elif span is not None and line.startswith("SpanEvent #"):
            item = _EventBuilder()
            span.events.append(item)
            section = "item"
        elif span is not None and line.startswith("SpanLink #"):
            item = _EventBuilder()
            span.links.append(item)
            section = "item"
        elif line.startswith("          -> "):
            if item is not None and section == "item_attributes":
                key, value, kind = _parse_attribute(line)
                item.attributes[key] = value
                item.types[key] = kind
        elif line.startswith("     -> "):
            if section == "resource_attributes":
                key, value, kind = _parse_attribute(line)
                resource[key] = value
            elif section == "span_attributes" and span is not None:
                key, value, kind = _parse_attribute(line)
                span.attributes[key] = value
                span.types[key] = kind
            elif section in ("item", "item_attributes") and item is not None:
                if line == "     -> Attributes::":
                    section = "item_attributes"
                elif m := _FIELD.fullmatch(line):
                    item.fields[m["key"]] = m["value"] or ""
    finish()
    return spans


# --------------------------------------------------------------------------- the collector


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=timeout)


class RotelCollector:
    """``rotel-agent`` in the foreground on two free loopback ports.

    Use as a context manager (or ``start()``/``stop()``); ``stop()`` is idempotent and the
    process is also killed when the object is garbage collected or the interpreter exits.
    """

    def __init__(
        self,
        *,
        startup_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
        binary: Path | None = None,
        exporter_args: Sequence[str] = ("--exporter", "blackhole"),
    ) -> None:
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.extra_args = tuple(extra_args)
        self.exporter_args = tuple(exporter_args)
        """Where the agent passes on what it receives: nowhere by default (spans are read
        from its debug log); ``--exporter otlp ...`` sends them on (see metrics_receiver)."""
        self.binary = binary if binary is not None else find_rotel_agent()
        self.http_port = 0
        self.grpc_port = 0
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._output_path: Path | None = None
        self._final_output: str | None = None
        self._finalizer: weakref.finalize[..., RotelCollector] | None = None

    # -- properties

    @property
    def http_endpoint(self) -> str:
        """Base URL for OTLP/HTTP; traces go to ``http_endpoint + "/v1/traces"``."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def http_traces_endpoint(self) -> str:
        return f"{self.http_endpoint}/v1/traces"

    @property
    def grpc_endpoint(self) -> str:
        """Target for OTLP/gRPC (use ``insecure=True``)."""
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle

    def __enter__(self) -> RotelCollector:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> RotelCollector:
        if self._process is not None:
            raise CollectorError("this RotelCollector was already started (use a new one)")
        self._workdir = Path(tempfile.mkdtemp(prefix="rotel-collector-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        started = time.monotonic()
        try:
            for attempt in range(1, 4):
                if self._launch(attempt):
                    break
            else:  # pragma: no cover - three port races in a row
                raise CollectorError(
                    "rotel-agent could not bind its ports three times\n" + self._tail()
                )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _launch(self, attempt: int) -> bool:
        """One attempt; False when the agent lost a port race (then: retry)."""
        assert self._workdir is not None
        self.http_port, self.grpc_port = _free_ports(2)
        self._output_path = self._workdir / f"output-{attempt}.log"
        args = [
            str(self.binary),
            "start",
            "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
            "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
            *self.exporter_args,
            "--debug-log", "traces",
            "--debug-log-verbosity", "detailed",
            "--pid-file", str(self._workdir / "rotel-agent.pid"),
            "--log-file", str(self._workdir / "rotel-agent.log"),
            *self.extra_args,
        ]  # fmt: skip
        # ROTEL_* variables would override the flags above (clap reads them as defaults
        # for unset flags: ROTEL_DAEMON, ROTEL_EXPORTERS, ...); NO_COLOR drops ANSI codes.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
        env["NO_COLOR"] = "1"
        with open(self._output_path, "ab") as sink:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._workdir,
                # Same process group as pytest on purpose: whatever kills the whole test run
                # (Ctrl-C, a CI job cancelled) reaches the agent too, so it is not orphaned.
            )
        self._process = process
        assert self._finalizer is not None
        self._finalizer.detach()
        self._finalizer = weakref.finalize(
            self, _cleanup, process, self._workdir, self.stop_timeout
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if process.poll() is not None:
                output = self.raw_output()
                if "Address already in use" in output:
                    return False
                raise CollectorError(
                    f"rotel-agent exited with code {process.returncode} during start-up\n"
                    + self._tail()
                )
            if _accepts(self.http_port) and _accepts(self.grpc_port) and process.poll() is None:
                return True
            if time.monotonic() >= deadline:
                raise CollectorError(
                    f"rotel-agent did not accept connections on 127.0.0.1:{self.http_port} "
                    f"(http) and 127.0.0.1:{self.grpc_port} (grpc) within "
                    f"{self.startup_timeout:g}s\n" + self._tail()
                )
            time.sleep(_POLL_INTERVAL)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; keeps the output; idempotent."""
        if self._final_output is not None:
            return
        if self._process is not None:
            _terminate(self._process, self.stop_timeout)
        self._final_output = self._read_file()
        if self._finalizer is not None:
            self._finalizer()  # removes the work directory (and would kill the process)

    # -- output

    def _read_file(self) -> str:
        if self._output_path is None:
            return ""
        try:
            return self._output_path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def raw_output(self) -> str:
        """Everything the agent has printed so far (stdout and stderr interleaved), including
        every attribute value it received, verbatim. Still available after ``stop()``."""
        return self._final_output if self._final_output is not None else self._read_file()

    def _tail(self, limit: int = 6000) -> str:
        output = self.raw_output()
        if len(output) > limit:
            output = f"[... {len(output) - limit} characters ...]\n" + output[-limit:]
        return "--- rotel-agent output ---\n" + output + "\n--- end of rotel-agent output ---"

    def wait_until(
        self,
        condition: Callable[[list[ReceivedSpan]], bool],
        *,
        timeout: float = 20.0,
        settle: float = 0.1,
        waiting_for: str = "the condition",
    ) -> list[ReceivedSpan]:
        """All spans received so far, once ``condition(spans)`` holds and the output has been
        quiet for ``settle`` seconds (so no block is read half-written); at the deadline the
        condition alone decides. CollectorTimeoutError if it never holds, CollectorError if
        the agent dies meanwhile. After ``stop()`` it answers at once from the final output.
        """
        deadline = time.monotonic() + timeout
        last_length = -1
        quiet_since = time.monotonic()
        while True:
            stopped = self._final_output is not None
            output = self.raw_output()
            now = time.monotonic()
            if len(output) != last_length:
                last_length, quiet_since = len(output), now
            found = parse_spans(output)
            satisfied = condition(found)
            if satisfied and (stopped or now >= deadline or now - quiet_since >= settle):
                return found
            if not stopped and self._process is not None and not self.running:
                raise CollectorError(
                    f"rotel-agent died (exit code {self.returncode}) while waiting for "
                    f"{waiting_for}\n" + self._tail()
                )
            if not satisfied and (stopped or now >= deadline):
                names = [span.name for span in found]
                raise CollectorTimeoutError(
                    f"gave up waiting for {waiting_for} after {timeout:g}s; the collector "
                    f"received {len(found)} span(s): {names}\n" + self._tail()
                )
            time.sleep(_POLL_INTERVAL)

    def spans(
        self, *, expect: int = 1, timeout: float = 20.0, settle: float = 0.1
    ) -> list[ReceivedSpan]:
        """All spans received so far (in arrival order), once there are at least ``expect``
        of them; ``expect=0`` returns whatever arrived once the output is quiet."""
        return self.wait_until(
            lambda spans: len(spans) >= expect,
            timeout=timeout,
            settle=settle,
            waiting_for=f"at least {expect} span(s)",
        )

    def span(self, name: str, *, timeout: float = 20.0) -> ReceivedSpan:
        """The one span called ``name``, waiting for it; AssertionError if there are several."""
        found = self.wait_until(
            lambda spans: any(span.name == name for span in spans),
            timeout=timeout,
            waiting_for=f"a span called {name!r}",
        )
        matching = [span for span in found if span.name == name]
        if len(matching) > 1:
            raise AssertionError(f"{len(matching)} spans are called {name!r}: {matching}")
        return matching[0]


def _cleanup(process: subprocess.Popen[bytes], workdir: Path, timeout: float) -> None:
    _terminate(process, timeout)
    shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- fixture


@pytest.fixture
def rotel_collector() -> Iterator[RotelCollector]:
    """A started ``RotelCollector`` (start-up takes ~10-100 ms), stopped afterwards.

    Register it with ``from collector import rotel_collector  # noqa: F401`` in conftest.py.
    """
    with RotelCollector() as collector:
        yield collector

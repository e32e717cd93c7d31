"""What the telemetry.capture shims run when their interpreter cannot import betty_otel.

Skills run with the interpreter they were started with (often the system ``python3``,
betty_otel living in a virtual environment). ``install-skill`` records the installing
interpreter in the shims (``INSTALLED``) and copies this module and its two parts
beside them. A shim that cannot import betty_otel takes from `dropin` the original
skill's API and command line, with its checks and messages, recording each execution
through betty_otel in a helper process of the installing interpreter, isolated from
what the skill's interpreter was started with (`betty_otel.dropin_fallback_helper`);
else with the standard library, inputs, metadata and error text left out since only
betty_otel redacts secrets (`betty_otel.dropin_fallback_log`; said once). The skill's
process imports nothing of the installing interpreter's.

An entry that cannot be written raises OSError from `TelemetryCapture.capture` and
fails the command line (exit 1), as in the original; the decorator and the context never
fail the skill's code (one warning instead). Output never fails: a closed stdout or
stderr shows nothing, as print() shows nothing there.

Standard library only, Python 3.6 syntax and up (the oldest Python 3 a Betty repository
is expected to run); process-wide facts in `PROCESS`, outside betty_otel's state; its
copies of betty_otel's texts are held to betty_otel's by tests.
"""

import functools
import importlib.util
import inspect
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from betty_otel import dropin_fallback_helper as helpers
    from betty_otel import dropin_fallback_log as plainlog
else:

    def _part(name: str) -> ModuleType:
        """The part of this module beside it: ``<this file's name>_<name>.py``."""
        module_name = f"{__name__}_{name}"
        module = sys.modules.get(module_name)
        if module is None:
            where = f"{os.path.splitext(os.path.abspath(__file__))[0]}_{name}.py"
            spec = importlib.util.spec_from_file_location(module_name, where)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[module_name] = module
        return module

    helpers = _part("helper")
    plainlog = _part("log")

__all__ = [
    "PROCESS",
    "REDACTED",
    "USAGE",
    "TelemetryCapture",
    "TelemetryContext",
    "capture_main",
    "capture_telemetry",
    "dropin",
    "json_object",
]

USAGE = (
    "Usage: python telemetry_capture.py <skill> <status> <duration_ms> <caller>"
    " [inputs_json] [error_message]\n"
    "\nExample:\n"
    "  python telemetry_capture.py plugin.build success 320 CLI\n"
    '  python telemetry_capture.py agent.run failure 1500 API \'{"agent": "api.designer"}\''
)
"""What the original printed (on stdout, exit 1) when given fewer than four arguments."""
REDACTED = helpers.REDACTED
_STATUSES = plainlog.STATUSES
_ERROR_STATUSES = ("failure", "timeout", "error")
_FIELDS = ("skill", "status", "duration_ms", "caller", "inputs", "error_message", "metadata")
"""capture's arguments, in its order."""


class _Process:
    """This process's facts: what the shim recorded, its helper, what has been said."""

    def __init__(self) -> None:
        self.installed = {}  # type: dict[str, Any]
        self.repository = {}  # type: dict[str, Any]
        self.helpers = helpers.HelperSlot()
        self.said = set()  # type: set[str]


PROCESS = _Process()


def dropin(installed: "dict[str, Any]", repository: "dict[str, Any]") -> SimpleNamespace:
    """The names a shim exports, recording as this module says.

    installed: the installing interpreter, ``python`` (its path) and ``paths`` (where it
    imports betty_otel from). repository: ``home`` (the repository the shim is in) and
    ``file`` (install-skill --file, or None): the log, unless $BETTY_TELEMETRY_FILE names
    one, is ``file``, else registry/telemetry.json under $BETTY_HOME or ``home``.
    """
    PROCESS.installed = dict(installed or {})
    PROCESS.repository = dict(repository or {})
    return SimpleNamespace(
        TelemetryCapture=TelemetryCapture,
        TelemetryContext=TelemetryContext,
        capture_telemetry=capture_telemetry,
        capture_main=capture_main,
    )


def _say(text: str, error: bool = False) -> None:
    """Print text as print() would, never failing: a closed stream shows nothing, a
    broken pipe is quieted for good, characters the stream cannot encode are escaped."""
    stream = sys.stderr if error else sys.stdout
    if stream is None:
        return
    try:
        try:
            stream.write(text + "\n")
        except UnicodeEncodeError:
            encoding = getattr(stream, "encoding", None) or "ascii"
            stream.write((text + "\n").encode(encoding, "backslashreplace").decode(encoding))
        stream.flush()
    except (OSError, ValueError):  # a broken pipe or a closed file: nothing to show there
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, stream.fileno())  # so the flush at exit does not complain
            finally:
                os.close(devnull)
        except (AttributeError, OSError, ValueError):  # no descriptor behind it: nothing to do
            pass


def _once(key: str, text: str) -> None:
    """Say text on stderr the first time key comes up in this process."""
    if key not in PROCESS.said:
        PROCESS.said.add(key)
        _say("Warning: " + text, error=True)


# ---------------------------------------------------------------------------
# Recording: through the helper, else with the standard library
# ---------------------------------------------------------------------------


def _after_fork_in_child() -> None:
    PROCESS.helpers.after_fork_in_child()


if hasattr(os, "register_at_fork"):  # 3.7+; before, the helper's pid says it is not ours
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _ask(request: "dict[str, Any]", key: str) -> Any:
    """The helper's answer to request.

    Raises:
        UnreachableError: there is no helper, or not for this request (each said once).
        ValueError, TypeError: betty_otel refused the arguments.
        OSError: any other failure (nothing was written).
    """
    try:
        reply = PROCESS.helpers.ask(PROCESS.installed, request)
    except helpers.HelperBusyError as exc:
        _once(
            "busy",
            f"an execution was recorded without betty_otel's helper ({exc}: a signal"
            f" handler that records, perhaps). {sys.executable} wrote its entry itself,"
            " leaving out inputs, metadata and error text (only betty_otel redacts secrets).",
        )
        raise
    except helpers.UnreachableError as exc:
        python = PROCESS.installed.get("python") or "the interpreter that installed the shims"
        _once(
            "helper",
            f"telemetry is recorded without betty_otel: {python} could not run it ({exc})."
            f" {sys.executable} writes each entry itself, leaving out inputs, metadata and"
            f" error text (only betty_otel redacts secrets). Install betty-otel for"
            f" {sys.executable}, or run `betty-telemetry install-skill` again with an"
            " interpreter that has it.",
        )
        raise
    if "error" in reply:
        kind, message = reply["error"]
        raise {"ValueError": ValueError, "TypeError": TypeError}.get(kind, OSError)(message)
    return reply[key]


def _record(path: Path, options: "dict[str, Any]", fields: "dict[str, Any]", text: bool) -> Any:
    """Write one execution's entry (capture's arguments, plain JSON values, in fields) to
    the log at path and return it. text: duration_ms is command-line text.

    Raises:
        ValueError, TypeError: an argument, as betty_otel checks it. OSError: not written.
    """
    request = {"op": "capture", "file": str(path), "options": options, "fields": fields}
    try:
        return _ask(dict(request, text=text), "entry")
    except helpers.UnreachableError:
        pass
    entry = plainlog.plain_entry(fields, text)
    plainlog.append_entry(
        str(path), entry, float(options.get("lock_timeout", plainlog.LOCK_TIMEOUT))
    )
    return entry


# ---------------------------------------------------------------------------
# The original skill's API and command line
# ---------------------------------------------------------------------------


def _record_quietly(skill: str, caller: str, started: float, outcome: Any, data: Any) -> None:
    """_record for the decorator and the context: a failure is said once, never raised."""
    status, error = outcome
    inputs, metadata, hidden = data
    duration = (time.perf_counter() - started) * 1000
    fields = dict(zip(_FIELDS, (skill, status, duration, caller, inputs, error, metadata)))
    try:
        _record(
            plainlog.log_path(None, PROCESS.repository),
            {},
            helpers.plain_fields(fields, hidden),
            False,
        )
    except Exception as exc:  # noqa: BLE001 - telemetry never fails the skill's code
        _once("lost", f"telemetry is not recorded: {exc}")


def _result_outcome(result: Any) -> "tuple[str, str | None]":
    """A Betty-style ``{"status": ...}`` result's outcome; success otherwise."""
    if isinstance(result, dict) and result.get("status") in _STATUSES[1:]:
        error = result.get("error_message") or result.get("error")
        return result["status"], None if error is None else helpers.text_of(error)
    return "success", None


def capture_telemetry(
    wrapped: Any = None,
    skill_name: "str | None" = None,
    caller: str = "runtime",
    capture_inputs: bool = False,
    sanitize_keys: Any = (),
    **_options: Any,
) -> Any:
    """The decorator, bare or called: each call recorded, its result and exception unchanged."""
    if wrapped is None:
        return functools.partial(
            capture_telemetry,
            skill_name=skill_name,
            caller=caller,
            capture_inputs=capture_inputs,
            sanitize_keys=sanitize_keys,
        )
    skill = skill_name or getattr(wrapped, "__qualname__", None) or helpers.text_of(wrapped)
    hidden = frozenset(str(key).lower() for key in sanitize_keys or ())
    try:
        signature = inspect.signature(wrapped) if capture_inputs else None
    except (TypeError, ValueError):
        signature = None

    def done(started: float, args: Any, kwargs: Any, outcome: Any) -> None:
        inputs = helpers.call_inputs(signature, args, kwargs) if capture_inputs else None
        _record_quietly(skill, caller, started, outcome, (inputs, None, hidden))

    @functools.wraps(wrapped)
    async def run_async(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            done(started, args, kwargs, helpers.outcome_of(exc))
            raise
        done(started, args, kwargs, _result_outcome(result))
        return result

    @functools.wraps(wrapped)
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            done(started, args, kwargs, helpers.outcome_of(exc))
            raise
        done(started, args, kwargs, _result_outcome(result))
        return result

    return run_async if inspect.iscoroutinefunction(wrapped) else run


class TelemetryContext:
    """The context manager (``with`` and ``async with``): the block recorded as one
    execution, its exception re-raised; an error status the block set is kept."""

    def __init__(
        self,
        skill: str,
        caller: str = "runtime",
        inputs: Any = None,
        metadata: Any = None,
        sanitize_keys: Any = (),
        **_options: Any,
    ) -> None:
        self.skill = skill
        self.caller = caller
        self._inputs = dict(inputs or {})
        self._metadata = dict(metadata or {})
        self._hidden = frozenset(str(key).lower() for key in sanitize_keys or ())
        self._status = None  # type: str | None
        self._error = None  # type: str | None
        self._started = time.perf_counter()

    def __enter__(self) -> "TelemetryContext":
        self._started = time.perf_counter()
        return self

    def __exit__(self, _kind: Any, exc: Any, _traceback: Any) -> None:
        status, error = self._status or "success", self._error
        if exc is not None:
            kept = status in _ERROR_STATUSES
            raised = helpers.outcome_of(exc)
            status = status if kept else raised[0]
            error = error if kept and error is not None else raised[1]
        data = (self._inputs, self._metadata, self._hidden)
        _record_quietly(self.skill, self.caller, self._started, (status, error), data)

    async def __aenter__(self) -> "TelemetryContext":
        return self.__enter__()

    async def __aexit__(self, kind: Any, exc: Any, traceback: Any) -> None:
        self.__exit__(kind, exc, traceback)

    def set_inputs(self, inputs: Any) -> None:
        """Replace the recorded inputs."""
        self._inputs = dict(inputs)

    def set_metadata(self, metadata: Any) -> None:
        """Merge keys into the recorded metadata."""
        self._metadata.update(metadata)

    def set_status(self, status: str) -> None:
        """Set the outcome: one of the five statuses (ValueError otherwise)."""
        if status not in _STATUSES:
            raise plainlog.invalid_status(status)
        self._status = status

    def set_error(self, message: Any) -> None:
        """Record an error message; the status becomes failure unless error or timeout."""
        self._error = helpers.text_of(message)
        if self._status not in ("error", "timeout"):
            self._status = "failure"


class TelemetryCapture:
    """The programmatic API: capture writes one entry (or raises), query reads the log."""

    def __init__(self, telemetry_file: Any = None, **options: Any) -> None:
        self.path = plainlog.log_path(telemetry_file, PROCESS.repository)
        self._options = options  # fsync, lock_timeout: betty_otel's TelemetryCapture's

    @property
    def telemetry_file(self) -> Path:
        """The telemetry file (the original skill's name for it)."""
        return self.path

    def capture(
        self,
        skill: str,
        status: str,
        duration_ms: Any,
        caller: str,
        inputs: Any = None,
        error_message: "str | None" = None,
        metadata: Any = None,
    ) -> "dict[str, Any]":
        """Record one execution that ended now and took duration_ms; return its entry.

        Raises:
            ValueError: an invalid status, with the original skill's message; another
                invalid argument. TypeError: a value of the wrong type. OSError: the
                entry could not be written.
        """
        given = (skill, status, duration_ms, caller, inputs, error_message, metadata)
        fields = dict(zip(_FIELDS, given))
        entry = _record(self.path, self._options, helpers.plain_fields(fields), False)
        return dict(entry)

    def query(
        self,
        skill: Any = None,
        status: Any = None,
        caller: Any = None,
        limit: Any = None,
        **more: Any,
    ) -> "list[Any]":
        """Entries matching every given filter, newest first, at most limit of them.

        Through betty_otel (every filter of its query); with the standard library only
        skill, status and caller, compared exactly, newest as recorded last.
        """
        filters = dict(more, skill=skill, status=status, caller=caller, limit=limit)
        request = {"op": "query", "file": str(self.path), "options": self._options}
        plain = helpers.plain_fields(filters, limit=1 << 30)
        try:
            return list(_ask(dict(request, filters=plain), "entries"))
        except helpers.UnreachableError:
            pass
        if more:
            raise TypeError(f"query({', '.join(sorted(more))}=...) needs betty_otel")
        return plainlog.query_entries(self.path, skill, status, caller, limit)


def json_object(name: str, text: str) -> "dict[str, Any]":
    """text parsed as a JSON object, with betty_otel's messages (never quoting the text)."""
    try:
        value = json.loads(text)
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as exc:
        reason = str(exc)
    else:
        if isinstance(value, dict):
            return value
        raise ValueError(f"{name} must be a JSON object, got {type(value).__name__}")
    raise ValueError(f"Invalid JSON for {name}: {reason}")


def capture_main(argv: "list[str]") -> int:
    """The original skill's command line: record one execution; return the exit status."""
    if len(argv) < 4:
        _say(USAGE)
        return 1
    try:
        inputs = json_object("inputs", argv[4]) if len(argv) > 4 else None
    except ValueError as exc:
        _say(f"Error: {exc}", error=True)
        return 1
    fields = dict(zip(_FIELDS, [*argv[:4], inputs, argv[5] if len(argv) > 5 else None, None]))
    try:
        path = plainlog.log_path(None, PROCESS.repository)
        entry = _record(path, {}, fields, True)
    except Exception as exc:  # noqa: BLE001 - the original reports any failure this way
        _say(f"Error capturing telemetry: {exc}", error=True)
        return 1
    _say(json.dumps(entry, indent=2))
    _say(f"\n\u2713 Telemetry captured to {path}")
    return 0

"""Executions in flight: records beside the log, so that no execution vanishes.

An execution still running after ``inflight_after`` seconds gets a record in
``<log>.inflight/`` naming its owner; one whose owner is provably gone becomes one final
``error`` entry (``abandoned: ...``), exactly once whoever reaps it.

owner: who owns a record, and whether it is gone; records: the folder and its files;
settings: ``inflight_after``; tracker: this process's executions in flight and the one
thread that writes their records; hooks: what the recording path calls (start, end, the
entry written, exit, configure); reaper: abandoned records into entries, exactly once;
view: what is in flight, for readers (``running``, pending entries, ``check``). Only the
tracker and the hooks import OpenTelemetry.
"""

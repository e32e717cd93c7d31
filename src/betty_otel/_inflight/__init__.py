"""Executions in flight: records beside the log, so that no execution vanishes.

An execution still running after ``inflight_after`` seconds gets a record in
``<log>.inflight/`` naming its owner; one whose owner is provably gone becomes one final
``error`` entry (``abandoned: ...``), exactly once whoever reaps it.

owner: who owns a record and whether it is gone; records: the folder and its files;
tracker: this process's executions and the thread that records them (the hooks of the
recording path); reaper: abandoned records into entries; view: what is in flight, for
readers (``running``, pending entries, ``check``). Only the tracker imports OpenTelemetry.
"""

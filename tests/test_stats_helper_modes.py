"""The stats helper runs whatever the interpreter's path options, and says how it ran.

A program may find betty_otel only through its own ``sys.path`` (a source checkout
put there by hand, a ``PYTHONPATH`` relative to its working folder), and may run
with ``PYTHONSAFEPATH=1``, ``-P`` or ``-I``. The spawned helper
(`betty_otel.query.parallel.worker_command`) must still import the same betty_otel and
do its parts; at debug level, the log says which way the helper ran and how many
parts it did. Each case runs in a fresh interpreter that has no betty_otel of its
own (the base interpreter of this virtual environment), with a slow parent so the
helper's parts are really used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from betty_otel.query import stats
from betty_otel.query.parallel import ENV_MIN_BYTES, ENV_PARALLEL
from betty_otel.query.summary import summary_path
from helpers import canonical, make_entry

PROGRAM = """
import json, logging, os, sys, time
sys.path[:0] = json.loads(os.environ["TEST_EXTRA_PATH"])
logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
from betty_otel.query import stats
from betty_otel.query.parallel import Helper

ready = Helper.ready

def patient(self, index):
    # A slow parent: wait for each part from the helper while it runs (60 s: a hang bound).
    deadline = time.monotonic() + 60
    while not ready(self, index) and time.monotonic() < deadline and (
        self.pid > 0 or (self.process is not None and self.process.poll() is None)
    ):
        time.sleep(0.005)
    return ready(self, index)

Helper.ready = patient
found = stats(sys.argv[1], by="skill")
print(json.dumps({str(key): [g.count, g.statuses, g.p50, g.p95] for key, g in found.items()}))
"""


def interpreter() -> str:
    """An interpreter without betty_otel: the base of this virtual environment."""
    base = getattr(sys, "_base_executable", sys.executable)
    found = subprocess.run([base, "-c", "import betty_otel"], capture_output=True, check=False)
    return base if found.returncode != 0 else sys.executable


def figures(result: dict[Any, Any]) -> dict[str, Any]:
    return {str(key): [g.count, g.statuses, g.p50, g.p95] for key, g in result.items()}


CASES = {
    "PYTHONSAFEPATH=1, spawned": ([], {"PYTHONSAFEPATH": "1"}, "spawn"),
    **({"-P, spawned": (["-P"], {}, "spawn")} if sys.version_info >= (3, 11) else {}),  # -P: 3.11
    "-I, spawned": (["-I"], {}, "spawn"),
    "-I, forked": (["-I"], {}, "fork"),
    "PYTHONPATH relative to the working folder, PYTHONSAFEPATH=1, spawned": (
        [],
        {"PYTHONSAFEPATH": "1", "RELATIVE": "1"},
        "spawn",
    ),
}


@pytest.mark.parametrize(("flags", "env", "method"), CASES.values(), ids=CASES.keys())
def test_the_helper_runs_and_says_so_whatever_the_path_options(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    env: dict[str, str],
    method: str,
) -> None:
    """The helper (forked, or spawned with this process's ``sys.path``) does every one
    of its parts, the figures equal a read by one process, and the debug log says which
    way it ran and what it did."""
    path = tmp_path / "telemetry.json"
    path.write_bytes(canonical([make_entry(n) for n in range(400)]))
    monkeypatch.setenv(ENV_PARALLEL, "0")
    alone = figures(stats(path, by="skill"))
    summary_path(path).unlink()  # the helper reads a whole file only
    extra = [entry for entry in sys.path if entry]
    environment = {**os.environ, ENV_PARALLEL: method, ENV_MIN_BYTES: "0", **env}
    environment["TEST_EXTRA_PATH"] = json.dumps(extra)
    if environment.pop("RELATIVE", None):  # found only from the working folder, by PYTHONPATH
        environment["PYTHONPATH"] = os.pathsep.join(os.path.relpath(e, tmp_path) for e in extra)
        environment["TEST_EXTRA_PATH"] = "[]"
    ran = subprocess.run(
        [interpreter(), *flags, "-c", PROGRAM, str(path)],
        env=environment, cwd=tmp_path, capture_output=True, text=True, check=False,
        timeout=240,  # a bound that only catches a hang
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == json.loads(json.dumps(alone))
    log = ran.stderr.splitlines()
    started = [line for line in log if "stats helper started" in line]
    name = "betty_otel.query.parallel"
    assert started == [f"{name}: stats helper started ({method}) for 31 parts"], log
    done = [line for line in log if line.startswith(f"{name}: stats helper (")]
    assert done == [f"{name}: stats helper ({method}): 31 of 31 parts done"], log

"""Record a few executions with betty_otel, then show what was recorded.

Run it with ``python3 dev.py demo`` (or ``python examples/quickstart.py`` in the
venv). Entries go to the default file, ./registry/telemetry.json, unless
BETTY_TELEMETRY_FILE names another.
"""

from __future__ import annotations

import asyncio
import json

from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry


@capture_telemetry(skill_name="docs.validate", caller="CLI", capture_inputs=True)
def validate(path: str, api_key: str, strict: bool = True) -> dict[str, object]:
    """A Betty-style component: returns {"status": ...}; api_key is redacted."""
    ok = path.endswith(".md") and (bool(api_key) or not strict)
    return {"status": "success" if ok else "failure", "checked": path}


@capture_telemetry(skill_name="workflow.compose", caller="API")
async def compose() -> list[dict[str, object]]:
    """An async workflow whose steps become children of its span."""
    results = [validate("README.md", api_key="sk-live-0123456789abcdefghijklmn")]
    async with TelemetryContext("workflow.step.publish", caller="workflow.compose") as step:
        step.set_metadata({"target": "registry", "items": len(results)})
        await asyncio.sleep(0.01)
    results.append(validate("notes.txt", api_key="not-shown"))
    return results


def main() -> None:
    """Record, then print the newest entries of this run."""
    asyncio.run(compose())
    try:
        with TelemetryContext("registry.update", caller="CLI", inputs={"skill": "demo"}):
            raise RuntimeError("registry is locked by another process")
    except RuntimeError:
        pass  # the failure is recorded as an entry; the program goes on

    telemetry = TelemetryCapture()
    telemetry.capture("agent.run", "timeout", 30_000, "scheduler", {"agent": "reviewer"})

    print(f"Recorded to {telemetry.path}; the 6 newest entries, newest first:\n")
    for entry in telemetry.query(limit=6):
        print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()

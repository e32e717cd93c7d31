"""A Betty skill whose main() is instrumented as in the original telemetry.capture docs.

    python examples/betty_skill.py skills/docs.validate   # exit code 0, entry "success"
    python examples/betty_skill.py                         # exit code 1, entry "failure"

The skill's exit is recorded: SystemExit(0) as success, any other code as failure
("Exited with code N"), and the exit still happens exactly as without telemetry.
"""

from __future__ import annotations

import sys

from betty_otel import capture_telemetry


@capture_telemetry(skill_name="docs.validate.skill_docs", caller="cli", capture_inputs=True)
def main(argv: list[str]) -> None:
    """Validate the documentation of the skill folders given on the command line."""
    if not argv:
        print("usage: betty_skill.py SKILL_DIR...", file=sys.stderr)
        sys.exit(1)
    for folder in argv:
        print(f"✓ {folder}: documentation present")
    sys.exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])

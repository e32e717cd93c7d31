"""``python -m betty_otel``: the betty-telemetry command line."""

from betty_otel.cli import main

raise SystemExit(main())

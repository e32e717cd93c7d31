"""Make docs/report.png, the README's picture of the HTML report.

The picture is the report of a real Betty registry (betty-registry-telemetry.json
beside this script: 225 entries over ten days, with a quiet week between), from
the top of the page to the end of the per-skill section, as headless Chromium
draws it: the system's ``chromium`` through Playwright, as the report tests open
a report. Run it with ``python3 dev.py screenshot`` (or with another path to
write to as its argument).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

import betty_otel

DOCS = Path(__file__).resolve().parent
LOG = DOCS / "betty-registry-telemetry.json"
IMAGE = DOCS / "report.png"
WIDTH = 1100
"""Pixels: wide enough for every column of the tables, narrow enough to read in the README."""
LAST_SECTION = "#skills"
"""The picture ends with this section (the per-skill table and trends); below are tables."""
READY_TIMEOUT_MS = 60_000


def main(image: Path = IMAGE) -> None:
    """Write the report of LOG to a temporary folder, open it, and save the picture as image."""
    executable = shutil.which("chromium")
    if executable is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="betty-") as folder:
        # The page names the log by its path: the usual registry/telemetry.json, not this
        # checkout's docs folder.
        registry = Path(folder) / "registry"
        registry.mkdir()
        shutil.copyfile(LOG, registry / "telemetry.json")
        page_file = betty_otel.report(registry / "telemetry.json", Path(folder) / "report.html")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True)
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.goto(page_file.resolve().as_uri())
            page.wait_for_function("window.bettyReportReady === true", timeout=READY_TIMEOUT_MS)
            box = page.locator(LAST_SECTION).bounding_box()
            if box is None:
                sys.exit(f"the report has no {LAST_SECTION} section")
            bottom = box["y"] + box["height"] + 18  # the section's margin below it
            page.screenshot(
                path=image, full_page=True, clip={"x": 0, "y": 0, "width": WIDTH, "height": bottom}
            )
            browser.close()
    print(f"{image}: {image.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else IMAGE)

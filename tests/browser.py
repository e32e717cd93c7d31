"""Opening a report in a real browser: headless Chromium (Debian's package) through Playwright.

Playwright's own browser download is not used: `chromium.launch` is pointed at the
system's ``chromium`` (``.ci/run`` installs it when missing). Every request the
page makes is recorded and, unless it is the page itself, aborted; console errors,
page errors and dialogs are recorded too.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, Route, sync_playwright

READY_TIMEOUT_MS = 60_000
"""Generous: a bound that catches a page that never finishes, not a speed target."""


@dataclass
class Opened:
    """A report open in the browser and everything it did while loading."""

    page: Page
    url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def charts(self) -> dict[str, dict[str, Any]]:
        """Per chart: its traces' point counts (gd.data) and the marks drawn in the DOM."""
        result: dict[str, dict[str, Any]] = self.page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')].map(
                gd => [gd.id, {
                    points: gd.data.map(t => (t.x || []).length),
                    y: gd.data.map(t => t.y || []),
                    names: gd.data.map(t => t.name),
                    bars: gd.querySelectorAll('.barlayer g.point').length,
                    markers: gd.querySelectorAll('.scatterlayer path.point').length,
                }]))"""
        )
        return result

    def texts(self, selector: str) -> list[str]:
        """The text content of every element matching selector."""
        found: list[str] = self.page.eval_on_selector_all(
            selector, "els => els.map(e => e.textContent)"
        )
        return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, the system's, for one test module.

    Module scope, not session: Playwright's sync API keeps an asyncio loop running
    in this thread while it is open, and other modules' tests call asyncio.run().
    """
    executable = shutil.which("chromium")
    assert executable, "chromium is not installed (apt-get install chromium; .ci/run does it)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


def open_report(browser: Browser, path: Path, width: int = 1280) -> Opened:
    """Open the report at path and wait until every chart is drawn."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    opened = Opened(page, path.resolve().as_uri())

    def route(target: Route) -> None:
        opened.requests.append(target.request.url)
        if target.request.url == opened.url:
            target.continue_()
        else:
            target.abort()

    def on_dialog(dialog: Dialog) -> None:
        opened.dialogs.append(dialog.message)
        dialog.dismiss()

    page.route("**/*", route)
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: opened.errors.append(str(exc)))
    page.on("requestfailed", lambda r: opened.errors.append(f"request failed: {r.url}"))
    page.on("dialog", on_dialog)
    page.goto(opened.url)
    page.wait_for_function("window.bettyReportReady === true", timeout=READY_TIMEOUT_MS)
    return opened


def pixel_spread(browser: Browser, png: bytes) -> tuple[float, int]:
    """The standard deviation of a PNG's pixel brightness, and its count of distinct colours.

    Decoded by the browser itself (a canvas), so the test needs no image library.
    """
    page = browser.new_page()
    try:
        data_url = "data:image/png;base64," + base64.b64encode(png).decode()
        result: list[float] = page.evaluate(
            """async (url) => {
                const img = new Image(); img.src = url; await img.decode();
                const canvas = document.createElement('canvas');
                canvas.width = img.width; canvas.height = img.height;
                const ctx = canvas.getContext('2d'); ctx.drawImage(img, 0, 0);
                const d = ctx.getImageData(0, 0, img.width, img.height).data;
                let sum = 0, sq = 0; const colours = new Set();
                for (let i = 0; i < d.length; i += 4) {
                    const v = (d[i] + d[i + 1] + d[i + 2]) / 3; sum += v; sq += v * v;
                    if (colours.size < 5000) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
                }
                const n = d.length / 4, mean = sum / n;
                return [Math.sqrt(sq / n - mean * mean), colours.size];
            }""",
            data_url,
        )
    finally:
        page.close()
    return result[0], int(result[1])

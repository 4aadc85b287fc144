"""A headless Chromium from Debian (``/usr/bin/chromium``) driven by Playwright, against a
live server of the console tests' own.

No browser is downloaded: Playwright launches the system Chromium. Each test gets a fresh
browser context (no token left in sessionStorage from another test) and a page that
records every request it makes, every JavaScript error and every dialog, so tests can
assert that none happened. Screenshots go to ``artifacts/console/`` (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import REPO, LiveServer, make_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "artifacts" / "console"
TIMEOUT_MS = 20_000
"""For actions and for ``expect``: generous, since a loaded CI machine may take seconds to
parse Swagger UI or to format a volume; a passing test never waits for it."""
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = make_server(tmp_path_factory.mktemp("console"))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API keeps an event loop running in the
    # main thread while it is open, and every later test that calls asyncio.run() fails.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page and what it did: requests, uncaught errors, console errors, dialogs."""

    page: Page
    server: LiveServer
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.server.url}/console/{fragment}")

    def sign_in(self, token: str | None = None) -> None:
        self.open()
        self.page.fill("#token", token or self.server.token)
        self.page.click("#sign-in-form button[type=submit]")
        expect(self.page.locator("#nav")).to_be_visible()

    def fill_create_form(self, name: str, size_mb: int) -> None:
        """Open the create page and type a name and a size (in MiB); not submitted."""
        self.page.click("#nav a[data-page=create]")
        self.page.fill("#create-name", name)
        self.page.fill("#create-size", str(size_mb))

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def csp_violations(self) -> list[str]:
        return [m for m in self.console_errors if "Content Security Policy" in m]


@pytest.fixture
def watched(browser: Browser, console_server: LiveServer) -> Iterator[Watched]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    seen = Watched(page, console_server)
    page.on("request", lambda r: seen.requests.append(r.url))
    page.on("pageerror", lambda e: seen.errors.append(str(e)))
    page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)

    def on_dialog(dialog: object) -> None:
        seen.dialogs.append(getattr(dialog, "message", ""))
        dialog.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", on_dialog)
    yield seen
    context.close()
    assert seen.errors == [], f"JavaScript errors: {seen.errors}"
    assert seen.csp_violations() == []

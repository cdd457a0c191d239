"""Driving the console in Debian's Chromium with Playwright: a page that records every request it makes
(and refuses any that would leave 127.0.0.1), keeps the bodies it was sent (to look for secrets in them),
logs in with a key, and saves screenshots under artifacts/screenshots/ (gitignored; CI keeps them)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1"}


def launch_chromium() -> Iterator[Browser]:
    """Debian's Chromium under Playwright (its own browser download does not work here); skips with the reason."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright: pip install '.[browser]'")
    found = CHROMIUM if CHROMIUM.exists() else Path(shutil.which("chromium") or "/nonexistent")
    if not found.exists():
        pytest.skip("no Chromium at /usr/bin/chromium (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(found))
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Traffic:
    """Every request a page made, what left 127.0.0.1 (refused), and the bodies it received."""

    urls: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    def handle(self, route: Route) -> None:
        url = route.request.url
        self.urls.append(url)
        if urlsplit(url).hostname not in LOCAL_HOSTS:
            self.refused.append(url)
            route.abort()
            return
        if route.request.headers.get("accept") == "text/event-stream":
            route.continue_()  # a stream never ends: its lines are checked on the page instead
            return
        response = route.fetch(max_redirects=0)  # the browser follows redirects itself
        self.bodies.append(response.text())
        route.fulfill(response=response)


@contextmanager
def console_page(
    browser: Browser, *, width: int = 1280, height: int = 800, dark: bool = False
) -> Iterator[tuple[Page, Traffic]]:
    """A fresh browser context (its own session storage) with every request recorded."""
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme="dark" if dark else "light")
    traffic = Traffic()
    context.route("**/*", traffic.handle)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page, traffic
        assert errors == [], f"the page threw: {errors}"
    finally:
        context.close()


def log_in(page: Page, url: str, key: str) -> None:
    page.goto(url + "/ui/")
    page.fill("input[name=key]", key)
    page.click("form.login button[type=submit]")


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => window.scrollTo(0, 0)")  # the header is sticky: a scrolled page pictures it mid-page
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def assert_clean(page: Page, traffic: Traffic, secrets: list[str]) -> None:
    """No request left 127.0.0.1, no secret in a URL, in a body the page got, or on the page."""
    assert traffic.refused == [], f"requests that would have left 127.0.0.1: {traffic.refused}"
    text = page.content()
    for secret in secrets:
        assert not [u for u in traffic.urls if secret in u], "a secret in a URL"
        assert not [b for b in traffic.bodies if secret in b], "a secret in an answer to the page"
        assert secret not in text, "a secret on the page"


def state_of(page: Page, label: str) -> Any:
    return page.get_attribute(f'tr.replica[data-replica="{label}"]', "data-state")

"""End to end in headless Chromium (Debian's package, driven by Playwright).

No external network: requests to https://ifttt.com are answered by the test itself,
and any other foreign request is aborted and reported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.factories import IFTTT_REDIRECT
from tests.factories import PASSWORD
from tests.factories import authorize_url
from tests.factories import query_of

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 375, "height": 667}
# Chromium reports CSP violations on the console; this makes sure each one is loud.
REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} missing; install it with `apt-get install -y chromium`",
)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class BrowserTab:
    """A page in a fresh context that records console noise and foreign requests."""

    def __init__(self, browser: Any, base_url: str, **context_options: Any) -> None:
        self.base_url = base_url
        self.context = browser.new_context(**context_options)
        self.context.add_init_script(REPORT_CSP)
        self.console: list[str] = []
        self.foreign: list[str] = []
        self.ifttt: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.page.on(
            "console", lambda message: self.console.append(f"{message.type}: {message.text}")
        )
        self.page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.base_url + "/"):
            route.continue_()
        elif url.startswith("https://ifttt.com/"):
            self.ifttt.append(url)
            route.fulfill(
                status=200,
                content_type="text/html",
                body="<!doctype html><title>IFTTT</title><p>Connected.</p>",
            )
        else:
            self.foreign.append(url)
            route.abort()

    def close(self) -> None:
        self.context.close()


def test_browser_login_and_consent_redirects_to_ifttt_with_code(
    app, user, oauth_client, client_secret, server_factory, chromium
):
    server = server_factory(workers=2)
    browser = BrowserTab(chromium, server.base_url)
    page = browser.page
    state = "st-browser-4f1c2a"
    try:
        page.goto(server.base_url + authorize_url(oauth_client.client_id, state=state))
        assert urlsplit(page.url).path == "/login"
        page.fill("#username", "walter")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")

        page.wait_for_url("**/oauth/authorize?**")
        assert "Allow IFTTT to access your authserver account?" in page.inner_text("h1")
        assert "Walter White" in page.inner_text("main")
        page.get_by_role("button", name="Allow").click()

        page.wait_for_url("https://ifttt.com/**")
        assert page.url.startswith(IFTTT_REDIRECT + "?")
        query = query_of(page.url)
        assert query["state"] == state
        assert set(query) == {"code", "state"}
        assert browser.ifttt == [page.url]
        console, foreign = list(browser.console), list(browser.foreign)
    finally:
        browser.close()
    # What IFTTT does next: the code in the URL is a real, redeemable one.
    exchange = requests.post(
        server.base_url + "/oauth/token",
        timeout=30,
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
            "redirect_uri": IFTTT_REDIRECT,
        },
    )
    assert exchange.status_code == 200, exchange.text
    assert not [
        line for line in console if "Content Security Policy" in line or "CSP violation" in line
    ], console
    assert not [line for line in console if line.startswith(("error", "pageerror"))], console
    assert foreign == []


def test_login_page_fits_phone_viewport(app, user, server_factory, chromium, tmp_path):
    server = server_factory(workers=2)
    browser = BrowserTab(
        chromium,
        server.base_url,
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page = browser.page
    try:
        page.goto(server.base_url + "/login")
        assert_fits(page, tmp_path / "login-phone.png")
        # The error state adds a message; it must fit as well.
        page.fill("#username", "walter")
        page.fill("#password", "wrong password")
        page.click("button[type=submit]")
        page.wait_for_selector("[role=alert]")
        assert_fits(page, tmp_path / "login-phone-error.png")
        console = list(browser.console)
    finally:
        browser.close()
    assert not [
        line for line in console if "CSP violation" in line or "Content Security Policy" in line
    ], console
    print(f"screenshots: {tmp_path}")


def assert_fits(page: Any, screenshot: Any) -> None:
    """Inputs and button lie inside the phone's width; nothing scrolls sideways."""
    layout = page.evaluate(
        "() => ({inner: window.innerWidth, scroll: document.documentElement.scrollWidth,"
        " body: document.body.scrollWidth})"
    )
    assert layout["inner"] == PHONE["width"], layout
    assert layout["scroll"] <= layout["inner"], layout
    assert layout["body"] <= layout["inner"], layout
    for selector in ("#username", "#password", "button[type=submit]"):
        box = page.locator(selector).bounding_box()
        assert box is not None, selector
        assert box["x"] >= 0, (selector, box)
        assert box["x"] + box["width"] <= PHONE["width"], (selector, box)
        # Finger-sized targets (Apple's and Google's guidance: about 44-48 px).
        assert box["height"] >= 40, (selector, box)
        # Below 16 px, mobile Safari zooms the page when a field gets focus.
        size = page.eval_on_selector(selector, "e => parseFloat(getComputedStyle(e).fontSize)")
        assert size >= 16, (selector, size)
    page.screenshot(path=str(screenshot), full_page=True)

"""WCAG 2.1 AA on every page users see: axe-core in headless Chromium.

Every page is checked at phone and desktop sizes, in light and dark mode, and in
a language with another script; any violation fails the test. Screenshots go to
test-output/a11y/ (or $AUTHSERVER_TEST_OUTPUT/a11y/) for a person to look at.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from authserver.services.consents import grant_consent
from tests.factories import PASSWORD
from tests.factories import authorize_url
from tests.factories import make_tokens
from tests.system.test_browser import CHROMIUM
from tests.system.test_browser import PHONE
from tests.system.test_browser import BrowserTab

REPO = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("AUTHSERVER_TEST_OUTPUT") or REPO / "test-output") / "a11y"
DESKTOP = {"width": 1280, "height": 800}
# Everything axe-core checks for WCAG 2.0/2.1 A and AA, plus its best practices
# (landmarks, heading order, one main) that screen-reader users rely on.
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} missing; install it with `apt-get install -y chromium`",
)

VARIANTS = [
    ("phone", "light", "en-US"),
    ("phone", "dark", "en-US"),
    ("desktop", "light", "en-US"),
    ("desktop", "dark", "en-US"),
    ("phone", "dark", "ja"),
    ("desktop", "light", "de-DE"),
]


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        targets = [", ".join(node["target"]) for node in violation["nodes"]]
        summary = violation["nodes"][0].get("failureSummary", "").replace("\n", " ")
        lines.append(f"{violation['id']} ({violation['impact']}): {targets} - {summary}")
    return "\n".join(lines)


class Checker:
    """Runs axe on the current page, screenshots it, and collects violations."""

    def __init__(self, page: Any, label: str) -> None:
        self.page = page
        self.label = label
        self.axe = Axe()
        self.failures: dict[str, str] = {}
        self.checked: list[str] = []

    def check(self, name: str) -> None:
        self.page.wait_for_load_state("load")
        shot = OUTPUT / f"{name}-{self.label}.png"
        self.page.screenshot(path=str(shot), full_page=True)
        results = self.axe.run(self.page, options=AXE_OPTIONS)
        violations = results.response["violations"]
        if violations:
            self.failures[name] = describe(violations)
        # Nothing scrolls sideways at any size.
        layout = self.page.evaluate(
            "() => [window.innerWidth, document.documentElement.scrollWidth]"
        )
        if layout[1] > layout[0]:
            self.failures[name + " (layout)"] = f"page scrolls sideways: {layout}"
        # A button squeezed until its label wraps (one character per line in CJK).
        heights = self.page.eval_on_selector_all(
            "button", "buttons => buttons.map(b => b.getBoundingClientRect().height)"
        )
        # Form controls use the page's font (browsers default them to their own).
        fonts = self.page.evaluate(
            "() => [...document.querySelectorAll('button, input:not([type=hidden])')]"
            ".map(e => getComputedStyle(e).fontFamily)"
            ".filter(f => f !== getComputedStyle(document.body).fontFamily)"
        )
        if fonts:
            self.failures[name + " (fonts)"] = f"controls not in the page font: {fonts}"
        if any(height > 64 for height in heights):
            self.failures[name + " (buttons)"] = f"a button label wraps: heights {heights}"
        self.checked.append(name)


@pytest.fixture(scope="module")
def chromium() -> Any:
    from playwright.sync_api import sync_playwright

    from tests.system.test_browser import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_every_page_passes_axe_at_every_size_scheme_and_script(
    app, user, oauth_client, server_factory, chromium
):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    server = server_factory(workers=1, SERVICE_NAME="Acme Home")
    failures: dict[str, str] = {}
    for size, scheme, language in VARIANTS:
        failures.update(
            check_variant(server.base_url, chromium, user, oauth_client, size, scheme, language)
        )
    assert failures == {}, "\n\n".join(f"{name}:\n{text}" for name, text in failures.items())
    print(f"screenshots: {OUTPUT}")


def check_variant(base, chromium, user, oauth_client, size, scheme, language):
    """Walk every page in one browser set-up; return the problems found, by page."""
    from tests.factories import make_oauth_client

    # One connected app with live tokens: the apps page shows its richest state.
    grant_consent(user, oauth_client, "ifttt")
    make_tokens(user, oauth_client)
    label = f"{size}-{scheme}-{language}"
    options: dict[str, Any] = {
        "viewport": PHONE if size == "phone" else DESKTOP,
        "color_scheme": scheme,
        "locale": language,
    }
    if size == "phone":
        options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
    tab = BrowserTab(chromium, base, **options)
    page = tab.page
    checker = Checker(page, label)
    try:
        page.goto(base + "/login")
        checker.check("login")
        page.fill("#username", "walter")
        page.fill("#password", "not the password")
        page.click("button[type=submit]")
        page.wait_for_selector("[role=alert]")
        checker.check("login-error")
        page.goto(base + "/logout")
        checker.check("signed-out")
        page.goto(base + "/no-such-page")
        checker.check("not-found")
        page.goto(base + authorize_url("no-such-client"))
        checker.check("oauth-error")

        # A second app asks for consent (the first one is remembered).
        other, _ = make_oauth_client(name="Zapier", client_id=f"zapier-{label}")
        page.goto(base + "/login?next=" + authorize_url(other.client_id).replace("&", "%26"))
        page.fill("#username", "walter")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/oauth/authorize?**")
        checker.check("consent")
        page.goto(base + "/login?switch=1&next=/account/apps")
        checker.check("switch-account")
        page.goto(base + "/account/apps")
        checker.check("connected-apps")
        page.locator("form[action='/account/apps/revoke'] button").first.click()
        page.wait_for_selector("[role=status]")
        checker.check("disconnected")
        page.goto(base + "/logout")
        checker.check("sign-out")
        console = list(tab.console)
    finally:
        tab.close()
    assert len(checker.checked) == 10, checker.checked
    problems = {f"{name} [{label}]": text for name, text in checker.failures.items()}
    csp = [line for line in console if "CSP violation" in line]
    if csp:
        problems[f"console [{label}]"] = "\n".join(csp)
    return problems

"""The console in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium; no browser
download) against the local stack (`make run`): sign in, overview, a rule edited with an error shown at its
line, enable/disable, sign out; a viewer cannot edit. Screenshots are kept in build/console/ (artefacts).

Few tests on purpose: each browser start costs seconds on a small machine."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "build" / "console"
ADMIN = "dev-admin-token"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev extra (pip install playwright)")
if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (make system-deps installs Debian's)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def _page(browser: Any, lang: str = "en-US") -> Any:
    ctx = browser.new_context(locale=lang, viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    return page


def _sign_in(page: Any, url: str, token: str) -> None:
    page.goto(url + "/console/")
    assert "/console/login" in page.url
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/console/")


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_sign_in_overview_edit_a_rule_with_an_error_and_sign_out(local: Any, browser: Any) -> None:
    expect = sync_api.expect
    page = _page(browser)
    _sign_in(page, local.url, ADMIN)
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("#brake")).to_contain_text("Marketing sends are active.")
    _shot(page, "overview")

    page.click("nav >> text=Rules")
    expect(page.locator("h1")).to_have_text("Rules")
    page.click("a[href$='/console/rules/birthday']")
    expect(page.locator("ol.journey")).to_be_visible()
    page.click("text=Edit YAML")
    textarea = page.locator("#yaml")
    original = textarea.input_value()
    broken = original.replace("steps:", "steps:\n  - send: {channel: email, template: no-such-template}", 1)
    textarea.fill(broken)
    page.click("button[value=save]")
    expect(page.locator("#errors")).to_contain_text("nothing was saved")
    expect(page.locator("#errors")).to_contain_text("no-such-template")
    bad_line = page.locator(".lines .l.bad").first
    expect(bad_line).to_contain_text("no-such-template")
    _shot(page, "rule-error")

    textarea.fill(original)
    page.click("button[value=check]")
    expect(page.locator("#errors")).to_contain_text("OK")
    page.click("text=Cancel")
    page.click("button:has-text('Disable')")
    expect(page.locator("h1 .badge")).to_have_text("disabled")
    page.click("button:has-text('Enable')")
    expect(page.locator("h1 .badge")).to_have_text("enabled")
    _shot(page, "rule")

    # a customer looked up by email, then the rule's email rendered for her in a sandboxed frame
    import base64
    auth = {"Authorization": "Basic " + base64.b64encode(b"dev-write-key:").decode()}
    status, _ = local.request("POST", "/v1/batch", {"batch": [
        {"type": "identify", "userId": "console-u1", "messageId": "console-m1",
         "traits": {"email": "olga@example.com", "first_name": "Ольга", "email_consent": True, "locale": "ru"}}]},
        headers=auth)
    assert status == 200
    page.click("nav >> text=Customers")
    page.fill("#q", "olga@example.com")
    page.press("#q", "Enter")
    expect(page.locator("h1")).to_contain_text("console-u1")
    page.goto(local.url + "/console/rules/welcome?customer=olga%40example.com")
    frame = page.frame_locator("iframe.preview").first
    expect(frame.locator("body")).to_contain_text("Ольга")
    page.locator("iframe.preview").first.scroll_into_view_if_needed()
    page.locator("iframe.preview").first.screenshot(path=str(SHOTS / "preview.png"))  # a full-page shot
    # leaves frames outside the viewport unpainted

    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/console/login")
    page.goto(local.url + "/console/rules")
    assert "/console/login" in page.url
    page.context.close()


def test_a_viewer_reads_in_russian_but_cannot_edit(local: Any, browser: Any) -> None:
    status, made = local.request("POST", "/admin/tokens", {"name": "vera", "role": "viewer"},
                                 headers={"Authorization": f"Bearer {ADMIN}"})
    assert status == 201, made
    page = _page(browser, lang="ru-RU")
    _sign_in(page, local.url, made["token"])
    sync_api.expect(page.locator("h1")).to_have_text("Обзор")
    assert page.locator("#brake form").count() == 0  # no resume button for a viewer
    page.goto(local.url + "/console/rules/birthday")
    assert page.locator("text=Редактировать YAML").count() == 0
    response = page.goto(local.url + "/console/rules/birthday/edit")
    assert response is not None and response.status == 403
    sync_api.expect(page.locator("h1")).to_have_text("Запрещено")
    page.context.close()


def test_local_outbox_page_and_clock(local: Any) -> None:
    """Local stack only: /_local/inbox renders the outbox; a POST from another origin cannot move the clock."""
    import urllib.error
    import urllib.request
    with urllib.request.urlopen(local.url + "/_local/inbox?to=nobody%40example.com", timeout=120) as resp:
        html = resp.read().decode()
    assert resp.status == 200 and "Outbox: 0 message(s)" in html and "virtual clock" in html
    before = local.request("GET", "/_local/clock")[1]["now"]
    req = urllib.request.Request(local.url + "/_local/inbox/advance", data=b"hours=1", method="POST",
                                 headers={"Origin": "https://evil.example",
                                          "Content-Type": "application/x-www-form-urlencoded"})
    try:
        urllib.request.urlopen(req, timeout=120)
        raise AssertionError("a foreign origin moved the clock")
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
    after = local.request("GET", "/_local/clock")[1]["now"]
    from retention.core import clock
    assert (clock.parse_iso(after) - clock.parse_iso(before)).total_seconds() < 600  # not moved by an hour

"""The console in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium; no browser
download) against the local stack (`make run`): sign in, overview, a rule edited with an error shown at its
line, enable/disable, sign out; a viewer cannot edit; an A/B verdict over real sends, a dry-run, the brake
paused and resumed. Screenshots are kept in build/console/ (artefacts).

Few tests on purpose: each browser start costs seconds on a small machine."""

from __future__ import annotations

import os
import re
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
# a page of the local stack can take seconds on a loaded 2-core machine (the overview reads every rule's
# counters): assertions wait up to 30 s instead of Playwright's 5 s (they return as soon as they hold)
sync_api.expect.set_options(timeout=30_000)


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


def _batch(local: Any, messages: list[dict[str, Any]]) -> None:
    import base64
    auth = {"Authorization": "Basic " + base64.b64encode(b"dev-write-key:").decode()}
    status, body = local.request("POST", "/v1/batch", {"batch": messages}, headers=auth)
    assert status == 200 and not body["rejected"], body


AB_RULE = {  # sends at once (no waits, no clock to move): its variants have data as soon as it is ingested
    "id": "console-ab", "title": "Console A/B", "enabled": True, "category": "marketing",
    "trigger": {"event": "Console AB Tried"}, "audience": {"all": [{"consent": "email"}]},
    "exit_when": {"event": "Order Completed"}, "goal": {"event": "Order Completed"}, "holdout_percent": 0,
    "steps": [{"send": {"channel": "email", "variants": [{"template": "welcome", "weight": 50, "name": "A"},
                                                          {"template": "welcome", "weight": 50, "name": "B"}]}}]}


def _tried(prefix: str, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        uid = f"{prefix}-{i}"
        out += [{"type": "identify", "userId": uid, "messageId": f"{uid}-id",
                 "traits": {"email": f"{uid}@ab.example", "email_consent": True, "locale": "en"}},
                {"type": "track", "userId": uid, "event": "Console AB Tried", "messageId": f"{uid}-t"}]
    return out


def test_dry_run_ab_verdict_brake_pause_and_resume_then_sign_out(local: Any, browser: Any) -> None:
    """One A/B rule's data, then the pages a marketer reads it on: the rule's verdict over real variant
    sends and conversions, a dry-run over the stored events, the overview's brake paused by a complaint and
    resumed by the admin's button (and what is failing: nothing), sign-out."""
    expect = sync_api.expect
    admin = {"Authorization": f"Bearer {ADMIN}"}
    status, applied = local.request("PUT", "/admin/rules/console-ab", AB_RULE, headers=admin)
    assert status in (200, 201), applied
    try:
        _batch(local, _tried("ab", 16))
        sent = local.request("GET", "/_local/outbox?rule=console-ab&to=%40ab.example")[1]
        assert {m["variant"] for m in sent} == {"A", "B"}, sent
        buyers = [m["to"].split("@")[0] for m in sent if m["variant"] == "B"][:3]
        _batch(local, [{"type": "track", "userId": uid, "event": "Order Completed", "messageId": f"{uid}-oc",
                        "properties": {"order_id": f"{uid}-o", "revenue": 1990, "currency": "RUB"}}
                       for uid in buyers])

        page = _page(browser)  # signed in straight onto the rule's page
        page.goto(local.url + "/console/rules/console-ab")
        page.fill("#token", ADMIN)
        page.click("button[type=submit]")
        page.wait_for_url(local.url + "/console/rules/console-ab")
        verdict = page.locator(".verdict[data-verdict]").first
        expect(verdict).to_contain_text("not enough data yet (n = ")  # in plain words, over the real sends
        table = page.locator("table").filter(has_text="Variant")
        for name in ("A", "B"):  # a row per variant, with its sends (and B's conversions)
            expect(table.locator("td").filter(has_text=re.compile(f"^{name}$")).first).to_be_visible()
        _shot(page, "rule-ab")

        page.fill("#dry_run", "7")
        page.click("#dry-run button[type=submit]")
        dry = page.locator("#dry-run")
        expect(dry).to_contain_text("entries,")
        entries = re.search(r"(\d+) entries,", dry.inner_text())
        assert entries and int(entries.group(1)) >= 16, dry.inner_text()[:500]  # replayed, nothing sent
        expect(dry.locator("a", has_text="ab-0").first).to_be_visible()
        _shot(page, "rule-dry-run")

        # one complaint trips the brake once a single send is a window (the threshold is a setting)
        assert local.request("PUT", "/admin/settings", {"brake_min_sends": 1}, headers=admin)[0] == 200
        status, fb = local.request("POST", "/_local/feedback", {"to": sent[0]["to"], "type": "Complaint"})
        assert status == 200, fb
        assert local.request("GET", "/admin/sending", headers=admin)[1]["marketing"] == "paused"
        page.goto(local.url + "/console/")
        brake = page.locator("#brake")
        expect(brake).to_contain_text("Marketing sends are paused since")
        expect(brake).to_contain_text("omplaint rate")
        expect(page.locator("#events-today")).not_to_have_text("0")  # the day's events counter
        expect(page.locator("#dead-letters")).to_have_text("0")
        expect(page.locator("#health")).to_contain_text("Nothing is failing.")
        _shot(page, "overview-paused")
        brake.locator("button:has-text('Resume sending')").click()
        expect(page.locator("#brake")).to_contain_text("Marketing sends are active.")
        assert local.request("GET", "/admin/sending", headers=admin)[1]["marketing"] == "active"
        audit = local.admin("/admin/audit?kind=sending")["entries"]
        assert (audit[0]["who"], audit[0]["action"]) == ("local", "resume")

        page.click("button:has-text('Sign out')")
        page.wait_for_url("**/console/login")
        _shot(page, "signed-out")
        page.goto(local.url + "/console/")
        assert "/console/login" in page.url
        page.context.close()
    finally:
        local.request("PUT", "/admin/settings", {"brake_min_sends": 100}, headers=admin)
        local.request("POST", "/admin/sending/resume", {}, headers=admin)
        local.request("POST", "/admin/rules/console-ab/disable", {}, headers=admin)


def test_condition_builder_counts_as_you_choose_and_writes_the_yaml(local: Any, browser: Any) -> None:
    """Progressive enhancement with htmx: choosing a field, an operator and a value counts at once and puts
    the YAML the rows make into the YAML box (out-of-band swap), without a page load."""
    expect = sync_api.expect
    _batch(local, [{"type": "identify", "userId": "cb-1", "messageId": "cb-1-id",
                    "traits": {"email": "cb-1@cb.example", "email_consent": True, "vip": True}}])
    page = _page(browser)
    page.goto(local.url + "/console/segments")
    page.fill("#token", ADMIN)
    page.click("button[type=submit]")
    page.wait_for_url(local.url + "/console/segments")
    page.select_option("select[name=field0]", "trait:vip")
    page.select_option("select[name=op0]", "eq")
    page.fill("input[name=value0]", "true")
    expect(page.locator("#condition")).to_have_value("{trait: vip, eq: true}")
    expect(page.locator("#count .big")).to_be_visible()
    assert int(page.locator("#count .big").inner_text()) >= 1
    assert page.url == local.url + "/console/segments"  # swapped in place, no navigation
    _shot(page, "segments-builder")
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

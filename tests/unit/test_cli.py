"""The CLI's pure parts (files, CSV mapping, tables, progress, settings, retries, exit codes) and the
dry-run simulation, without AWS."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from requests.adapters import BaseAdapter

from cli.client import ApiClient, CliError
from cli.commands import parse_assignment
from cli.context import Ctx
from cli.definitions import _count_target, read_documents, split_documents
from cli.importer import Importer, row_messages
from cli.main import main
from cli.output import Progress, table

# ---- files -------------------------------------------------------------------------------------------


def test_split_documents_keeps_the_file_line_numbers() -> None:
    text = "# comment\nid: a\nx: 1\n---\n# only a comment\n---\nid: b\ny: 2\n...\n"
    chunks = split_documents(text)
    assert [first for first, _ in chunks] == [1, 7]
    assert chunks[1][1].splitlines()[6] == "id: b"  # line 7 of the padded text is line 7 of the file


def test_read_documents_line_map(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text("id: a\n---\nid: b\nsteps:\n  - wait: 1d\n", encoding="utf-8")
    docs = read_documents(path)
    assert [d.key("rules") for d in docs] == ["a", "b"]
    assert docs[1].linemap.line_for(("steps", 0, "wait")) == 5 and docs[1].line == 3


def test_count_target(tmp_path: Path) -> None:
    assert _count_target("lifecycle/loyal") == {"segment": "lifecycle/loyal"}
    assert _count_target("{kpi: orders_count, gte: 3}") == {"condition": {"kpi": "orders_count", "gte": 3}}
    cond = tmp_path / "c.yaml"
    cond.write_text("all:\n  - {consent: email}\n", encoding="utf-8")
    assert _count_target(str(cond)) == {"condition": {"all": [{"consent": "email"}]}}
    with pytest.raises(CliError) as exc:
        _count_target("a: [")
    assert exc.value.exit_code == 2


# ---- CSV → Segment messages ------------------------------------------------------------------------------

ROW = {"user_id": "u1", "email": "anna@example.com", "first_name": "Анна", "created_at": "2025-01-10",
       "order_id": "o-1", "total": "1 290,50", "currency": "RUB", "shop": "pp-1", "ordered_at": "2025-02-01T10:00:00Z",
       "email_consent": "true", "phone": ""}


def test_row_messages_are_deterministic() -> None:
    row = row_messages(dict(ROW), 2)
    assert row.error is None
    identify, order = row.messages
    assert identify["type"] == "identify" and identify["messageId"].startswith("import-identify-u1-")
    assert identify["traits"] == {"email": "anna@example.com", "first_name": "Анна",
                                  "created_at": "2025-01-10T00:00:00.000000Z", "email_consent": True}
    assert identify["timestamp"] == "2025-01-10T00:00:00.000000Z"
    assert order == {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "import-o-1",
                     "timestamp": "2025-02-01T10:00:00.000000Z",
                     "properties": {"order_id": "o-1", "total": 1290.5, "revenue": 1290.5, "currency": "RUB",
                                    "shop": "pp-1"}}
    assert "sentAt" not in order  # a historical timestamp must not be skew-corrected
    again = row_messages(dict(ROW), 9)
    assert [m["messageId"] for m in again.messages] == [m["messageId"] for m in row.messages]
    changed = row_messages({**ROW, "email": "new@example.com"}, 3)
    assert changed.messages[0]["messageId"] != identify["messageId"]  # new traits: a new identify


@pytest.mark.parametrize(("change", "error"), [
    ({"user_id": ""}, "no user_id"),
    ({"total": "lots"}, "total 'lots' is not a number"),
    ({"ordered_at": ""}, "order o-1 has no ordered_at"),
    ({"ordered_at": "yesterday"}, "ordered_at 'yesterday' is not an ISO 8601"),
    ({"email": "", "first_name": "", "order_id": "", "email_consent": ""}, "nothing to import"),
])
def test_row_errors(change: dict[str, str], error: str) -> None:
    row = row_messages({**ROW, **change}, 5)
    assert row.messages == [] and row.error is not None and row.error.startswith(error)


# ---- output -------------------------------------------------------------------------------------------


def test_table_aligns_numbers_right() -> None:
    out = io.StringIO()
    table(["id", "count"], [["a", 5], ["long-name", 1234], ["c", None]], out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "id         count"
    assert lines[2] == "a              5" and lines[3] == "long-name   1234" and lines[4] == "c              -"


def test_progress_bar_redraws_in_place() -> None:
    stream = io.StringIO()
    bar = Progress("importing", 200, stream=stream, enabled=True, width=10)
    bar.update(100)
    bar.update(100)  # unchanged: not redrawn
    bar.update(200, extra="· 5 accepted")
    bar.finish()
    text = stream.getvalue()
    assert text.count("\r") == 3
    assert "\rimporting [#####-----]  50% 100/200" in text and "[##########] 100% 200/200 · 5 accepted" in text
    assert text.endswith("\n")
    silent = io.StringIO()
    Progress("x", 3, stream=silent).update(1)  # not a terminal: nothing drawn
    assert silent.getvalue() == ""


def test_settings_assignment() -> None:
    assert parse_assignment("control_group_percent=5") == (["control_group_percent"], 5)
    assert parse_assignment("quiet_hours.sms.start=22:00") == (["quiet_hours", "sms", "start"], "22:00")
    assert parse_assignment("quiet_hours.email=null") == (["quiet_hours", "email"], None)
    assert parse_assignment('frequency_caps={"email": [{"count": 2, "hours": 24}]}')[1] == {
        "email": [{"count": 2, "hours": 24}]}
    with pytest.raises(CliError):
        parse_assignment("no-equals-sign")


# ---- HTTP behaviour ---------------------------------------------------------------------------------------


class Scripted(BaseAdapter):
    """Answers /v1/batch from a script of (status, body, headers); records what was posted."""

    def __init__(self, script: list[tuple[int, Any, dict[str, str]]]) -> None:
        super().__init__()
        self.script = script
        self.posted: list[list[dict[str, Any]]] = []

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float | None, float | None] | None = None, verify: bool | str = True,
             cert: str | tuple[str, str] | None = None, proxies: dict[str, str] | None = None,
             ) -> requests.Response:
        body = request.body.decode() if isinstance(request.body, bytes) else cast(str | None, request.body)
        self.posted.append(json.loads(body or "{}").get("batch", []))
        status, payload, headers = self.script.pop(0) if self.script else (200, None, {})
        if payload is None:
            payload = {"success": True, "accepted": len(self.posted[-1]), "rejected": []}
        resp = requests.Response()
        resp.status_code = status
        resp.headers.update(headers)
        resp._content = json.dumps(payload).encode()
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def _ctx(adapter: BaseAdapter) -> Ctx:
    session = requests.Session()
    session.mount("http://api.test", adapter)
    client = ApiClient(url="http://api.test", token="t", write_key="wk", session=session)
    return Ctx(client=client, out=io.StringIO(), err=io.StringIO(), progress_enabled=False)


def _csv(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "orders.csv"
    lines = ["user_id,order_id,total,ordered_at"] + [f"u{i},o{i},10,2025-01-0{1 + i % 9}T00:00:00Z"
                                                      for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_import_retries_throttling_and_splits_too_large(tmp_path: Path) -> None:
    adapter = Scripted([(429, {"code": "throttled", "message": "slow down"}, {"Retry-After": "2"}),
                        (503, {"code": "unavailable", "message": "later"}, {}),
                        (413, {"code": "payload_too_large", "message": "too large"}, {})])
    slept: list[float] = []
    importer = Importer(_ctx(adapter), _csv(tmp_path, 4), batch=10, workers=1, sleep=slept.append)
    result = importer.run()
    assert result.accepted == 4 and result.sent == 4 and not result.rejected
    assert slept[0] == 2.0 and len(slept) == 2  # Retry-After honoured, then a backoff
    assert [len(b) for b in adapter.posted] == [4, 4, 4, 2, 2]  # the 413 split the batch in two
    assert not (tmp_path / "orders.csv.progress").exists()


def test_import_stops_on_a_refused_key_and_keeps_the_progress(tmp_path: Path) -> None:
    adapter = Scripted([(200, None, {}), (401, {"code": "unauthorized", "message": "invalid write key"}, {})])
    importer = Importer(_ctx(adapter), _csv(tmp_path, 4), batch=2, workers=1, sleep=lambda s: None)
    with pytest.raises(CliError) as exc:
        importer.run()
    assert "invalid write key" in exc.value.message and "lines up to 3" in exc.value.message
    assert (tmp_path / "orders.csv.progress").read_text().strip() == "3"  # header + first batch
    resumed = Importer(_ctx(Scripted([])), tmp_path / "orders.csv", batch=2, workers=1, resume=True)
    assert resumed.run().sent == 2


class Unreachable(BaseAdapter):
    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float | None, float | None] | None = None, verify: bool | str = True,
             cert: str | tuple[str, str] | None = None, proxies: dict[str, str] | None = None,
             ) -> requests.Response:
        raise requests.ConnectionError("refused")

    def close(self) -> None:
        pass


def test_exit_codes() -> None:
    out, err = io.StringIO(), io.StringIO()
    session = requests.Session()
    session.mount("http://down.test", Unreachable())
    assert main(["--url", "http://down.test", "rules", "list"], session=session, stdout=out, stderr=err) == 2
    assert "cannot reach the API at http://down.test" in err.getvalue()
    assert main(["rules"], stdout=out, stderr=io.StringIO()) == 2  # usage: a subcommand is missing
    assert main(["--help"], stdout=out, stderr=err) == 0


# ---- the dry-run simulation ----------------------------------------------------------------------------------


def test_simulate_exit_and_cooldown() -> None:
    from retention.admin.previews import simulate
    from retention.core.config import Settings
    from retention.customers.profile import Profile
    from retention.language.rules import parse_rule
    rule = parse_rule({"id": "cart", "trigger": {"event": "Checkout Started"},
                       "exit_when": {"event": "Order Completed"}, "re_entry": {"cooldown": "2d"},
                       "steps": [{"wait": "4h"}, {"send": {"channel": "email", "template": "t"}}]})
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    t0 = now - timedelta(days=5)

    def ev(name: str, at: datetime) -> dict[str, Any]:
        return {"name": name, "properties": {}, "timestamp": at.isoformat(), "message_id": f"{name}-{at}"}
    events = [ev("Checkout Started", t0), ev("Order Completed", t0 + timedelta(hours=1)),
              ev("Checkout Started", t0 + timedelta(days=1)),  # within the 2-day cooldown: no entry
              ev("Checkout Started", t0 + timedelta(days=3))]
    out = simulate(rule, Profile(id="x"), events, since=now - timedelta(days=7), now=now, settings=Settings())
    assert [(e["entered_at"][:13], e["state"]) for e in out] == [("2026-11-19T09", "exited"),
                                                                  ("2026-11-22T09", "completed")]
    assert [s["kind"] for s in out[0]["steps"]] == ["wait"]
    assert [s["kind"] for s in out[1]["steps"]] == ["wait", "send"] and out[1]["steps"][1]["at"].startswith(
        "2026-11-22T13:00")


def test_jsonl_rows_keep_timestamps_and_get_stable_ids(tmp_path: Path) -> None:
    from cli.importer import jsonl_rows
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "track", "userId": "u1", "event": "Order Completed", "timestamp": "2024-01-01T00:00:00Z",'
                    ' "sentAt": "2024-01-01T00:00:05Z"}\n\nnot json\n[1]\n'
                    '{"type": "identify", "userId": "u1", "messageId": "m-2", "traits": {"email": "a@b.c"}}\n',
                    encoding="utf-8")
    rows = list(jsonl_rows(path))
    assert [(r.line, r.error is None) for r in rows] == [(1, True), (3, False), (4, False), (5, True)]
    first = rows[0].messages[0]
    assert "sentAt" not in first and first["messageId"].startswith("import-")
    assert first["messageId"] == next(iter(jsonl_rows(path))).messages[0]["messageId"]
    assert rows[3].messages[0]["messageId"] == "m-2"


def test_import_fails_fast_when_the_api_never_answered(tmp_path: Path) -> None:
    slept: list[float] = []
    importer = Importer(_ctx(Unreachable()), _csv(tmp_path, 2), workers=1, sleep=slept.append)
    with pytest.raises(CliError) as exc:
        importer.run()
    assert exc.value.exit_code == 2 and "cannot reach the API" in exc.value.message and slept == []


def test_report_tables_charts_and_html(tmp_path: Path) -> None:
    from retention.analytics.stats import rule_report
    from retention.surveys.nps import aggregate

    from cli.report import activity_chart, html_page, nps_chart, print_rule, variants_chart
    rows = [{"date": "2026-11-0" + str(d), "step": 3, "variant": v, "sent": 150, "delivered": 148, "opened": 60,
             "clicked": 20, "converted": 9 if v == "A" else 20, "revenue": 1000} for d in (1, 2) for v in ("A", "B")]
    rows += [{"date": "2026-11-01", "step": -1, "variant": "default", "entered": 300},
             {"date": "2026-11-01", "step": -1, "variant": "holdout", "entered": 30, "converted": 1}]
    stats = rule_report("cart", rows)
    out = io.StringIO()
    print_rule(stats, out)
    text = out.getvalue()
    assert "== cart ==" in text and "A/B step 3: A 6.0 % (n=300) vs B 13.3 % (n=300) → winner: B" in text
    assert "holdout: 30 customers, 1 converted" in text and "uplift" in text
    empty = io.StringIO()
    print_rule(rule_report("quiet", []), empty)
    assert "no data for this period" in empty.getvalue()
    charts = [activity_chart(stats, tmp_path / "a.png"), variants_chart(stats, tmp_path / "v.png")]
    assert all(p is not None and p.read_bytes().startswith(b"\x89PNG") for p in charts)
    assert activity_chart(rule_report("quiet", []), tmp_path / "none.png") is None
    nps = aggregate([{"customer_id": f"c{i}", "score": 10 if i % 3 else 2, "survey": "nps", "source": "link",
                      "at": datetime(2026, 9 + i % 3, 1, tzinfo=UTC)} for i in range(9)], period="month")
    png = nps_chart(nps, tmp_path / "nps.png")
    assert png is not None
    page = html_page("all time", [stats, rule_report("quiet", [])], {"cart": [p for p in charts if p]}, nps, png)
    assert page.count("data:image/png;base64,") == 3 and "no data for this period" in page


def test_dry_run_lists_no_future_steps_for_a_customer_who_unsubscribed() -> None:
    from retention.admin.previews import simulate
    from retention.core.config import Settings
    from retention.customers import profile as profiles
    from retention.ingestion.wire import internal_message
    from retention.language.rules import parse_rule
    rule = parse_rule({"id": "cart", "trigger": {"event": "Checkout Started"},
                       "steps": [{"wait": "4h"}, {"send": {"channel": "email", "template": "t"}}]})
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    events = [{"name": "Checkout Started", "properties": {}, "timestamp": clock_iso(now - timedelta(hours=1)),
               "message_id": "co-1"}]

    def customer(consent: bool) -> Any:
        p = profiles.Profile(id="x", created_at=now - timedelta(days=30))
        profiles.apply_message(p, internal_message("x", type_="identify", at=now - timedelta(days=2), traits={
            "email": "x@example.com", "email_consent": True}), now)
        if not consent:  # the unsubscribe link, yesterday
            profiles.apply_message(p, internal_message("x", type_="identify", at=now - timedelta(days=1), traits={
                "email_consent": {"granted": False, "source": "one_click"}}), now)
        return p

    kept = simulate(rule, customer(True), events, since=now - timedelta(days=7), now=now, settings=Settings())
    assert [(s["kind"], s["future"]) for s in kept[0]["steps"]] == [("wait", False), ("send", True)]
    gone = simulate(rule, customer(False), events, since=now - timedelta(days=7), now=now, settings=Settings())
    assert [(s["kind"], s["future"]) for s in gone[0]["steps"]] == [("wait", False)]
    assert gone[0]["stopped"] == "unsubscribed"  # as the sender would record it


def clock_iso(at: datetime) -> str:
    from retention.core import clock
    return clock.iso(at)

"""The CLI end to end: its HTTP layer (a requests adapter) invokes the real admin and ingestion handlers
in process, with API Gateway proxy events, on moto."""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from retention.admin.people import create_admin_token

from cli.main import main
from tests.support import LambdaContext

BASE = "http://retention.test"
TOKEN = "tok"
WRITE_KEY = "wk-test"
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


class HandlerAdapter(BaseAdapter):
    """requests → API Gateway proxy event → the Lambda handler → requests.Response. One request at a time,
    as one Lambda container would (Powertools' resolver keeps the current event on the app)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.batches: list[list[dict[str, Any]]] = []

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float | None, float | None] | None = None, verify: bool | str = True,
             cert: str | tuple[str, str] | None = None, proxies: dict[str, str] | None = None,
             ) -> requests.Response:
        from functions.admin_api.handler import lambda_handler as admin
        from functions.track_event.handler import lambda_handler as track
        url = urlsplit(request.url or "")
        query = dict(parse_qsl(url.query))
        headers = dict(request.headers)
        raw = request.body.decode() if isinstance(request.body, bytes) else cast(str | None, request.body)
        handler, name, resource = (admin, "admin_api", "/admin/{proxy+}") if url.path.startswith("/admin") else \
            (track, "track_event", "/v1/{proxy+}")
        if name == "track_event" and raw:
            self.batches.append(json.loads(raw)["batch"])
        event = {"resource": resource, "path": url.path, "httpMethod": request.method, "headers": headers,
                 "multiValueHeaders": {k: [v] for k, v in headers.items()},
                 "queryStringParameters": query or None,
                 "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
                 "pathParameters": None, "stageVariables": None, "body": raw, "isBase64Encoded": False,
                 "requestContext": {"resourcePath": resource, "httpMethod": request.method, "path": url.path,
                                    "stage": "test", "requestId": "r", "identity": {"sourceIp": "127.0.0.1"}}}
        with self.lock:
            self.calls[f"{request.method} {url.path}"] += 1
            out = handler(event, LambdaContext(name))
        resp = requests.Response()
        resp.status_code = out["statusCode"]
        resp.headers.update(out.get("headers") or {})
        resp._content = (out.get("body") or "").encode()
        resp.encoding = "utf-8"
        resp.url = request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        pass


class Cli:
    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.adapter = HandlerAdapter()
        self.session = requests.Session()
        self.session.mount(BASE, self.adapter)

    def __call__(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(["--url", BASE, "--token", TOKEN, *argv], session=self.session, stdout=out, stderr=err,
                     stdin=io.StringIO(stdin))
        return code, out.getvalue(), err.getvalue()

    def json(self, *argv: str) -> Any:
        code, out, err = self("--json", *argv)
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(library_stack: Any, monkeypatch: pytest.MonkeyPatch) -> Cli:
    create_admin_token(library_stack.deps.config, "t", token=TOKEN)
    library_stack.deps.config.create_source("test", key=WRITE_KEY)
    monkeypatch.setenv("RETENTION_WRITE_KEY", WRITE_KEY)
    return Cli(library_stack)


def test_sources_create_list_revoke(cli: Cli) -> None:
    code, out, _ = cli("sources", "create", "mobile app")
    assert code == 0
    key = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("write key:"))
    source_id = out.split()[1]
    assert cli.stack.deps.config.authenticate_source(key) == source_id
    code, out, _ = cli("sources", "list")
    assert code == 0 and source_id in out and "mobile app" in out and key not in out
    assert cli("sources", "revoke", source_id)[0] == 0
    assert "revoked" in cli("sources", "list")[1]
    code, _, err = cli("sources", "revoke", "src_unknown")
    assert code == 1 and "not found" in err
    out_io, err_io = io.StringIO(), io.StringIO()
    code = main(["--url", BASE, "--token", "wrong", "sources", "list"], session=cli.session, stdout=out_io,
                stderr=err_io)
    assert code == 1 and "invalid token" in err_io.getvalue()


def test_rules_validate_names_file_and_line(cli: Cli, tmp_path: Path) -> None:
    good = Path("scenarios/rules/welcome.yaml")
    assert cli("rules", "validate", str(good))[0] == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\ntrigger: {event: Signed Up}\nsteps:\n  - wait: 1d\n"
                   "  - send: {channel: email, template: no-such-template}\n", encoding="utf-8")
    code, _, err = cli("rules", "validate", str(bad))
    assert code == 1
    assert f"{bad}:5: steps[1].send.template: unknown template 'no-such-template'" in err
    code, _, err = cli("rules", "validate", str(tmp_path / "missing.yaml"))
    assert code == 2 and "no such file" in err


def test_rules_apply_list_diff_rollback(cli: Cli, tmp_path: Path) -> None:
    rule = tmp_path / "welcome.yaml"
    rule.write_text(Path("scenarios/rules/welcome.yaml").read_text(encoding="utf-8").replace("wait: 1d", "wait: 2d"),
                    encoding="utf-8")
    code, out, _ = cli("rules", "diff", str(rule))
    assert code == 0 and "~ steps[2].wait" in out and "1d → 2d" in out
    code, out, err = cli("rules", "apply", str(rule))
    assert code == 0, err
    assert f"{rule}: rule welcome v2 changed" in out
    assert "v2 unchanged" in cli("rules", "apply", str(rule))[1]
    assert "no changes" in cli("rules", "diff", str(rule))[1]
    listed = {r["id"]: r for r in cli.json("rules", "list")["rules"]}
    assert listed["welcome"]["version"] == 2
    code, out, _ = cli("rules", "rollback", "welcome")
    assert code == 0 and "now v3" in out
    assert "wait: 1d" in cli("rules", "get", "welcome")[1]
    # the API's own validation: an invalid document in a multi-document file still names its line
    multi = tmp_path / "два правила.yaml"  # a non-ASCII name travels in a header
    multi.write_text("id: one\ntrigger: {event: A}\nsteps:\n  - wait: 1h\n---\nid: two\ntrigger: {event: B}\n"
                     "steps:\n  - send: {channel: fax, template: welcome}\n", encoding="utf-8")
    code, out, err = cli("rules", "apply", str(multi))
    assert code == 1 and "rule one v1 changed" in out
    assert f"{multi}:9: steps[0].send.channel" in err
    assert cli("rules", "disable", "one")[0] == 0
    assert not {r["id"]: r for r in cli.json("rules", "list")["rules"]}["one"]["enabled"]


def test_templates_validate_lint_apply_and_segments_apply(cli: Cli, tmp_path: Path) -> None:
    template = tmp_path / "promo.yaml"
    template.write_text("id: promo\ncategory: marketing\nlocales:\n  ru:\n    subject: Скидка 50% бесплатно\n"
                        "    text: |\n      Привет!\n      {{ links.unsubscribe }}\n", encoding="utf-8")
    assert cli("templates", "validate", str(template))[0] == 0
    code, out, _ = cli("templates", "lint", str(template), "--strict")
    assert code == 1
    assert f"{template}:5: (ru) warning subject-no-name" in out and "subject-free" in out
    assert "v1 changed" in cli("templates", "apply", str(template))[1]
    assert "promo" in cli("templates", "get", "promo")[1]
    broken = tmp_path / "broken.yaml"
    broken.write_text(template.read_text(encoding="utf-8").replace("{{ links.unsubscribe }}",
                                                                   "{{ links.unsubscribe }} {{ nope.x }}"),
                      encoding="utf-8")
    code, _, err = cli("templates", "validate", str(broken))
    assert code == 1 and f"{broken}:8: locales.ru.text: line 2 of the text: undefined variable" in err
    code, out, err = cli("segments", "apply", "scenarios/segments")
    assert code == 0, err
    assert out.count("v1 unchanged") == len(list(Path("scenarios/segments").glob("*.yaml")))


def test_segments_count_loops_over_the_cursor(cli: Cli) -> None:
    cli.stack.ingest([{"type": "identify", "userId": f"p{i}", "messageId": f"i{i}",
                       "traits": {"email": f"p{i}@example.com", "email_consent": i < 5}} for i in range(8)])
    code, out, err = cli("segments", "count", "{consent: email}", "--limit", "3")
    assert code == 0, err
    assert "5 of 8 profiles" in out
    assert cli.adapter.calls["POST /admin/segments/count"] >= 3
    code, out, _ = cli("segments", "count", "promo_registered")
    assert code == 0 and out.startswith("lifecycle/promo_registered: 8 of 8")
    code, _, err = cli("segments", "count", "lifecycle/nope")
    assert code == 1 and "no segment 'nope'" in err
    code, out, err = cli("segments", "assign", "p1", "lifecycle", "loyal", "--reason", "call centre", "--until", "30d")
    assert code == 0, err
    assert "lifecycle is now loyal" in out
    assert cli.stack.profile("p1").segments["lifecycle"]["loyal"]["manual"] is True
    assert "loyal: 1 of 8" in cli("segments", "count", "loyal")[1]


CSV = """\
user_id,email,first_name,created_at,order_id,total,currency,shop,ordered_at
u1,anna@example.com,Анна,2025-01-10T08:00:00Z,o-1,1200.50,RUB,pp-1,2025-02-01T10:00:00Z
u1,anna@example.com,Анна,2025-01-10T08:00:00Z,o-2,800,RUB,pp-2,2025-05-01T10:00:00Z
u2,bob@example.com,Боб,2025-03-01T08:00:00Z,o-3,500,RUB,pp-1,2025-03-02T09:00:00Z
u3,cat@example.com,Кот,2025-04-01T08:00:00Z,,,,,
"""


def test_import_csv_twice_is_deduplicated(cli: Cli, tmp_path: Path) -> None:
    data = tmp_path / "customers.csv"
    data.write_text(CSV, encoding="utf-8")
    code, out, err = cli("import", str(data), "--batch", "2")
    assert code == 0, err + out
    assert "6 messages sent, 6 accepted, 0 rejected" in out  # 3 identify (u1 once) + 3 orders
    assert not (tmp_path / "customers.csv.progress").exists()
    kpis = cli.json("customers", "show", "u1")["kpis"]
    assert (kpis["orders_count"], kpis["revenue_total"], kpis["distinct_shops_count"]) == (2, 2000.5, 2)
    assert kpis["first_order_at"].startswith("2025-02-01") and kpis["last_order_at"].startswith("2025-05-01")
    events_before = len(cli.json("customers", "events", "u1")["events"])
    code, out, _ = cli("import", str(data))
    assert code == 0 and "0 rejected" in out
    u1 = cli.json("customers", "show", "u1")
    assert u1["kpis"]["orders_count"] == 2 and u1["kpis"]["revenue_total"] == 2000.5
    assert u1["traits"]["first_name"] == "Анна"
    assert len(cli.json("customers", "events", "u1")["events"]) == events_before
    assert cli.json("customers", "show", "u2")["kpis"]["orders_count"] == 1
    assert cli.json("customers", "show", "u3")["kpis"]["orders_count"] in (0, None)
    assert cli.stack.queued_sends() == []  # history starts no journey


def test_import_resume_and_rejected_rows(cli: Cli, tmp_path: Path) -> None:
    data = tmp_path / "orders.csv"
    data.write_text(CSV + "u4,dan@example.com,Дэн,,o-4,many,RUB,pp-1,2025-06-01T00:00:00Z\n"
                    "u5,eve@example.com,Ева,,o-5,10,RUB,pp-1,not-a-date\n", encoding="utf-8")
    (tmp_path / "orders.csv.progress").write_text("3\n")
    code, out, _ = cli("import", str(data), "--resume")
    assert code == 1  # rows were rejected
    sent = [m["messageId"] for batch in cli.adapter.batches for m in batch]
    # lines 4-5 only (u2: identify + order, u3: identify); lines 6-7 are rejected before sending
    assert len(sent) == 3 and sent[1] == "import-o-3"
    assert sent[0].startswith("import-identify-u2-") and sent[2].startswith("import-identify-u3-")
    assert "3 messages sent, 3 accepted, 2 rejected" in out
    assert f"{data}:6: total 'many' is not a number" in out
    assert f"{data}:7: ordered_at 'not-a-date'" in out
    assert not (tmp_path / "orders.csv.progress").exists()


def test_preview_and_dry_run(cli: Cli, now: Any) -> None:
    from datetime import timedelta

    from retention.core import clock
    cli.stack.ingest([
        {"type": "identify", "userId": "v2", "messageId": "iv1",
         "traits": {"email": "v2@example.com", "email_consent": True, "first_name": "Вера"}},
        {"type": "track", "userId": "v2", "event": "Checkout Started", "messageId": "cv1",
         "timestamp": clock.iso(now - timedelta(days=2)), "properties": {"total": 10}},
    ])
    code, out, err = cli("rules", "preview", "abandoned-cart", "--customer", "v2")
    assert code == 0, err
    assert "step 1 · cart-reminder · email" in out and "Subject:" in out
    code, out, err = cli("rules", "dry-run", "abandoned-cart", "--days", "7", "--limit", "2")
    assert code == 0, err
    assert "customers entering: 1 · entries: 1" in out and "cart-reminder@" in out
    assert cli.adapter.calls["POST /admin/rules/abandoned-cart/dry-run"] >= 2
    code, _, err = cli("rules", "preview", "nope", "--customer", "v2")
    assert code == 1 and "rule 'nope' not found" in err
    assert cli("rules", "get", "nope")[0] == 1


def test_report_writes_png_and_html(cli: Cli, tmp_path: Path) -> None:
    s = cli.stack
    s.ingest([{"type": "identify", "userId": f"r{i}", "messageId": f"ir{i}",
               "traits": {"email": f"r{i}@example.com", "email_consent": True, "first_name": "Ира"}}
              for i in range(4)] +
             [{"type": "track", "userId": f"r{i}", "event": "Signed Up", "messageId": f"su{i}"} for i in range(4)])
    sender = s.sender()
    assert any(sender.send(r).status == "sent" for r in s.queued_sends())
    out_dir = tmp_path / "reports"
    code, out, err = cli("report", "--rule", "welcome", "--rule", "birthday", "--out", str(out_dir))
    assert code == 0, err
    assert "== welcome ==" in out and "birthday ==\nno data for this period" in out
    assert (out_dir / "welcome-activity.png").read_bytes().startswith(b"\x89PNG")
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "welcome" in page
    # the funnel: four registered customers on seed 000's first relationship step
    # (stage sizes, issue 14: the steps are not nested, so it is not called a funnel)
    assert "Customers per relationship step" in out and (out_dir / "funnel.png").read_bytes().startswith(b"\x89PNG")
    assert "identify              4" in out and "Customers per relationship step" in page
    code, out, _ = cli("report", "--rule", "welcome", "--from", "2020-01-01", "--to", "2020-01-31",
                       "--out", str(tmp_path / "empty"))
    assert code == 0 and "no data for this period" in out and (tmp_path / "empty" / "report.html").exists()


def test_customers_settings_and_nps(cli: Cli) -> None:
    cli.stack.ingest([{"type": "identify", "userId": "f1", "messageId": "if1", "traits": {"email": "f1@example.com"}}])
    assert "f1@example.com" in cli("customers", "show", "f1")[1]
    code, _, _ = cli("customers", "forget", "f1", stdin="no\n")
    assert code == 1 and cli("customers", "show", "f1")[0] == 0
    assert cli("customers", "forget", "f1", "--yes")[0] == 0
    code, _, err = cli("customers", "show", "f1")
    assert code == 1 and "not found" in err
    code, out, err = cli("settings", "set", "control_group_percent=5", "quiet_hours.sms.start=22:00")
    assert code == 0, err
    settings = cli.json("settings", "show")
    assert settings["control_group_percent"] == 5 and settings["quiet_hours"]["sms"]["start"] == "22:00"
    code, _, err = cli("settings", "set", "frequency_caps=oops")
    assert code == 1 and "frequency_caps" in err
    code, out, _ = cli("nps", "report")
    assert code == 0 and "no data for this period" in out
    code, out, _ = cli("nps", "secret", "rotate")
    secret = out.split(": ", 1)[1].splitlines()[0]
    assert code == 0 and cli.stack.deps.config.secrets("nps-webhook")[0] == secret.encode()



def test_dry_run_of_a_path_reads_the_file_or_says_to_use_file(cli: Cli, tmp_path: Path) -> None:
    """`retention rules dry-run rules/x.yaml` used to ask the API for a rule named like the path (a
    URL-encoded "not found")."""
    rule = tmp_path / "cart.yaml"
    rule.write_text("id: cart-copy\ntrigger: {event: Checkout Started}\n"
                    "steps:\n  - send: {channel: email, template: cart-reminder}\n", encoding="utf-8")
    code, out, err = cli("rules", "dry-run", str(rule), "--days", "7")
    assert code == 0, err
    assert "dry-run of cart-copy" in out
    assert cli.adapter.calls["POST /admin/rules/cart-copy/dry-run"] >= 1
    code, _, err = cli("rules", "dry-run", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "no such file" in err and f"--file {tmp_path / 'missing.yaml'}" in err and "%2F" not in err

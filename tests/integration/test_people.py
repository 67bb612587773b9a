"""People: tokens with roles and expiry (salted hashes), role checks on the admin routes, the audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from retention.admin.people import create_admin_token
from retention.core import clock, ddb

from tests.integration.test_admin_api import call
from tests.integration.test_cli import Cli

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


@pytest.fixture
def people(library_stack: Any) -> dict[str, str]:
    cfg = library_stack.deps.config
    return {role: create_admin_token(cfg, f"{role}-person", role=role) for role in ("viewer", "editor", "admin")}


RULE = {"id": "hello", "trigger": {"event": "Signed Up"}, "audience": {"consent": "email"},
        "steps": [{"send": {"channel": "email", "template": "welcome"}}]}


def test_viewer_reads_editor_changes_definitions_admin_manages_people(library_stack: Any,
                                                                      people: dict[str, str]) -> None:
    viewer, editor, admin = people["viewer"], people["editor"], people["admin"]
    assert call("GET", "/admin/rules", token=viewer)[0] == 200
    assert call("POST", "/admin/segments/count", {"segment": "lifecycle/neutral"}, token=viewer)[0] == 200
    status, body = call("PUT", "/admin/rules/hello", RULE, token=viewer)
    assert (status, body["code"]) == (403, "forbidden") and "editor" in body["message"]
    assert call("PUT", "/admin/rules/hello", RULE, token=editor)[0] == 200
    assert call("POST", "/admin/rules/hello/disable", token=editor)[0] == 200
    for method, path, body in (("POST", "/admin/tokens", {"name": "x", "role": "viewer"}),
                               ("GET", "/admin/tokens", None), ("POST", "/admin/sources", {"name": "s"}),
                               ("GET", "/admin/sources", None), ("PUT", "/admin/settings", {"shop_name": "X"}),
                               ("POST", "/admin/webhooks/nps/rotate", {})):
        assert call(method, path, body, token=editor)[0] == 403, path
        assert call(method, path, body, token=viewer)[0] == 403, path
    status, created = call("POST", "/admin/tokens", {"name": "bob", "role": "editor", "expires": "90d"}, token=admin)
    assert status == 201 and created["token"].startswith("rt_") and created["role"] == "editor"
    assert created["expires_at"][:10] == clock.iso(clock.now() + timedelta(days=90))[:10]
    assert call("GET", "/admin/customers/nobody", token=created["token"])[0] == 404  # authenticated, no customer
    assert call("POST", "/admin/tokens", {"name": "x", "role": "owner"}, token=admin)[0] == 400
    assert call("POST", "/admin/tokens", {"name": "x", "expires": "soon"}, token=admin)[0] == 400


def test_tokens_are_stored_salted_and_hashed_expire_and_revoke(library_stack: Any, people: dict[str, str]) -> None:
    d = library_stack.deps
    status, made = call("POST", "/admin/tokens", {"name": "temp", "role": "viewer", "expires": "1h"},
                        token=people["admin"])
    token = made["token"]
    raw = [i for i in ddb.query(d.dynamodb, d.env.config_table, "TOKENS")] + \
        [ddb.deserialize(i) for i in d.dynamodb.scan(TableName=d.env.config_table)["Items"]]
    assert token not in repr(raw)  # never in clear, not even its plain SHA-256 as a key
    import hashlib
    assert hashlib.sha256(token.encode()).hexdigest() not in repr(raw)
    stored = [i for i in raw if str(i.get("pk", "")).startswith("TOKEN#") and i.get("name") == "temp"]
    assert len(stored) == 1 and len(stored[0]["salt"]) == 32
    assert call("GET", "/admin/rules", token=token)[0] == 200
    clock.set_now(clock.now() + timedelta(hours=2))
    d.config.invalidate()
    status, body = call("GET", "/admin/rules", token=token)
    assert (status, body["code"]) == (401, "token_expired")
    listed = {t["token_id"]: t for t in call("GET", "/admin/tokens", token=people["admin"])[1]["tokens"]}
    assert listed[made["token_id"]]["state"] == "expired" and "token" not in listed[made["token_id"]]
    editor_id = next(t for t in listed.values() if t["name"] == "editor-person")["token_id"]
    assert call("DELETE", f"/admin/tokens/{editor_id}", token=people["admin"])[0] == 200
    assert call("GET", "/admin/rules", token=people["editor"])[0] == 401
    assert call("DELETE", "/admin/tokens/tok_nope", token=people["admin"])[0] == 404


def test_every_change_is_in_the_audit_log_with_who_when_version(library_stack: Any, people: dict[str, str]) -> None:
    editor, admin = people["editor"], people["admin"]
    call("PUT", "/admin/rules/hello", RULE, token=editor)
    call("PUT", "/admin/rules/hello", RULE, token=editor)  # unchanged: not a change
    call("PUT", "/admin/rules/hello", {**RULE, "holdout_percent": 10}, token=editor)
    call("POST", "/admin/rules/hello/disable", token=editor)
    call("PUT", "/admin/settings", {"shop_name": "Лавка"}, token=admin)
    status, src = call("POST", "/admin/sources", {"name": "web"}, token=admin)
    call("DELETE", f"/admin/sources/{src['source_id']}", token=admin)
    call("GET", "/admin/rules/hello", token=editor)  # a read: not audited
    call("PUT", "/admin/rules/hello", RULE, token=people["viewer"])  # refused: not audited
    status, log = call("GET", "/admin/audit", token=people["viewer"])
    assert status == 200
    entries = [e for e in log["entries"] if e["who"] != "setup"]
    assert [(e["who"], e["action"], e["kind"], e["id"], e["version"]) for e in reversed(entries)] == [
        ("editor-person", "apply", "rule", "hello", 1),
        ("editor-person", "apply", "rule", "hello", 2),
        ("editor-person", "disable", "rule", "hello", 3),
        ("admin-person", "update", "setting", "global", None),
        ("admin-person", "create", "source", src["source_id"], None),
        ("admin-person", "revoke", "source", src["source_id"], None),
    ]
    assert all(e["when"].endswith("Z") for e in entries)
    tokens_log = call("GET", "/admin/audit", token=admin, query={"kind": "token"})[1]["entries"]
    assert {(e["action"], e["detail"]["name"], e["detail"]["role"]) for e in tokens_log} == {
        ("create", "viewer-person", "viewer"), ("create", "editor-person", "editor"), ("create", "admin-person", "admin")}


def test_cli_tokens_and_audit(library_stack: Any, people: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.integration.test_cli as tc
    monkeypatch.setattr(tc, "TOKEN", people["admin"])
    cli = Cli(library_stack)
    code, out, err = cli("tokens", "create", "--name", "anna", "--role", "editor", "--expires", "30d")
    assert code == 0, err
    token = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("token: "))
    token_id = out.split()[1]
    code, out, _ = cli("tokens", "list")
    assert code == 0 and "anna" in out and "editor" in out and token not in out
    assert cli("tokens", "revoke", token_id)[0] == 0
    assert "revoked" in cli("tokens", "list")[1]
    code, out, _ = cli("audit", "--kind", "token")
    assert code == 0 and "anna" not in out and token_id in out and "revoke" in out
    assert cli("tokens", "create", "--name", "x", "--role", "owner")[0] == 2

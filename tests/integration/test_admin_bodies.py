"""Admin request bodies are pydantic models: a body that does not fit is a 400 naming the field, checked
after the admin token (no body is read for an unauthenticated request), and the API is one Router per
resource."""

from __future__ import annotations

from typing import Any

import pytest
from retention.admin.people import create_admin_token

from tests.integration.test_admin_api import TOKEN, call

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


@pytest.fixture
def api(library_stack: Any) -> Any:
    create_admin_token(library_stack.deps.config, "t", token=TOKEN)
    return library_stack


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/admin/sources", {}, "name"),
    ("/admin/sources", {"name": ["web"]}, "name"),
    ("/admin/segments/count", {"segment": "lifecycle/neutral", "limit": "lots"}, "limit"),
    ("/admin/segments/count", {"condition": ["kpi"]}, "condition"),
    ("/admin/customers/u1/segments", {"group": "flags", "segment": "vip", "reason": 42}, "reason"),
    ("/admin/rules/welcome/preview", {"customer": "u1", "event": "Signed Up"}, "event"),
    ("/admin/rules/welcome/dry-run", {"days": "a week"}, "days"),
    ("/admin/rules/welcome/dry-run", {"days": 3, "cursor": {"pk": "x"}}, "cursor"),
])
def test_a_bad_body_is_a_400_naming_the_field(api: Any, path: str, body: Any, field: str) -> None:
    status, err = call("POST", path, body)
    assert status == 400, err
    assert err["code"] == "bad_request" and err["message"].startswith(f"{field}"), err


def test_a_preview_without_a_customer_says_how_to_name_one(api: Any) -> None:
    status, err = call("POST", "/admin/rules/welcome/preview", {"event": {"event": "Signed Up"}})
    assert status == 400 and '{"customer": "<userId>"}' in err["message"]


def test_a_body_that_is_not_a_json_object(api: Any) -> None:
    assert call("POST", "/admin/sources", "[1, 2]")[1] == {"code": "bad_request", "message": "the body is a JSON object"}
    status, err = call("POST", "/admin/sources", "{oops")
    assert status == 400 and err["message"].startswith("the body is not valid JSON")


def test_the_token_is_checked_before_the_body(api: Any) -> None:
    assert call("POST", "/admin/sources", {"name": ["not", "a", "name"]}, token=None)[0] == 401
    assert call("POST", "/admin/rules/welcome/preview", "{oops", token="wrong")[0] == 401


def test_a_dry_run_body_is_optional(api: Any) -> None:
    status, page = call("POST", "/admin/rules/abandoned-cart/dry-run", None)
    assert status == 200 and page["days"] == 7


def test_one_router_per_resource_and_the_generic_definition_routes_last() -> None:
    from pathlib import Path

    from retention.admin.routes import ROUTERS
    routes = [(rule, tuple(methods)) for router in ROUTERS for (rule, methods, *_rest) in router._routes]
    assert len(routes) == len(set(routes)) and len(ROUTERS) >= 5
    generic = [i for i, (rule, _) in enumerate(routes) if rule.startswith("/admin/<collection>")]
    specific = [i for i, (rule, _) in enumerate(routes) if "<" in rule and not rule.startswith("/admin/<collection>")]
    assert generic and specific and max(specific) < min(generic)
    handler = (Path(__file__).resolve().parents[2] / "functions" / "admin_api" / "handler.py").read_text()
    assert "@app." not in handler and len(handler.splitlines()) <= 40

"""The admin API by resource: one Powertools `Router` per module, included by functions/admin_api in
`ROUTERS` order, behind `authenticate` (a person's Bearer token with a role; every change audited).

Route order: Powertools tries every static route before any dynamic one, and dynamic ones in the order
they are registered (routers in the order they are included). So `/admin/sources`, `/admin/nps`,
`/admin/segments/count` … (static) win over `/admin/<collection>` and `/admin/<collection>/<def_id>`; the
routers with specific dynamic routes (customers, rule previews) come before the generic definitions."""

from __future__ import annotations

from typing import Any

from retention.admin.routes import customers, definitions, people, previews, sending, settings, sources, stats
from retention.core.runtime import deps
from retention.products.api import router as products_router  # catalogue, coupons, recommendations

ROUTERS = (people.router, sending.router, sources.router, settings.router, stats.router, customers.router,
           previews.router, products_router, definitions.router)


def authenticate(app: Any, next_middleware: Any) -> Any:
    """Every route: who (a person's token), whether their role may do it (retention.admin.people), and an
    audit entry for a successful change."""
    import json

    from retention.admin.people import People, audit_entry_for, is_change, required_role
    event = app.current_event
    headers = event.headers or {}
    people = People(deps().config)
    person = people.authenticate(headers.get("Authorization") or headers.get("authorization"))
    method, path = event.http_method, event.path
    person.require(required_role(method, path))
    app.append_context(admin=person.name, person=person)
    response = next_middleware(app)
    status = int(getattr(response, "status_code", 200) or 200)
    if status < 400 and is_change(method, path) and not path.startswith("/admin/tokens"):  # tokens audit themselves
        try:
            answer = json.loads(response.body) if isinstance(getattr(response, "body", None), str) else None
        except ValueError:
            answer = None
        if not (isinstance(answer, dict) and answer.get("changed") is False):
            action, kind, item_id, version, detail = audit_entry_for(method, path, answer)
            people.audit(person.name, action, kind, item_id, version=version, role=person.role, detail=detail)
    return response

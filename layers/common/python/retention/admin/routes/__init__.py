"""The admin API by resource: one Powertools `Router` per module, included by functions/admin_api in
`ROUTERS` order, behind `authenticate` (Bearer admin token, stored hashed).

Route order: Powertools tries every static route before any dynamic one, and dynamic ones in the order
they are registered (routers in the order they are included). So `/admin/sources`, `/admin/nps`,
`/admin/segments/count` … (static) win over `/admin/<collection>` and `/admin/<collection>/<def_id>`; the
routers with specific dynamic routes (customers, rule previews) come before the generic definitions."""

from __future__ import annotations

from typing import Any

from retention.admin.routes import customers, definitions, previews, settings, sources, stats
from retention.core.runtime import deps

ROUTERS = (sources.router, settings.router, stats.router, customers.router, previews.router, definitions.router)


def authenticate(app: Any, next_middleware: Any) -> Any:
    headers = app.current_event.headers or {}
    name = deps().config.authenticate_admin(headers.get("Authorization") or headers.get("authorization"))
    app.append_context(admin=name)
    return next_middleware(app)

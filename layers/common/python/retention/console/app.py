"""The console's resolver with every page registered (import order = route order for dynamic routes)."""

from __future__ import annotations

from retention.console import (  # noqa: F401 - register their routes
    catalogue,
    customers,
    home,
    library,
    people_pages,
    rules,
    settings_pages,
)
from retention.console.web import app

__all__ = ["app"]

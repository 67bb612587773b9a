"""The console's resolver with every page registered (import order = route order for dynamic routes)."""

from __future__ import annotations

from retention.console import customers, home, library, people_pages, rules  # noqa: F401 - register routes
from retention.console.web import app

__all__ = ["app"]

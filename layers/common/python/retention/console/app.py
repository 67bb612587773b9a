"""The console's resolver with every page registered (import order = route order for dynamic routes)."""

from __future__ import annotations

from retention.console import home, rules  # noqa: F401 - register their routes
from retention.console.web import app

__all__ = ["app"]

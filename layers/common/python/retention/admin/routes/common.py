"""What the admin routers share: query values, headers, the definition collections, the author."""

from __future__ import annotations

from typing import Any, TypeVar

from aws_lambda_powertools.event_handler.router import Router
from pydantic import BaseModel

from retention.admin.views import KIND_OF
from retention.core.errors import BadRequestError, NotFoundError


def query(router: Router, name: str) -> str | None:
    return router.current_event.get_query_string_value(name)


def kind(collection: str) -> str:
    if collection not in KIND_OF:
        raise NotFoundError(f"unknown collection '{collection}': use rules, segments or templates")
    return KIND_OF[collection]


M = TypeVar("M", bound=BaseModel)


def body(router: Router, model: type[M], required: bool = True) -> M:
    """The request body as `model`: a body that does not fit is a 400 naming the field. Parsed in the route,
    after the admin token is checked (Powertools' own body validation runs before any middleware)."""
    return model.model_validate(json_object(router, required))


def json_object(router: Router, required: bool = True) -> dict[str, Any]:
    """A body that must be a JSON object (a definition, a settings patch, a request model's fields)."""
    raw = router.current_event.decoded_body or ""
    if not raw.strip():
        if required:
            raise BadRequestError("the body is a JSON object")
        return {}
    from retention.core.http import parse_json_object
    return parse_json_object(raw)  # nesting capped: a deep body is a 400, not a 500


def author(router: Router) -> str:
    return str(router.context.get("admin") or "api")

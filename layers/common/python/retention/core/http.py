"""What every HTTP function shares: JSON errors with `code` and `message` (Rudder's client retries a 4xx
forever without them), mapping of domain exceptions, form bodies (urlencoded and multipart)."""

from __future__ import annotations

import json
from typing import Any

from retention.core.errors import RetentionError


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    from aws_lambda_powertools.event_handler import Response
    return Response(status_code=status, content_type="application/json",
                    body=json.dumps(body, ensure_ascii=False, default=str), headers=headers or {})


def error_response(exc: RetentionError) -> Any:
    return json_response(exc.status, {"code": exc.code, "message": exc.message})


def register_errors(app: Any, logger: Any) -> None:
    from pydantic import ValidationError as PydanticValidationError

    @app.exception_handler(RetentionError)
    def _domain(exc: RetentionError) -> Any:
        return error_response(exc)

    @app.exception_handler(PydanticValidationError)
    def _invalid(exc: PydanticValidationError) -> Any:
        errors = exc.errors()
        first: dict[str, Any] = dict(errors[0]) if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return json_response(400, {"code": "bad_request", "message": f"{where}: {first.get('msg', 'invalid')}"})

    @app.not_found
    def _not_found(exc: Exception) -> Any:
        return json_response(404, {"code": "not_found", "message": "no such route"})


MAX_JSON_DEPTH = 64


def parse_json_object(raw: str) -> dict[str, Any]:
    """An admin request body: a JSON object nested at most MAX_JSON_DEPTH levels, else a 400 (deep nesting
    used to reach a RecursionError somewhere later: a 500)."""
    from retention.core.errors import BadRequestError
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadRequestError(f"the body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequestError("the body is a JSON object")
    if depth_exceeds(body, MAX_JSON_DEPTH):
        raise BadRequestError(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    return body


def depth_exceeds(value: Any, limit: int) -> bool:
    """Iterative (no recursion of its own): True when containers nest deeper than `limit`."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def path_id(value: str) -> str:
    """A customer id (or any id) taken from a URL path: REST API Gateway and the local runtime hand the path
    over percent-encoded, so `shop%2F42` is the customer `shop/42` (ids may hold `/`, `#`, `?`, spaces)."""
    from urllib.parse import unquote
    return unquote(value)


def form_fields(body: str | None) -> dict[str, str]:
    from urllib.parse import parse_qs
    parsed = parse_qs(body or "", keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def header(event: Any, name: str) -> str | None:
    """A request header, whatever its case (API Gateway passes them as the client sent them)."""
    headers = event.headers or {}
    return headers.get(name) or next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def form_body(event: Any) -> dict[str, str]:
    """Form fields of a urlencoded or a multipart/form-data body (RFC 8058 allows both); a multipart body
    that does not parse has no fields."""
    body = event.decoded_body or ""
    ctype = header(event, "content-type") or ""
    if not ctype.lower().startswith("multipart/form-data"):
        return form_fields(body)
    from email.parser import BytesParser
    from email.policy import HTTP
    try:
        msg = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + body.encode("utf-8", "surrogateescape"))
        out: dict[str, str] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                out[str(name)] = str(part.get_content()).strip()
        return out
    except Exception:
        return {}

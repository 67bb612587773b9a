"""Domain exceptions. Handlers map them to HTTP answers in one place each.

A subclass names its answer in its class line (`class GoneError(RetentionError, code="gone", status=410)`);
a subclass without them keeps its parent's."""

from __future__ import annotations

from typing import Any


class RetentionError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def __init_subclass__(cls, *, code: str | None = None, status: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if status is not None:
            cls.status = status


class BadRequestError(RetentionError, code="bad_request", status=400):
    pass


class UnauthorizedError(RetentionError, code="unauthorized", status=401):
    pass


class ForbiddenError(RetentionError, code="forbidden", status=403):
    """Authenticated, but the person's role does not allow this."""


class NotFoundError(RetentionError, code="not_found", status=404):
    pass


class ConflictError(RetentionError, code="conflict", status=409):
    pass


class PayloadTooLargeError(RetentionError, code="payload_too_large", status=413):
    pass


class ValidationError(RetentionError, code="invalid_definition", status=422):
    """A definition (rule, segment, template) that cannot be applied."""

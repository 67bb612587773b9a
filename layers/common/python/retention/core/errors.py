"""Domain exceptions. Handlers map them to HTTP answers in one place each."""

from __future__ import annotations


class RetentionError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class BadRequestError(RetentionError):
    code = "bad_request"
    status = 400


class UnauthorizedError(RetentionError):
    code = "unauthorized"
    status = 401


class ForbiddenError(RetentionError):
    """Authenticated, but the person's role does not allow this."""

    code = "forbidden"
    status = 403


class NotFoundError(RetentionError):
    code = "not_found"
    status = 404


class ConflictError(RetentionError):
    code = "conflict"
    status = 409


class PayloadTooLargeError(RetentionError):
    code = "payload_too_large"
    status = 413


class ValidationError(RetentionError):
    """A definition (rule, segment, template) that cannot be applied."""

    code = "invalid_definition"
    status = 422

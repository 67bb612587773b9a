"""Request bodies of the admin API: a body that does not fit is a 400 naming the field
(retention.core.http.register_errors), before any work."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator, model_validator


class SourceBody(BaseModel):
    model_config = {"defer_build": True}  # built at its route's first request, not at every cold start

    name: str
    scopes: list[str] | None = None  # retention.core.config.SOURCE_SCOPES (or "all"); default events+customers

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError('a source needs a name: {"name": "web shop"}')
        return value.strip()


class CountBody(BaseModel):
    model_config = {"defer_build": True}

    condition: dict[str, Any] | None = None
    segment: str | None = None
    cursor: str | None = None
    limit: int | None = None


class AssignBody(BaseModel):
    model_config = {"defer_build": True}

    group: str | None = None
    segment: str | None = None
    reason: str | None = None
    until: str | None = None


class PreviewBody(BaseModel):
    model_config = {"defer_build": True}

    customer: str | None = None
    customer_id: str | None = None
    definition: dict[str, Any] | None = None
    event: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _has_customer(self) -> PreviewBody:
        if not (self.customer or self.customer_id):
            raise ValueError('a preview needs a customer: {"customer": "<userId>"}')
        return self

    @property
    def customer_ref(self) -> str:
        return str(self.customer or self.customer_id)


class DryRunBody(BaseModel):
    model_config = {"defer_build": True}

    days: int | float = 7
    cursor: str | None = None
    limit: int | None = None
    definition: dict[str, Any] | None = None

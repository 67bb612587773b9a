"""Environment read once into a model (names come from the CDK stack, locally from the template).

Table names and queue URLs have no default: a function checks at its cold start that what it needs is
set (`REQUIRED`, `Env.require`), so a missing variable is an error naming it, not a read of a table
called "profiles" or a fan-out that silently does nothing. tests/infra checks that the stack gives every
function what it requires, and the permissions to use it."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field


class SettingsError(RuntimeError):
    """A function's required environment is incomplete (a deployment error, not bad input)."""


class Env(BaseModel):
    profiles_table: str = Field(default="", alias="PROFILES_TABLE")
    events_table: str = Field(default="", alias="EVENTS_TABLE")
    config_table: str = Field(default="", alias="CONFIG_TABLE")
    due_table: str = Field(default="", alias="DUE_TABLE")
    messages_table: str = Field(default="", alias="MESSAGES_TABLE")
    idempotency_table: str = Field(default="", alias="IDEMPOTENCY_TABLE")
    products_table: str = Field(default="", alias="PRODUCTS_TABLE")
    send_queue_url: str = Field(default="", alias="SEND_QUEUE_URL")
    recompute_queue_url: str = Field(default="", alias="RECOMPUTE_QUEUE_URL")
    # the dead-letter queues, watched by the admin API (GET /admin/health: their depth); nobody sends to them
    send_dlq_url: str = Field(default="", alias="SEND_DLQ_URL")
    recompute_dlq_url: str = Field(default="", alias="RECOMPUTE_DLQ_URL")
    feedback_dlq_url: str = Field(default="", alias="FEEDBACK_DLQ_URL")
    sender_email: str = Field(default="Shop <news@example.com>", alias="SENDER_EMAIL")
    public_base_url: str = Field(default="http://127.0.0.1:8787", alias="PUBLIC_BASE_URL")
    ses_configuration_set: str = Field(default="", alias="SES_CONFIGURATION_SET")
    sms_sender_id: str = Field(default="Shop", alias="SMS_SENDER_ID")
    stage: str = Field(default="dev", alias="STAGE")
    due_shards: int = Field(default=4, alias="DUE_SHARDS")

    model_config = {"populate_by_name": True, "frozen": True}

    def missing(self, names: tuple[str, ...]) -> list[str]:
        """The variables among `names` (e.g. "SEND_QUEUE_URL") that are unset or empty."""
        by_alias = {f.alias: name for name, f in type(self).model_fields.items() if f.alias}
        unknown = [n for n in names if n not in by_alias]
        if unknown:
            raise ValueError(f"not settings: {', '.join(unknown)}")
        return [n for n in names if not str(getattr(self, by_alias[n]) or "").strip()]

    def require(self, function: str) -> Env:
        missing = self.missing(REQUIRED[function])
        if missing:
            raise SettingsError(f"{function}: environment variable{'s' if len(missing) > 1 else ''} "
                                f"{', '.join(missing)} not set (the stack sets them; locally the template does)")
        return self

    def queue(self, name: str) -> str:
        """The URL of the `send` or `recompute` queue; an unset one is an error, never a skipped send."""
        url = self.send_queue_url if name == "send" else self.recompute_queue_url
        if not url:
            raise SettingsError(f"{name.upper()}_QUEUE_URL is not set: cannot queue {name} work")
        return url


_ALL_TABLES = ("PROFILES_TABLE", "EVENTS_TABLE", "CONFIG_TABLE", "DUE_TABLE", "MESSAGES_TABLE", "IDEMPOTENCY_TABLE",
               "PRODUCTS_TABLE")
# the ingestion pipeline (track_event; nps_webhook and preferences through Surveys -> Ingestor)
_INGEST = (*_ALL_TABLES, "SEND_QUEUE_URL")
_ENGINE = ("PROFILES_TABLE", "EVENTS_TABLE", "CONFIG_TABLE", "DUE_TABLE", "MESSAGES_TABLE", "SEND_QUEUE_URL",
           "RECOMPUTE_QUEUE_URL")  # the tick and recompute: journeys, sends, broadcasts fanned out
# What each function needs to do its job, checked at its cold start (and against the stack in tests/infra).
REQUIRED: dict[str, tuple[str, ...]] = {
    "track_event": _INGEST,
    "evaluate_triggers": _ENGINE,
    "recompute": _ENGINE,
    "send_message": ("PROFILES_TABLE", "CONFIG_TABLE", "DUE_TABLE", "MESSAGES_TABLE", "PRODUCTS_TABLE",
                     "SEND_QUEUE_URL"),
    "feedback": ("PROFILES_TABLE", "CONFIG_TABLE", "MESSAGES_TABLE"),
    "nps_webhook": _INGEST,
    "preferences": _INGEST,
    "admin_api": (*_ALL_TABLES, "SEND_QUEUE_URL", "RECOMPUTE_QUEUE_URL"),
}


@lru_cache(maxsize=1)
def env() -> Env:
    fields = {f.alias for f in Env.model_fields.values() if f.alias}
    return Env.model_validate({k: v for k, v in os.environ.items() if k in fields})


def reload_env() -> Env:
    env.cache_clear()
    return env()

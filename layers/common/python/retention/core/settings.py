"""Environment read once into a model (names come from the CDK stack, locally from the template)."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field


class Env(BaseModel):
    profiles_table: str = Field(default="profiles", alias="PROFILES_TABLE")
    events_table: str = Field(default="events", alias="EVENTS_TABLE")
    config_table: str = Field(default="config", alias="CONFIG_TABLE")
    due_table: str = Field(default="due", alias="DUE_TABLE")
    messages_table: str = Field(default="messages", alias="MESSAGES_TABLE")
    idempotency_table: str = Field(default="idempotency", alias="IDEMPOTENCY_TABLE")
    send_queue_url: str = Field(default="", alias="SEND_QUEUE_URL")
    recompute_queue_url: str = Field(default="", alias="RECOMPUTE_QUEUE_URL")
    sender_email: str = Field(default="Shop <news@example.com>", alias="SENDER_EMAIL")
    public_base_url: str = Field(default="http://127.0.0.1:8787", alias="PUBLIC_BASE_URL")
    ses_configuration_set: str = Field(default="", alias="SES_CONFIGURATION_SET")
    sms_sender_id: str = Field(default="Shop", alias="SMS_SENDER_ID")
    stage: str = Field(default="dev", alias="STAGE")
    due_shards: int = Field(default=4, alias="DUE_SHARDS")

    model_config = {"populate_by_name": True, "frozen": True}


@lru_cache(maxsize=1)
def env() -> Env:
    fields = {f.alias for f in Env.model_fields.values() if f.alias}
    return Env.model_validate({k: v for k, v in os.environ.items() if k in fields})


def reload_env() -> Env:
    env.cache_clear()
    return env()

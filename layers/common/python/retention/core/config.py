"""Configuration kept in the config table: definitions (rules, segment groups, templates) with versions,
sources (write keys), admin tokens, global settings, signing secrets and the tick watermark.

Layout (pk / sk):
  <KIND> / <id>                 the applied definition (KIND = RULE | SEGDEF | TEMPLATE); one Query lists a kind
  <KIND>#<id> / V#<000001>      every applied version (diff, rollback)
  SOURCE#<sha256(key)> / SOURCE  a write key, stored hashed;  SOURCES / <source id> lists them
  ADMIN#<sha256(token)> / ADMIN  an admin token, stored hashed
  SETTINGS / global             global settings (defaults below)
  SECRET / <name>               signing secrets (current first; two valid during rotation)
  TICK / watermark              the minute tick's catch-up point
"""

from __future__ import annotations

import hashlib
import json
import secrets as pysecrets
import time
from typing import Any

from pydantic import BaseModel, Field

from retention.core import clock, ddb
from retention.core.errors import ConflictError, NotFoundError, UnauthorizedError

KINDS = ("RULE", "SEGDEF", "TEMPLATE")
CACHE_SECONDS = 30.0


class Cap(BaseModel):
    count: int = Field(ge=1)
    hours: float = Field(gt=0)


class QuietHours(BaseModel):
    start: str = "21:00"
    end: str = "09:00"


class Settings(BaseModel):
    """Global settings; every field has the default of DESIGN.md (sections 3, 5, 6, 7)."""

    frequency_caps: dict[str, list[Cap]] = Field(default_factory=lambda: {
        "email": [Cap(count=1, hours=16), Cap(count=3, hours=168)],
        "sms": [Cap(count=1, hours=24), Cap(count=3, hours=168)],
    })
    quiet_hours: dict[str, QuietHours | None] = Field(default_factory=lambda: {
        "sms": QuietHours(start="21:00", end="09:00"), "email": None})
    control_group_percent: float = Field(default=0, ge=0, le=100)
    history_horizon_hours: float = Field(default=24, gt=0)
    event_retention_days: int = Field(default=400, ge=1)
    attribution_window_days: float = Field(default=5, gt=0)
    default_timezone: str = "UTC"
    default_locale: str = "ru"
    shop_name: str = "Shop"
    shop_url: str = "https://example.com"
    unsubscribe_mailto: str | None = None
    interest_window_days: int = Field(default=30, ge=1)
    nps_survey_cooldown_days: int = 90
    dedupe_window_days: int = Field(default=30, ge=1)  # how long a messageId is remembered
    ledger_retention_days: int = Field(default=400, ge=30)
    # seed 000 "частота обращений": the customer's own contacts with the shop (KPIs contacts_30d / _90d)
    contact_events: list[str] = Field(default_factory=lambda: ["Complaint Opened", "Support Requested"])

    model_config = {"extra": "forbid"}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class ConfigStore:
    """Reads are cached per container for CACHE_SECONDS; writes in this process invalidate the cache."""

    _cache: dict[str, tuple[float, Any]] = {}

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    # ---- cache -------------------------------------------------------------------------------
    def _cached(self, name: str, loader: Any) -> Any:
        hit = self._cache.get(f"{self.table}:{name}")
        if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        val = loader()
        self._cache[f"{self.table}:{name}"] = (time.monotonic(), val)
        return val

    @classmethod
    def invalidate(cls) -> None:
        cls._cache.clear()

    # ---- definitions ---------------------------------------------------------------------------
    def current(self, kind: str) -> dict[str, dict[str, Any]]:
        """All applied definitions of a kind: {id: {"version", "body", "enabled", "text", ...}}."""
        def load() -> dict[str, dict[str, Any]]:
            out = {}
            for item in ddb.query(self.client, self.table, kind):
                item["body"] = json.loads(item["doc"])
                out[item["sk"]] = item
            return out
        return self._cached(f"def:{kind}", load)

    def get_definition(self, kind: str, def_id: str) -> dict[str, Any]:
        item = ddb.get(self.client, self.table, kind, def_id, consistent=True)
        if not item:
            raise NotFoundError(f"{kind.lower()} '{def_id}' not found")
        item["body"] = json.loads(item["doc"])
        return item

    def apply(self, kind: str, def_id: str, body: dict[str, Any], *, text: str | None = None,
              enabled: bool = True, author: str = "cli") -> dict[str, Any]:
        """Store a new version unless identical to the applied one. Optimistic: a concurrent apply loses."""
        doc = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
        digest = sha256(doc)
        existing = ddb.get(self.client, self.table, kind, def_id, consistent=True)
        if existing and existing.get("hash") == digest and bool(existing.get("enabled", True)) == enabled:
            existing["body"] = body
            existing["changed"] = False
            return existing
        version = int(existing["version"]) + 1 if existing else 1
        now = clock.iso(clock.now())
        item = {"pk": kind, "sk": def_id, "version": version, "doc": doc, "hash": digest, "enabled": enabled,
                "applied_at": now, "author": author, "text": text}
        cond = "attribute_not_exists(pk)" if not existing else "version = :v"
        vals = {} if not existing else {":v": ddb.value(int(existing["version"]))}
        try:
            kwargs: dict[str, Any] = {"TableName": self.table, "Item": ddb.serialize(item), "ConditionExpression": cond}
            if vals:
                kwargs["ExpressionAttributeValues"] = vals
            self.client.put_item(**kwargs)
        except Exception as exc:
            if ddb.is_conditional_failure(exc):
                raise ConflictError(f"{kind.lower()} '{def_id}' was changed concurrently; retry") from exc
            raise
        self.client.put_item(TableName=self.table, Item=ddb.serialize({**item, "pk": f"{kind}#{def_id}",
                                                                      "sk": f"V#{version:06d}"}))
        self.invalidate()
        item["body"] = body
        item["changed"] = True
        return item

    def set_enabled(self, kind: str, def_id: str, enabled: bool) -> dict[str, Any]:
        cur = self.get_definition(kind, def_id)
        return self.apply(kind, def_id, cur["body"], text=cur.get("text"), enabled=enabled)

    def versions(self, kind: str, def_id: str) -> list[dict[str, Any]]:
        out = []
        for item in ddb.query(self.client, self.table, f"{kind}#{def_id}", sk_prefix="V#"):
            item["body"] = json.loads(item.pop("doc"))
            out.append(item)
        return out

    def rollback(self, kind: str, def_id: str, to_version: int | None = None) -> dict[str, Any]:
        versions = self.versions(kind, def_id)
        if not versions:
            raise NotFoundError(f"{kind.lower()} '{def_id}' not found")
        current = versions[-1]["version"]
        target_v = to_version if to_version is not None else current - 1
        target = next((v for v in versions if v["version"] == target_v), None)
        if target is None:
            raise NotFoundError(f"{kind.lower()} '{def_id}' has no version {target_v}")
        return self.apply(kind, def_id, target["body"], text=target.get("text"),
                          enabled=bool(target.get("enabled", True)))

    # ---- settings --------------------------------------------------------------------------------
    def settings(self) -> Settings:
        def load() -> Settings:
            item = ddb.get(self.client, self.table, "SETTINGS", "global")
            return Settings.model_validate(json.loads(item["doc"])) if item else Settings()
        return self._cached("settings", load)

    def put_settings(self, patch: dict[str, Any]) -> Settings:
        merged = {**self.settings().model_dump(), **patch}
        new = Settings.model_validate(merged)
        self.client.put_item(TableName=self.table, Item=ddb.serialize(
            {"pk": "SETTINGS", "sk": "global", "doc": new.model_dump_json()}))
        self.invalidate()
        return new

    # ---- sources (write keys) and admin tokens -----------------------------------------------------
    def create_source(self, name: str, key: str | None = None) -> dict[str, Any]:
        key = key or "wk_" + pysecrets.token_urlsafe(24)
        digest = sha256(key)
        source_id = "src_" + digest[:12]
        now = clock.iso(clock.now())
        self.client.put_item(TableName=self.table, Item=ddb.serialize(
            {"pk": f"SOURCE#{digest}", "sk": "SOURCE", "source_id": source_id, "name": name, "created_at": now}))
        self.client.put_item(TableName=self.table, Item=ddb.serialize(
            {"pk": "SOURCES", "sk": source_id, "name": name, "key_hash": digest, "created_at": now,
             "key_hint": key[:6] + "…", "revoked": False}))
        return {"source_id": source_id, "name": name, "write_key": key, "created_at": now}

    def list_sources(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in item.items() if k not in ("pk", "key_hash")} | {"source_id": item["sk"]}
                for item in ddb.query(self.client, self.table, "SOURCES")]

    def revoke_source(self, source_id: str) -> None:
        item = ddb.get(self.client, self.table, "SOURCES", source_id)
        if not item:
            raise NotFoundError(f"source '{source_id}' not found")
        self.client.delete_item(TableName=self.table, Key=ddb.key(f"SOURCE#{item['key_hash']}", "SOURCE"))
        self.client.update_item(TableName=self.table, Key=ddb.key("SOURCES", source_id),
                                UpdateExpression="SET revoked = :t, revoked_at = :n",
                                ExpressionAttributeValues=ddb.values({":t": True, ":n": clock.iso(clock.now())}))
        self.invalidate()

    def authenticate_source(self, key: str | None) -> str:
        """Return the source id of a write key; the key is looked up by its hash (never stored in clear)."""
        if not key:
            raise UnauthorizedError("missing write key: use HTTP Basic auth with the write key as user name")
        digest = sha256(key)

        def load() -> dict[str, Any] | None:
            return ddb.get(self.client, self.table, f"SOURCE#{digest}", "SOURCE")
        item = self._cached(f"src:{digest}", load)
        if not item:
            raise UnauthorizedError("invalid write key")
        return str(item["source_id"])

    def create_admin_token(self, name: str, token: str | None = None) -> str:
        token = token or "adm_" + pysecrets.token_urlsafe(32)
        self.client.put_item(TableName=self.table, Item=ddb.serialize(
            {"pk": f"ADMIN#{sha256(token)}", "sk": "ADMIN", "name": name, "created_at": clock.iso(clock.now())}))
        return token

    def authenticate_admin(self, authorization: str | None) -> str:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise UnauthorizedError("missing admin token: send 'Authorization: Bearer <token>'")
        digest = sha256(authorization[7:].strip())

        def load() -> dict[str, Any] | None:
            return ddb.get(self.client, self.table, f"ADMIN#{digest}", "ADMIN")
        item = self._cached(f"adm:{digest}", load)
        if not item:
            raise UnauthorizedError("invalid admin token")
        return str(item.get("name", "admin"))

    # ---- secrets -------------------------------------------------------------------------------
    def secrets(self, name: str) -> list[bytes]:
        """Signing secrets, current first. Created on first use (conditional put: one winner)."""
        def load() -> list[bytes]:
            item = ddb.get(self.client, self.table, "SECRET", name, consistent=True)
            if not item:
                fresh = {"pk": "SECRET", "sk": name, "values": [pysecrets.token_urlsafe(32)],
                         "created_at": clock.iso(clock.now())}
                try:
                    self.client.put_item(TableName=self.table, Item=ddb.serialize(fresh),
                                         ConditionExpression="attribute_not_exists(pk)")
                    item = fresh
                except Exception as exc:
                    if not ddb.is_conditional_failure(exc):
                        raise
                    item = ddb.get(self.client, self.table, "SECRET", name, consistent=True) or fresh
            return [v.encode() for v in item["values"]]
        return self._cached(f"secret:{name}", load)

    def rotate_secret(self, name: str, value: str | None = None) -> str:
        """New current secret; the previous one stays valid until the next rotation."""
        new = value or pysecrets.token_urlsafe(32)
        old = [v.decode() for v in self.secrets(name)]
        self.client.put_item(TableName=self.table, Item=ddb.serialize(
            {"pk": "SECRET", "sk": name, "values": [new, *old[:1]], "rotated_at": clock.iso(clock.now())}))
        self.invalidate()
        return new

    # ---- tick watermark ------------------------------------------------------------------------
    def watermark(self) -> str | None:
        item = ddb.get(self.client, self.table, "TICK", "watermark", consistent=True)
        return item["at"] if item else None

    def set_watermark(self, at: str) -> None:
        """Only moves forward, so a late concurrent tick cannot rewind it."""
        try:
            self.client.put_item(TableName=self.table, Item=ddb.serialize({"pk": "TICK", "sk": "watermark", "at": at}),
                                 ConditionExpression="attribute_not_exists(pk) OR #a < :a",
                                 ExpressionAttributeNames={"#a": "at"}, ExpressionAttributeValues={":a": {"S": at}})
        except Exception as exc:
            if not ddb.is_conditional_failure(exc):
                raise

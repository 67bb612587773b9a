"""Configuration kept in the config table: definitions (rules, segment groups, templates) with versions,
sources (write keys), admin tokens, global settings, signing secrets and the tick watermark.

Layout (pk / sk):
  <KIND> / <id>                 the applied definition (KIND = RULE | SEGDEF | TEMPLATE); one Query lists a kind
  <KIND>#<id> / V#<000001>      every applied version (diff, rollback)
  SOURCE#<sha256(key)> / SOURCE  a write key, stored hashed;  SOURCES / <source id> lists them
  TOKEN#… / TOKENS / AUDIT      people's tokens and the audit log (retention.admin.people)
  SENDING / <identity>          the send brake's state (retention.messaging.brake)
  SETTINGS / global             global settings (defaults below)
  SECRET / <name>               signing secrets (current first; two valid during rotation)
  TICK / watermark              the minute tick's catch-up point
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator

from retention.core import clock, ddb, tokens
from retention.core.errors import BadRequestError, ConflictError, NotFoundError, UnauthorizedError
from retention.language.urls import DEFAULT_URL_PATTERNS

KINDS = ("RULE", "SEGDEF", "TEMPLATE")
CACHE_SECONDS = 30.0
KEY_CACHE_SECONDS = 10.0
"""Write keys and admin tokens: a revoked one keeps working at most this long in a warm container (the
revoking process forgets it at once)."""
CACHE_ENTRIES = 4096


def definition_key(kind: str, def_id: str) -> str:
    """`<KIND>#<id>`: the partition of a definition's versions, and the name its errors are reported under
    (`SEGDEF#lifecycle: segments[0]…`)."""
    return f"{kind}#{def_id}"


class Cap(BaseModel):
    model_config = {"defer_build": True}
    count: int = Field(ge=1)
    hours: float = Field(gt=0)


class QuietHours(BaseModel):
    model_config = {"defer_build": True}
    start: str = "21:00"
    end: str = "09:00"


_COLOR = r"^#[0-9a-fA-F]{6}$"


class Brand(BaseModel):
    """How the shop's emails look and who they are from (the layout in `retention.messaging.layout`)."""

    logo_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    primary_color: str = Field(default="#1a56db", pattern=_COLOR)
    button_text_color: str = Field(default="#ffffff", pattern=_COLOR)
    text_color: str = Field(default="#1f2328", pattern=_COLOR)
    background_color: str = Field(default="#f3f4f6", pattern=_COLOR)
    legal_name: str | None = Field(default=None, max_length=200)  # e.g. "ООО «Магазин», ИНН 7700000000"
    legal_address: str | None = Field(default=None, max_length=300)
    from_name: str | None = Field(default=None, max_length=100)  # default: the shop's name
    reply_to: str | None = Field(default=None, max_length=254)

    model_config = {"extra": "forbid", "defer_build": True}


class UrlPatterns(BaseModel):
    """Deep links promised by the copy. `{base}` is the shop's URL; other `{names}` come from the event's
    properties (`order_id`, `product_id`); a link whose names are missing is not offered at all."""

    cart: str = DEFAULT_URL_PATTERNS["cart"]
    order: str = DEFAULT_URL_PATTERNS["order"]
    product: str = DEFAULT_URL_PATTERNS["product"]
    review: str = DEFAULT_URL_PATTERNS["review"]
    shop_review: str = DEFAULT_URL_PATTERNS["shop_review"]

    model_config = {"extra": "forbid", "defer_build": True}


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
    event_retention_days: int = Field(default=90, ge=1)  # raw events (DESIGN §10 cost)
    attribution_window_days: float = Field(default=5, gt=0)
    default_timezone: str = "UTC"
    default_locale: str = "ru"
    shop_name: str = "Shop"
    shop_url: str = "https://example.com"
    unsubscribe_mailto: str | None = None
    brand: Brand = Field(default_factory=Brand)
    url_patterns: UrlPatterns = Field(default_factory=UrlPatterns)
    interest_window_days: int = Field(default=30, ge=1)
    nps_survey_cooldown_days: int = 90
    dedupe_window_days: int = Field(default=30, ge=1)  # how long a messageId is remembered
    ledger_retention_days: int = Field(default=400, ge=30)
    shop_country: str = Field(default="RU", min_length=2, max_length=2)  # ISO 3166-1 alpha-2
    # SMS goes only to numbers of these countries (ISO codes); empty: the shop's own country. Premium-rate
    # and far-away numbers are how SMS pumping fraud bills a shop.
    sms_countries: list[str] = Field(default_factory=list)
    # the send brake (retention.messaging.brake): half of SES's review thresholds (5 % bounces, 0.1 % complaints)
    brake_window_sends: int = Field(default=1000, ge=100)
    brake_min_sends: int = Field(default=100, ge=1)
    brake_bounce_rate: float = Field(default=0.025, gt=0, le=1)
    brake_complaint_rate: float = Field(default=0.0005, gt=0, le=1)
    # seed 000 "частота обращений": the customer's own contacts with the shop (KPIs contacts_30d / _90d)
    contact_events: list[str] = Field(default_factory=lambda: ["Complaint Opened", "Support Requested"])
    # consumable categories with the days their products last ({"Корма": 30}): bought products of these
    # categories may be recommended again, and each order of one schedules a `Product Replenishment Due`
    # event that many days later; a product's own `consumable_days` overrides its category's. A
    # `wait: {reorder: 30d}` step (rule second-order) waits the shortest of these for the categories of the
    # customer's latest order, or its own duration when none is listed (seed 002: the second purchase comes
    # when the first one is used up)
    consumable_categories: dict[str, int] = Field(default_factory=dict)

    @field_validator("consumable_categories")
    @classmethod
    def _consumable_days(cls, value: dict[str, int]) -> dict[str, int]:
        for name, days in value.items():
            if not name.strip() or not 1 <= days <= 3650:
                raise ValueError(f"consumable_categories[{name!r}]: a category name and 1 to 3650 days")
        return value

    model_config = {"extra": "forbid", "defer_build": True}

    def sms_allowed(self) -> set[str]:
        return {c.upper() for c in (self.sms_countries or [self.shop_country])}


SOURCE_SCOPES = ("events", "customers", "contact", "consent")
"""What a write key may do. events: any message about existing customers and anonymous visitors;
customers: create identified customers, and set contact data and consent on the customers this source
created; contact: change the email/phone of any customer; consent: grant consent for any customer.
Revoking consent needs no scope."""
DEFAULT_SOURCE_SCOPES = ("events", "customers")


@dataclass(frozen=True)
class Source:
    source_id: str
    scopes: frozenset[str] = frozenset(SOURCE_SCOPES)


def parse_scopes(scopes: Iterable[str] | str | None) -> tuple[str, ...]:
    if scopes is None:
        return DEFAULT_SOURCE_SCOPES
    if isinstance(scopes, str):
        scopes = [s for s in scopes.replace(",", " ").split() if s]
    chosen = set()
    for scope in scopes:
        if scope == "all":
            chosen |= set(SOURCE_SCOPES)
        elif scope in SOURCE_SCOPES:
            chosen.add(scope)
        else:
            raise BadRequestError(f"unknown scope {scope!r}: use {', '.join(SOURCE_SCOPES)} or all")
    chosen.add("events")
    return tuple(s for s in SOURCE_SCOPES if s in chosen)


class ConfigStore:
    """Reads are cached per container for CACHE_SECONDS; writes in this process invalidate the cache."""

    _cache: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    # ---- cache -------------------------------------------------------------------------------
    def _cached(self, name: str, loader: Any, seconds: float | None = None) -> Any:
        """A bounded LRU (CACHE_ENTRIES): unknown keys are cached too (a flood of bogus keys costs one read
        each per container, not one per request), but they can only push out the oldest entries. `seconds`
        defaults to CACHE_SECONDS as it is when called (the benches and tests set it)."""
        key = f"{self.table}:{name}"
        hit = self._cache.get(key)
        if hit and clock.monotonic() - hit[0] < (CACHE_SECONDS if seconds is None else seconds):
            self._cache.move_to_end(key)
            return hit[1]
        val = loader()
        self._cache[key] = (clock.monotonic(), val)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
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
        digest = hashlib.sha256(doc.encode()).hexdigest()  # a content hash (unchanged body → no new version)
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
        self.client.put_item(TableName=self.table, Item=ddb.serialize({**item, "pk": definition_key(kind, def_id),
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
        for item in ddb.query(self.client, self.table, definition_key(kind, def_id), sk_prefix="V#"):
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
    def create_source(self, name: str, key: str | None = None, scopes: Iterable[str] | None = None) -> dict[str, Any]:
        """A write key. `scopes` (see SOURCE_SCOPES) default to events + customers: the source may create
        customers and keep the contact data and consent of the customers it created, but not change another
        source's customers' email/phone or grant their consent."""
        chosen = parse_scopes(scopes)
        key = key or "wk_" + tokens.new_secret(24)
        digest = tokens.hash_secret(key)
        source_id = "src_" + digest[:12]
        now = clock.iso(clock.now())
        self.client.put_item(TableName=self.table, Item=ddb.serialize(
            {"pk": f"SOURCE#{digest}", "sk": "SOURCE", "source_id": source_id, "name": name, "created_at": now,
             "scopes": list(chosen)}))
        self.client.put_item(TableName=self.table, Item=ddb.serialize(
            {"pk": "SOURCES", "sk": source_id, "name": name, "key_hash": digest, "created_at": now,
             "key_hint": key[:6] + "…", "revoked": False, "scopes": list(chosen)}))
        return {"source_id": source_id, "name": name, "write_key": key, "created_at": now, "scopes": list(chosen)}

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
        return self.source_of(key).source_id

    def source_of(self, key: str | None) -> Source:
        """The source of a write key with its scopes (a key stored before scopes existed has them all)."""
        if not key:
            raise UnauthorizedError("missing write key: use HTTP Basic auth with the write key as user name")
        digest = tokens.hash_secret(key)

        def load() -> dict[str, Any] | None:
            return ddb.get(self.client, self.table, f"SOURCE#{digest}", "SOURCE")
        item = self._cached(f"src:{digest}", load, KEY_CACHE_SECONDS)
        if not item:
            raise UnauthorizedError("invalid write key")
        scopes = item.get("scopes")
        return Source(source_id=str(item["source_id"]),
                      scopes=frozenset(SOURCE_SCOPES if scopes is None else scopes))

    # ---- secrets -------------------------------------------------------------------------------
    def secrets(self, name: str) -> list[bytes]:
        """Signing secrets, current first. Created on first use (conditional put: one winner)."""
        def load() -> list[bytes]:
            item = ddb.get(self.client, self.table, "SECRET", name, consistent=True)
            if not item:
                fresh = {"pk": "SECRET", "sk": name, "values": [tokens.new_secret()],
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
        new = value or tokens.new_secret()
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

"""Data access for profiles (one item per customer: the JSON `doc`, an optimistic `version`, and the
`sends` list that the sender appends to without rewriting the doc), and the one owner of the keys of what
is stored about a customer (other modules call these builders, never spell the prefixes):

profiles table  C#<customer> / P                          the profile (or a merge tombstone)
                C#<customer> / O#<order id>               one order (the profile keeps the aggregates)
                C#<customer> / H#<at>#<group>#<seg>#<kind>  segment history
                A#<anonymous id> / ALIAS                  identity link
                X#<sha256(email)> / EMAIL                 lookup by email
                PI#<product> / C#<customer>               product interest (back in stock, price drop)
events table    C#<customer> / <iso timestamp>#<messageId> the timeline (raw and internal events)"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb
from retention.customers.profile import Order, Profile

SEND_HISTORY_DAYS = 60


COMPRESS_OVER = 600  # bytes of JSON: smaller docs are stored as text (readable in the console)


def encode_doc(doc: str) -> str | bytes:
    """The profile JSON, zlib-compressed (a binary attribute) when large: a write costs one unit per KB,
    twice inside a transaction, and a typical profile shrinks from ~1.4 KB to well under 1 KB."""
    raw = doc.encode()
    return zlib.compress(raw, 6) if len(raw) > COMPRESS_OVER else doc


def decode_doc(value: Any) -> str:
    if isinstance(value, str):
        return value
    return zlib.decompress(bytes(getattr(value, "value", value))).decode()


PROFILE_SK = "P"
_CUSTOMER = "C#"


def profile_pk(customer_id: str) -> str:
    return f"{_CUSTOMER}{customer_id}"


def customer_of_pk(pk: str) -> str | None:
    """The customer id of a profile / timeline partition key (None for any other key)."""
    return pk[len(_CUSTOMER):] if pk.startswith(_CUSTOMER) else None


def email_key(email: str) -> str:
    return "X#" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def email_index_key(email: str) -> tuple[str, str]:
    return (email_key(email), "EMAIL")


def alias_key(anonymous_id: str) -> tuple[str, str]:
    return (f"A#{anonymous_id}", "ALIAS")


def alias_of_key(pk: str) -> str:
    """The anonymous id of an alias key."""
    return pk.removeprefix("A#")


def interest_pk(product_id: str) -> str:
    return f"PI#{product_id}"


def interest_key(product_id: str, customer_id: str) -> tuple[str, str]:
    return (interest_pk(product_id), profile_pk(customer_id))


def history_key(customer_id: str, at: str, group: str, segment: str, kind: str) -> tuple[str, str]:
    return (profile_pk(customer_id), f"H#{at}#{group}#{segment}#{kind}")


def timeline_key(customer_id: str, timestamp: str, message_id: str) -> tuple[str, str]:
    """An event on the customer's timeline (events table), in time order."""
    return (profile_pk(customer_id), f"{timestamp}#{message_id}")


ORDER_PREFIX = "O#"
ORDER_ID_KEY_BYTES = 512  # longer order ids are hashed in the sort key (a key is at most 1 KB)


def order_key(customer_id: str, order_id: str) -> tuple[str, str]:
    """One order of the customer (profiles table, the customer's partition: erasure deletes it with the
    profile). The profile holds the aggregates; this item holds the order."""
    raw = order_id.encode("utf-8", "surrogatepass")
    sk = order_id if len(raw) <= ORDER_ID_KEY_BYTES else "~" + hashlib.sha256(raw).hexdigest()
    return (profile_pk(customer_id), ORDER_PREFIX + sk)


def order_item(customer_id: str, order: Order) -> dict[str, Any]:
    pk, sk = order_key(customer_id, order.order_id)
    return {"pk": pk, "sk": sk, "doc": order.model_dump_json(exclude_defaults=True)}


def order_from_item(item: dict[str, Any]) -> Order:
    return Order.model_validate_json(str(item["doc"]))


TOMBSTONE_DAYS = 7


@dataclass
class StoredProfile:
    profile: Profile
    version: int  # 0 = not stored yet
    sends: list[dict[str, Any]] = field(default_factory=list)
    email_indexed: str | None = None
    # an anonymous profile joined into a customer leaves a tombstone (same key, `merged_into`): a writer
    # that read the profile before the merge fails its version condition, re-reads, and follows it
    merged_into: str | None = None

    @property
    def exists(self) -> bool:
        return self.version > 0 and self.merged_into is None


def recent_sends(sends: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    horizon = clock.iso(now - timedelta(days=SEND_HISTORY_DAYS))
    return [s for s in sends if s.get("at", "") >= horizon]


def from_item(customer_id: str, item: dict[str, Any] | None, now: datetime) -> StoredProfile:
    if not item:
        p = Profile(id=customer_id, created_at=now)
        return StoredProfile(profile=p, version=0)
    if item.get("merged_into"):
        return StoredProfile(profile=Profile(id=customer_id, created_at=now),
                             version=int(item.get("version", 0)), merged_into=str(item["merged_into"]))
    p = Profile.from_doc(decode_doc(item["doc"]))
    sends = item.get("sends") or []
    p.contacts = sorted(s["at"] for s in sends)
    return StoredProfile(profile=p, version=int(item.get("version", 0)), sends=sends,
                         email_indexed=item.get("email_key"))


def to_item(sp: StoredProfile, now: datetime) -> dict[str, Any]:
    email = (sp.profile.traits.get("email") or "") if not sp.profile.erased else ""
    return {"pk": profile_pk(sp.profile.id), "sk": PROFILE_SK, "version": sp.version + 1,
            "doc": encode_doc(sp.profile.to_doc()),
            "sends": recent_sends(sp.sends, now), "email_key": email_key(email) if email else None,
            "updated_at": clock.iso(now)}


def tombstone_item(source_id: str, target_id: str, version: int, now: datetime) -> dict[str, Any]:
    """What stays of a merged anonymous profile: a pointer, expiring once no writer can still be in flight."""
    return {"pk": profile_pk(source_id), "sk": PROFILE_SK, "version": version + 1, "merged_into": target_id,
            "updated_at": clock.iso(now), "ttl": int((now + timedelta(days=TOMBSTONE_DAYS)).timestamp())}


def version_condition(sp: StoredProfile) -> dict[str, Any]:
    if sp.exists:  # a tombstone is never written over: attribute_not_exists fails on it
        return {"ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": {"N": str(sp.version)}}}
    return {"ConditionExpression": "attribute_not_exists(pk)"}


class ProfileRepo:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def load(self, customer_id: str, now: datetime, consistent: bool = True) -> StoredProfile:
        return from_item(customer_id, ddb.get(self.client, self.table, profile_pk(customer_id), PROFILE_SK,
                                              consistent=consistent), now)

    def load_many(self, customer_ids: list[str], now: datetime) -> dict[str, StoredProfile]:
        """Strongly consistent: a stale version would only cost a failed conditional write and a re-read."""
        found = _batch_get_consistent(self.client, self.table, [(profile_pk(c), PROFILE_SK) for c in customer_ids])
        return {c: from_item(c, found.get((profile_pk(c), PROFILE_SK)), now) for c in customer_ids}

    def load_orders(self, sp: StoredProfile, order_ids: set[str]) -> None:
        """The orders of `order_ids` not at hand yet, read from their items (strongly consistent: they were
        written with the profile version just read)."""
        missing = [i for i in sorted(order_ids) if i not in sp.profile.orders]
        if missing and not sp.profile.orders_complete() and sp.exists:
            found = _batch_get_consistent(self.client, self.table, [order_key(sp.profile.id, i) for i in missing])
            sp.profile.add_loaded_orders(order_from_item(item) for item in found.values())

    def load_all_orders(self, sp: StoredProfile) -> None:
        """Every order of the customer (a merge, or a refund of the first or last order): one Query."""
        if sp.profile.orders_complete() or not sp.exists:
            return
        items = ddb.query(self.client, self.table, profile_pk(sp.profile.id), sk_prefix=ORDER_PREFIX,
                          consistent=True)
        sp.profile.add_loaded_orders((order_from_item(item) for item in items), complete=True)

    def save(self, sp: StoredProfile, now: datetime) -> None:
        """Conditional put: raises ConditionalCheckFailed when someone else wrote in between."""
        self.client.put_item(TableName=self.table, Item=ddb.serialize(to_item(sp, now)), **version_condition(sp))
        sp.version += 1

    def customer_by_email(self, email: str) -> str | None:
        item = ddb.get(self.client, self.table, *email_index_key(email))
        return item["customer_id"] if item else None

    def alias_of(self, anonymous_id: str) -> str | None:
        item = ddb.get(self.client, self.table, *alias_key(anonymous_id))
        return item["customer_id"] if item else None


def _batch_get_consistent(client: Any, table: str,
                          keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), 100):
        request: dict[str, Any] = {table: {"Keys": [ddb.key(pk, sk) for pk, sk in unique[start:start + 100]],
                                           "ConsistentRead": True}}
        attempts = 0
        while request:
            resp = client.batch_get_item(RequestItems=request)
            for raw in resp.get("Responses", {}).get(table, []):
                item = ddb.deserialize(raw) or {}
                found[(item["pk"], item["sk"])] = item
            request = resp.get("UnprocessedKeys") or {}
            attempts += 1
            if request:
                ddb.backoff(attempts)
    return found

"""Data access for profiles (one item per customer: the JSON `doc`, an optimistic `version`, and the
`sends` list that the sender appends to without rewriting the doc), and the one owner of the keys of what
is stored about a customer (other modules call these builders, never spell the prefixes):

profiles table  C#<customer> / P                          the profile (or a merge tombstone)
                C#<customer> / O#<order id>               one order (the profile keeps the aggregates)
                C#<customer> / H#<at>#<group>#<seg>#<kind>  segment history
                A#<anonymous id> / ALIAS                  identity link
                X#<sha256(email)> / EMAIL                 lookup by email
                X#<sha256(phone, E.164)> / PHONE          lookup by phone (the console's search)
                PI#<product> / C#<customer>               product interest (back in stock, price drop)
events table    C#<customer> / <iso timestamp>#<messageId> the timeline (raw and internal events; a raw event
                                 keyed by its client timestamp: <iso timestamp>#<source>#<messageId>)"""

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

# A zlib preset dictionary: the keys and shapes every profile doc repeats, so that even a small doc compresses
# (a write costs one unit per started KB). NEVER edit a dictionary in place: docs name theirs by its Adler-32
# in the zlib header (FDICT); a new one is appended to _DICTIONARIES and becomes PROFILE_DICTIONARY.
_PROFILE_DICTIONARY_1 = (
    b'"granted":false,"source":"preferences","double_opt_in":true,"confirmed_at":"phone":"+7","last_name":'
    b'"locale":"ru","birthday":"preferred_channel":"vip":true,"has_account":true,"has_mobile_app":true,'
    b'"complaint_open":false,"sms":{"anonymous_ids":["interests":{"nps":{"last_score":"last_at":"history":'
    b'[{"score":"comment":"survey":"ref":"notes":[{"note":"suppressed":{"reason":"bounce","at":'
    b'"storage_hours":"storage_n":"pickup_n":"unclaimed_n":"activity":{"last_cart_at":'
    b'"last_product_viewed_at":"last_product_subscribed_at":"opened":"clicked":'
    b'{"id":"","traits":{"email":"@gmail.com","first_name":"","timezone":"Europe/Moscow"},"trait_ts":{"email":'
    b'"consent":{"email":{"granted":true,"source":"identify","at":"},"consent_log":[{"channel":"email",'
    b'"granted":true,"source":"identify","at":"","evidence":null,"message_id":"","double_opt_in":false,'
    b'"confirmed":false}],"order_stats":{"known":1,"count":1,"revenue":0.0,"first_at":"","last_at":"",'
    b'"shops":{"kpis":{"orders_count":0,"revenue_total":0.0,"average_order_value":null,"first_order_at":null,'
    b'"last_order_at":null,"average_days_between_orders":null,"repeat_orders_count":0,"nps_last_score":null,'
    b'"average_pickup_storage_hours":null,"unclaimed_orders_percent":null,"distinct_shops_count":0,'
    b'"contacts_30d":0,"last_contact_at":null,"open_rate":null,"click_rate":null,"last_seen_at":"'
    b'"segments":{"lifecycle":{"newbie":{"since":"","manual":false}},"potential":{"active":{"since":"",'
    b'"manual":false}}},"journeys":{"welcome":{"entry":"","state":"active","step":1,"variant":null,'
    b'"holdout":false,"entered_at":"","next_due":"","exit_reason":null,"ended_at":null,"entries":1,'
    b'"trigger":{"name":"","properties":{}},"last_send_step":0}},"contacts":["],"message_stats":{"delivered":1},'
    b'"meta":{"created_by":"src_","manual_segments":{},"date_triggers":{},"segments_due_at":"",'
    b'"engagement":{"|0":["delivered"]}},"first_seen_at":"","last_seen_at":"","created_at":"'
    b'T00:00:00.000000Z","2026-'
)
_DICTIONARIES = {zlib.adler32(d): d for d in (_PROFILE_DICTIONARY_1,)}
PROFILE_DICTIONARY = _PROFILE_DICTIONARY_1


def encode_doc(doc: str) -> str | bytes:
    """The profile JSON, zlib-compressed with the preset dictionary (a binary attribute) when large: a write
    costs one unit per started KB, twice inside a transaction; a typical profile shrinks from ~2 KB of JSON
    to ~0.5 KB."""
    raw = doc.encode()
    if len(raw) <= COMPRESS_OVER:
        return doc
    packer = zlib.compressobj(6, zdict=PROFILE_DICTIONARY)
    return packer.compress(raw) + packer.flush()


def decode_doc(value: Any) -> str:
    if isinstance(value, str):
        return value
    raw = bytes(getattr(value, "value", value))
    if len(raw) > 6 and raw[1] & 0x20:  # FDICT: the header names the preset dictionary by its Adler-32
        unpacker = zlib.decompressobj(zdict=_DICTIONARIES[int.from_bytes(raw[2:6], "big")])
        return (unpacker.decompress(raw) + unpacker.flush()).decode()
    return zlib.decompress(raw).decode()  # compressed without a dictionary (docs written before it)


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


def phone_index_key(phone: str) -> tuple[str, str]:
    """The phone as the profile keeps it (E.164 when it is one: customers.profile.normalize_phone)."""
    return ("X#" + hashlib.sha256(phone.strip().encode()).hexdigest(), "PHONE")


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


def timeline_key(customer_id: str, timestamp: str, message_id: str, source: str | None = None) -> tuple[str, str]:
    """An event on the customer's timeline (events table), in time order. `source`: a raw event keyed by its
    client timestamp (retention.ingestion.ingestor.event_key_at) names its source in the key, since the
    key is its dedupe and a messageId is unique per source (DESIGN §3)."""
    return (profile_pk(customer_id), f"{timestamp}#{source}#{message_id}" if source else f"{timestamp}#{message_id}")


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

    def customer_by_phone(self, phone: str) -> str | None:
        """Who has this phone now (an index row outlives a changed number: the profile is checked)."""
        from retention.core import clock
        from retention.customers.profile import normalize_phone
        number = normalize_phone(phone)
        item = ddb.get(self.client, self.table, *phone_index_key(number)) if number else None
        if not item:
            return None
        sp = self.load(str(item["customer_id"]), clock.now(), consistent=False)
        if not sp.exists or sp.profile.erased or normalize_phone(sp.profile.traits.get("phone")) != number:
            return None
        return str(item["customer_id"])

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

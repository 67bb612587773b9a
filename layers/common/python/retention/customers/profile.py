"""The customer profile: traits, consent, orders, KPIs (DESIGN §4), pure — no AWS.

`apply_message` folds one normalized `wire.Message` into a profile; `compute_kpis` derives the
seed KPIs from the order aggregates (`OrderStats`), which each order event maintains by taking the order's
old contribution out and putting its new one in (so out-of-order and replayed events give the same answer,
and the profile's size does not grow with the customer's history: the orders themselves are items of
their own, `retention.customers.store.order_key`; `Profile.orders` holds the ones loaded for the work at
hand, and `orders_complete()` says whether that is all of them);
`merge_profiles` joins an anonymous history into a known customer; `facts` is what the
segment/rule condition language reads.

Events understood (names compared case-insensitively):
- `Order Completed` {order_id, revenue | total | products[].price×quantity, currency,
  shop | affiliation}: one order per order_id; a repeat only fills missing fields.
- `Order Refunded` {order_id, revenue | total | amount | products[] → partial; else full},
  `Order Cancelled`: a fully refunded or cancelled order leaves the count and the revenue,
  and a later (or replayed) `Order Completed` does not bring it back.
- `Order Shipped`, `Order Ready for Pickup`, `Order Picked Up`, `Order Unclaimed`: delivery
  facts. Delivery events may arrive before `Order Completed`: the order then waits as
  `pending` (not counted) until it does.
- `PRODUCT_INTEREST_EVENTS`: `interests[product_id] = last time`.
- `Consent Confirmed` {channel}: confirms a pending double opt-in.
- `NPS Answered` {score 0–10, comment?, survey?, ref?}: same as `record_nps`.
- the `contact_events` setting (default `Complaint Opened`, `Support Requested`): the customer contacting
  the shop (seed 000 "частота обращений": `contacts_30d`, `contacts_90d`, `last_contact_at`).
Senders of messages use `record_contact` (the engine's sends: `messages_received_30d`, `last_message_at`,
never `contacts_30d`) / `record_message_stat`; surveys `record_nps`;
preference pages `set_consent`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, PrivateAttr, model_validator

from retention.core import clock
from retention.customers.kpis import KPI_KEYS as KPI_KEYS  # the one list (retention.customers.kpis)
from retention.ingestion.wire import Message, parse_timestamp
from retention.messaging import sms

CONSENT_CHANNELS: tuple[str, ...] = ("email", "sms")
CONSENT_LOG_KEEP = 50
CONTACTS_KEEP_DAYS = 60  # the engine's sends (messages_received_30d)
CUSTOMER_CONTACTS_KEEP_DAYS = 90  # the customer's own contacts (contacts_30d, contacts_90d)
CUSTOMER_CONTACTS_KEEP = 200
# seed 000 "частота обращений": the events that are a customer contacting the shop (the default of the
# `contact_events` setting)
CONTACT_EVENTS: tuple[str, ...] = ("Complaint Opened", "Support Requested")
NOTES_KEEP = 20
INTERESTS_KEEP = 200
NPS_HISTORY_KEEP = 20
ANONYMOUS_IDS_KEEP = 100

ORDER_COMPLETED = "Order Completed"
ORDER_REFUNDED = "Order Refunded"
ORDER_CANCELLED = "Order Cancelled"
ORDER_SHIPPED = "Order Shipped"
ORDER_READY = "Order Ready for Pickup"
ORDER_PICKED_UP = "Order Picked Up"
ORDER_UNCLAIMED = "Order Unclaimed"
CONSENT_CONFIRMED = "Consent Confirmed"
NPS_ANSWERED = "NPS Answered"
# event → the kind of interest it shows (the profile keeps the latest interest per product; ingestion
# indexes it per kind for back-in-stock / price-drop fan-outs): one list for both
PRODUCT_INTEREST_EVENTS: dict[str, str] = {
    "Product Viewed": "viewed",
    "Product Clicked": "viewed",
    "Product Added": "carted",
    "Product Added to Wishlist": "subscribed",
    "Back in Stock Subscribed": "subscribed",
    "Price Drop Subscribed": "subscribed",
    "Product Subscribed": "subscribed",
}


# identify trait name → canonical profile trait name
TRAIT_ALIASES: dict[str, str] = {
    "firstName": "first_name",
    "lastName": "last_name",
    "preferredChannel": "preferred_channel",
    "hasAccount": "has_account",
    "hasMobileApp": "has_mobile_app",
    "emailConsent": "email_consent",
    "smsConsent": "sms_consent",
}
BOOL_TRAITS: tuple[str, ...] = ("vip", "has_account", "has_mobile_app")
CONSENT_TRAITS: dict[str, str] = {"email_consent": "email", "sms_consent": "sms"}

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _key(event: str | None) -> str:
    return " ".join((event or "").split()).casefold()


_INTEREST_KINDS = {_key(e): kind for e, kind in PRODUCT_INTEREST_EVENTS.items()}


def interest_kind(event: str | None) -> str | None:
    """`viewed`, `carted` or `subscribed` for a product-interest event (names compared as everywhere in
    the profile: case and spacing ignored), else None."""
    return _INTEREST_KINDS.get(_key(event))


class Consent(BaseModel):
    granted: bool
    source: str | None = None
    at: datetime | None = None
    evidence: Any | None = None
    double_opt_in: bool = False
    confirmed_at: datetime | None = None

    @property
    def effective(self) -> bool:
        """Marketing may be sent: granted, and confirmed when it was a double opt-in."""
        return self.granted and (not self.double_opt_in or self.confirmed_at is not None)

    def latest(self) -> datetime | None:
        stamps = [t for t in (self.at, self.confirmed_at) if t is not None]
        return max(stamps) if stamps else None


class Order(BaseModel):
    order_id: str
    at: datetime | None = None  # the Order Completed time; None until that event is seen
    revenue: float = 0.0
    currency: str | None = None
    shop: str | None = None
    # `pending`: only delivery/refund events seen so far, not counted yet
    status: Literal["pending", "completed", "refunded", "cancelled"] = "pending"
    refunded_amount: float = 0.0
    refunds: dict[str, float] = Field(default_factory=dict)  # messageId → partial amount (replay-safe)
    ready_at: datetime | None = None
    picked_up_at: datetime | None = None
    unclaimed: bool = False
    shipped_at: datetime | None = None

    @property
    def counted(self) -> bool:
        return self.status == "completed" and self.at is not None

    @property
    def net_revenue(self) -> float:
        return max(0.0, self.revenue - self.refunded_amount)


class OrderStats(BaseModel):
    """The KPI aggregates over a customer's orders (each order's contribution, summed). `known`: order items
    stored (any status). `stale`: the first or last counted order left while the other orders were not at
    hand; the next load of all the orders recomputes (the ingestor loads them all for such events first)."""

    known: int = 0
    count: int = 0
    revenue: float = 0.0
    first_at: datetime | None = None
    last_at: datetime | None = None
    shops: dict[str, int] = Field(default_factory=dict)  # shop → counted orders from it
    storage_hours: float = 0.0
    storage_n: int = 0
    pickup_n: int = 0  # orders that reached a pickup point (ready, or unclaimed)
    unclaimed_n: int = 0
    stale: bool = False


class Profile(BaseModel):
    id: str
    anonymous_ids: list[str] = Field(default_factory=list)
    traits: dict[str, Any] = Field(default_factory=dict)
    trait_ts: dict[str, str] = Field(default_factory=dict)
    consent: dict[str, Consent] = Field(default_factory=dict)
    consent_log: list[dict[str, Any]] = Field(default_factory=list)
    # the orders at hand (stored as items of their own; a legacy doc still holds them all: migrated by the
    # ingestor, kept in the doc until then); the aggregates are what the KPIs read
    orders: dict[str, Order] = Field(default_factory=dict)
    order_stats: OrderStats = Field(default_factory=OrderStats)
    kpis: dict[str, Any] = Field(default_factory=dict)
    segments: dict[str, Any] = Field(default_factory=dict)  # owned by the segment engine
    journeys: dict[str, Any] = Field(default_factory=dict)  # owned by the journey engine
    # the engine's sends to the customer, both classes (messages_received_30d, last_message_at); rebuilt from
    # the stored send list on load (retention.customers.store). Not the customer's contacts, despite the name.
    contacts: list[str] = Field(default_factory=list)
    # the customer's own contacts with the shop (support requests, complaints): contacts_30d / _90d
    customer_contacts: list[str] = Field(default_factory=list)
    message_stats: dict[str, int] = Field(default_factory=dict)
    interests: dict[str, str] = Field(default_factory=dict)
    nps: dict[str, Any] = Field(default_factory=dict)
    notes: list[dict[str, Any]] = Field(default_factory=list)  # ignored inputs, for support
    # channel → {"reason", "at"}: bounced/complained addresses; no marketing on that channel
    suppressed: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)  # engine bookkeeping (manual segments, due times)
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    created_at: datetime | None = None
    version: int = 0
    erased: bool = False

    _orders_complete: bool = PrivateAttr(default=True)  # `orders` holds every order of the customer
    _orders_legacy: bool = PrivateAttr(default=False)  # read from a doc that held the orders (not migrated)
    _orders_dirty: set[str] = PrivateAttr(default_factory=set)  # changed here: their items are to be written

    @model_validator(mode="after")
    def _order_bookkeeping(self) -> Profile:
        if self.orders and "order_stats" not in self.model_fields_set:
            # a doc from before the orders became items (or a profile built with its orders): all at hand
            self.order_stats = stats_of(self.orders.values())
            self._orders_legacy = True
        self._orders_complete = self._orders_legacy or not self.order_stats.known
        return self

    def to_doc(self) -> str:
        """Compact JSON (defaults left out: profiles live in one DynamoDB item, ≤ 400 KB). The orders are
        not in it (items of their own) unless the profile came from a doc that still held them."""
        return self.model_dump_json(exclude_defaults=True, exclude=None if self._orders_legacy else {"orders"})

    @classmethod
    def from_doc(cls, doc: str | bytes | Mapping[str, Any]) -> Profile:
        if isinstance(doc, Mapping):
            return cls.model_validate(dict(doc))
        return cls.model_validate_json(doc)

    # ---- the orders at hand ------------------------------------------------------------------------
    def orders_complete(self) -> bool:
        return self._orders_complete

    def orders_legacy(self) -> bool:
        return self._orders_legacy

    def dirty_orders(self) -> list[Order]:
        return [self.orders[i] for i in sorted(self._orders_dirty) if i in self.orders]

    def add_loaded_orders(self, orders: Iterable[Order], *, complete: bool = False) -> None:
        """Orders read from their items (the ones the work at hand touches, or all of them)."""
        for order in orders:
            self.orders.setdefault(order.order_id, order)
        if complete:
            self._orders_complete = True
            if self.order_stats.stale:
                self.order_stats = stats_of(self.orders.values())

    def orders_written(self, *, migrated: bool = False) -> None:
        """The dirty orders' items are stored (and with `migrated`, every order of a legacy doc is)."""
        self._orders_dirty.clear()
        if migrated:
            self._orders_legacy = False


# --------------------------------------------------------------------------- small helpers


def _iso(value: datetime | None) -> str | None:
    return clock.iso(value) if value is not None else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace(",", "."))
        except ValueError:
            return None
    else:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return str(value)
    return None


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _note(profile: Profile, msg: Message | None, text: str, now: datetime) -> None:
    profile.notes.append(
        {
            "at": clock.iso(msg.timestamp if msg else now),
            "message_id": msg.message_id if msg else None,
            "note": text,
        }
    )
    del profile.notes[:-NOTES_KEEP]


def normalize_phone(value: Any) -> str | None:
    """E.164 when the number clearly is one (the one phone grammar: retention.messaging.sms.normalize_phone);
    otherwise the trimmed input, unchanged (kept as the customer gave it; the sender will not text it)."""
    text = _text(value)
    if text is None:
        return None
    return sms.normalize_phone(text) or text


def normalize_birthday(value: Any) -> str | None:
    """`YYYY-MM-DD` or `MM-DD` (year unknown), as a string; None when it is not a date."""
    text = _text(value)
    if text is None:
        return None
    if len(text) > 10 and text[10] in "T ":
        text = text[:10]
    text = text.removeprefix("--")
    try:
        if len(text) == 10:
            date.fromisoformat(text)
            return text
        if len(text) == 5 and text[2] == "-":
            date.fromisoformat("2000-" + text)  # a leap year, so 02-29 is a valid birthday
            return text
    except ValueError:
        return None
    return None


def _valid_timezone(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return text


class _InvalidTraitError(Exception):
    pass


def _normalize_trait(key: str, value: Any) -> Any:
    """The stored value of a meaningful trait; raises `_InvalidTraitError` to ignore it."""
    if value is None:
        return None  # an explicit null clears the trait
    if key == "email":
        text = _text(value)
        email = text.lower() if text else None
        if email is None or not _EMAIL.match(email):
            raise _InvalidTraitError(f"email {value!r} is not an address")
        return email
    if key == "phone":
        phone = normalize_phone(value)
        if phone is None:
            raise _InvalidTraitError(f"phone {value!r} is not a phone number")
        return phone
    if key == "birthday":
        birthday = normalize_birthday(value)
        if birthday is None:
            raise _InvalidTraitError(f"birthday {value!r} is not YYYY-MM-DD or MM-DD")
        return birthday
    if key == "timezone":
        tz = _valid_timezone(value)
        if tz is None:
            raise _InvalidTraitError(f"timezone {value!r} is not an IANA time zone")
        return tz
    if key in ("locale", "first_name", "last_name"):
        text = _text(value)
        if text is None:
            raise _InvalidTraitError(f"{key} {value!r} is not text")
        return text
    if key == "preferred_channel":
        text = _text(value)
        if text is None:
            raise _InvalidTraitError(f"preferred_channel {value!r} is not text")
        return text.lower()
    if key in BOOL_TRAITS:
        flag = _as_bool(value)
        if flag is None:
            raise _InvalidTraitError(f"{key} {value!r} is not a boolean")
        return flag
    return value


# --------------------------------------------------------------------------- consent


def _log_consent(
    profile: Profile, channel: str, consent: Consent, message_id: str | None, *, confirmed: bool = False
) -> None:
    profile.consent_log.append(
        {
            "channel": channel,
            "granted": consent.granted,
            "source": consent.source,
            "at": _iso(consent.at),
            "evidence": consent.evidence,
            "message_id": message_id,
            "double_opt_in": consent.double_opt_in,
            "confirmed": confirmed,
        }
    )
    del profile.consent_log[:-CONSENT_LOG_KEEP]


def _store_consent(
    profile: Profile, channel: str, new: Consent, message_id: str | None, *, confirm: bool
) -> bool:
    """Record a consent statement; True when the profile's current consent changed."""
    _log_consent(profile, channel, new, message_id, confirmed=confirm)
    current = profile.consent.get(channel)
    if confirm and new.granted:
        if current is not None and current.granted and current.double_opt_in and current.confirmed_at is None:
            current.confirmed_at = new.at
            return True
        if current is not None and current.effective:
            return False
        if current is not None and current.at and new.at and new.at < current.at:
            return False  # an older confirmation than a later revocation
        profile.consent[channel] = new.model_copy(update={"double_opt_in": True, "confirmed_at": new.at})
        return True
    if current is not None:
        latest = current.latest()
        if latest is not None and new.at is not None and new.at < latest:
            return False  # an older statement never overrides a newer one
        if new.granted and new.double_opt_in and new.confirmed_at is None and current.effective:
            return False  # a repeated sign-up form does not undo a confirmed subscription
        if current == new:
            return False
    profile.consent[channel] = new
    return True


def _consent_statement(value: Any, default_at: datetime) -> tuple[Consent, bool] | None:
    """(consent, is_confirmation) from a trait value: a bool or {granted, source, at, evidence,
    double_opt_in, confirmed}; None when unreadable."""
    if isinstance(value, Mapping):
        confirmed = _as_bool(value.get("confirmed")) is True
        granted = _as_bool(value.get("granted"))
        if granted is None:
            if not confirmed:
                return None
            granted = True
        try:
            at = parse_timestamp(value.get("at"), "at") or default_at
        except Exception:
            at = default_at
        consent = Consent(
            granted=granted,
            source=_text(value.get("source")) or "identify",
            at=at,
            evidence=value.get("evidence"),
            double_opt_in=_as_bool(value.get("double_opt_in")) is True,
        )
        return consent, confirmed
    flag = _as_bool(value)
    if flag is None:
        return None
    return Consent(granted=flag, source="identify", at=default_at), False


def set_consent(
    profile: Profile,
    channel: str,
    granted: bool,
    *,
    source: str,
    at: datetime,
    evidence: Any | None = None,
    message_id: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Preference page / unsubscribe link / admin: set a channel's consent (logged). True if changed."""
    changed = _store_consent(
        profile,
        channel,
        Consent(granted=granted, source=source, at=at, evidence=evidence),
        message_id,
        confirm=False,
    )
    if changed:
        profile.kpis = compute_kpis(profile, now or at)
    return changed


# --------------------------------------------------------------------------- contacts, stats, NPS


def _trim_contacts(contacts: Iterable[str], now: datetime) -> list[str]:
    horizon = now - timedelta(days=CONTACTS_KEEP_DAYS)
    kept = {clock.iso(t) for t in (clock.parse_iso(c) for c in contacts) if t >= horizon}
    return sorted(kept)


def record_contact(profile: Profile, at: datetime, now: datetime) -> None:
    """The engine sent the customer a message at `at` (feeds messages_received_30d / last_message_at; the
    customer's own contacts, contacts_30d, come from the `contact_events` only)."""
    profile.contacts = _trim_contacts([*profile.contacts, clock.iso(at)], now)
    profile.kpis = compute_kpis(profile, now)


def record_message_stat(profile: Profile, kind: str, now: datetime, count: int = 1) -> None:
    """`delivered`, `opened` or `clicked` feedback for open/click rates."""
    profile.message_stats[kind] = profile.message_stats.get(kind, 0) + count
    profile.kpis = compute_kpis(profile, now)


def record_nps(
    profile: Profile,
    score: int,
    at: datetime,
    now: datetime,
    *,
    comment: str | None = None,
    survey: str | None = None,
    ref: str | None = None,
) -> None:
    """An NPS answer (0–10). An answer with the same `ref` (survey token) replaces the earlier one."""
    if isinstance(score, bool) or not 0 <= int(score) <= 10:
        raise ValueError(f"NPS score must be 0..10, got {score!r}")
    entry = {"score": int(score), "at": clock.iso(at), "comment": comment, "survey": survey, "ref": ref}
    history = [h for h in profile.nps.get("history", []) if ref is None or h.get("ref") != ref]
    history.append(entry)
    history.sort(key=lambda h: h["at"])
    _set_nps_history(profile, history)
    profile.kpis = compute_kpis(profile, now)


def _set_nps_history(profile: Profile, history: list[dict[str, Any]]) -> None:
    history = history[-NPS_HISTORY_KEEP:]
    last = history[-1] if history else None
    profile.nps = {
        "last_score": last["score"] if last else None,
        "last_at": last["at"] if last else None,
        "history": history,
    }


# --------------------------------------------------------------------------- orders


def _order_id(props: Mapping[str, Any]) -> str | None:
    return _text(props.get("order_id")) or _text(props.get("orderId"))


def _products_total(props: Mapping[str, Any]) -> float | None:
    products = props.get("products")
    if not isinstance(products, list):
        return None
    total = 0.0
    priced = False
    for product in products:
        if not isinstance(product, Mapping):
            continue
        price = _number(product.get("price"))
        if price is None:
            continue
        quantity = _number(product.get("quantity"))
        total += price * (1.0 if quantity is None else quantity)
        priced = True
    return total if priced else None


def _amount(props: Mapping[str, Any], *fields: str) -> float | None:
    for field in fields:
        value = _number(props.get(field))
        if value is not None:
            return value
    return _products_total(props)


def _settle(order: Order) -> None:
    """A completed order whose partial refunds reach its revenue is fully refunded."""
    order.refunded_amount = round(sum(order.refunds.values()), 2) if order.refunds else order.refunded_amount
    if order.status == "completed" and order.refunds and order.refunded_amount >= order.revenue:
        order.status = "refunded"


def _storage_hours(order: Order) -> float | None:
    if order.ready_at is not None and order.picked_up_at is not None and order.picked_up_at >= order.ready_at:
        return (order.picked_up_at - order.ready_at).total_seconds() / 3600
    return None


def _contribute(stats: OrderStats, order: Order, sign: int) -> None:
    """Add (sign 1) or take out (sign -1) one order's share of the aggregates; first/last are the caller's."""
    stats.known += sign
    if order.counted:
        stats.count += sign
        stats.revenue = round(stats.revenue + sign * order.net_revenue, 2)
        if order.shop:
            left = stats.shops.get(order.shop, 0) + sign
            if left > 0:
                stats.shops[order.shop] = left
            else:
                stats.shops.pop(order.shop, None)
    hours = _storage_hours(order)
    if hours is not None:
        stats.storage_n += sign
        stats.storage_hours = 0.0 if not stats.storage_n else stats.storage_hours + sign * hours
    if order.ready_at is not None or order.unclaimed:
        stats.pickup_n += sign
        if order.unclaimed:
            stats.unclaimed_n += sign


def stats_of(orders: Iterable[Order]) -> OrderStats:
    """The aggregates computed from every order (a legacy doc, a merge, a heal after `stale`)."""
    stats = OrderStats()
    for order in orders:
        _contribute(stats, order, 1)
        if order.counted and order.at is not None:
            stats.first_at = _min(stats.first_at, order.at)
            stats.last_at = _max(stats.last_at, order.at)
    return stats


def _account(profile: Profile, old: Order | None, new: Order) -> None:
    """One order changed from `old` (None: new) to `new`: the aggregates follow, incrementally."""
    stats = profile.order_stats
    if old is not None:
        _contribute(stats, old, -1)
    _contribute(stats, new, 1)
    profile.orders[new.order_id] = new
    profile._orders_dirty.add(new.order_id)
    if new.counted and new.at is not None:
        stats.first_at = _min(stats.first_at, new.at)
        stats.last_at = _max(stats.last_at, new.at)
    left = old is not None and old.counted and old.at is not None and old.at in (stats.first_at, stats.last_at) \
        and not (new.counted and new.at == old.at)
    if stats.count == 0:
        stats.first_at = stats.last_at = None
    elif left:
        if profile.orders_complete():
            times = [o.at for o in profile.orders.values() if o.counted and o.at is not None]
            stats.first_at, stats.last_at = min(times), max(times)
        else:
            stats.stale = True


def extreme_orders(profile: Profile) -> set[str]:
    """The loaded counted orders at the first or last order time: a refund or cancellation of one of them
    needs every order at hand to find the next first/last (`retention.ingestion.ingestor` loads them)."""
    st = profile.order_stats
    ends = (st.first_at, st.last_at)
    return {i for i, o in profile.orders.items() if o.counted and o.at is not None and o.at in ends}


def order_event_ids(messages: Iterable[Message]) -> tuple[set[str], set[str]]:
    """(order ids the messages touch, those of them a refund or cancellation touches)."""
    touched: set[str] = set()
    removing: set[str] = set()
    for msg in messages:
        key = _key(msg.event) if msg.type == "track" else ""
        if key in _ORDER_EVENTS and isinstance(msg.properties, Mapping):
            order_id = _order_id(msg.properties)
            if order_id is not None:
                touched.add(order_id)
                if key in (_key(ORDER_REFUNDED), _key(ORDER_CANCELLED)):
                    removing.add(order_id)
    return touched, removing


ERASED_BEFORE = "erased_before"  # profile.meta: an erasure of this customer id, within the dedupe window


def erased_before(profile: Profile) -> datetime | None:
    """When this customer id was last erased, for a profile re-created within the dedupe window after that
    (None for any other: a merge keeps the later of the two). The ingestion's plain path dedupes a keyed
    event from before it by its marker (retention.ingestion.ingestor.keyed_after): it may be the client's
    retry of an event the erasure deleted, and the erasure left a marker for it, not a raw event."""
    at = profile.meta.get(ERASED_BEFORE)
    return clock.parse_iso(str(at)) if at else None


LAST_ORDER_KEY = "last_order_categories"  # profile.meta: {"at", "categories"} of the latest order
ORDER_CATEGORIES_KEEP = 5


def category_key(category: str) -> str:
    """A product category compared without case or extra spaces (the catalogue's and the settings' too)."""
    return " ".join(category.lower().split())


def order_categories(props: Mapping[str, Any]) -> list[str]:
    """The product categories an `Order Completed` names (its `products[].category`, or its own
    `category`), as category_key, at most ORDER_CATEGORIES_KEEP."""
    lines = props.get("products")
    found = [p.get("category") for p in lines if isinstance(p, Mapping)] if isinstance(lines, list) else []
    found.append(props.get("category"))
    names = (category_key(c)[:100] for c in found if isinstance(c, str))
    return list(dict.fromkeys(n for n in names if n))[:ORDER_CATEGORIES_KEEP]


def _note_order_categories(profile: Profile, props: Mapping[str, Any], at: datetime) -> None:
    """The categories of the latest order, for waits by the re-order time (`wait: {reorder: …}`); an order
    that arrives late (older than the one noted) does not replace it."""
    noted = profile.meta.get(LAST_ORDER_KEY)
    if isinstance(noted, dict) and str(noted.get("at") or "") > clock.iso(at):
        return
    profile.meta[LAST_ORDER_KEY] = {"at": clock.iso(at), "categories": order_categories(props)}


def _apply_order_event(profile: Profile, msg: Message, key: str, now: datetime) -> bool:
    props = msg.properties
    order_id = _order_id(props)
    if order_id is None:
        _note(profile, msg, f"{msg.event} without properties.order_id ignored", now)
        return False
    existing = profile.orders.get(order_id)
    order = existing.model_copy(deep=True) if existing is not None else Order(order_id=order_id)
    ts = msg.timestamp
    if key == _key(ORDER_COMPLETED):
        if order.at is None:
            order.at = ts
            order.revenue = round(max(0.0, _amount(props, "revenue", "total") or 0.0), 2)
            if order.status == "pending":
                order.status = "completed"
            elif order.status == "refunded" and not order.refunds:
                order.refunded_amount = order.revenue
        order.currency = order.currency or (_text(props.get("currency")) or "").upper() or None
        order.shop = order.shop or _text(props.get("shop")) or _text(props.get("affiliation"))
        _settle(order)
        _note_order_categories(profile, props, ts)
    elif key == _key(ORDER_REFUNDED):
        amount = _amount(props, "revenue", "total", "amount")
        if amount is None:
            if order.status != "cancelled":
                order.status = "refunded"
                order.refunded_amount = order.revenue
        else:
            order.refunds[msg.message_id] = round(max(0.0, amount), 2)
            _settle(order)
    elif key == _key(ORDER_CANCELLED):
        order.status = "cancelled"
    elif key == _key(ORDER_SHIPPED):
        order.shipped_at = _min(order.shipped_at, ts)
    elif key == _key(ORDER_READY):
        order.ready_at = _min(order.ready_at, ts)
    elif key == _key(ORDER_PICKED_UP):
        order.picked_up_at = _min(order.picked_up_at, ts)
    elif key == _key(ORDER_UNCLAIMED):
        order.unclaimed = True
    if existing is not None and order == existing:
        return False
    _account(profile, existing, order)
    return True


_ORDER_EVENTS = frozenset(
    _key(e)
    for e in (
        ORDER_COMPLETED,
        ORDER_REFUNDED,
        ORDER_CANCELLED,
        ORDER_SHIPPED,
        ORDER_READY,
        ORDER_PICKED_UP,
        ORDER_UNCLAIMED,
    )
)


# --------------------------------------------------------------------------- apply


def _apply_traits(profile: Profile, msg: Message, now: datetime) -> tuple[bool, bool]:
    """(traits changed, consent changed) for an identify's traits."""
    ts_iso = clock.iso(msg.timestamp)
    traits_changed = consent_changed = False
    for raw_key, raw_value in msg.traits.items():
        key = TRAIT_ALIASES.get(raw_key, raw_key)
        if key in CONSENT_TRAITS:
            statement = _consent_statement(raw_value, msg.timestamp)
            if statement is None:
                _note(profile, msg, f"{raw_key} {raw_value!r} is not a consent (bool or object)", now)
                continue
            consent, confirm = statement
            consent_changed |= _store_consent(
                profile, CONSENT_TRAITS[key], consent, msg.message_id, confirm=confirm
            )
            continue
        if profile.trait_ts.get(key, "") > ts_iso:
            continue  # a newer event already set this trait
        try:
            value = _normalize_trait(key, raw_value)
        except _InvalidTraitError as exc:
            _note(profile, msg, f"{exc}: ignored", now)
            continue
        profile.trait_ts[key] = ts_iso
        if key not in profile.traits or profile.traits[key] != value:
            profile.traits[key] = value
            traits_changed = True
    return traits_changed, consent_changed


def product_id(props: Mapping[str, Any]) -> str | None:
    """The product an event (or one line of its `products`) is about: `product_id`, else `sku`, else `id`."""
    return _text(props.get("product_id")) or _text(props.get("sku")) or _text(props.get("id"))


def interest_products(props: Mapping[str, Any]) -> list[str]:
    """The products an interest event is about: its own product and each line of `products` (a cart)."""
    lines = [props] + [p for p in props.get("products", []) or [] if isinstance(p, Mapping)] \
        if isinstance(props.get("products", []), list) else [props]
    return list(dict.fromkeys(pid for p in lines if (pid := product_id(p))))


def apply_message(profile: Profile, msg: Message, now: datetime,
                  contact_events: Iterable[str] | None = None) -> list[str]:
    """Fold one message into the profile (in place); returns what changed, e.g. ["traits", "kpis"].

    Callers re-evaluate segments when anything but `seen` changed. The KPIs are recomputed here,
    so `profile.kpis` is always current. `contact_events` (default CONTACT_EVENTS): the events that count
    as the customer contacting the shop (contacts_30d / contacts_90d / last_contact_at).
    """
    changes: list[str] = []
    if msg.type == "track" and _key(msg.event) in {_key(e) for e in (contact_events or CONTACT_EVENTS)}:
        at = clock.iso(msg.timestamp)
        if at not in profile.customer_contacts:
            horizon = clock.iso(now - timedelta(days=CUSTOMER_CONTACTS_KEEP_DAYS))
            kept = sorted(c for c in [*profile.customer_contacts, at] if c >= horizon)
            profile.customer_contacts = kept[-CUSTOMER_CONTACTS_KEEP:]
            changes.append("contacts")
    if profile.created_at is None:
        profile.created_at = now
    if msg.anonymous_id and msg.anonymous_id != profile.id and msg.anonymous_id not in profile.anonymous_ids:
        profile.anonymous_ids.append(msg.anonymous_id)
        del profile.anonymous_ids[:-ANONYMOUS_IDS_KEEP]
        changes.append("identity")

    if msg.type == "identify":
        traits_changed, consent_changed = _apply_traits(profile, msg, now)
        if traits_changed:
            changes.append("traits")
        if consent_changed:
            changes.append("consent")
    elif msg.type == "track":
        key = _key(msg.event)
        props = msg.properties
        if key in _ORDER_EVENTS:
            if _apply_order_event(profile, msg, key, now):
                changes.append("orders")
        elif key in _INTEREST_KINDS:
            products = interest_products(props)
            if not products:
                _note(profile, msg, f"{msg.event} without product_id/sku/id ignored", now)
            ts_iso = clock.iso(msg.timestamp)
            for pid in products:
                if profile.interests.get(pid, "") < ts_iso:
                    profile.interests[pid] = ts_iso
                    if len(profile.interests) > INTERESTS_KEEP:
                        newest = sorted(profile.interests.items(), key=lambda kv: kv[1])[-INTERESTS_KEEP:]
                        profile.interests = dict(newest)
                    if "interests" not in changes:
                        changes.append("interests")
        elif key == _key(CONSENT_CONFIRMED):
            channel = (_text(props.get("channel")) or "").lower()
            if channel not in CONSENT_CHANNELS:
                _note(profile, msg, f"Consent Confirmed with channel {props.get('channel')!r} ignored", now)
            else:
                statement = Consent(
                    granted=True,
                    source=_text(props.get("source")) or "double_opt_in",
                    at=msg.timestamp,
                    evidence=props.get("evidence"),
                    double_opt_in=True,
                )
                if _store_consent(profile, channel, statement, msg.message_id, confirm=True):
                    changes.append("consent")
        elif key == _key(NPS_ANSWERED):
            score = _number(props.get("score"))
            if score is None or not 0 <= score <= 10 or score != int(score):
                _note(profile, msg, f"NPS Answered with score {props.get('score')!r} ignored", now)
            else:
                record_nps(
                    profile,
                    int(score),
                    msg.timestamp,
                    now,
                    comment=_text(props.get("comment")),
                    survey=_text(props.get("survey")),
                    ref=_text(props.get("ref")),
                )
                changes.append("nps")

    if profile.first_seen_at is None or msg.timestamp < profile.first_seen_at:
        profile.first_seen_at = msg.timestamp
    if profile.last_seen_at is None or msg.timestamp > profile.last_seen_at:
        profile.last_seen_at = msg.timestamp
        changes.append("seen")
    profile.contacts = _trim_contacts(profile.contacts, now)
    kpis = compute_kpis(profile, now)
    if kpis != profile.kpis:
        profile.kpis = kpis
        changes.append("kpis")
    return changes


apply_event = apply_message  # the name docs/architecture.md uses


# --------------------------------------------------------------------------- KPIs


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def compute_kpis(profile: Profile, now: datetime) -> dict[str, Any]:
    """The DESIGN §4 KPIs, derived from the order aggregates and counters (no order is read here)."""
    st = profile.order_stats
    count = st.count
    revenue = round(st.revenue, 2)
    first, last = st.first_at, st.last_at
    between = None
    if count >= 2 and first is not None and last is not None:
        between = (last - first).total_seconds() / 86400 / (count - 1)

    window = now - timedelta(days=30)
    message_times = [clock.parse_iso(c) for c in profile.contacts]
    contact_times = [clock.parse_iso(c) for c in profile.customer_contacts]
    delivered = profile.message_stats.get("delivered", 0)

    def rate(kind: str) -> float | None:
        if delivered <= 0:
            return None
        return round(min(1.0, profile.message_stats.get(kind, 0) / delivered), 4)

    return {
        "orders_count": count,
        "revenue_total": revenue,
        "average_order_value": round(revenue / count, 2) if count else None,
        "first_order_at": _iso(first),
        "last_order_at": _iso(last),
        "average_days_between_orders": _round(between),
        "repeat_orders_count": max(0, count - 1),
        "nps_last_score": profile.nps.get("last_score"),
        "average_pickup_storage_hours": _round(st.storage_hours / st.storage_n) if st.storage_n else None,
        "unclaimed_orders_percent": (
            round(st.unclaimed_n * 100 / st.pickup_n, 2) if st.pickup_n else None
        ),
        "distinct_shops_count": len(st.shops),
        # seed 000 "частота обращений": the customer's own contacts (support requests, complaints)
        "contacts_30d": sum(1 for t in contact_times if window <= t <= now),
        "contacts_90d": sum(1 for t in contact_times if now - timedelta(days=90) <= t <= now),
        "last_contact_at": _iso(max(contact_times)) if contact_times else None,
        # the engine's messages to the customer, both classes (what contacts_30d counted before issue 14)
        "messages_received_30d": sum(1 for t in message_times if window <= t <= now),
        "last_message_at": _iso(max(message_times)) if message_times else None,
        "open_rate": rate("opened"),
        "click_rate": rate("clicked"),
        "last_seen_at": _iso(profile.last_seen_at),
    }


# --------------------------------------------------------------------------- merge


_STATUS_RANK = {"pending": 0, "completed": 1, "refunded": 2, "cancelled": 3}


def _merge_order(a: Order, b: Order) -> Order:
    first, second = (a, b) if a.at is not None or b.at is None else (b, a)
    merged = first.model_copy(deep=True)
    if merged.at is None or (second.at is not None and second.at < merged.at):
        merged.at = second.at or merged.at
    merged.currency = merged.currency or second.currency
    merged.shop = merged.shop or second.shop
    if _STATUS_RANK[second.status] > _STATUS_RANK[merged.status]:
        merged.status = second.status
    merged.refunds = {**second.refunds, **merged.refunds}
    merged.refunded_amount = max(merged.refunded_amount, second.refunded_amount)
    merged.ready_at = _min(merged.ready_at, second.ready_at)
    merged.picked_up_at = _min(merged.picked_up_at, second.picked_up_at)
    merged.shipped_at = _min(merged.shipped_at, second.shipped_at)
    merged.unclaimed = merged.unclaimed or second.unclaimed
    if merged.status == "refunded" and not merged.refunds:
        merged.refunded_amount = merged.revenue
    _settle(merged)
    return merged


def merge_profiles(
    target: Profile, source: Profile, now: datetime, *, source_is_anonymous: bool = True
) -> None:
    """Join `source` (usually an anonymous visitor) into `target` (the known customer), in place.

    Nothing is lost: traits by timestamp, the newest consent, orders united, interests latest,
    contacts and counters added up. Segment memberships stay the target's (the segment engine
    re-evaluates after a merge); journeys the target does not have are carried over.
    """
    for key, value in source.traits.items():
        source_ts = source.trait_ts.get(key, "")
        if key not in target.traits or source_ts > target.trait_ts.get(key, ""):
            target.traits[key] = value
            if source_ts:
                target.trait_ts[key] = source_ts

    for channel, theirs in source.consent.items():
        ours = target.consent.get(channel)
        if ours is None:
            target.consent[channel] = theirs.model_copy(deep=True)
            continue
        their_at, our_at = theirs.latest(), ours.latest()
        if their_at is not None and (our_at is None or their_at > our_at):
            target.consent[channel] = theirs.model_copy(deep=True)
    seen_log: set[tuple[Any, ...]] = set()
    log: list[dict[str, Any]] = []
    for entry in [*target.consent_log, *source.consent_log]:
        ident = (entry.get("channel"), entry.get("at"), entry.get("message_id"), entry.get("granted"))
        if ident not in seen_log:
            seen_log.add(ident)
            log.append(entry)
    log.sort(key=lambda e: e.get("at") or "")
    target.consent_log = log[-CONSENT_LOG_KEEP:]

    # every order of the source and the target's of the same ids must be at hand (the ingestor loads them
    # all for a merge); the aggregates follow each order that changes
    for order_id, order in source.orders.items():
        mine = target.orders.get(order_id)
        merged = order.model_copy(deep=True) if mine is None else _merge_order(mine, order)
        if merged != mine:
            _account(target, mine, merged)

    for product_id, at in source.interests.items():
        if target.interests.get(product_id, "") < at:
            target.interests[product_id] = at
    if len(target.interests) > INTERESTS_KEEP:
        target.interests = dict(sorted(target.interests.items(), key=lambda kv: kv[1])[-INTERESTS_KEEP:])
    # the activity times segment conditions read (note_activity): the latest of both
    their_activity = source.meta.get("activity") or {}
    if their_activity:
        activity = target.meta.setdefault("activity", {})
        for name, at in their_activity.items():
            if at and str(at) > str(activity.get(name) or ""):
                activity[name] = at

    ids = [*target.anonymous_ids, *source.anonymous_ids]
    if source_is_anonymous:
        ids.append(source.id)
    target.anonymous_ids = [i for i in dict.fromkeys(ids) if i != target.id][-ANONYMOUS_IDS_KEEP:]

    target.first_seen_at = _min(target.first_seen_at, source.first_seen_at)
    target.last_seen_at = _max(target.last_seen_at, source.last_seen_at)
    erased = [at for at in (erased_before(target), erased_before(source)) if at is not None]
    if erased:  # the ingestion's keyed-event guard after an erasure (see erased_before): the later
        target.meta[ERASED_BEFORE] = clock.iso(max(erased))
    target.created_at = _min(target.created_at, source.created_at)
    target.contacts = _trim_contacts([*target.contacts, *source.contacts], now)
    target.customer_contacts = sorted(set(target.customer_contacts) | set(source.customer_contacts))[
        -CUSTOMER_CONTACTS_KEEP:]
    for kind, count in source.message_stats.items():
        target.message_stats[kind] = target.message_stats.get(kind, 0) + count
    history = {(h.get("at"), h.get("ref"), h.get("score")): h for h in target.nps.get("history", [])}
    for h in source.nps.get("history", []):
        history.setdefault((h.get("at"), h.get("ref"), h.get("score")), h)
    if history:
        _set_nps_history(target, sorted(history.values(), key=lambda h: h.get("at") or ""))
    for rule, state in source.journeys.items():
        target.journeys.setdefault(rule, state)
    target.notes = [*target.notes, *source.notes][-NOTES_KEEP:]
    for channel, why in source.suppressed.items():
        target.suppressed.setdefault(channel, why)
    target.kpis = compute_kpis(target, now)


# --------------------------------------------------------------------------- facts


def segment_ids(segments: Mapping[str, Any]) -> set[str]:
    """Flatten `{group: {segment_id: {...}}}` into the set of current segment ids."""
    ids: set[str] = set()
    for members in segments.values():
        if isinstance(members, Mapping):
            ids.update(str(k) for k in members)
        elif isinstance(members, str):
            ids.add(members)
        elif isinstance(members, list | tuple | set):
            ids.update(str(m) for m in members)
    return ids


def consent_flags(profile: Profile) -> dict[str, bool]:
    """Per channel: marketing may be sent (effective consent and the channel not suppressed)."""
    flags = {}
    for channel in CONSENT_CHANNELS:
        consent = profile.consent.get(channel)
        flags[channel] = bool(
            consent is not None and consent.effective and not profile.suppressed.get(channel)
        )
    return flags


def consent_states(profile: Profile) -> dict[str, str]:
    """Per channel, what the customer said: `granted` (effective), `pending` (a double opt-in not yet
    confirmed), `refused` (said no or withdrew), `unknown` (never asked). Suppression does not change it."""
    out = {}
    for channel in CONSENT_CHANNELS:
        consent = profile.consent.get(channel)
        if consent is None:
            out[channel] = "unknown"
        elif consent.effective:
            out[channel] = "granted"
        else:
            out[channel] = "pending" if consent.granted else "refused"
    return out


ACTIVITY_EVENTS = {
    "Product Added": "last_cart_at", "Checkout Started": "last_cart_at", "Cart Viewed": "last_cart_at",
    "Product Viewed": "last_product_viewed_at", "Product Clicked": "last_product_viewed_at",
    "Back in Stock Subscribed": "last_product_subscribed_at", "Price Drop Subscribed": "last_product_subscribed_at",
    "Product Added to Wishlist": "last_product_subscribed_at",
}
COMPLAINT_EVENTS = {"Complaint Opened": True, "Complaint Resolved": False}


def note_activity(profile: Profile, msg: Message) -> None:
    """Timestamps the segment conditions need (cart / view / subscription), and the open-complaint trait."""
    if msg.type != "track" or not msg.event:
        return
    at = msg.timestamp.astimezone(UTC).isoformat()
    field = ACTIVITY_EVENTS.get(msg.event)
    if field:
        activity = profile.meta.setdefault("activity", {})
        if at > activity.get(field, ""):
            activity[field] = at
    if msg.event in COMPLAINT_EVENTS:
        stamp = profile.trait_ts.get("complaint_open", "")
        if at >= stamp:
            profile.traits["complaint_open"] = COMPLAINT_EVENTS[msg.event]
            profile.trait_ts["complaint_open"] = at


def facts(profile: Profile, now: datetime) -> dict[str, Any]:
    """What the condition language evaluates on."""
    from retention.language.segments import membership_set
    activity = profile.meta.get("activity", {})
    return {
        "traits": profile.traits,
        "kpis": profile.kpis or compute_kpis(profile, now),
        "consent": consent_flags(profile),
        "consent_state": consent_states(profile),
        "segments": membership_set(profile.segments),
        "profile": {"created_at": _iso_or_none(profile.created_at), "nps_last_at": profile.nps.get("last_at"),
                    "first_seen_at": _iso_or_none(profile.first_seen_at),
                    **activity},
        "now": now.astimezone(UTC),
    }


def _iso_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)

"""The customer KPIs of DESIGN section 4: their keys (in the documented order) and kinds. The profile
computes them (retention.customers.profile), the rule language checks references against them
(retention.language.conditions): one list for both."""

from __future__ import annotations

from typing import Literal

KpiKind = Literal["number", "timestamp"]

KPIS: dict[str, KpiKind] = {
    "orders_count": "number",
    "revenue_total": "number",
    "average_order_value": "number",
    "first_order_at": "timestamp",
    "last_order_at": "timestamp",
    "average_days_between_orders": "number",
    "repeat_orders_count": "number",
    "nps_last_score": "number",
    "average_pickup_storage_hours": "number",
    "unclaimed_orders_percent": "number",
    "distinct_shops_count": "number",
    "contacts_30d": "number",  # seed 000 "частота обращений": the customer's own contacts with the shop
    "contacts_90d": "number",
    "last_contact_at": "timestamp",
    "messages_received_30d": "number",  # the engine's sends to the customer (both classes), not contacts
    "last_message_at": "timestamp",
    "open_rate": "number",
    "click_rate": "number",
    "last_seen_at": "timestamp",
}
KPI_KEYS: tuple[str, ...] = tuple(KPIS)
NUMERIC_KPIS: frozenset[str] = frozenset(k for k, kind in KPIS.items() if kind == "number")
TIMESTAMP_KPIS: frozenset[str] = frozenset(k for k, kind in KPIS.items() if kind == "timestamp")

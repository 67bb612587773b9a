"""Replenishment reminders: a consumable product bought in an order comes due again after its
`consumable_days` (the card's own, else its category's default in the `consumable_categories` setting).

Each `Order Completed` of such a product writes a due item (`EVENT`, ref `replenish|<product_id>`) at the
order's time + the days; when it comes due, the minute tick hands it to the engine, which records a
`Product Replenishment Due` event for the customer (properties: the product's card, `order_id`,
`ordered_at`, `days`) and starts the journeys it triggers, as any event would (a rule with
`trigger: {event: Product Replenishment Due}` sends the reminder). Nothing is due for a refunded or
cancelled order. A later order of the same product replaces the pending reminder: the bought row
(`CB#<customer>` / `<product_id>`, retention.products.recommend) keeps `reminder_at`, so the earlier due
item is deleted by its key (no scan). Reminders already in the past (an imported history) are not written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb
from retention.products.catalog import CARD_FIELDS, replenish_days
from retention.products.recommend import bought_key
from retention.schedule import due

EVENT = "Product Replenishment Due"
DUE_KIND = "EVENT"


def reminder_ref(product_id: str) -> str:
    return f"replenish|{product_id}"


def schedule(client: Any, products_table: str, due_table: str, shards: int, *, customer_id: str, order_id: str,
             at: datetime, cards: Mapping[str, Mapping[str, Any]], categories: Mapping[str, int] | None,
             now: datetime | None = None) -> dict[str, str]:
    """Write the reminders of one order; returns {product_id: reminder_at} to keep on the bought rows (the new
    reminder, or a later one already pending)."""
    now = now or clock.now()
    wanted: dict[str, tuple[datetime, int]] = {}
    for pid, card in cards.items():
        days = replenish_days(card, categories)
        if days is not None and at + timedelta(days=days) > now:
            wanted[pid] = (at + timedelta(days=days), days)
    if not wanted:
        return {}
    rows = ddb.batch_get(client, products_table, [bought_key(customer_id, pid) for pid in wanted])
    keep: dict[str, str] = {}
    puts: list[due.DueItem] = []
    stale: list[due.DueItem] = []
    for pid, (when, days) in wanted.items():
        pending = str((rows.get(bought_key(customer_id, pid)) or {}).get("reminder_at") or "")
        if pending and pending >= clock.iso(when):
            keep[pid] = pending  # an order of a later date (imported out of order) set a later reminder
            continue
        if pending:
            stale.append(due.DueItem(at=clock.parse_iso(pending), kind=DUE_KIND, customer_id=customer_id,
                                     ref=reminder_ref(pid)))
        card = cards[pid]
        props = {**{k: card.get(k) for k in CARD_FIELDS}, "order_id": order_id, "ordered_at": clock.iso(at),
                 "days": days}
        mid = "repl-" + hashlib.sha256(f"{customer_id}|{order_id}|{pid}".encode()).hexdigest()[:20]
        puts.append(due.DueItem(at=when, kind=DUE_KIND, customer_id=customer_id, ref=reminder_ref(pid),
                                payload={"name": EVENT, "properties": props, "message_id": mid}))
        keep[pid] = clock.iso(when)
    due.delete(client, due_table, stale, shards)
    due.put(client, due_table, puts, shards)
    return keep

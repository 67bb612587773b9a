"""What a running journey remembers of its trigger when the rule says `trigger.update`.

A journey keeps the properties of the event that started it, for its templates. For an abandoned cart
that is the wrong event: the reminder must show the cart as the customer left it, not the first product
added hours before. `update: latest` keeps the latest matching trigger event instead of the first;
`update: cart` keeps the cart's current contents, folded from the Segment ecommerce cart events:

- `Checkout Started` / `Cart Viewed` with `products`: the cart is that list (the shop's own view wins);
- `Product Added`: the line is added, or its quantity raised;
- `Product Removed`: the line's quantity lowered, the line dropped at zero (no quantity: the whole line).

An emptied cart ends the journey (`cart_emptied`): nobody is reminded of a cart they cleared.
The fold is pure and bounded (MAX_LINES), so the profile stays small however long the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from retention.customers.profile import product_id

MAX_LINES = 50
REPLACE_EVENTS = frozenset({"checkout started", "cart viewed"})
ADD_EVENTS = frozenset({"product added"})
REMOVE_EVENTS = frozenset({"product removed"})
CART_EVENTS = REPLACE_EVENTS | ADD_EVENTS | REMOVE_EVENTS
# what a cart line keeps (what product cards and deep links read); anything else is dropped
LINE_FIELDS = ("product_id", "sku", "id", "name", "price", "currency", "quantity", "url", "image_url", "category",
               "brand", "variant")


def _key(name: str | None) -> str:
    return " ".join((name or "").split()).casefold()


def is_cart_event(name: str | None) -> bool:
    return _key(name) in CART_EVENTS


def _quantity(value: Any) -> int:
    try:
        q = int(float(value))
    except (TypeError, ValueError):
        return 1
    return max(q, 0)


def _line(props: Mapping[str, Any]) -> dict[str, Any] | None:
    pid = product_id(props)
    if pid is None:
        return None
    line = {k: props[k] for k in LINE_FIELDS if k in props and props[k] is not None}
    line["product_id"] = pid
    line["quantity"] = _quantity(props.get("quantity", 1))
    return line


def fold(cart: Mapping[str, Any] | None, name: str, props: Mapping[str, Any]) -> dict[str, Any]:
    """The cart after one event: `{"products": [line…], "cart_url"?: …, "currency"?: …}` (the shape a
    `Checkout Started` has, so templates read `event.properties.products` whatever the event was)."""
    key = _key(name)
    lines: list[dict[str, Any]] = [dict(p) for p in (cart or {}).get("products") or [] if isinstance(p, Mapping)]
    out: dict[str, Any] = {k: v for k, v in (cart or {}).items() if k != "products"}
    for meta in ("cart_url", "currency", "cart_id", "checkout_id"):
        if props.get(meta) not in (None, ""):
            out[meta] = props[meta]
    if key in REPLACE_EVENTS and isinstance(props.get("products"), list):
        lines = [ln for p in props["products"] if isinstance(p, Mapping) and (ln := _line(p)) and ln["quantity"]]
    elif key in ADD_EVENTS or key in REPLACE_EVENTS:
        # a Product Added (or a Checkout Started naming one product without a list) adds its line(s)
        added = [p for p in props.get("products") or [] if isinstance(p, Mapping)] \
            if isinstance(props.get("products"), list) else [props]
        for p in added:
            new = _line(p)
            if new is None:
                continue
            same = next((ln for ln in lines if ln.get("product_id") == new["product_id"]), None)
            if same is None:
                lines.append(new)
            else:
                same.update({k: v for k, v in new.items() if k != "quantity"})
                same["quantity"] = _quantity(same.get("quantity", 1)) + max(new["quantity"], 1)
    elif key in REMOVE_EVENTS:
        pid = product_id(props)
        for ln in lines:
            if ln.get("product_id") == pid:
                ln["quantity"] = _quantity(ln.get("quantity", 1)) - _quantity(props["quantity"]) \
                    if "quantity" in props else 0
        lines = [ln for ln in lines if _quantity(ln.get("quantity", 1)) > 0]
    out["products"] = lines[-MAX_LINES:]
    return out


def is_empty(cart: Mapping[str, Any]) -> bool:
    return not cart.get("products")

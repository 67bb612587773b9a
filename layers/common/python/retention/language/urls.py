"""Deep-link patterns of the emails' blocks (retention.language.blocks) and the settings' defaults
(retention.core.config): a module of its own so that reading the settings does not load Jinja."""

from __future__ import annotations

DEFAULT_URL_PATTERNS = {
    "cart": "{base}/cart",
    "order": "{base}/orders/{order_id}",
    "product": "{base}/products/{product_id}",
    "review": "{base}/orders/{order_id}/review",
    "shop_review": "{base}/reviews",  # a review of the shop itself (an NPS promoter's), not of one order
}

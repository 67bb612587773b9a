"""Products in messages: the catalogue, recommendations and personal coupons (keys: docs/architecture.md)."""

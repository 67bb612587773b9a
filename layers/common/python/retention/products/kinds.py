"""Recommendation kinds and the sample recommender of template validation and previews (pure)."""

from __future__ import annotations

from typing import Any

from retention.core.errors import BadRequestError

KINDS = ("similar", "accessories", "bought_together", "popular", "personal")
MAX_LIMIT = 12


class UnknownKindError(BadRequestError):
    pass


def check_kind(kind: Any) -> str:
    if kind not in KINDS:
        raise UnknownKindError(f"unknown recommendation kind {kind!r}: use one of {', '.join(KINDS)}")
    return str(kind)


def sample_products(locale: str = "ru") -> list[dict[str, Any]]:
    ru = locale.startswith("ru")
    base = "https://shop.example"
    names = (["Кроссовки трейловые", "Кеды городские", "Кроссовки для зала", "Беговые кроссовки лёгкие"] if ru
             else ["Trail shoes", "City sneakers", "Gym shoes", "Light running shoes"])
    return [{"product_id": f"sku-30{i}", "name": name, "url": f"{base}/p/sku-30{i}",
             "image_url": f"{base}/img/sku-30{i}.jpg", "image": f"{base}/img/sku-30{i}.jpg",
             "price": 1190 + 100 * i, "currency": "RUB", "category": "Обувь" if ru else "Shoes", "brand": "Stride"}
            for i, name in enumerate(names)]


class SampleRecommender:
    """Validation and previews without a catalogue: checks the kind and the arguments, returns samples."""

    def __init__(self, locale: str = "ru") -> None:
        self.locale = locale
        self.calls: list[tuple[str, int]] = []

    def recommend(self, kind: str, product: Any = None, limit: int = 4, category: Any = None) -> list[dict[str, Any]]:
        check_kind(kind)
        try:
            limit = max(1, min(int(limit), MAX_LIMIT))
        except (TypeError, ValueError) as exc:
            raise BadRequestError(f"recommend(): limit must be a number, got {limit!r}") from exc
        out = sample_products(self.locale)[:limit]
        self.calls.append((kind, len(out)))
        return out

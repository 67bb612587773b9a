"""The config cache is bounded (issue 15, item 13): 200,000 bogus write keys grew it to 48 MB."""

from __future__ import annotations

from typing import Any

import pytest
from retention.core import config
from retention.core.config import ConfigStore
from retention.core.errors import UnauthorizedError


class NoItems:
    def __init__(self) -> None:
        self.reads = 0

    def get_item(self, **kw: Any) -> dict[str, Any]:
        self.reads += 1
        return {}


def test_bogus_keys_cannot_grow_the_cache_without_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "CACHE_ENTRIES", 100)
    ConfigStore.invalidate()
    store = ConfigStore(NoItems(), "cfg")
    for i in range(1000):
        with pytest.raises(UnauthorizedError):
            store.authenticate_source(f"bogus-{i}")
    assert len(ConfigStore._cache) == 100
    ConfigStore.invalidate()


def test_a_recent_miss_is_served_from_the_cache() -> None:
    ConfigStore.invalidate()
    client = NoItems()
    store = ConfigStore(client, "cfg")
    for _ in range(3):
        with pytest.raises(UnauthorizedError):
            store.authenticate_source("same")
    assert client.reads == 1
    assert config.KEY_CACHE_SECONDS <= 10  # a revoked key lives at most this long in a warm container
    ConfigStore.invalidate()

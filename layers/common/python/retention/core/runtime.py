"""Dependencies of a Lambda container: settings read once, AWS clients created once (lazily, so an
import costs nothing), swappable by tests and the local runtime."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from retention.core.config import ConfigStore
from retention.core.settings import Env, env


class Deps:
    def __init__(self, environment: Env | None = None, **clients: Any) -> None:
        self.env = environment or env()
        for name, client in clients.items():
            setattr(self, name, client)
        self._checked: set[str] = set()

    def require(self, function: str) -> None:
        """The function's required environment is set (checked once per container: its cold start)."""
        if function not in self._checked:
            self.env.require(function)
            self._checked.add(function)

    def _client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        # 32 connections: track_event writes 8 customers at once, each up to 4 early raw events in parallel
        # (urllib3 would open and drop connections past the pool's size: a TLS handshake each)
        cfg = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=3, read_timeout=10,
                     tcp_keepalive=True, max_pool_connections=32)
        return boto3.client(service, config=cfg)  # type: ignore[call-overload]

    @cached_property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    @cached_property
    def sqs(self) -> Any:
        return self._client("sqs")

    @cached_property
    def sesv2(self) -> Any:
        return self._client("sesv2")

    @cached_property
    def sns(self) -> Any:
        return self._client("sns")

    @cached_property
    def config(self) -> ConfigStore:
        return ConfigStore(self.dynamodb, self.env.config_table)


_deps: Deps | None = None


def deps() -> Deps:
    global _deps
    if _deps is None:
        _deps = Deps()
    return _deps


def set_deps(value: Deps | None) -> None:
    global _deps
    _deps = value

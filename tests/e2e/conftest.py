"""Starts `python -m local.main` (what `make run` runs) once per test worker, on a port it binds itself
(`--port 0`: no free-port probe that two workers could race for), logging to build/e2e-local-<worker>.log.

The local stack answers a request only after the work it caused is done (ingestion, then the send queue
drained; a clock advance runs its ticks and drains before replying), so the tests look once: no polling,
no wall-clock deadline."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


class Local:
    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def admin(self, path: str) -> Any:
        status, body = self.request("GET", path, headers={"Authorization": "Bearer dev-admin-token"})
        assert status == 200, body
        return body

    def outbox(self) -> list[dict[str, Any]]:
        return self.request("GET", "/_local/outbox")[1]

    def advance(self, seconds: float) -> str:
        return self.request("POST", "/_local/clock/advance", {"seconds": seconds})[1]["now"]

    def expect(self, predicate: Any) -> Any:
        """The value of `predicate()`, which must be truthy now (the stack finished before it answered)."""
        value = predicate()
        assert value, f"{getattr(predicate, '__name__', 'condition')}: {value!r}"
        return value


@pytest.fixture(scope="session")
def local() -> Iterator[Local]:
    from local.process import start_local, stop_local
    proc, url, log = start_local("local.main", log_name="e2e-local")
    try:
        yield Local(url)
    finally:
        stop_local(proc, log)

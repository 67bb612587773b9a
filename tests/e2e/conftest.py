"""Starts `python -m local.main` (what `make run` runs) on a free port, once for the e2e modules."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError("condition not met in time")


@pytest.fixture(scope="session")
def local() -> Iterator[Local]:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    (REPO / "build").mkdir(exist_ok=True)
    log = open(REPO / "build" / f"e2e-local-{port}.log", "w")  # noqa: SIM115 - open for the process's life
    proc = subprocess.Popen([sys.executable, "-m", "local.main", "--port", str(port)], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"local stack exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("local stack did not answer /health in time")
            time.sleep(0.5)
        yield Local(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

"""The CLI's HTTP client: the admin API (Bearer token) and the ingestion API (HTTP Basic write key).

The CLI only ever talks HTTP, so it works the same against the local stack and a deployment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

DEFAULT_URL = "http://127.0.0.1:8787"
DEFAULT_TOKEN = "dev-admin-token"  # noqa: S105 - the local stack's documented dev token
DEFAULT_WRITE_KEY = "dev-write-key"
TIMEOUT = 60.0


class CliError(Exception):
    """A failure the user can act on; `exit_code` 1 = the operation failed, 2 = usage or connection."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class ApiError(CliError):
    """An error answer of the API: `{"code", "message"}` (validation messages name file:line)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, exit_code=1)
        self.status = status
        self.code = code


def path_part(value: str) -> str:
    return quote(value, safe="")


@dataclass
class ApiClient:
    url: str = DEFAULT_URL
    token: str = DEFAULT_TOKEN
    write_key: str = DEFAULT_WRITE_KEY
    session: requests.Session = field(default_factory=requests.Session)
    timeout: float = TIMEOUT

    @classmethod
    def from_options(cls, url: str | None, token: str | None, write_key: str | None = None,
                     session: requests.Session | None = None) -> ApiClient:
        return cls(url=(url or os.environ.get("RETENTION_URL") or DEFAULT_URL).rstrip("/"),
                   token=token or os.environ.get("RETENTION_ADMIN_TOKEN") or DEFAULT_TOKEN,
                   write_key=write_key or os.environ.get("RETENTION_WRITE_KEY") or DEFAULT_WRITE_KEY,
                   session=session or requests.Session())

    # ---- low level ------------------------------------------------------------------------------------
    def send(self, method: str, path: str, *, body: Any = None, data: str | bytes | None = None,
             headers: dict[str, str] | None = None, params: dict[str, Any] | None = None,
             auth: tuple[str, str] | None = None) -> requests.Response:
        hdrs = dict(headers or {})
        if auth is None:
            hdrs.setdefault("Authorization", f"Bearer {self.token}")
        payload: str | bytes | None = data
        if body is not None:
            payload = json.dumps(body, ensure_ascii=False).encode()
            hdrs.setdefault("Content-Type", "application/json")
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            return self.session.request(method, self.url + path, data=payload, headers=hdrs, params=clean or None,
                                        auth=auth, timeout=self.timeout)
        except requests.ConnectionError as exc:
            raise CliError(f"cannot reach the API at {self.url} ({type(exc).__name__}); is the stack running "
                           "(make run)? Set --url or RETENTION_URL", exit_code=2) from exc
        except requests.Timeout as exc:
            raise CliError(f"the API at {self.url} did not answer within {self.timeout:.0f} s", exit_code=2) from exc

    @staticmethod
    def error_of(resp: requests.Response) -> ApiError:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            return ApiError(resp.status_code, str(body.get("code") or "error"), str(body["message"]))
        text = (resp.text or "").strip()[:300] or resp.reason or "no body"
        return ApiError(resp.status_code, "http_error", f"HTTP {resp.status_code}: {text}")

    # ---- the admin API --------------------------------------------------------------------------------
    def admin(self, method: str, path: str, *, body: Any = None, data: str | bytes | None = None,
              headers: dict[str, str] | None = None, params: dict[str, Any] | None = None) -> Any:
        resp = self.send(method, "/admin" + path, body=body, data=data, headers=headers, params=params)
        if resp.status_code == 401:
            err = self.error_of(resp)
            raise ApiError(401, err.code, f"{err.message} (admin token from --token or RETENTION_ADMIN_TOKEN)")
        if resp.status_code >= 400:
            raise self.error_of(resp)
        try:
            return resp.json()
        except ValueError as exc:
            raise CliError(f"the API answered {resp.status_code} without JSON: {resp.text[:200]}") from exc

    def get(self, path: str, **params: Any) -> Any:
        return self.admin("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.admin("POST", path, body=body if body is not None else {}, params=params)

    def put(self, path: str, body: Any) -> Any:
        return self.admin("PUT", path, body=body)

    def delete(self, path: str) -> Any:
        return self.admin("DELETE", path)

    # ---- ingestion ------------------------------------------------------------------------------------
    def batch(self, messages: list[dict[str, Any]]) -> requests.Response:
        """POST /v1/batch with the write key (HTTP Basic, empty password); the caller handles retries."""
        return self.send("POST", "/v1/batch", body={"batch": messages}, auth=(self.write_key, ""))

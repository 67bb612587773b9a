"""Console sessions: a person's token exchanged for a session cookie, kept server-side.

Storage in the config table (pk / sk), with the table's TTL attribute so DynamoDB removes old ones:
  SESSION#<sha256 of the session id> / SESSION   name, role, token_id, csrf, created_at, expires_at, ttl
Only the hash of the id is stored: a leaked config table gives no usable cookie. The expiry is enforced
on every read (DynamoDB's TTL deletes late), and a session dies with its token (revoked or expired).
Each session has its own CSRF token; forms carry it and `csrf_ok` compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from retention.admin.people import People, Person
from retention.core import clock, ddb
from retention.core.config import ConfigStore
from retention.core.errors import UnauthorizedError

COOKIE = "rt_console"
PRE_COOKIE = "rt_console_pre"  # the sign-in form's CSRF value (double submit, before any session exists)
LANG_COOKIE = "rt_console_lang"
LIFETIME = timedelta(hours=8)
SK = "SESSION"


def _pk(session_id: str) -> str:
    return "SESSION#" + hashlib.sha256(session_id.encode()).hexdigest()


def csrf_ok(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing value on either side is a refusal."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True)
class Session:
    person: Person
    csrf: str
    expires_at: str


class Sessions:
    def __init__(self, config: ConfigStore) -> None:
        self.config = config
        self.client = config.client
        self.table = config.table

    def sign_in(self, token: str) -> tuple[str, Session]:
        """A new session for the person behind `token` (401 when the token is unknown, revoked or expired);
        returns the session id (for the cookie, never stored) and the session."""
        person = People(self.config).authenticate("Bearer " + (token or "").strip())
        now = clock.now()
        expires = now + LIFETIME
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        item = {"pk": _pk(session_id), "sk": SK, "name": person.name, "role": person.role,
                "token_id": person.token_id, "csrf": csrf, "created_at": clock.iso(now),
                "expires_at": clock.iso(expires), "ttl": int(expires.timestamp())}
        self.client.put_item(TableName=self.table, Item=ddb.serialize(item))
        return session_id, Session(person, csrf, clock.iso(expires))

    def load(self, session_id: str | None) -> Session:
        """The live session of a cookie value; UnauthorizedError when there is none."""
        if not session_id or len(session_id) > 128:
            raise UnauthorizedError("sign in first")
        item = ddb.get(self.client, self.table, _pk(session_id), SK, consistent=True)
        if not item:
            raise UnauthorizedError("sign in first")
        now = clock.iso(clock.now())
        if str(item.get("expires_at") or "") <= now:
            self.sign_out(session_id)
            raise UnauthorizedError("the session expired: sign in again", code="session_expired")
        token = People(self.config).token(str(item.get("token_id")))
        if not token or token.get("revoked") or (token.get("expires_at") and str(token["expires_at"]) <= now):
            self.sign_out(session_id)
            raise UnauthorizedError("the token behind this session is no longer valid", code="token_expired")
        person = Person(name=str(item["name"]), role=str(token.get("role") or item.get("role") or "viewer"),
                        token_id=str(item.get("token_id")))
        return Session(person, str(item["csrf"]), str(item["expires_at"]))

    def sign_out(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 128:
            self.client.delete_item(TableName=self.table, Key=ddb.key(_pk(session_id), SK))


def cookie_value(headers: dict[str, Any] | None, name: str) -> str | None:
    """One cookie from the Cookie header(s) of a REST API event."""
    from http.cookies import CookieError, SimpleCookie
    raw = ""
    for k, v in (headers or {}).items():
        if k.lower() == "cookie" and v:
            raw = str(v)
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


def is_local(host: str | None) -> bool:
    """localhost / 127.0.0.1 (the local stack over plain HTTP): the only place cookies go without Secure."""
    host = (host or "").strip().lower()
    if host.startswith("["):  # [::1]:8787
        name = host[1:host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "127.0.0.1", "::1")

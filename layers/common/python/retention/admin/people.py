"""People who use the admin API: tokens with a role and an expiry, role checks per route, the audit log.

Roles, each including the one before:
- `viewer` reads everything (customers, definitions, stats, previews, dry-runs, the audit log);
- `editor` also changes definitions (rules, segments, templates) and customers (erasure, manual segments);
- `admin` also manages people (tokens), sources (write keys), signing secrets, settings and sending.

Storage in the config table (pk / sk):
  TOKEN#<lookup> / TOKEN   one token: name, role, expiry, per-token salt and salted SHA-256 of the secret
  TOKENS / <token id>      the listing (no secret, no hash)
  AUDIT / <iso>#<rand>     one change: who, role, when, action, kind, id, version
  PEOPLE / <name>          the person's own email address (staff mail: the console's test sends), set by admins
`lookup` is an HMAC of the token under a stack-wide pepper (signing secret `token-pepper`): a leaked
config table gives neither the tokens nor a cheap way to test guesses without the pepper, and each stored
hash is salted on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets as pysecrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from retention.core import clock, ddb
from retention.core.config import ConfigStore
from retention.core.errors import BadRequestError, ForbiddenError, NotFoundError, UnauthorizedError

ROLES = ("viewer", "editor", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
PEPPER = "token-pepper"
TOKEN_PREFIX = "rt_"  # noqa: S105 - a prefix, not a secret
AUDIT_PK = "AUDIT"
PEOPLE_PK = "PEOPLE"
_DURATION = re.compile(r"^\s*(\d+)\s*([hdwy])\s*$")
_UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7, "y": 24 * 365}

# Admin routes by the role they need. Paths are relative to /admin; the first segment decides, then the
# exceptions (read-only POSTs) below. GET and HEAD need `viewer` unless listed in ADMIN_READS.
ADMIN_AREAS = ("tokens", "sources", "webhooks", "sending", "settings")
ADMIN_READS = ("tokens", "sources")
READ_ONLY_POSTS = (re.compile(r"^/segments/count$"), re.compile(r"^/rules/[^/]+/(preview|dry-run)$"))


def parse_duration(text: str) -> timedelta:
    """`90d`, `12h`, `2w`, `1y` → a timedelta (token expiry)."""
    m = _DURATION.match(str(text or ""))
    if not m or int(m.group(1)) <= 0:
        raise BadRequestError(f"expiry {text!r}: use a duration such as 12h, 90d, 2w or 1y")
    return timedelta(hours=int(m.group(1)) * _UNIT_HOURS[m.group(2)])


def required_role(method: str, path: str) -> str:
    """The least role that may call `method path` (path with or without the /admin prefix)."""
    rel = path[len("/admin"):] if path.startswith("/admin") else path
    rel = "/" + rel.strip("/")
    first = rel.split("/")[1] if rel != "/" else ""
    reading = method.upper() in ("GET", "HEAD", "OPTIONS")
    if reading:
        return "admin" if first in ADMIN_READS else "viewer"
    if method.upper() == "POST" and any(p.match(rel) for p in READ_ONLY_POSTS):
        return "viewer"
    return "admin" if first in ADMIN_AREAS else "editor"


def is_change(method: str, path: str) -> bool:
    """Whether a successful call changes something (and goes into the audit log)."""
    if method.upper() in ("GET", "HEAD", "OPTIONS"):
        return False
    rel = "/" + (path[len("/admin"):] if path.startswith("/admin") else path).strip("/")
    return not (method.upper() == "POST" and any(p.match(rel) for p in READ_ONLY_POSTS))


@dataclass(frozen=True)
class Person:
    name: str
    role: str
    token_id: str

    def require(self, role: str) -> None:
        if RANK.get(self.role, -1) < RANK[role]:
            raise ForbiddenError(f"{self.name} is {_article(self.role)} {self.role}; this needs {_article(role)} "
                                 f"{role} token")


def _article(role: str) -> str:
    return "an" if role[:1] in "aeiou" else "a"


def _salted(salt: str, token: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + token.encode()).hexdigest()


class People:
    """Tokens and the audit log (both in the config table)."""

    def __init__(self, config: ConfigStore) -> None:
        self.config = config
        self.client = config.client
        self.table = config.table

    def _lookup(self, token: str) -> str:
        pepper = self.config.secrets(PEPPER)[0]
        return hmac.new(pepper, token.encode(), hashlib.sha256).hexdigest()[:40]

    # ---- tokens ----------------------------------------------------------------------------------------
    def create(self, name: str, role: str = "viewer", *, expires: str | None = None, token: str | None = None,
               by: str = "cli", now: datetime | None = None) -> dict[str, Any]:
        """A new token for a person, shown once in the answer. `expires`: a duration (90d) or None."""
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise BadRequestError('a token needs the name of the person who uses it: {"name": "anna"}')
        if role not in RANK:
            raise BadRequestError(f"role {role!r}: use viewer, editor or admin")
        now = now or clock.now()
        expires_at = clock.iso(now + parse_duration(expires)) if expires else None
        token = token or TOKEN_PREFIX + pysecrets.token_urlsafe(32)
        lookup = self._lookup(token)
        token_id = "tok_" + pysecrets.token_hex(6)
        salt = pysecrets.token_hex(16)
        created = clock.iso(now)
        common = {"token_id": token_id, "name": name, "role": role, "expires_at": expires_at, "created_at": created,
                  "created_by": by}
        try:
            self.client.put_item(TableName=self.table, ConditionExpression="attribute_not_exists(pk)",
                                 Item=ddb.serialize({"pk": f"TOKEN#{lookup}", "sk": "TOKEN", "salt": salt,
                                                     "hash": _salted(salt, token), **common}))
        except Exception as exc:
            if ddb.is_conditional_failure(exc):
                raise BadRequestError("this token is already in use: choose another") from exc
            raise
        self.client.put_item(TableName=self.table, Item=ddb.serialize(
            {"pk": "TOKENS", "sk": token_id, "lookup": lookup, "hint": token[:6] + "…", "revoked": False, **common}))
        self.audit(by, "create", "token", token_id, detail={"name": name, "role": role, "expires_at": expires_at},
                   now=now)
        return {**common, "token": token}

    def tokens(self, include_revoked: bool = True) -> list[dict[str, Any]]:
        now = clock.iso(clock.now())
        out = []
        for item in ddb.query(self.client, self.table, "TOKENS"):
            state = "revoked" if item.get("revoked") else (
                "expired" if item.get("expires_at") and item["expires_at"] <= now else "active")
            if state == "revoked" and not include_revoked:
                continue
            out.append({"token_id": item["sk"], "name": item.get("name"), "role": item.get("role"),
                        "expires_at": item.get("expires_at"), "created_at": item.get("created_at"),
                        "created_by": item.get("created_by"), "hint": item.get("hint"), "state": state,
                        "revoked_at": item.get("revoked_at")})
        return out

    def token(self, token_id: str) -> dict[str, Any] | None:
        """One token's listing row (no secret, no hash): name, role, expires_at, revoked (console sessions)."""
        return ddb.get(self.client, self.table, "TOKENS", token_id)

    def find(self, name: str, role: str | None = None) -> list[dict[str, Any]]:
        """Active tokens of a person (bootstrap: does the first admin exist already?)."""
        return [t for t in self.tokens(include_revoked=False)
                if t["name"] == name and t["state"] == "active" and (role is None or t["role"] == role)]

    def revoke(self, token_id: str, *, by: str = "cli") -> dict[str, Any]:
        item = ddb.get(self.client, self.table, "TOKENS", token_id, consistent=True)
        if not item:
            raise NotFoundError(f"token '{token_id}' not found")
        now = clock.now()
        self.client.delete_item(TableName=self.table, Key=ddb.key(f"TOKEN#{item['lookup']}", "TOKEN"))
        self.client.update_item(TableName=self.table, Key=ddb.key("TOKENS", token_id),
                                UpdateExpression="SET revoked = :t, revoked_at = :n",
                                ExpressionAttributeValues=ddb.values({":t": True, ":n": clock.iso(now)}))
        self.config.invalidate()
        self.audit(by, "revoke", "token", token_id, detail={"name": item.get("name")}, now=now)
        return {"token_id": token_id, "name": item.get("name"), "revoked": True}

    def authenticate(self, authorization: str | None) -> Person:
        """The person behind `Authorization: Bearer <token>`; 401 when missing, unknown, revoked or expired."""
        if not authorization or not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
            raise UnauthorizedError("missing token: send 'Authorization: Bearer <token>'")
        token = authorization[7:].strip()
        if len(token) > 512:
            raise UnauthorizedError("invalid token")
        lookup = self._lookup(token)
        item = self.config._cached(f"tok:{lookup}", lambda: ddb.get(self.client, self.table, f"TOKEN#{lookup}",
                                                                    "TOKEN"))
        if not item or not hmac.compare_digest(_salted(str(item["salt"]), token), str(item["hash"])):
            raise UnauthorizedError("invalid token")
        if item.get("expires_at") and str(item["expires_at"]) <= clock.iso(clock.now()):
            raise UnauthorizedError(f"the token of {item.get('name')} expired at {item['expires_at']}: "
                                    "ask an admin for a new one (retention tokens create)", code="token_expired")
        return Person(name=str(item.get("name")), role=str(item.get("role") or "viewer"),
                      token_id=str(item.get("token_id")))

    # ---- people's addresses (staff mail) ---------------------------------------------------------------
    def set_email(self, name: str, email: str, *, by: str) -> dict[str, Any]:
        """A person's own email address (the console's test sends go there and nowhere else); an empty
        `email` removes it. Only names that have a token are people."""
        from retention.messaging.mime import validate_address
        name = (name or "").strip()
        if not name or not any(t["name"] == name for t in self.tokens(include_revoked=False)):
            raise BadRequestError(f"{name!r} is not a person with a token")
        email = (email or "").strip()
        now = clock.now()
        if not email:
            self.client.delete_item(TableName=self.table, Key=ddb.key(PEOPLE_PK, name))
        else:
            email = validate_address(email, field="email")
            self.client.put_item(TableName=self.table, Item=ddb.serialize(
                {"pk": PEOPLE_PK, "sk": name, "email": email, "updated_at": clock.iso(now), "updated_by": by}))
        self.audit(by, "update", "person", name, detail={"email": email or None}, now=now)
        return {"name": name, "email": email or None}

    def email_of(self, name: str) -> str | None:
        """The person's own address on record (None when there is none)."""
        item = ddb.get(self.client, self.table, PEOPLE_PK, name, consistent=True)
        return str(item["email"]) if item and item.get("email") else None

    def emails(self) -> dict[str, str]:
        """{name: email} of every person with an address on record (the tokens page)."""
        return {str(i["sk"]): str(i["email"]) for i in ddb.query(self.client, self.table, PEOPLE_PK) if i.get("email")}

    def staff_address(self, name: str, address: str) -> str | None:
        """`address` when it is the address on record of `name`, a person with an active token; else None
        (the sender's re-check before a test send: never a customer's or a typed address)."""
        on_record = self.email_of(name)
        if not on_record or on_record.strip().lower() != (address or "").strip().lower():
            return None
        if not self.find(name):
            return None
        return on_record

    # ---- audit -----------------------------------------------------------------------------------------
    def audit(self, who: str, action: str, kind: str, item_id: str | None = None, *, version: Any = None,
              role: str | None = None, detail: dict[str, Any] | None = None, now: datetime | None = None) -> None:
        when = clock.iso(now or clock.now())
        # the tie-break keeps the order of changes made within one clock tick (a frozen clock in tests)
        sk = f"{when}#{time.monotonic_ns():020d}{pysecrets.token_hex(2)}"
        entry = {"pk": AUDIT_PK, "sk": sk, "who": who, "role": role,
                 "when": when, "action": action, "kind": kind, "id": item_id,
                 "version": int(version) if isinstance(version, int | float) and not isinstance(version, bool)
                 else None, "detail": json.dumps(detail, ensure_ascii=False, default=str) if detail else None}
        self.client.put_item(TableName=self.table, Item=ddb.serialize({k: v for k, v in entry.items()
                                                                        if v is not None}))

    def audit_log(self, *, since: str | None = None, until: str | None = None, kind: str | None = None,
                  who: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        lo, hi = since or "0", (until or "9999") + "~"
        out: list[dict[str, Any]] = []
        for item in ddb.query(self.client, self.table, AUDIT_PK, sk_between=(lo, hi), forward=False):
            if (kind and item.get("kind") != kind) or (who and item.get("who") != who):
                continue
            entry = {k: item.get(k) for k in ("when", "who", "role", "action", "kind", "id", "version")}
            if item.get("detail"):
                entry["detail"] = json.loads(item["detail"])
            out.append(entry)
            if len(out) >= limit:
                break
        return out


def audit_entry_for(method: str, path: str, body: Any) -> tuple[str, str, str | None, Any, dict[str, Any] | None]:
    """(action, kind, id, version, detail) of a successful admin API change, from its route and answer."""
    parts = [p for p in path[len("/admin"):].split("/") if p] if path.startswith("/admin") else \
        [p for p in path.split("/") if p]
    body = body if isinstance(body, dict) else {}
    version = body.get("version")
    area = parts[0] if parts else ""
    singular = {"rules": "rule", "segments": "segment", "templates": "template", "tokens": "token",
                "sources": "source", "customers": "customer", "settings": "setting", "coupons": "coupon_pool"}
    kind = singular.get(area, area or "admin")
    item_id = parts[1] if len(parts) > 1 else None
    tail = parts[2] if len(parts) > 2 else None
    m = method.upper()
    if area == "settings":
        return "update", "setting", "global", None, None
    if area == "sending":
        return (tail or item_id or "change"), "sending", body.get("identity"), None, None
    if area == "webhooks":
        return "rotate", "secret", "/".join(parts[1:-1]) or None, None, None
    if area in ("tokens", "sources") and m == "POST" and item_id is None:
        ident = body.get("token_id") or body.get("source_id")
        return "create", kind, ident, None, {"name": body.get("name"), "role": body.get("role")} \
            if area == "tokens" else {"name": body.get("name")}
    if m == "DELETE":
        action = "erase" if area == "customers" and tail is None else ("revoke" if area in ("tokens", "sources")
                                                                     else "delete")
        ident = "/".join(parts[1:]) or None
        if area == "catalog" and ident:
            ident = unquote(ident)  # a product id as the shop knows it (`shop/42`, not `shop%2F42`)
        return action, kind, ident, version, None
    if tail in ("rollback", "enable", "disable"):
        return tail, kind, item_id, version, None
    if m == "PUT" and item_id is not None:
        return "apply", kind, item_id, version, ({"changed": body["changed"]} if "changed" in body else None)
    return m.lower(), kind, "/".join(parts[1:]) or None, version, None


def create_admin_token(config: ConfigStore, name: str, token: str | None = None, role: str = "admin",
                       expires: str | None = None) -> str:
    """A person's token created outside the admin API (setup, the local stack, tests); shown once."""
    return str(People(config).create(name, role, expires=expires, token=token, by="setup")["token"])

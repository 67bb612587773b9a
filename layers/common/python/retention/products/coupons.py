"""Personal coupons: pools of codes the shop uploads, one code per customer per journey step, redemption.

Keys in PRODUCTS_TABLE (owned here):
- `POOL#<pool>` / `META` — `discount`, `valid_days`, counters `uploaded`, `issued`, `redeemed`, `revenue`
  (codes of the pool) and `fallback_issued`, `fallback_redeemed`, `fallback_revenue` (signed fallback codes).
- `POOL#<pool>` / `D#<YYYY-MM-DD>` — the same counters for one day (UTC): the stats' window is one Query.
- `POOL#<pool>` / `A#<code>` — a code still available (deleted when it is issued).
- `CODE#<code>` / `C` — every code ever uploaded (codes are unique across pools, so an order's `coupon`
  names one code): pool, discount, status (`available` → `issued` → `redeemed`), and once issued the
  customer, rule, entry, step, variant, ledger id, `issued_at`, `expires_at`; once redeemed the order,
  its revenue and time. A fallback code gets its row (`fallback`: true) when it is first issued, so its
  redemption is counted and attributed like a pool code's.
- `POOLS` / `<pool>` — every pool ever uploaded to or issued a fallback code from (the list of
  `GET /admin/coupons` and the report). Written by an upload, and by a fallback issue only while the pool
  has no `META` row yet (both write it before or with `META`: a `META` row means the pool is registered).
- `ISSUE#<ledger_id>` / `I` — the code issued for one send (ledger id = customer, rule, entry, step):
  a retried send finds it and shows the same code.

Issuing is one transaction: the available row is deleted (it must exist), the code moves from
`available` to `issued`, the issue row is created (it must not exist). A concurrent sender that took
the same code fails its condition and tries another; one that issued for the same send wins, and the
loser reads its code. So no code ever goes to two customers and a send never gets two codes.

The fallback code (a step with `fallback: hmac`, used when the pool is empty), a recipe the shop can
check without calling us: `<P>-<D>-<E>-<N>-<S>` where P = the pool's first 4 letters upper-cased,
D = the discount (`10P` for 10 %, `500RUB` for an amount), E = the expiry date `YYMMDD` (UTC, valid
through that day), N = 6 hex digits of sha256(customer|rule|entry|step) and S = the first 8 characters
of base32(HMAC-SHA256(secret, "P-D-E-N")). The secret is the `coupons` signing secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb
from retention.core.errors import BadRequestError, NotFoundError
from retention.products.discounts import parse_discount

DEFAULT_POOLS = ("welcome", "cart", "losing-customer", "reactivation")
POOL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_CODES_PER_UPLOAD = 10_000
ISSUE_ATTEMPTS = 5
CANDIDATES = 10
WINDOW_DAYS = 30  # the stats' recent window (`?days=` changes it)
MAX_WINDOW_DAYS = 366
COUNTERS = ("issued", "redeemed", "revenue")


class PoolEmptyError(Exception):
    """The pool has no code left (the send is skipped with `coupon_pool_empty`)."""


@dataclass
class Coupon:
    code: str
    discount: str
    expires_at: str
    pool: str
    fallback: bool = False

    def context(self) -> dict[str, Any]:
        return asdict(self)


def check_pool(pool: str) -> str:
    if not POOL_RE.match(pool or ""):
        raise BadRequestError(f"pool name {pool!r}: lower-case letters, digits, - and _ (at most 64)")
    return pool


class Coupons:
    def __init__(self, client: Any, table: str) -> None:
        self.ddb = client
        self.table = table

    # ---- pools ---------------------------------------------------------------------------------------
    def upload(self, pool: str, codes: list[Any], discount: Any, valid_days: Any,
               now: datetime | None = None) -> dict[str, Any]:
        """Add codes to a pool. Codes already known (in any pool) or repeated in the upload are rejected by
        name; the others are added. The pool's discount and validity are those of the latest upload."""
        now = now or clock.now()
        check_pool(pool)
        discount = parse_discount(discount)
        try:
            days = int(valid_days)
        except (TypeError, ValueError) as exc:
            raise BadRequestError(f"valid_days must be a whole number of days, got {valid_days!r}") from exc
        if not 1 <= days <= 3650:
            raise BadRequestError(f"valid_days is between 1 and 3650, got {days}")
        if not isinstance(codes, list) or not codes:
            raise BadRequestError('codes is a non-empty list of strings: {"codes": ["WELCOME-7Q2X", ...]}')
        if len(codes) > MAX_CODES_PER_UPLOAD:
            raise BadRequestError(f"at most {MAX_CODES_PER_UPLOAD} codes per upload, got {len(codes)}: split the file")
        rejected: list[dict[str, str]] = []
        fresh: list[str] = []
        seen: set[str] = set()
        for raw in codes:
            code = str(raw).strip() if isinstance(raw, str | int) else ""
            if not CODE_RE.match(code):
                rejected.append({"code": str(raw)[:80], "reason": "invalid: letters, digits, - _ . (at most 64)"})
            elif code in seen:
                rejected.append({"code": code, "reason": "duplicate in the upload"})
            else:
                seen.add(code)
                fresh.append(code)
        known = ddb.batch_get(self.ddb, self.table, [(f"CODE#{c}", "C") for c in fresh])
        accepted: list[str] = []
        for code in fresh:
            item = known.get((f"CODE#{code}", "C"))
            if item is not None:
                where = "this pool" if item.get("pool") == pool else f"pool {item.get('pool')!r}"
                rejected.append({"code": code, "reason": f"already in {where}"})
            else:
                accepted.append(code)
        stamp = clock.iso(now)
        puts: list[dict[str, Any]] = []
        for code in accepted:
            puts.append({"pk": f"CODE#{code}", "sk": "C", "code": code, "pool": pool, "discount": discount,
                         "valid_days": days, "status": "available", "uploaded_at": stamp})
            puts.append({"pk": f"POOL#{pool}", "sk": f"A#{code}", "code": code})
        puts.append({"pk": "POOLS", "sk": pool, "pool": pool})
        ddb.batch_write(self.ddb, self.table, puts)
        self.ddb.update_item(
            TableName=self.table, Key=ddb.key(f"POOL#{pool}", "META"),
            UpdateExpression="SET #d = :d, #v = :v, #p = :p, #t = :t ADD #n :n",
            ExpressionAttributeNames={"#d": "discount", "#v": "valid_days", "#p": "pool", "#t": "updated_at",
                                      "#n": "uploaded"},
            ExpressionAttributeValues=ddb.values({":d": discount, ":v": days, ":p": pool, ":t": stamp,
                                                  ":n": len(accepted)}))
        return {**self.stats(pool), "accepted": len(accepted), "rejected": rejected}

    def meta(self, pool: str) -> dict[str, Any] | None:
        return ddb.get(self.ddb, self.table, f"POOL#{pool}", "META")

    def stats(self, pool: str, *, days: int = WINDOW_DAYS, now: datetime | None = None) -> dict[str, Any]:
        """All time (pool codes at the top level, as ever; `fallback` for the signed codes) and `window`: the
        same over the last `days` days (UTC days, today included)."""
        check_pool(pool)
        if not 1 <= days <= MAX_WINDOW_DAYS:
            raise BadRequestError(f"days is between 1 and {MAX_WINDOW_DAYS}, got {days}")
        meta = self.meta(pool)
        if meta is None:
            if pool in DEFAULT_POOLS:
                meta = {}
            else:
                raise NotFoundError(f"no coupon pool {pool!r}: upload codes with POST /admin/coupons/{pool}")
        uploaded = int(meta.get("uploaded") or 0)
        issued = int(meta.get("issued") or 0)
        today = (now or clock.now()).date()
        start = today - timedelta(days=days - 1)
        window: dict[str, Any] = {}
        for row in ddb.query(self.ddb, self.table, f"POOL#{pool}",
                             sk_between=(f"D#{start.isoformat()}", f"D#{today.isoformat()}")):
            for name in (*COUNTERS, *(f"fallback_{c}" for c in COUNTERS)):
                window[name] = window.get(name, 0) + (row.get(name) or 0)
        return {"pool": pool, "discount": meta.get("discount"), "valid_days": meta.get("valid_days"),
                "uploaded": uploaded, "issued": issued, "redeemed": int(meta.get("redeemed") or 0),
                "revenue": _money(meta.get("revenue")), "left": max(0, uploaded - issued),
                "fallback": _counts(meta, "fallback_"),
                "window": {"days": days, "from": start.isoformat(), "to": today.isoformat(), **_counts(window, ""),
                           "fallback": _counts(window, "fallback_")}}

    def all_pools(self, days: int = WINDOW_DAYS) -> list[dict[str, Any]]:
        """The default pools and every pool ever uploaded to (`POOLS` / `<pool>`: one Query)."""
        names = dict.fromkeys([*DEFAULT_POOLS, *(i["sk"] for i in ddb.query(self.ddb, self.table, "POOLS"))])
        return self.pools(list(names), days=days)

    def pools(self, names: list[str], days: int = WINDOW_DAYS) -> list[dict[str, Any]]:
        out = []
        for name in names:
            try:
                out.append(self.stats(name, days=days))
            except NotFoundError:
                continue
        return out

    # ---- issue -------------------------------------------------------------------------------------------
    def issued_for(self, ledger_id: str) -> Coupon | None:
        item = ddb.get(self.ddb, self.table, f"ISSUE#{ledger_id}", "I", consistent=True)
        if item is None:
            return None
        return Coupon(code=item["code"], discount=item["discount"], expires_at=item["expires_at"], pool=item["pool"])

    def issue(self, pool: str, *, customer_id: str, rule: str, entry: str, step: int, variant: str,
              ledger_id: str, now: datetime | None = None) -> Coupon:
        """The code of this send: the one issued before (a retry), else a fresh one from the pool.
        Raises PoolEmptyError when the pool has none left."""
        now = now or clock.now()
        before = self.issued_for(ledger_id)
        if before is not None:
            return before
        tried: set[str] = set()
        for _attempt in range(ISSUE_ATTEMPTS):
            candidates = [c for c in self._available(pool) if c not in tried]
            if not candidates:
                raise PoolEmptyError(pool)
            # spread concurrent senders over the first codes instead of all racing for the first one
            code = candidates[int(hashlib.sha256(ledger_id.encode()).hexdigest(), 16) % len(candidates)]
            tried.add(code)
            item = ddb.get(self.ddb, self.table, f"CODE#{code}", "C", consistent=True) or {}
            discount = str(item.get("discount") or "")
            days = int(item.get("valid_days") or 7)
            expires = clock.iso(now + timedelta(days=days))
            stamp = clock.iso(now)
            issue = {"pk": f"ISSUE#{ledger_id}", "sk": "I", "code": code, "pool": pool, "discount": discount,
                     "expires_at": expires, "customer_id": customer_id, "issued_at": stamp}
            try:
                self.ddb.transact_write_items(TransactItems=[
                    {"Delete": {"TableName": self.table, "Key": ddb.key(f"POOL#{pool}", f"A#{code}"),
                                "ConditionExpression": "attribute_exists(pk)"}},
                    {"Put": {"TableName": self.table, "Item": ddb.serialize(issue),
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                    {"Update": {"TableName": self.table, "Key": ddb.key(f"CODE#{code}", "C"),
                                "UpdateExpression": "SET #s = :issued, customer_id = :c, #r = :r, #e = :e, "
                                                    "#st = :st, #v = :v, ledger_id = :l, issued_at = :t, "
                                                    "expires_at = :x",
                                "ConditionExpression": "#s = :available",
                                "ExpressionAttributeNames": {"#s": "status", "#r": "rule", "#e": "entry",
                                                             "#st": "step", "#v": "variant"},
                                "ExpressionAttributeValues": ddb.values({
                                    ":issued": "issued", ":available": "available", ":c": customer_id, ":r": rule,
                                    ":e": entry, ":st": step, ":v": variant, ":l": ledger_id, ":t": stamp,
                                    ":x": expires})}},
                    *_count_updates(self.table, pool, now, {"issued": 1}),
                ])
            except Exception as exc:
                if ddb.error_code(exc) not in ("TransactionCanceledException", "TransactionConflictException"):
                    raise
                reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
                if len(reasons) > 1 and reasons[1].get("Code") == "ConditionalCheckFailed":
                    won = self.issued_for(ledger_id)  # a concurrent retry of this very send issued first
                    if won is not None:
                        return won
                continue  # the code went to someone else meanwhile: take another
            return Coupon(code=code, discount=discount, expires_at=expires, pool=pool)
        raise PoolEmptyError(pool)

    def issue_fallback(self, secret: bytes, pool: str, *, discount: str, expires_at: datetime, customer_id: str,
                       rule: str, entry: str, step: int, code_step: int, variant: str, ledger_id: str,
                       now: datetime | None = None, registered: bool = False) -> Coupon:
        """The signed fallback code of this send (the recipe above; `code_step` -1 for one code per journey),
        recorded the first time it is issued: its `CODE#` row (so an order naming it redeems it) and the
        pool's `fallback_issued` counters. A retried send makes the same code and counts nothing twice.
        `registered`: the caller read the pool's `META` row (so `POOLS` / `<pool>` exists): the transaction
        leaves the `POOLS` put out (2 write units less per issue); otherwise it registers the pool."""
        now = now or clock.now()
        code = fallback_code(secret, pool=pool, discount=discount, expires_at=expires_at, customer_id=customer_id,
                             rule=rule, entry=entry, step=code_step)
        expires = clock.iso(expires_at)
        row = {"pk": f"CODE#{code}", "sk": "C", "code": code, "pool": pool, "discount": discount, "fallback": True,
               "status": "issued", "customer_id": customer_id, "rule": rule, "entry": entry, "step": step,
               "variant": variant, "ledger_id": ledger_id, "issued_at": clock.iso(now), "expires_at": expires}
        try:
            self.ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table, "Item": ddb.serialize(row),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                *([] if registered else [{"Put": {"TableName": self.table, "Item": ddb.serialize(
                    {"pk": "POOLS", "sk": pool, "pool": pool})}}]),
                *_count_updates(self.table, pool, now, {"fallback_issued": 1}),
            ])
        except Exception as exc:
            # a retry of the same send (or of the same journey's code): issued and counted before
            reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
            if ddb.error_code(exc) != "TransactionCanceledException" or not reasons or \
                    reasons[0].get("Code") != "ConditionalCheckFailed":
                raise
        return Coupon(code=code, discount=discount, expires_at=expires, pool=pool, fallback=True)

    def _available(self, pool: str) -> list[str]:
        resp = self.ddb.query(TableName=self.table, KeyConditionExpression="pk = :p AND begins_with(sk, :a)",
                              ExpressionAttributeValues={":p": {"S": f"POOL#{pool}"}, ":a": {"S": "A#"}},
                              Limit=CANDIDATES, ConsistentRead=True)
        return [str(i["sk"]["S"])[2:] for i in resp.get("Items", [])]

    # ---- redemption --------------------------------------------------------------------------------------
    def redeem(self, code: str, *, order_id: str, revenue: float, customer_id: str,
               now: datetime | None = None) -> dict[str, Any] | None:
        """Mark an issued code redeemed by an order. Returns the code's issue (rule, step, variant, pool …)
        the first time; None for an unknown code, one never issued, or one already redeemed."""
        now = now or clock.now()
        code = str(code).strip()
        if not CODE_RE.match(code):
            return None
        item = ddb.get(self.ddb, self.table, f"CODE#{code}", "C", consistent=True)
        if item is None or item.get("status") != "issued":
            return None
        try:
            self.ddb.update_item(
                TableName=self.table, Key=ddb.key(f"CODE#{code}", "C"),
                UpdateExpression="SET #s = :redeemed, redeemed_at = :t, order_id = :o, #v = :rev, "
                                 "redeemed_by = :c",
                ConditionExpression="#s = :issued", ExpressionAttributeNames={"#s": "status", "#v": "revenue"},
                ExpressionAttributeValues=ddb.values({":redeemed": "redeemed", ":issued": "issued",
                                                      ":t": clock.iso(now), ":o": order_id,
                                                      ":rev": round(float(revenue), 2), ":c": customer_id}))
        except Exception as exc:
            if ddb.is_conditional_failure(exc):
                return None
            raise
        prefix = "fallback_" if item.get("fallback") else ""
        for update in _count_updates(self.table, str(item["pool"]), now,
                                     {f"{prefix}redeemed": 1, f"{prefix}revenue": round(float(revenue), 2)}):
            self.ddb.update_item(**update["Update"])
        return item


def _count_updates(table: str, pool: str, at: datetime, counts: dict[str, float]) -> list[dict[str, Any]]:
    """ADD the counts to the pool's all-time row and to its row of the day (transaction items)."""
    names = {f"#c{i}": name for i, name in enumerate(counts)}
    values = ddb.values({f":c{i}": n for i, n in enumerate(counts.values())})
    expression = "ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(counts)))
    return [{"Update": {"TableName": table, "Key": ddb.key(f"POOL#{pool}", sk), "UpdateExpression": expression,
                        "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}}
            for sk in ("META", f"D#{clock.iso(at)[:10]}")]


def _money(value: Any) -> float:
    return round(float(value or 0), 2)


def _counts(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {"issued": int(row.get(f"{prefix}issued") or 0), "redeemed": int(row.get(f"{prefix}redeemed") or 0),
            "revenue": _money(row.get(f"{prefix}revenue"))}


def fallback_code(secret: bytes, *, pool: str, discount: str, expires_at: datetime, customer_id: str, rule: str,
                  entry: str, step: int) -> str:
    """The signed code of the recipe in the module docstring."""
    prefix = re.sub(r"[^A-Z0-9]", "", pool.upper())[:4] or "CPN"
    amount = discount.replace("%", "P").replace(".", "_").replace(" ", "")
    expiry = expires_at.strftime("%y%m%d")
    nonce = hashlib.sha256(f"{customer_id}|{rule}|{entry}|{step}".encode()).hexdigest()[:6].upper()
    body = f"{prefix}-{amount}-{expiry}-{nonce}"
    sig = base64.b32encode(hmac.new(secret, body.encode(), hashlib.sha256).digest()).decode()[:8]
    return f"{body}-{sig}"


def verify_fallback(secret: bytes, code: str) -> bool:
    body, _, sig = code.rpartition("-")
    expected = base64.b32encode(hmac.new(secret, body.encode(), hashlib.sha256).digest()).decode()[:8]
    return hmac.compare_digest(expected, sig)

"""Demo data: a generated shop (customers, consents, browsing, carts, orders in three shops, refunds,
pickups with storage times, unclaimed orders, complaints) posted through the Segment-compatible
`/v1/batch` with historical timestamps, so the profiles, KPIs, segments and reports have something to show.

Deterministic: the same seed and the same `now` give the same messages, message ids included, so a
second run is a no-op (the engine stores a messageId once). Events older than the history horizon
(24 h by default) update profiles and segments but start no journey, so months of history send
nothing; the last day's events start journeys as live traffic would.

Standard library only (urllib, threads), so it runs against any stack: `make run`, or a deployed API::

    python -m local.demo --url http://127.0.0.1:8787 --write-key dev-write-key --customers 3000

NPS answers go through a survey route, never as raw `NPS Answered` events: with an admin token the
generator rotates the NPS webhook secret (the admin API hands the new one out; the previous one stays
valid) and posts signed answers as an external survey tool would.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

BATCH_SIZE = 100
THREADS = 4
ATTEMPTS = 6
TIMEOUT = 120.0
USER_AGENT = "retention-demo/1"

Progress = Callable[[int, int], Any]

SHOPS: tuple[tuple[str, str, str], ...] = (
    # id, city, timezone
    ("msk-1", "Москва", "Europe/Moscow"),
    ("spb-1", "Санкт-Петербург", "Europe/Moscow"),
    ("ekb-1", "Екатеринбург", "Asia/Yekaterinburg"),
)
SHOP_WEIGHTS = (55, 30, 15)
CURRENCY = "RUB"

FIRST_NAMES: tuple[tuple[str, str], ...] = (
    ("Анна", "anna"), ("Мария", "maria"), ("Елена", "elena"), ("Ольга", "olga"), ("Наталья", "natalia"),
    ("Ирина", "irina"), ("Татьяна", "tatiana"), ("Екатерина", "ekaterina"), ("Светлана", "svetlana"),
    ("Юлия", "yulia"), ("Дарья", "daria"), ("Алина", "alina"), ("Александр", "alexander"), ("Сергей", "sergey"),
    ("Дмитрий", "dmitry"), ("Андрей", "andrey"), ("Алексей", "alexey"), ("Максим", "maxim"), ("Иван", "ivan"),
    ("Михаил", "mikhail"), ("Никита", "nikita"), ("Артём", "artem"), ("Павел", "pavel"), ("Олег", "oleg"),
)
LAST_NAMES = ("ivanov", "petrov", "smirnov", "kuznetsov", "popov", "sokolov", "lebedev", "kozlov", "novikov",
              "morozov", "volkov", "fedorov", "orlov", "egorov", "nikitin", "zakharov")

CATEGORIES: tuple[tuple[str, str, int, int], ...] = (
    # category, product noun, min price, max price (RUB)
    ("electronics", "Наушники", 1490, 12990),
    ("electronics", "Power bank", 990, 4990),
    ("home", "Плед", 890, 3990),
    ("home", "Кружка", 290, 990),
    ("beauty", "Крем", 390, 2490),
    ("kids", "Конструктор", 790, 6990),
    ("clothes", "Футболка", 590, 2990),
    ("clothes", "Кроссовки", 2990, 9990),
    ("books", "Книга", 350, 1490),
    ("sport", "Коврик для йоги", 990, 3490),
)

# (archetype, share of customers, order count range)
ARCHETYPES: tuple[tuple[str, float, tuple[int, int]], ...] = (
    ("browser", 0.34, (0, 0)),
    ("one_timer", 0.30, (1, 1)),
    ("repeat", 0.22, (2, 4)),
    ("loyal", 0.09, (4, 8)),
    ("lapsed", 0.05, (1, 2)),
)
TIMEZONES = ("Europe/Moscow", "Europe/Moscow", "Europe/Moscow", "Asia/Yekaterinburg", "Asia/Novosibirsk",
             "Europe/Kaliningrad", "Asia/Vladivostok")

EMAIL_CONSENT = 0.70
HAS_PHONE = 0.65
SMS_CONSENT = 0.45  # of those with a phone
PICKUP = 0.72  # the rest go by courier
UNCLAIMED = 0.06  # of pickups
REFUNDED = 0.03
CANCELLED = 0.02
COMPLAINT = 0.04
NPS_ANSWER = 0.30  # of picked-up orders, at most one answer per customer per 90 days
NPS_SCORES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
NPS_WEIGHTS = (2, 1, 2, 3, 3, 5, 6, 10, 16, 22, 30)


class DemoError(RuntimeError):
    """The stack refused the demo data (bad write key, bad request) or stayed unreachable."""


# ---------------------------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """What the generator will post: per customer, their messages in time order, plus NPS answers."""

    now: datetime
    seed: int
    customers: list[list[dict[str, Any]]] = field(default_factory=list)
    nps_answers: list[dict[str, Any]] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    revenue: dict[str, float] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(len(c) for c in self.customers)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _catalogue(rng: random.Random) -> list[dict[str, Any]]:
    products = []
    for n in range(40):
        category, noun, low, high = CATEGORIES[n % len(CATEGORIES)]
        price = round(rng.randint(low, high), -1) - 10  # 1490-style prices
        products.append({"product_id": f"p{n + 1:03d}", "sku": f"SKU-{n + 1:05d}", "name": f"{noun} {n + 1}",
                         "category": category, "price": max(price, 90)})
    return products


class _Customer:
    """One customer's messages, in time order; nothing after `now` is kept."""

    def __init__(self, plan: Plan, rng: random.Random, index: int, start: datetime,
                 catalogue: list[dict[str, Any]]) -> None:
        self.plan = plan
        self.rng = rng
        self.uid = f"demo{plan.seed}-c{index:05d}"
        self.catalogue = catalogue
        self.start = start
        self.messages: list[dict[str, Any]] = []
        self.seq = 0
        self.last_nps: datetime | None = None

    def _mid(self, kind: str) -> str:
        self.seq += 1
        return f"{self.uid}-{self.seq:03d}-{kind}"

    def add(self, at: datetime, message: dict[str, Any]) -> None:
        if at > self.plan.now:
            return
        message["userId"] = self.uid
        message["timestamp"] = _iso(at)
        message["context"] = {"library": {"name": "retention-demo", "version": "1"}}
        self.messages.append(message)
        self.plan.stats[message.get("event") or message["type"]] += 1

    def track(self, at: datetime, event: str, properties: dict[str, Any]) -> None:
        self.add(at, {"type": "track", "event": event, "properties": properties,
                      "messageId": self._mid(event.lower().replace(" ", "-"))})

    def identify(self, at: datetime, traits: dict[str, Any]) -> None:
        self.add(at, {"type": "identify", "traits": traits, "messageId": self._mid("identify")})

    # ---- a life ------------------------------------------------------------------------------------
    def live(self) -> list[dict[str, Any]]:
        rng = self.rng
        now = self.plan.now
        span = (now - self.start).total_seconds()
        archetype = rng.choices([a[0] for a in ARCHETYPES], weights=[a[1] for a in ARCHETYPES])[0]
        low, high = next(a[2] for a in ARCHETYPES if a[0] == archetype)
        orders = rng.randint(low, high)
        if archetype == "lapsed":  # bought early, then went quiet
            signup = self.start + timedelta(seconds=span * rng.random() * 0.2)
        else:
            signup = self.start + timedelta(seconds=span * rng.random() ** 0.9)
        self.signup(signup)
        horizon = now if archetype != "lapsed" else min(now, signup + timedelta(days=30))
        home = rng.choices([s[0] for s in SHOPS], weights=SHOP_WEIGHTS)[0]
        sessions = sorted(signup + timedelta(seconds=max(60.0, (horizon - signup).total_seconds()) * rng.random())
                          for _ in range(orders + rng.randint(0 if orders else 1, 2)))
        buying = set(rng.sample(range(len(sessions)), orders)) if orders else set()
        for n, at in enumerate(sessions):
            shop = home if rng.random() < 0.8 else rng.choice(SHOPS)[0]
            self.session(at, buy=n in buying, shop=shop)
        if rng.random() < 0.03:  # a few unsubscribe again
            self.identify(min(now, signup + timedelta(days=rng.uniform(5, 60))),
                          {"email_consent": {"granted": False, "source": "account_settings"}})
        self.plan.stats["customers"] += 1
        self.plan.stats[f"archetype:{archetype}"] += 1
        # as a shop would have sent them: in time order (a pickup days later comes after the next visit)
        self.messages.sort(key=lambda m: m["timestamp"])
        return self.messages

    def signup(self, at: datetime) -> None:
        rng = self.rng
        ru, latin = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        traits: dict[str, Any] = {
            "email": f"{latin}.{last}.{self.uid.rsplit('-c', 1)[1]}@demo.example.com",
            "first_name": ru,
            "locale": "ru" if rng.random() < 0.9 else "en",
            "timezone": rng.choice(TIMEZONES),
            "has_account": rng.random() < 0.6,
            "has_mobile_app": rng.random() < 0.25,
            "preferred_channel": rng.choices(["email", "sms", "push"], weights=[70, 20, 10])[0],
        }
        if rng.random() < 0.03:
            traits["vip"] = True
        if rng.random() < 0.55:
            traits["birthday"] = f"{rng.randint(1960, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        source = rng.choice(["checkout", "signup_form", "popup"])
        if rng.random() < EMAIL_CONSENT:
            traits["email_consent"] = {"granted": True, "source": source, "at": _iso(at),
                                       "evidence": f"{source} checkbox v3"}
            self.plan.stats["email_consent"] += 1
        if rng.random() < HAS_PHONE:
            traits["phone"] = f"+79{rng.randint(0, 999_999_999):09d}"
            if rng.random() < SMS_CONSENT:
                traits["sms_consent"] = {"granted": True, "source": source, "at": _iso(at)}
                self.plan.stats["sms_consent"] += 1
        self.identify(at, traits)
        if traits["has_account"]:
            self.track(at + timedelta(seconds=5), "Signed Up", {"method": source})

    def session(self, at: datetime, *, buy: bool, shop: str) -> None:
        rng = self.rng
        seen = rng.sample(self.catalogue, rng.randint(1, 3))
        t = at
        for product in seen:
            t += timedelta(seconds=rng.randint(20, 240))
            self.track(t, "Product Viewed", {**product, "currency": CURRENCY})
        if not buy and rng.random() > 0.35:
            return
        cart = [dict(p, quantity=rng.choice((1, 1, 1, 2))) for p in rng.sample(seen, rng.randint(1, len(seen)))]
        cart_id = self._mid("cart")
        for product in cart:
            t += timedelta(seconds=rng.randint(10, 90))
            self.track(t, "Product Added", {**product, "cart_id": cart_id, "currency": CURRENCY})
        if not buy and rng.random() > 0.3:
            return  # an abandoned cart
        value = sum(p["price"] * p["quantity"] for p in cart)
        t += timedelta(seconds=rng.randint(30, 300))
        self.track(t, "Checkout Started", {"cart_id": cart_id, "value": value, "currency": CURRENCY,
                                           "products": cart})
        if buy:
            self.order(t + timedelta(seconds=rng.randint(60, 600)), cart, shop)

    def order(self, at: datetime, cart: list[dict[str, Any]], shop: str) -> None:
        rng = self.rng
        plan = self.plan
        order_id = f"demo{plan.seed}-o{self.uid.rsplit('-c', 1)[1]}-{self.seq:03d}"
        revenue = sum(p["price"] * p["quantity"] for p in cart)
        base = {"order_id": order_id, "currency": CURRENCY, "shop": shop}
        self.track(at, "Order Completed", {**base, "revenue": revenue, "products": cart})
        if at > plan.now:
            return
        plan.stats["orders"] += 1
        plan.revenue[shop] = plan.revenue.get(shop, 0) + revenue
        if rng.random() < CANCELLED:
            self.track(at + timedelta(hours=rng.uniform(0.5, 12)), "Order Cancelled", base)
            plan.revenue[shop] -= revenue
            return
        done = at
        if rng.random() < PICKUP:
            ready = at + timedelta(hours=rng.uniform(20, 96))
            self.track(ready, "Order Ready for Pickup", {**base, "pickup_point": f"{shop}-pp{rng.randint(1, 9)}"})
            if rng.random() < UNCLAIMED:
                self.track(ready + timedelta(days=7), "Order Unclaimed", base)
                if ready + timedelta(days=7) <= plan.now:
                    plan.stats["unclaimed"] += 1
                return
            # storage time at the pickup point: most the same or next day, a tail up to six days
            done = ready + timedelta(hours=min(144.0, rng.expovariate(1 / 26) + 0.5))
            self.track(done, "Order Picked Up", base)
            if done <= plan.now:
                plan.stats["picked_up"] += 1
                self.maybe_nps(done, shop)
        else:
            shipped = at + timedelta(hours=rng.uniform(6, 48))
            self.track(shipped, "Order Shipped", {**base, "carrier": rng.choice(["cdek", "boxberry", "courier"])})
            done = shipped + timedelta(days=rng.uniform(1, 4))
        if rng.random() < REFUNDED:
            refund_at = done + timedelta(days=rng.uniform(1, 10))
            partial = len(cart) > 1 and rng.random() < 0.4
            amount = cart[0]["price"] * cart[0]["quantity"] if partial else revenue
            self.track(refund_at, "Order Refunded", {**base, "revenue": amount, "reason": "customer_return"})
            if refund_at <= plan.now:
                plan.stats["refunds"] += 1
                plan.revenue[shop] -= amount
        if rng.random() < COMPLAINT:
            opened = done + timedelta(days=rng.uniform(0.2, 5))
            ticket = f"{order_id}-t"
            self.track(opened, "Complaint Opened", {**base, "complaint_id": ticket,
                                                    "topic": rng.choice(["delay", "damaged", "wrong_item"])})
            if rng.random() < 0.8:
                self.track(opened + timedelta(days=rng.uniform(0.5, 6)), "Complaint Resolved",
                           {**base, "complaint_id": ticket})

    def maybe_nps(self, picked_up: datetime, shop: str) -> None:
        rng = self.rng
        if rng.random() >= NPS_ANSWER:
            return
        at = picked_up + timedelta(days=1, hours=rng.uniform(0.5, 48))
        if at > self.plan.now or (self.last_nps and at - self.last_nps < timedelta(days=90)):
            return
        self.last_nps = at
        score = rng.choices(NPS_SCORES, weights=NPS_WEIGHTS)[0]
        answer: dict[str, Any] = {"event_id": f"{self.uid}-nps-{self.seq:03d}", "userId": self.uid,
                                  "score": score, "survey": f"nps-pickup-{_iso(at)[:7]}", "stage": "pickup",
                                  "shop": shop, "timestamp": _iso(at)}
        if score <= 6 and rng.random() < 0.6:
            answer["comment"] = rng.choice(["Долго ждал выдачи", "Пункт выдачи был закрыт",
                                            "Курьер опоздал", "Упаковка повреждена"])
        elif score >= 9 and rng.random() < 0.3:
            answer["comment"] = rng.choice(["Всё быстро, спасибо!", "Удобный пункт выдачи", "Отличный магазин"])
        self.plan.nps_answers.append(answer)


def build(*, customers: int = 3000, months: int = 4, seed: int = 7, now: datetime | None = None) -> Plan:
    """The demo shop as data: per customer, messages in time order (pure: no I/O, no clock)."""
    if customers < 0 or months < 1:
        raise ValueError("customers >= 0 and months >= 1")
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    rng = random.Random(seed)
    catalogue = _catalogue(rng)
    plan = Plan(now=now, seed=seed)
    start = now - timedelta(days=30 * months)
    for index in range(customers):
        # one generator per customer, derived from the seed: a customer's life does not depend on others
        person = random.Random(f"{seed}:{index}")
        plan.customers.append(_Customer(plan, person, index, start, catalogue).live())
    plan.revenue = {shop: round(total, 2) for shop, total in sorted(plan.revenue.items())}
    return plan


def batches(per_customer: Iterable[list[dict[str, Any]]], size: int = BATCH_SIZE) -> list[list[list[dict[str, Any]]]]:
    """Jobs of batches: a customer's messages stay together (one profile write per batch, in order); a
    customer with more than `size` messages spans several batches of one job, sent one after another."""
    jobs: list[list[list[dict[str, Any]]]] = []
    current: list[dict[str, Any]] = []
    for messages in per_customer:
        if not messages:
            continue
        if len(messages) > size:
            jobs.append([messages[i:i + size] for i in range(0, len(messages), size)])
            continue
        if len(current) + len(messages) > size:
            jobs.append([current])
            current = []
        current = current + messages
    if current:
        jobs.append([current])
    return jobs


# ---------------------------------------------------------------------------------------------- HTTP


def _request(url: str, body: bytes | None, headers: dict[str, str],
             method: str = "POST") -> tuple[int, Any, dict[str, str]]:
    if not url.startswith(("http://", "https://")):
        raise DemoError(f"the stack URL must be http(s), got {url!r}")
    req = urllib.request.Request(url, data=body, method=method,  # noqa: S310 - http(s) only, checked above
                                 headers={"User-Agent": USER_AGENT, **headers})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310 - http(s) only, checked above
            raw, status, hdrs = resp.read(), resp.status, dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        raw, status, hdrs = exc.read(), exc.code, dict(exc.headers.items())
    try:
        return status, json.loads(raw or b"null"), hdrs
    except ValueError:
        return status, raw.decode("utf-8", "replace"), hdrs


def _send(url: str, body: bytes, headers: dict[str, str], *, ok: tuple[int, ...] = (200,)) -> tuple[int, Any]:
    """POST with retries on 429 (honouring Retry-After), 5xx and network errors; other answers return."""
    delay = 0.5
    last = ""
    for attempt in range(ATTEMPTS):
        try:
            status, reply, hdrs = _request(url, body, headers)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            status, reply, hdrs = 0, None, {}
            last = f"{type(exc).__name__}: {exc}"
        if status in ok or (400 <= status < 500 and status != 429):
            return status, reply
        if status:
            last = f"HTTP {status}: {reply}"
        if attempt + 1 < ATTEMPTS:
            wait = delay
            retry_after = {k.lower(): v for k, v in hdrs.items()}.get("retry-after")
            if retry_after and retry_after.isdigit():
                wait = max(wait, float(retry_after))
            time.sleep(wait)
            delay = min(delay * 2, 8.0)
    raise DemoError(f"{url} did not accept the demo data after {ATTEMPTS} attempts ({last})")


def _error(status: int, reply: Any) -> str:
    if isinstance(reply, dict):
        return f"HTTP {status} {reply.get('code', '')}: {reply.get('message', reply)}"
    return f"HTTP {status}: {str(reply)[:300]}"


def server_now(url: str) -> datetime:
    """The stack's clock: the local runtime's virtual clock when it has one, else this machine's."""
    try:
        status, reply, _ = _request(url.rstrip("/") + "/_local/clock", None, {}, method="GET")
        if status == 200 and isinstance(reply, dict) and reply.get("now"):
            return datetime.fromisoformat(str(reply["now"]).replace("Z", "+00:00")).astimezone(UTC)
    except (urllib.error.URLError, OSError, TimeoutError, ValueError):
        pass
    return datetime.now(UTC)


def _sign(body: bytes, secret: str, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


# ---------------------------------------------------------------------------------------------- generate


def generate(url: str, write_key: str, *, customers: int = 3000, months: int = 4, seed: int = 7,
             progress: Progress | None = None, now: datetime | None = None,
             admin_token: str | None = None) -> dict[str, Any]:
    """Post a generated shop to the stack at `url` through `/v1/batch` (HTTP Basic, the write key as user
    name); 100 messages per request, 4 requests in flight. `now` defaults to the stack's clock (the
    virtual clock of the local runtime). With `admin_token`, NPS answers go through the signed webhook
    too (the webhook secret is rotated to get one). `progress(done, total)` is called after each request
    with counts of messages (NPS answers included). Returns a summary; raises DemoError when the stack
    refuses the data (bad key) or stays unreachable."""
    base = url.rstrip("/")
    stack_now = server_now(base)
    plan = build(customers=customers, months=months, seed=seed, now=now or stack_now)
    jobs = batches(plan.customers)
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": auth}
    total = plan.events + (len(plan.nps_answers) if admin_token else 0)
    lock = threading.Lock()
    summary: dict[str, Any] = {"requests": 0, "accepted": 0, "rejected": [], "rejected_count": 0,
                               "nps_recorded": 0, "nps_replayed": 0}
    done = 0

    def advanced(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    def post(batch: list[dict[str, Any]]) -> None:
        body = json.dumps({"batch": batch}, ensure_ascii=False, separators=(",", ":")).encode()
        status, reply = _send(f"{base}/v1/batch", body, headers)
        if status != 200 or not isinstance(reply, dict):
            raise DemoError(f"/v1/batch refused the demo data: {_error(status, reply)}")
        with lock:
            summary["requests"] += 1
            summary["accepted"] += int(reply.get("accepted", 0))
            for item in reply.get("rejected") or []:
                if len(summary["rejected"]) < 20:
                    summary["rejected"].append(item)
            summary["rejected_count"] += len(reply.get("rejected") or [])
            advanced(len(batch))

    def run(job: list[list[dict[str, Any]]]) -> None:
        for batch in job:  # in order: a long history goes out oldest first
            post(batch)

    _in_parallel(run, jobs)

    if admin_token and plan.nps_answers:
        secret = _webhook_secret(base, admin_token)
        # signatures carry the stack's time (the local runtime's clock is virtual), read again now
        offset = server_now(base).timestamp() - time.time()

        def answer(item: dict[str, Any]) -> None:
            body = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()
            t = int(time.time() + offset)
            status, reply = _send(f"{base}/v1/webhooks/nps", body,
                                  {"Content-Type": "application/json", "X-Signature": _sign(body, secret, t)},
                                  ok=(200, 409))
            with lock:
                if status == 200:
                    summary["nps_recorded"] += 1
                elif status == 409:
                    summary["nps_replayed"] += 1  # a second run: already recorded
                else:
                    raise DemoError(f"/v1/webhooks/nps refused an answer: {_error(status, reply)}")
                advanced(1)

        _in_parallel(answer, plan.nps_answers)

    return {
        "url": base,
        "seed": seed,
        "now": _iso(plan.now),
        "from": _iso(plan.now - timedelta(days=30 * months)),
        "customers": plan.stats["customers"],
        "events": plan.events,
        "orders": plan.stats["orders"],
        "refunds": plan.stats["refunds"],
        "picked_up": plan.stats["picked_up"],
        "unclaimed": plan.stats["unclaimed"],
        "complaints": plan.stats["Complaint Opened"],
        "email_consent": plan.stats["email_consent"],
        "sms_consent": plan.stats["sms_consent"],
        "revenue": plan.revenue,
        "currency": CURRENCY,
        "shops": [s[0] for s in SHOPS],
        "nps_answers": len(plan.nps_answers) if admin_token else 0,
        **summary,
    }


def _in_parallel(fn: Callable[[Any], None], items: list[Any]) -> None:
    if not items:
        return
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()  # the first failure stops the run with its message


def _webhook_secret(base: str, admin_token: str) -> str:
    status, reply, _ = _request(f"{base}/admin/webhooks/nps/rotate", b"{}",
                                {"Content-Type": "application/json", "Authorization": f"Bearer {admin_token}"})
    if status != 200 or not isinstance(reply, dict) or not reply.get("secret"):
        raise DemoError(f"could not get an NPS webhook secret: {_error(status, reply)}")
    return str(reply["secret"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Post a generated demo shop to a retention stack")
    parser.add_argument("--url", default="http://127.0.0.1:8787")
    parser.add_argument("--write-key", default="dev-write-key")
    parser.add_argument("--admin-token", default=None, help="also post NPS answers through the signed webhook")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--months", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    last = [0.0]

    def show(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 2 or done == total:
            last[0] = time.monotonic()
            print(f"\r  demo data: {done}/{total} messages", end="", file=sys.stderr, flush=True)

    try:
        result = generate(args.url, args.write_key, customers=args.customers, months=args.months, seed=args.seed,
                          progress=show, admin_token=args.admin_token)
    except DemoError as exc:
        print(f"\ndemo data failed: {exc}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Section 1: AWS requests and DynamoDB capacity units per ingested event, per journey step, per sent
email and SMS and per segment re-check — the library on moto in process, the scenario library applied,
every request counted by botocore hooks (bench.meter.Meter).

Configuration reads are cached per Lambda container for 30 s (retention.core.config.CACHE_SECONDS); the
per-unit numbers are taken with warm caches and the refresh is reported on its own row."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.meter import LEDGER_INDEX, Meter, moto_backend, patch_moto_transactions

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
BATCH = 100
SINGLE = 20
SOURCE = "src_bench"
SEND_BATCH_SIZE = 10  # the send queue's event source mapping (infra/stack.py SEND_BATCH_SIZE)


def _stamped(msg: dict[str, Any]) -> dict[str, Any]:
    """A message as the real clients send it: with the client's own `timestamp` (analytics-python; Rudder's
    `originalTimestamp`), taken when the event happens (the bench's clock), and a `sentAt` at flush (the
    batch's, `Bench.ingest`). The raw event is keyed by it (retention.ingestion.ingestor.event_key_at)."""
    from retention.core import clock
    return {**msg, "timestamp": clock.iso(clock.now())}


def _identify(uid: str, **traits: Any) -> dict[str, Any]:
    t = {"email": f"{uid}@example.com", "email_consent": True, "first_name": "Анна", "timezone": "Europe/Moscow",
         **traits}
    return _stamped({"type": "identify", "userId": uid, "messageId": f"id-{uid}-{len(traits)}", "traits": t})


def _track(uid: str, event: str, mid: str, **props: Any) -> dict[str, Any]:
    return _stamped({"type": "track", "userId": uid, "event": event, "messageId": mid, "properties": props,
                     "context": {"ip": "203.0.113.7", "library": {"name": "analytics-python", "version": "2.4.0"}}})


def event_kinds() -> dict[str, Any]:
    """label -> (prefix of the customers, message factory(uid, i)); the same payloads feed bench.cpu."""
    return {
        "track (plain: no rule, no product)": (
            "pt", lambda uid, i: _track(uid, "Store Visited", f"pt-{uid}-{i}", store="moscow-1", minutes=12)),
        "identify (known customer, traits change)": (
            "ik", lambda uid, i: _stamped({"type": "identify", "userId": uid, "messageId": f"ik-{uid}-{i}",
                                           "traits": {"first_name": "Мария", "vip": i % 2 == 0, "city": "Москва"}})),
        "identify (new customer: email + consent)": (
            "in", lambda uid, i: _stamped({"type": "identify", "userId": f"{uid}-new", "messageId": f"in-{uid}-{i}",
                                           "traits": {"email": f"{uid}-new@example.com", "email_consent": True,
                                                      "first_name": "Ольга", "phone": "+79161234567"}})),
        "Order Completed (2 products)": (
            "oc", lambda uid, i: _track(uid, "Order Completed", f"oc-{uid}-{i}", order_id=f"o-{uid}-{i}",
                                        revenue=2580, currency="RUB", shop="moscow-1",
                                        products=[{"product_id": "p1", "price": 1290, "quantity": 1},
                                                  {"product_id": "p2", "price": 1290, "quantity": 1}])),
        "Product Viewed": (
            "pv", lambda uid, i: _track(uid, "Product Viewed", f"pv-{uid}-{i}", product_id=f"p{i % 50}",
                                        name="Кроссовки", price=5990, currency="RUB", category="shoes")),
        # the same customers' next view, of another product: their browse-abandonment journey runs already and
        # their potential segment (warm) stays: what most views of a browsing session are
        "Product Viewed (repeat)": (
            "pv", lambda uid, i: _track(uid, "Product Viewed", f"pvr-{uid}-{i}", product_id=f"p{(i + 7) % 50}",
                                        name="Кеды", price=4990, currency="RUB", category="shoes")),
    }


class Bench:
    def __init__(self, stack: Any, meter: Meter) -> None:
        from retention.ingestion.ingestor import Ingestor
        self.s = stack
        self.meter = meter
        d = stack.deps
        # one worker: the same requests as the deployed 8 (customers are independent), in a deterministic order
        self.ingestor = Ingestor(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config, workers=1)

    def ingest(self, messages: list[dict[str, Any]]) -> Any:
        from retention.core import clock
        from retention.ingestion import wire
        body = {"batch": messages, "sentAt": clock.iso(clock.now())}
        parsed = wire.parse_request("batch", json.dumps(body).encode(), clock.now())
        assert not parsed.rejected, parsed.rejected
        return self.ingestor.ingest(parsed.messages, SOURCE)

    def drain(self) -> list[tuple[Any, Any, dict[str, Any]]]:
        """Send every queued request in SQS batches of SEND_BATCH_SIZE, as send_message gets them (the batch's
        counter rows are written once at its end: Sender.batch); per request the meter's snapshot of that send
        plus an equal share of its batch's counter writes."""
        out = []
        requests = self.s.queued_sends()
        sender = self.s.sender()
        for start in range(0, len(requests), SEND_BATCH_SIZE):
            chunk = requests[start:start + SEND_BATCH_SIZE]
            sends = []
            with sender.batch():
                for r in chunk:
                    self.meter.reset()
                    outcome = sender.send(r)
                    sends.append((r, outcome, self.meter.snapshot()))
                self.meter.reset()
            share = _scaled(self.meter.snapshot(), 1 / len(chunk))
            out += [(r, outcome, _sum_snaps([snap, share])) for r, outcome, snap in sends]
        return out


def _per(snap: dict[str, Any], n: int) -> dict[str, Any]:
    calls = snap["calls"]
    def total(prefix: str, ops: tuple[str, ...] | None = None) -> int:
        return sum(v for k, v in calls.items() if k.startswith(prefix) and (ops is None or k.split(".", 1)[1] in ops))
    from bench.meter import DDB_READS, DDB_WRITES
    ddb_r = total("dynamodb.", DDB_READS)
    ddb_w = total("dynamodb.", DDB_WRITES)
    other = sum(v for k, v in calls.items() if not k.startswith("dynamodb."))
    return {"units": n, "ddb_read_requests": ddb_r / n, "ddb_write_requests": ddb_w / n,
            "other_requests": other / n, "total_requests": (ddb_r + ddb_w + other) / n,
            "wru": snap["wru"] / n, "rru": snap["rru"] / n, "items_read": snap["items_read"] / n,
            "by_operation": {k: v / n for k, v in calls.items()},
            "wru_by_table": {k.removeprefix("test-"): v / n for k, v in snap["wru_by_table"].items()}}


def _scaled(snap: dict[str, Any], factor: float) -> dict[str, Any]:
    return {"calls": {k: v * factor for k, v in snap["calls"].items()}, "wru": snap["wru"] * factor,
            "rru": snap["rru"] * factor, "items_read": snap["items_read"] * factor,
            "wru_by_table": {k: v * factor for k, v in snap["wru_by_table"].items()}}


def _sum_snaps(snaps: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": {}, "wru": 0.0, "rru": 0.0, "items_read": 0, "wru_by_table": {}}
    for s in snaps:
        for k, v in s["calls"].items():
            out["calls"][k] = out["calls"].get(k, 0) + v
        for k, v in s["wru_by_table"].items():
            out["wru_by_table"][k] = out["wru_by_table"].get(k, 0) + v
        out["wru"] += s["wru"]
        out["rru"] += s["rru"]
        out["items_read"] += s["items_read"]
    return out


def run(log: Any = print) -> dict[str, Any]:
    import retention.core.config as rconfig
    from retention.core import clock
    from retention.schedule import due

    from tests.support import moto_stack

    patch_moto_transactions()
    started = time.perf_counter()
    rows: dict[str, Any] = {}
    notes: list[str] = []
    clock.set_now(T0)
    saved_cache = rconfig.CACHE_SECONDS
    rconfig.CACHE_SECONDS = 1e9  # warm caches during a measurement; the refresh is measured below
    try:
        with moto_stack() as s:
            meter = Meter(backend=moto_backend, gsi_keys={s.tables["messages"]: LEDGER_INDEX})
            d = s.deps
            for client in (d.dynamodb, d.sqs, d.sesv2, d.sns):
                meter.attach(client)
            s.apply_library()
            b = Bench(s, meter)
            kinds = event_kinds()
            # customers of every group exist (identified, email consent) before the measured events
            setup = []
            for prefix in dict.fromkeys(prefix for prefix, _ in kinds.values()):
                setup += [_identify(f"{prefix}{i}") for i in range(BATCH + SINGLE)]
            for start in range(0, len(setup), 100):
                b.ingest(setup[start:start + 100])
            b.drain()
            b.ingest([_track("warm0", "Store Visited", "warm-0")])  # definitions parsed, caches warm
            b.drain()
            log(f"  requests: setup {time.perf_counter() - started:.1f}s")

            # ---- ingested events: one batch of 100 distinct customers, then single-message requests
            for label, (prefix, make) in kinds.items():
                meter.reset()
                res = b.ingest([make(f"{prefix}{i}", i) for i in range(BATCH)])
                assert res.accepted == BATCH, res
                rows[f"{label} — batch of 100"] = {**_per(meter.snapshot(), BATCH), "sends": res.sends,
                                                   "group": "ingest", "event": label, "mode": "batch"}
                b.drain()
                snaps = []
                for i in range(BATCH, BATCH + SINGLE):
                    meter.reset()
                    b.ingest([make(f"{prefix}{i}", i)])
                    snaps.append(meter.snapshot())
                rows[f"{label} — single"] = {**_per(_sum_snaps(snaps), SINGLE), "group": "ingest", "event": label,
                                             "mode": "single"}
                b.drain()
            # the written items of a plain event, for the storage estimate
            meter.reset()
            b.ingest([kinds["track (plain: no rule, no product)"][1]("pt0", 999)])
            item_sizes = {k.removeprefix("test-"): v for k, v in meter.item_sizes.items()}
            b.drain()
            log(f"  requests: ingest rows {time.perf_counter() - started:.1f}s")

            # ---- journeys: 100 sign-ups start the welcome chain; its first emails are measured sends
            meter.reset()
            b.ingest([_identify(f"w{i}") for i in range(BATCH)])
            b.ingest([_track(f"w{i}", "Signed Up", f"su-{i}") for i in range(BATCH)])
            emails = [x for x in b.drain() if x[0].channel == "email"]
            clock.set_now(T0 + timedelta(minutes=1))
            s.ticker().tick()  # the watermark
            b.drain()
            # the sends' sweeper reminders come due (15 min after each claim): a ledger read and a delete each
            clock.set_now(T0 + timedelta(minutes=20))
            meter.reset()
            result = s.ticker().tick()
            rows["send reminder sweep (tick, per sent message)"] = {
                **_per(meter.snapshot(), max(1, result.due_items)), "group": "tick", "due_items": result.due_items}
            b.drain()
            # a day later: the welcome (and browse-abandonment) waits are due
            clock.set_now(T0 + timedelta(days=1, minutes=5))
            meter.reset()
            result = s.ticker().tick()
            tick_snap = meter.snapshot()
            rows["journey step (tick advancing one journey)"] = {
                **_per(tick_snap, max(1, result.due_items)), "group": "tick", "due_items": result.due_items,
                "customers": result.customers, "sends": result.sends}
            emails += [x for x in b.drain() if x[0].channel == "email"]
            sent = [x for x in emails if x[1].status == "sent"]
            skipped = [x for x in emails if x[1].status != "sent"]
            rows["sent email (send_message)"] = {**_per(_sum_snaps([x[2] for x in sent]), max(1, len(sent))),
                                                 "group": "send", "samples": len(sent),
                                                 "templates": sorted({x[0].template for x in sent})}
            if skipped:
                rows["email not sent (skipped: consent, cap, holdout …)"] = {
                    **_per(_sum_snaps([x[2] for x in skipped]), len(skipped)), "group": "send",
                    "samples": len(skipped), "reasons": sorted({str(x[1].reason) for x in skipped})}

            # stored sizes of what a send leaves (ledger) and of a profile after a few events, for storage
            from retention.customers.store import profile_pk
            from retention.messaging.requests import LEDGER_PREFIX

            from bench.meter import item_size
            mtable = moto_backend().get_table(d.env.messages_table)
            ledgers = [it.to_json()["Attributes"] for part in mtable.items.values() for it in part.values()
                       if next(iter(it.to_json()["Attributes"]["pk"].values())).startswith(LEDGER_PREFIX)]
            stored_bytes = {"ledger": sum(item_size(x) for x in ledgers) / max(1, len(ledgers)),
                            # the keys-only by_customer index's entry: the index keys and the table keys
                            "ledger_index": sum(item_size({k: v for k, v in x.items() if k in (
                                "pk", "sk", "customer_id", "created_at")}) for x in ledgers) / max(1, len(ledgers))}
            ptable = moto_backend().get_table(d.env.profiles_table)
            per_customer: dict[str, int] = {}
            for part in ptable.items.values():
                for it in part.values():
                    attrs = it.to_json()["Attributes"]
                    pk = attrs["pk"]["S"]
                    if pk.startswith(profile_pk("w")):  # the welcome customers: profile, journey, history rows
                        per_customer[pk] = per_customer.get(pk, 0) + item_size(attrs)
            stored_bytes["customer_rows"] = sum(per_customer.values()) / max(1, len(per_customer))

            # ---- SES feedback (configuration set → SNS → feedback): a Delivery for every sent email, an Open
            from retention.messaging.feedback import Feedback
            fb = Feedback(d)
            for kind, sample in (("Delivery", sent), ("Open", sent[:40])):
                snaps = []
                for req, outcome, _ in sample:
                    note = {"eventType": kind, "mail": {"messageId": outcome.provider_id, "destination": ["x"],
                                                        "tags": {"ledger": [req.ledger_id]}},
                            kind.lower(): {}}
                    meter.reset()
                    fb.handle(note)
                    snaps.append(meter.snapshot())
                rows[f"SES feedback: {kind} (feedback function)"] = {
                    **_per(_sum_snaps(snaps), max(1, len(snaps))), "group": "feedback", "samples": len(snaps)}

            # ---- segment re-checks: 100 SEGMENT due items (a membership deadline), one tick
            t1 = clock.now()
            items = [due.DueItem(at=t1 + timedelta(minutes=3), kind="SEGMENT", customer_id=f"pt{i}", ref="segments")
                     for i in range(BATCH)]
            due.put(d.dynamodb, d.env.due_table, items, d.env.due_shards)
            clock.set_now(t1 + timedelta(minutes=5))
            meter.reset()
            result = s.ticker().tick()
            rows["segment re-check (SEGMENT due item, tick)"] = {
                **_per(meter.snapshot(), max(1, result.due_items)), "group": "tick", "due_items": result.due_items}
            b.drain()
            clock.set_now(clock.now() + timedelta(minutes=1))
            meter.reset()
            result = s.ticker().tick()
            rows["empty tick (nothing due; per minute)"] = {**_per(meter.snapshot(), 1), "group": "tick",
                                                            "due_items": result.due_items}

            # ---- the nightly recompute (safety net): a parallel scan of the profiles table + a re-check each
            from local.scans import recompute_all
            meter.reset()
            rec = recompute_all(d, "nightly")
            snap = meter.snapshot()
            # a Scan is billed for every item it reads, filtered out or not (journeys, history, aliases, e-mail
            # index, product interest rows): the meter only sees the returned (projected) ones
            from bench.meter import item_size, read_units
            table = moto_backend().get_table(d.env.profiles_table)
            scanned = [it.to_json()["Attributes"] for part in table.items.values() for it in part.values()]
            scan_rru = 0.5 * read_units(sum(item_size(it) for it in scanned))
            returned_rru = 0.5 * sum(1 for k in snap["calls"] if k == "dynamodb.Scan")
            snap["rru"] += scan_rru - returned_rru
            rows["nightly recompute (per stored customer)"] = {
                **_per(snap, max(1, rec.profiles)), "group": "fixed", "profiles": rec.profiles,
                "profiles_table_items": len(scanned)}
            b.drain()

            # ---- SMS: order-status is transactional and follows the preferred channel
            b.ingest([_identify(f"sms{i}", phone=f"+7916{i:07d}", sms_consent=True, preferred_channel="sms")
                      for i in range(50)])
            b.drain()
            b.ingest([_track(f"sms{i}", "Order Shipped", f"sh-{i}", order_id=f"os-{i}", carrier="CDEK",
                             tracking_url="https://cdek.example/t/1") for i in range(50)])
            sms = [x for x in b.drain() if x[1].status == "sent"]
            sms_sent = [x for x in sms if x[2]["calls"].get("sns.Publish")]
            rows["sent SMS (send_message)"] = {**_per(_sum_snaps([x[2] for x in sms_sent]), max(1, len(sms_sent))),
                                               "group": "send", "samples": len(sms_sent)}
            if not sms_sent:
                notes.append("no SMS was sent in the SMS scenario: check order-status / preferred channel")

            # ---- the configuration refresh (every 30 s per warm container)
            rconfig.ConfigStore.invalidate()
            meter.reset()
            b.ingest([_track("pt1", "Store Visited", "refresh-1")])
            cold = meter.snapshot()
            meter.reset()
            b.ingest([_track("pt2", "Store Visited", "refresh-2")])
            warm = meter.snapshot()
            extra = {k: v - warm["calls"].get(k, 0) for k, v in cold["calls"].items() if v - warm["calls"].get(k, 0)}
            rows["config refresh (per container, every 30 s)"] = {
                "group": "fixed", "units": 1, "total_requests": sum(extra.values()), "by_operation": extra,
                "ddb_read_requests": sum(extra.values()), "ddb_write_requests": 0, "other_requests": 0,
                "wru": 0.0, "rru": cold["rru"] - warm["rru"], "items_read": cold["items_read"] - warm["items_read"]}
            log(f"  requests: journeys, sends, ticks {time.perf_counter() - started:.1f}s")
    finally:
        rconfig.CACHE_SECONDS = saved_cache
        clock.reset()
    avg_sizes = {t: (sum(v) / len(v) if v else 0) for t, v in item_sizes.items()}
    return {"rows": rows, "plain_event_item_bytes": avg_sizes, "stored_bytes": stored_bytes, "notes": notes,
            "elapsed_s": round(time.perf_counter() - started, 1)}


if __name__ == "__main__":
    import pprint
    pprint.pprint(run())

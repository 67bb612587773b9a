"""Counters summed per SQS batch (issue 17's write units): send_message writes each distinct daily counter row
(`S#<rule>`) and the send brake's hourly row (`BRAKE#`) once per batch with the summed deltas, after the records
are done; a failed record does not stop the others from counting, a redelivered one counts once;
the brake still stops marketing mid-batch and sees the batch's unwritten sends; a fallback coupon registers
its pool (`POOLS`) once, not at every issue."""

from __future__ import annotations

import json
from typing import Any

import pytest
from retention.core import clock, ddb
from retention.messaging.brake import Brake

from tests.integration.test_send_handler import invoke, put, receive
from tests.integration.test_sender import FaultySES, apply, customer, emails, ledger, request, sender, totals
from tests.support import load_handler

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


class RecordingDynamo:
    """The moto client, recording the keys of UpdateItem calls and the items of transactions."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.updates: list[tuple[str, str]] = []
        self.transactions: list[list[dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def update_item(self, **kwargs: Any) -> Any:
        key = ddb.deserialize(kwargs["Key"])
        self.updates.append((str(key["pk"]), str(key["sk"])))
        return self.real.update_item(**kwargs)

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.transactions.append(kwargs["TransactItems"])
        return self.real.transact_write_items(**kwargs)

    def counter_updates(self, prefix: str) -> list[tuple[str, str]]:
        return [k for k in self.updates if k[0].startswith(prefix)]


@pytest.fixture(scope="module")
def send_handler() -> Any:
    return load_handler("send_message")


@pytest.fixture
def s(stack: Any) -> Any:
    for i in range(5):
        customer(stack, f"u{i}", email=f"u{i}@example.com")
    apply(stack)
    return stack


def recording(stack: Any) -> RecordingDynamo:
    rec = RecordingDynamo(stack.deps.dynamodb)
    stack.deps.dynamodb = rec
    return rec


def brake_sent(stack: Any, identity: str = "example.com") -> int:
    rows = ddb.query(stack.deps.dynamodb, stack.deps.env.messages_table, f"BRAKE#{identity}#0")
    return sum(int(r.get("sent") or 0) for r in rows)


def test_n_sends_of_one_step_are_one_counter_update_with_plus_n(s: Any, send_handler: Any) -> None:
    reqs = [request(f"u{i}") for i in range(5)]
    put(s, [r.model_dump_json() for r in reqs])
    msgs = receive(s)
    rec = recording(s)
    assert invoke(send_handler, msgs) == set()
    assert len(emails()) == 5
    assert len(rec.counter_updates("S#promo#")) == 1  # one UpdateItem for the five sends …
    assert totals(s, "promo") == {"sent": 5}  # … with +5
    assert len(rec.counter_updates("BRAKE#")) == 1 and brake_sent(s) == 5  # the brake's hourly row too
    # the skipped ones sum the same way: +2 `suppressed`, one more row (other rule) and one write
    customer(s, "n1", email="n1@example.com", consent=False)
    customer(s, "n2", email="n2@example.com", consent=False)
    put(s, [request(uid, rule="promo-b").model_dump_json() for uid in ("n1", "n2")])
    rec.updates.clear()
    assert invoke(send_handler, receive(s)) == set()
    assert len(rec.counter_updates("S#promo-b#")) == 1 and not rec.counter_updates("BRAKE#")
    assert totals(s, "promo-b") == {"suppressed": 2, "suppressed:no_consent": 2}


def test_rows_of_different_steps_and_rules_are_written_apart(s: Any, send_handler: Any) -> None:
    put(s, [request("u0").model_dump_json(), request("u1").model_dump_json(),
            request("u2", rule="promo-b").model_dump_json(), request("u3", variant="b").model_dump_json()])
    rec = recording(s)
    assert invoke(send_handler, receive(s)) == set()
    rows = {k[1].split("#", 1)[1] for k in rec.counter_updates("S#")}
    assert len(rec.counter_updates("S#")) == 3 and rows == {"0000#default", "0000#b"}  # promo ×2 rows, promo-b
    assert totals(s, "promo") == {"sent": 3} and totals(s, "promo-b") == {"sent": 1}
    assert len(rec.counter_updates("BRAKE#")) == 1 and brake_sent(s) == 4


def test_a_failing_record_does_not_stop_the_others_from_counting(s: Any, send_handler: Any) -> None:
    ok = [request(f"u{i}") for i in range(3)]
    throttled = request("u4")
    put(s, [ok[0].model_dump_json(), throttled.model_dump_json(), "poison", ok[1].model_dump_json(),
            ok[2].model_dump_json()])
    msgs = receive(s)
    by_ledger = {json.loads(m["Body"]).get("customer_id") if m["Body"] != "poison" else "poison": m["MessageId"]
                 for m in msgs}
    # SES throttles the second send three times (the in-process retries): that record fails
    s.deps.sesv2 = FaultySES(s.deps.sesv2, "ok", "throttle", "throttle", "throttle")
    failed = invoke(send_handler, msgs)
    assert failed == {by_ledger["u4"], by_ledger["poison"]}
    assert totals(s, "promo") == {"sent": 3} and brake_sent(s) == 3
    assert ledger(s, throttled)["status"] == "retry"


def test_near_the_timeout_the_counters_are_written_after_each_record(s: Any) -> None:
    from retention.messaging.delivery import SendWorker

    from tests.integration.test_send_handler import event_of
    put(s, [request(f"u{i}").model_dump_json() for i in range(3)])
    msgs = receive(s)
    rec = recording(s)
    worker = SendWorker(s.deps)
    worker.sender.time_left = lambda: 7.5  # under FLUSH_EARLY_SECONDS (8): a timeout could come before the end
    assert worker.process(event_of(msgs)) == {"batchItemFailures": []}
    assert len(rec.counter_updates("S#promo#")) == 3 and totals(s, "promo") == {"sent": 3}
    rec.updates.clear()
    for i in range(3):
        customer(s, f"m{i}", email=f"m{i}@example.com")
    put(s, [request(f"m{i}", rule="promo-b").model_dump_json() for i in range(3)])
    worker.sender.time_left = lambda: 60.0
    assert worker.process(event_of(receive(s))) == {"batchItemFailures": []}
    assert len(rec.counter_updates("S#promo-b#")) == 1 and totals(s, "promo-b") == {"sent": 3}


def test_a_batch_that_raises_still_writes_what_was_sent(s: Any) -> None:
    snd = sender(s)
    with pytest.raises(RuntimeError), snd.batch():
        assert snd.send(request("u0")).status == "sent"
        assert snd.send(request("u1")).status == "sent"
        assert totals(s, "promo") == {} and brake_sent(s) == 0  # summed in memory so far
        raise RuntimeError("the invocation dies after two sends")
    assert totals(s, "promo") == {"sent": 2} and brake_sent(s) == 2


def test_a_redelivered_record_counts_once(s: Any, send_handler: Any) -> None:
    body = request("u0").model_dump_json()
    put(s, [body, body, request("u1").model_dump_json()])  # a duplicate delivery inside the batch
    msgs = receive(s)
    assert invoke(send_handler, msgs) == set()
    assert invoke(send_handler, msgs) == set()  # and the whole batch redelivered
    assert len(emails()) == 2
    assert totals(s, "promo") == {"sent": 2} and brake_sent(s) == 2


def test_counter_writes_that_fail_lose_the_counts_not_the_batch(s: Any, send_handler: Any) -> None:
    from tests.integration.test_sender import FaultyDynamo, client_error
    put(s, [request(f"u{i}").model_dump_json() for i in range(2)])
    msgs = receive(s)
    # each send updates the profile and the ledger (4 UpdateItems); the fifth is the batch's `S#` row
    s.deps.dynamodb = FaultyDynamo(s.deps.dynamodb, client_error("ProvisionedThroughputExceededException", "slow",
                                                                "UpdateItem"), skip={"update_item": 4},
                                   update_item=1)
    assert invoke(send_handler, msgs) == set()  # sent; the counts are lost (at most once), nothing fails
    assert len(emails()) == 2
    assert "sent" not in totals(s, "promo") and brake_sent(s) == 2  # the brake's row is written all the same


def test_the_brake_stops_marketing_mid_batch(s: Any, send_handler: Any) -> None:
    """The pause (set by the feedback function when a window trips) is checked before every marketing send of
    the batch: what is left of the batch is deferred, transactional mail still flows, and the brake's hourly
    row counts exactly the emails that went out."""
    reqs = [request(f"u{i}") for i in range(4)]
    order = request("u4", rule="order", event={"properties": {"order_id": "1"}})
    put(s, [*(r.model_dump_json() for r in reqs[:2]), order.model_dump_json(),
            *(r.model_dump_json() for r in reqs[2:])])
    msgs = receive(s)
    assert [json.loads(m["Body"])["rule"] for m in msgs] == ["promo", "promo", "order", "promo", "promo"]

    class PausingSES(FaultySES):
        def send_email(self, **kwargs: Any) -> Any:
            resp = super().send_email(**kwargs)
            if len(self.calls) == 2:  # a complaint trips the brake while the batch is being sent
                s.deps.config.client.put_item(TableName=s.deps.config.table, Item=ddb.serialize(
                    {"pk": "SENDING", "sk": "example.com", "marketing": "paused", "epoch": 0, "reason": "test"}))
                s.deps.config.invalidate()
            return resp

    s.deps.sesv2 = PausingSES(s.deps.sesv2)
    assert invoke(send_handler, msgs) == set()
    assert [ledger(s, r)["status"] for r in reqs] == ["sent", "sent", "deferred", "deferred"]
    assert ledger(s, reqs[2])["reason"] == "sending_paused" and ledger(s, order)["status"] == "sent"
    assert len(emails()) == 3 and brake_sent(s) == 3
    assert totals(s, "promo") == {"sent": 2} and totals(s, "order") == {"sent": 1}


def test_the_brake_evaluates_with_the_batch_sends_not_written_yet(s: Any) -> None:
    snd = sender(s)
    with snd.batch():
        for i in range(3):
            assert snd.send(request(f"u{i}")).status == "sent"
        assert brake_sent(s) == 0
        window = snd.brake.evaluate("example.com", clock.now())["windows"][0]
        assert window["sent"] == 3  # from memory
    assert brake_sent(s) == 3
    assert snd.brake.evaluate("example.com", clock.now())["windows"][0]["sent"] == 3  # written, not doubled


def test_sends_outside_a_batch_write_at_once(s: Any) -> None:
    rec = recording(s)
    snd = sender(s)
    for i in range(2):
        assert snd.send(request(f"u{i}")).status == "sent"
        assert totals(s, "promo") == {"sent": i + 1} and brake_sent(s) == i + 1
    assert len(rec.counter_updates("S#")) == 2 and len(rec.counter_updates("BRAKE#")) == 2
    b = Brake(s.deps.dynamodb, s.deps.env.messages_table, s.deps.config)
    b.count_send("example.com", clock.now(), "x")
    assert brake_sent(s) == 3


def test_a_test_send_counts_in_the_batch_brake_row(s: Any, send_handler: Any) -> None:
    from retention.admin.people import People, create_admin_token
    from retention.messaging.testsend import TestSendRequest
    create_admin_token(s.deps.config, "editor-person", role="editor")
    People(s.deps.config).set_email("editor-person", "editor@staff.example", by="test")
    test_send = TestSendRequest(request_id="req-00000001", person="editor-person", to="editor@staff.example",
                                template="t-promo")
    put(s, [request("u0").model_dump_json(), test_send.model_dump_json(), request("u1").model_dump_json()])
    rec = recording(s)
    assert invoke(send_handler, receive(s)) == set()
    assert len(emails()) == 3
    assert len(rec.counter_updates("BRAKE#")) == 1 and brake_sent(s) == 3  # the test send counts in the brake
    assert totals(s, "promo") == {"sent": 2}  # and not in the rule's stats


# ---- coupons -------------------------------------------------------------------------------------------------

def test_a_fallback_pool_is_registered_once_not_at_every_issue(s: Any) -> None:
    from retention.products.coupons import Coupons
    template = {"id": "t-code", "category": "marketing", "default_locale": "ru",
                "locales": {"ru": {"subject": "Код", "html": "<p>Код {{ coupon.code }}</p>"
                                   '<a href="{{ links.unsubscribe }}">x</a>'}}}
    s.deps.config.apply("TEMPLATE", "t-code", template)
    s.deps.config.apply("RULE", "codes", {"id": "codes", "trigger": {"event": "Codes Requested"}, "steps": [
        {"send": {"channel": "email", "template": "t-code",
                  "coupon": {"pool": "spring", "fallback": "hmac", "discount": "5%"}}}]})
    rec = recording(s)
    snd = sender(s)
    for i in range(5):
        assert snd.send(request(f"u{i}", rule="codes", template="t-code")).status == "sent"
    pools_puts = [item for tx in rec.transactions for item in tx
                  if "Put" in item and item["Put"]["Item"]["pk"]["S"] == "POOLS"]
    assert len(pools_puts) == 1
    coupons = Coupons(s.deps.dynamodb, s.deps.env.products_table)
    assert [p["pool"] for p in coupons.all_pools()].count("spring") == 1
    assert coupons.stats("spring")["fallback"]["issued"] == 5  # the limits' counters stay exact
    days = list(ddb.query(s.deps.dynamodb, s.deps.env.products_table, "POOL#spring", sk_prefix="D#"))
    assert sum(int(d.get("fallback_issued") or 0) for d in days) == 5

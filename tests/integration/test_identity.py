"""Identity on moto: anonymous activity is kept and joined into the customer on identify / alias (profile,
timeline, interests, journeys), traits merge by timestamp, consent keeps its proof, and a merge racing
with anonymous traffic loses nothing."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb
from retention.customers.store import ProfileRepo
from retention.ingestion.ingestor import Ingestor
from retention.journeys.catalogue import definitions

from tests.integration.test_ingest import parse, raw_events


def anon_track(anon: str, event: str, mid: str, at: datetime | None = None, **props: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "track", "anonymousId": anon, "userId": None, "event": event,
                           "messageId": mid, "properties": props}
    if at is not None:
        msg["timestamp"] = clock.iso(at)
    return msg


def identify(uid: str | None, mid: str, at: datetime | None = None, anon: str | None = None,
             **traits: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "identify", "userId": uid, "messageId": mid, "traits": traits}
    if anon:
        msg["anonymousId"] = anon
    if at is not None:
        msg["timestamp"] = clock.iso(at)
    return msg


def stored_item(stack: Any, pk: str, sk: str) -> dict[str, Any] | None:
    return ddb.get(stack.deps.dynamodb, stack.tables["profiles"], pk, sk, consistent=True)


def repo(stack: Any) -> ProfileRepo:
    return ProfileRepo(stack.deps.dynamodb, stack.tables["profiles"])


def interest_rows(stack: Any, product: str) -> list[dict[str, Any]]:
    return list(ddb.query(stack.deps.dynamodb, stack.tables["profiles"], f"PI#{product}"))


# ---- identify / alias join the anonymous history -------------------------------------------------------


def test_identify_joins_the_anonymous_history_into_the_customer(stack: Any, now: datetime) -> None:
    t0 = now - timedelta(days=2)
    stack.ingest([
        anon_track("a1", "Product Viewed", "a1-v", t0, product_id="p1"),
        anon_track("a1", "Product Added", "a1-c", t0 + timedelta(minutes=5), product_id="p1", price=10),
        identify(None, "a1-id", t0 + timedelta(minutes=6), anon="a1", first_name="Anna"),
        anon_track("a1", "Order Completed", "a1-o", t0 + timedelta(minutes=9), order_id="G1", revenue=25),
    ])
    assert repo(stack).load("anon:a1", now).exists
    stack.ingest([identify("u1", "u1-id", now - timedelta(hours=1), anon="a1", email="Anna@Example.com")])

    # the link, and the anonymous profile replaced by a pointer
    assert stored_item(stack, "A#a1", "ALIAS")["customer_id"] == "u1"  # type: ignore[index]
    gone = repo(stack).load("anon:a1", now)
    assert not gone.exists and gone.merged_into == "u1"
    # the timeline moved, in time order, nothing left behind
    events = raw_events(stack, "u1")
    assert [e["message_id"] for e in events] == ["a1-v", "a1-c", "a1-id", "a1-o", "u1-id"]
    assert all(e["pk"] == "C#u1" and e["customer_id"] == "u1" for e in events)
    assert raw_events(stack, "anon:a1") == []
    # the profile: traits of both, the guest order, browsing, first seen
    p = stack.profile("u1")
    assert p.traits["first_name"] == "Anna" and p.traits["email"] == "anna@example.com"
    assert p.kpis["orders_count"] == 1 and p.kpis["revenue_total"] == 25
    assert "p1" in p.interests
    assert p.first_seen_at == t0
    assert p.anonymous_ids == ["a1"]
    # the product-interest index points at the customer now
    assert [r["customer_id"] for r in interest_rows(stack, "p1")] == ["u1"]
    row = interest_rows(stack, "p1")[0]
    assert row["sk"] == "C#u1" and row["viewed_at"] and row["carted_at"]
    # later anonymous activity of the same browser goes straight to the customer
    stack.ingest([anon_track("a1", "Product Viewed", "a1-v2", now - timedelta(minutes=1), product_id="p2")])
    assert "a1-v2" in {e["message_id"] for e in raw_events(stack, "u1")}
    assert not repo(stack).load("anon:a1", now).exists


def test_anonymous_events_and_identify_in_one_batch(stack: Any, now: datetime) -> None:
    stack.ingest([
        anon_track("a2", "Product Viewed", "v", now - timedelta(minutes=3), product_id="p1"),
        identify("u2", "id", now - timedelta(minutes=2), anon="a2", email="b@example.com"),
        {"type": "track", "userId": "u2", "anonymousId": "a2", "event": "Signed Up", "messageId": "su",
         "timestamp": clock.iso(now - timedelta(minutes=1))},
    ])
    assert [e["message_id"] for e in raw_events(stack, "u2")] == ["v", "id", "su"]
    assert not repo(stack).load("anon:a2", now).exists
    assert stack.profile("u2").interests.keys() == {"p1"}


def test_alias_joins_the_previous_id(stack: Any, now: datetime) -> None:
    stack.ingest([anon_track("a3", "Product Viewed", "v", now - timedelta(hours=2), product_id="p7")])
    stack.ingest([{"type": "alias", "userId": "u3", "previousId": "a3", "anonymousId": None, "messageId": "al",
                   "timestamp": clock.iso(now - timedelta(hours=1))}])
    assert stored_item(stack, "A#a3", "ALIAS")["customer_id"] == "u3"  # type: ignore[index]
    assert [e["message_id"] for e in raw_events(stack, "u3")] == ["v", "al"]
    assert "p7" in stack.profile("u3").interests


def test_the_first_identity_wins(stack: Any, now: datetime) -> None:
    stack.ingest([anon_track("a4", "Product Viewed", "v", now - timedelta(hours=3), product_id="p1")])
    stack.ingest([identify("first", "id1", now - timedelta(hours=2), anon="a4", email="f@example.com")])
    stack.ingest([identify("second", "id2", now - timedelta(hours=1), anon="a4", email="s@example.com")])
    assert stored_item(stack, "A#a4", "ALIAS")["customer_id"] == "first"  # type: ignore[index]
    assert [e["message_id"] for e in raw_events(stack, "second")] == ["id2"]
    assert "v" in {e["message_id"] for e in raw_events(stack, "first")}
    assert stack.profile("second").interests == {}
    # two users claiming one anonymous id inside one batch: still one link
    stack.ingest([identify("x", "x1", now - timedelta(minutes=2), anon="a5"),
                  identify("y", "y1", now - timedelta(minutes=1), anon="a5")])
    assert stored_item(stack, "A#a5", "ALIAS")["customer_id"] in ("x", "y")  # type: ignore[index]


def test_a_retried_identify_writes_nothing_more(stack: Any, now: datetime) -> None:
    batch = [anon_track("a6", "Product Viewed", "v", now - timedelta(hours=1), product_id="p1"),
             identify("u6", "id", now - timedelta(minutes=1), anon="a6", email="r@example.com")]
    stack.ingest(batch)
    before = raw_events(stack, "u6")
    version = stored_item(stack, "C#u6", "P")["version"]  # type: ignore[index]
    stack.counter.reset()
    result = stack.ingest(batch)
    assert result.duplicates == 2
    # neither the link nor the merge is done again (no transaction, no delete) and the profile is not
    # rewritten; a product view's writes are idempotent and done again before its dedupe answers "duplicate"
    # (its interest row; retail-scale views need no transaction)
    assert stack.counter.count("dynamodb", "TransactWriteItems", "DeleteItem") == 0
    assert stored_item(stack, "C#u6", "P")["version"] == version  # type: ignore[index]
    # the two raw events' conditional puts (keyed by the client's timestamps: their own dedupe), both refused
    assert stack.counter.count("dynamodb", "PutItem") == 2
    assert raw_events(stack, "u6") == before


def test_events_with_both_ids_after_the_link_cost_no_identity_write(stack: Any, now: datetime) -> None:
    stack.ingest([identify("u7", "id", now - timedelta(minutes=5), anon="a7", email="w@example.com")])
    stack.counter.reset()
    stack.ingest([{"type": "track", "userId": "u7", "anonymousId": "a7", "event": "Page Scrolled",
                   "messageId": f"s{i}"} for i in range(5)])
    # the browser SDK sends the anonymousId with every call: one read for the links, no write for them
    # (five messageId markers, one batch of raw events and the day's events counter; the profile is not
    # rewritten for them)
    assert stack.counter.count("dynamodb", *stack.counter.DDB_WRITES) == 7
    assert stack.counter.count("dynamodb", "PutItem") == 5
    assert stack.counter.count("dynamodb", "TransactWriteItems") == 0
    assert stack.counter.count("dynamodb", "UpdateItem") == 1


# ---- traits and consent -----------------------------------------------------------------------------------


def test_traits_merge_by_timestamp(stack: Any, now: datetime) -> None:
    t = now - timedelta(days=1)
    stack.ingest([identify("u1", "new", t + timedelta(hours=2), email="new@example.com", first_name="Old")])
    # a late delivery of an older identify: its email is older, its phone is the only one there is
    stack.ingest([identify("u1", "late", t, email="old@example.com", phone="8 (912) 000-00-00")])
    p = stack.profile("u1")
    assert p.traits["email"] == "new@example.com"
    assert p.traits["phone"] == "+79120000000"
    # an anonymous identify newer than the customer's own wins the merge, older ones lose
    stack.ingest([identify(None, "anon-new", t + timedelta(hours=3), anon="a8", first_name="Newer"),
                  identify(None, "anon-old", t - timedelta(hours=3), anon="a8", email="older@example.com",
                           locale="ru")])
    stack.ingest([identify("u1", "link", t + timedelta(hours=4), anon="a8")])
    p = stack.profile("u1")
    assert p.traits["first_name"] == "Newer"
    assert p.traits["email"] == "new@example.com"
    assert p.traits["locale"] == "ru"


def test_consent_keeps_source_time_and_raw_evidence(stack: Any, now: datetime) -> None:
    given = now - timedelta(days=1)
    evidence = {"ip": "203.0.113.7", "form": "checkout", "text": "Согласен получать рассылку", "version": 3}
    stack.ingest([identify("u1", "c1", given + timedelta(minutes=1), email="c@example.com",
                           email_consent={"granted": True, "source": "checkout-form", "at": clock.iso(given),
                                          "evidence": evidence},
                           sms_consent=True)])
    p = stack.profile("u1")
    email = p.consent["email"]
    assert (email.granted, email.source, email.at, email.evidence) == (True, "checkout-form", given, evidence)
    sms = p.consent["sms"]
    assert (sms.granted, sms.source, sms.at) == (True, "identify", given + timedelta(minutes=1))
    log = [e for e in p.consent_log if e["channel"] == "email"]
    assert log[-1]["evidence"] == evidence and log[-1]["message_id"] == "c1"
    assert log[-1]["at"] == clock.iso(given)
    # the raw statement is on the timeline too, exactly as sent
    identify_event = next(e for e in raw_events(stack, "u1") if e["message_id"] == "c1")
    assert json.loads(identify_event["traits"])["email_consent"]["evidence"] == evidence
    # a revocation later wins; an older grant arriving late does not undo it
    stack.ingest([identify("u1", "c2", now - timedelta(hours=1),
                           email_consent={"granted": False, "source": "unsubscribe-page"})])
    stack.ingest([identify("u1", "c0", given - timedelta(days=5), email_consent=True)])
    p = stack.profile("u1")
    assert p.consent["email"].granted is False and p.consent["email"].source == "unsubscribe-page"
    assert [e["message_id"] for e in p.consent_log if e["channel"] == "email"] == ["c1", "c2", "c0"]


def test_rudder_context_traits_carry_consent(stack: Any, now: datetime) -> None:
    stack.ingest([{"type": "identify", "userId": "r1", "messageId": "r", "anonymousId": None,
                   "context": {"traits": {"email": "r@example.com", "email_consent": True}}}])
    p = stack.profile("r1")
    assert p.traits["email"] == "r@example.com" and p.consent["email"].granted


# ---- races -------------------------------------------------------------------------------------------------


def test_a_writer_that_read_the_anonymous_profile_before_the_merge_follows_it(stack: Any, now: datetime) -> None:
    stack.ingest([anon_track("a9", "Product Viewed", "v1", now - timedelta(hours=2), product_id="p1")])
    d = stack.deps
    ing = Ingestor(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config)
    stale = repo(stack).load("anon:a9", now)  # read before the merge …
    never = repo(stack).load("anon:b9", now)  # … or before the anonymous profile even existed
    stack.ingest([identify("u9", "id", now - timedelta(hours=1), anon="a9")])
    stack.ingest([identify("w9", "idw", now - timedelta(hours=1), anon="b9")])
    from retention.journeys.engine import Engine
    defs = definitions(d.config)
    late = parse([anon_track("a9", "Product Viewed", "v2", now - timedelta(minutes=30), product_id="p2")])
    out = ing._customer(Engine(defs), defs, "src_test", stale, late, now)
    assert [m.message_id for m in out.stored] == ["v2"]
    late_b = parse([anon_track("b9", "Page Scrolled", "b2", now - timedelta(minutes=20))])
    ing._customer(Engine(defs), defs, "src_test", never, late_b, now)
    # no resurrected anonymous profile: the events went to the customers
    assert {e["message_id"] for e in raw_events(stack, "u9")} == {"v1", "id", "v2"}
    assert {e["message_id"] for e in raw_events(stack, "w9")} == {"idw", "b2"}
    for anon in ("anon:a9", "anon:b9"):
        assert not repo(stack).load(anon, now).exists
        assert raw_events(stack, anon) == []
    assert set(stack.profile("u9").interests) == {"p1", "p2"}


def test_identify_racing_with_anonymous_traffic_loses_nothing(stack: Any, now: datetime) -> None:
    rounds = 4
    errors: list[BaseException] = []

    def run(target: Any, *args: Any) -> threading.Thread:
        def body() -> None:
            try:
                target(*args)
            except BaseException as exc:
                errors.append(exc)
        return threading.Thread(target=body)

    def browse(anon: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        for i in range(4):
            stack.ingest([anon_track(anon, "Product Viewed", f"{anon}-v{i}", now - timedelta(minutes=10 - i),
                                     product_id=f"p{i}")])

    def sign_in(anon: str, user: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        stack.ingest([identify(user, f"{user}-id", now - timedelta(minutes=5), anon=anon)])

    for r in range(rounds):
        anon, user = f"race{r}", f"user{r}"
        barrier = threading.Barrier(2)
        threads = [run(browse, anon, barrier), run(sign_in, anon, user, barrier)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert {e["message_id"] for e in raw_events(stack, user)} == {f"{anon}-v{i}" for i in range(4)} | {
            f"{user}-id"}
        assert raw_events(stack, f"anon:{anon}") == []
        assert not repo(stack).load(f"anon:{anon}", now).exists
        assert set(stack.profile(user).interests) == {"p0", "p1", "p2", "p3"}


# ---- journeys and segments follow the person ----------------------------------------------------------------


def test_an_anonymous_journey_continues_for_the_customer(library_stack: Any, now: datetime) -> None:
    from retention.language.rules import in_holdout
    s = library_stack
    assert "browse-abandonment" in s.deps.config.current("RULE"), "the scenario library lost browse-abandonment"
    anon = next(a for a in (f"visitor-{i}" for i in range(100))
                if not in_holdout(f"anon:{a}", "browse-abandonment", 10))
    s.ingest([anon_track(anon, "Product Viewed", "pv", now - timedelta(minutes=30), product_id="p1")])
    journey = s.profile(f"anon:{anon}").journeys.get("browse-abandonment")
    assert journey and journey["state"] == "active" and journey["next_due"]
    s.ingest([identify("buyer", "id", now - timedelta(minutes=10), anon=anon, email="buyer@example.com",
                       email_consent=True)])
    p = s.profile("buyer")
    assert p.journeys["browse-abandonment"]["entry"] == journey["entry"]
    due_rows = [ddb.deserialize(i) for i in s.deps.dynamodb.scan(TableName=s.tables["due"])["Items"]]
    assert any(r and r["kind"] == "JOURNEY" and r["customer_id"] == "buyer"
               and r["ref"].startswith("browse-abandonment|") for r in due_rows)
    # a day later the tick sends the reminder to the identified customer
    clock.set_now(now + timedelta(days=1, minutes=1))
    s.ticker().tick()
    sends = s.queued_sends()
    assert [(r.customer_id, r.rule) for r in sends if r.rule == "browse-abandonment"] == [
        ("buyer", "browse-abandonment")]


def test_segment_sizes_count_people_not_ids_after_a_merge(library_stack: Any, now: datetime) -> None:
    s = library_stack
    s.ingest([anon_track("a10", "Product Viewed", "pv", now - timedelta(hours=2), product_id="p1")])
    s.ingest([identify("u10", "id", now - timedelta(hours=1), anon="a10", email="z@example.com")])

    def sizes() -> dict[str, int]:
        total: dict[str, int] = {}
        for item in s.deps.dynamodb.scan(TableName=s.tables["messages"])["Items"]:
            row = ddb.deserialize(item) or {}
            if str(row.get("pk", "")).startswith("SEGSIZE#"):
                for k, v in row.items():
                    if k not in ("pk", "sk"):
                        total[row["sk"]] = total.get(row["sk"], 0) + int(v)
        return total

    lifecycle = sizes().get("lifecycle")
    assert lifecycle == 1, sizes()

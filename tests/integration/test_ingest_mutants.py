"""Ingestion behaviour that surviving mutants of `make mutate` showed untested (bench/results/mutation.md).
Each test names the mutant it kills. On moto."""

from __future__ import annotations

from typing import Any

import pytest
from retention.core import clock
from retention.customers.store import ProfileRepo

from tests.support import record_backoff

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


def profile(stack: Any, uid: str) -> Any:
    return ProfileRepo(stack.deps.dynamodb, stack.deps.env.profiles_table).load(uid, clock.now())


def identify(uid: str, mid: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": uid, "messageId": mid, "traits": traits}


def test_a_new_customer_is_stamped_with_the_source_that_created_it(stack: Any) -> None:
    """Kills `if not sp.exists:` → `if not not sp.exists:` in `_customer`: the source whose message created
    a customer owns it (key scopes read `meta.created_by`); a later source does not take it over."""
    stack.ingest([identify("u1", "m1", first_name="Anna")], source="src_shop")
    assert profile(stack, "u1").profile.meta["created_by"] == "src_shop"
    stack.ingest([identify("u1", "m2", first_name="Anya")], source="src_crm")
    sp = profile(stack, "u1")
    assert sp.profile.meta["created_by"] == "src_shop" and sp.profile.traits["first_name"] == "Anya"


def test_an_identify_links_the_anonymous_history_to_the_customer(stack: Any) -> None:
    """Kills `if not msg.user_id: continue` → `if not not msg.user_id` in `_identities`, and `while True` →
    `while not True` in `_timeline`: a message carrying both ids links the anonymous id to the customer and
    moves its history (a viewed product: the interest, and the raw event on the customer's timeline)."""
    stack.ingest([{"type": "track", "anonymousId": "a1", "messageId": "t1", "event": "Product Viewed",
                   "properties": {"product_id": "p1"}}])
    stack.ingest([{"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "i1",
                   "traits": {"email": "u1@example.com"}}])
    repo = ProfileRepo(stack.deps.dynamodb, stack.deps.env.profiles_table)
    assert repo.alias_of("a1") == "u1"
    assert profile(stack, "anon:a1").merged_into == "u1"
    merged = profile(stack, "u1").profile
    assert merged.anonymous_ids == ["a1"] and "p1" in merged.interests
    from retention.core import ddb
    from retention.customers.store import profile_pk
    timeline = ddb.query(stack.deps.dynamodb, stack.deps.env.events_table, profile_pk("u1"))
    assert "Product Viewed" in {e.get("event") or e.get("name") for e in timeline}


class ConflictOnce:
    """The moto client; the first TransactWriteItems raises a transaction conflict."""

    def __init__(self, real: Any) -> None:
        self.real, self.failed = real, False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != "transact_write_items":
            return attr

        def once(*args: Any, **kwargs: Any) -> Any:
            if not self.failed:
                from botocore.exceptions import ClientError
                self.failed = True
                response: Any = {"Error": {"Code": "TransactionConflictException", "Message": "conflict"},
                                 "ResponseMetadata": {"HTTPStatusCode": 400}}
                raise ClientError(response, "TransactWriteItems")
            return attr(*args, **kwargs)
        return once


def test_a_merge_that_collides_backs_off_briefly_and_retries(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills `ddb.backoff(attempt + 1)` → `attempt + 0` / `attempt + 2` in `_join`: a merge transaction that
    collides is read again and retried after a full-jitter pause of at most 0.1 s (the first retry's
    bound: 0.05 s × 2); sleeps are recorded, not slept."""
    from retention.ingestion.ingestor import Ingestor
    stack.ingest([{"type": "track", "anonymousId": "a2", "messageId": "t2", "event": "Product Viewed",
                   "properties": {"product_id": "p2"}}])
    stack.ingest([identify("u2", "i2", email="u2@example.com")])
    bounds = record_backoff(monkeypatch)
    d = stack.deps
    client = ConflictOnce(d.dynamodb)
    assert Ingestor(ddb_client=client, sqs=d.sqs, env=d.env, config=d.config).link("a2", "u2", clock.now())
    assert client.failed and bounds == pytest.approx([0.1])
    assert profile(stack, "anon:a2").merged_into == "u2"


def test_an_anonymous_id_linked_by_someone_else_in_between_is_left_to_them(stack: Any) -> None:
    """Kills `len(reasons) >= 2` → `>= 3` in `_join`: an anonymous id with no profile of its own (the
    transaction is the link and the tombstone: two items) that another writer linked between our check and
    our transaction is theirs: the merge gives up (0 sends), it does not retry until ContentionError."""
    from retention.core import ddb
    from retention.customers.store import alias_key
    from retention.ingestion.ingestor import Ingestor
    stack.ingest([identify("u3", "i3", email="u3@example.com")])
    d = stack.deps
    pk, sk = alias_key("a3")
    d.dynamodb.put_item(TableName=d.env.profiles_table, Item=ddb.serialize(
        {"pk": pk, "sk": sk, "customer_id": "someone-else", "at": clock.iso(clock.now())}))
    ingestor = Ingestor(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config)
    assert ingestor._join("anon:a3", "u3", clock.now(), alias="a3") == 0
    repo = ProfileRepo(d.dynamodb, d.env.profiles_table)
    assert repo.alias_of("a3") == "someone-else"


def test_a_retry_after_the_event_passed_its_retention_does_not_rewrite_it_without_expiry(stack: Any) -> None:
    """Kills `if event_at and expires:` → `or` in `_store_plain`: a plain event 89 days old is stored with
    its expiry; the same message retried two days later (its marker still there, the event now past the
    90-day retention) must not write the raw event again without an expiry (it would never expire)."""
    from datetime import timedelta

    from retention.core import ddb
    from retention.customers.store import profile_pk
    first = {**identify("u4", "i4", email="u4@example.com"), "timestamp": clock.iso(clock.now() - timedelta(days=120))}
    stack.ingest([first])  # a customer seen first long ago: the old event below changes nothing (plain path)
    event = {"type": "track", "userId": "u4", "messageId": "old-1", "event": "Page Viewed",
             "timestamp": clock.iso(clock.now() - timedelta(days=89))}

    def stored_event() -> dict[str, Any]:
        [row] = [e for e in ddb.query(stack.deps.dynamodb, stack.deps.env.events_table, profile_pk("u4"))
                 if e.get("message_id") == "old-1"]
        return row
    stack.ingest([event])
    ttl = stored_event()["ttl"]
    assert isinstance(ttl, int) and ttl > clock.now().timestamp()
    clock.set_now(clock.now() + timedelta(days=2))
    result = stack.ingest([event])
    assert result.duplicates == 1
    assert stored_event().get("ttl") == ttl

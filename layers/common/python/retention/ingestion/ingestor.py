"""track_event's library: exactly-once storage of Segment messages, identity, profiles, segments and
journey starts, in the ingestion path.

The raw event's key. A message whose client timestamp (`timestamp`/`originalTimestamp`, the same in every
retry of the client) is within STABLE_KEY_SKEW of the corrected time (Segment's clock-skew correction moves
by milliseconds per retry, since `sentAt` changes) and whose raw event outlives the dedupe window is
*keyed*: its raw event sits at `C#<customer>` / `<client timestamp>#<source>#<messageId>` in every retry,
so the raw event itself is the dedupe (`event_key_at`; the source is in the key because a messageId is
unique per source). Other messages (no client timestamp, a clock off by more
than STABLE_KEY_SKEW, an import older than the retention less the dedupe window) have a messageId marker
that records where their raw event went. The item's `timestamp` attribute is the corrected time in both
cases; readers order by the sort key (within STABLE_KEY_SKEW of it) and filter on the attribute.

Three ways to store a customer's chunk of messages, chosen after the (pure) engine has folded them in:

- **plain** (nothing that matters changed: no effect items, no sends, the profile unchanged but for
  `last_seen_at` moving by less than an hour, an existing non-anonymous profile): a keyed message is ONE
  conditional put of its raw event (`attribute_not_exists(pk)`: a ConditionalCheckFailed is a duplicate),
  1 write unit, no marker, the profile is not written. An unkeyed one keeps the marker (a conditional put
  that records the key), then its raw event (BatchWrite at the recorded key): a crash between the two is
  completed by the retry (a marker that exists makes the message a duplicate whose raw event is written
  again at the recorded key, the same item).
- **idempotent** (product views, trait-only identifies: `_store_idempotent`): the interest rows and the
  profile first (idempotent), the raw event's conditional put (or the marker) last, as for a plain event.
- **transaction** (anything else): before it, what is idempotent and harmless if the transaction never
  commits — a keyed message's raw event (a put at its stable key, conditional: it never writes over
  another attempt's), the product-interest rows
  (upserts of latest times) and the SEGMENT / JOURNEY due items (a SEGMENT item fires a re-check of the
  stored profile; a JOURNEY item whose journey, entry or step is not in the profile is dropped by the
  engine as stale). Then ONE TransactWriteItems holds the messageId markers (conditional puts: a retried or
  concurrent message loses there), the unkeyed raw events, the effects that must not exist without the
  commit (the STATS and SEND outbox items, order items, internal events, fan-out promises, the email and
  phone index) and the profile (conditional on its version). A message that ends `rejected` (the profile
  size cap) has its raw event deleted again.

A message whose effect matters is thus taken in exactly once, by the transaction and its marker; a plain
one has no effect to take in twice. A retry that changes path finds the same raw event: the transaction
writes a keyed message's raw event at the same key as the plain path, so a plain retry of a committed
message fails its conditional put, and a transaction retry of a plain one finds no marker (the plain
attempt had no effect) and writes the raw event over itself. Events of one customer inside a batch update
the profile at most once per chunk.

What the 60 s boundary costs. The skew (server clock − client clock + network time) of one message moves
between its attempts by the network's jitter, so a retry may fall on the other side of STABLE_KEY_SKEW.
The plain path covers that with a band: a keyed message further than half of STABLE_KEY_SKEW from the
corrected time (or whose raw event is kept less than twice the dedupe window: an import) also writes the
marker, recording the keyed key (`key_alone`); a retry on either side of the boundary finds one or the
other and stores nothing twice. Only a skew that jumps by more than 30 s between two attempts (the
client's clock stepped in between) can make a retry that takes the plain path (a plain event, or one
whose effect is in the profile already) store a second raw row at the other key: the timeline shows the
event twice, the KPIs, segments and journeys do not move (the plain path changes none of them), the day's
events counter counts it twice. A retry that takes the transaction path finds the marker in every case,
so effects stay exactly once (the marker records the key its raw event went to: a keyed raw event written
before a transaction that then finds the marker at another key is deleted again). A marker on every
keyed plain event to close the last case would cost the write unit this design saves on every event.

What a transaction that never commits leaves (a crash, and a client that never retries): the keyed raw
event (the timeline shows an event whose effects are not in the profile), interest rows (a back-in-stock
fan-out may reach the customer for that view) and due items that come due as no-ops. A retry (the
clients retry every 5xx) commits the rest: the raw event is written over itself, the due items at the
same keys when the retry comes in the same request (`now` is the request's), at a later time otherwise —
then a JOURNEY item of the dead attempt, if the retry starts the same journey entry, advances that wait
early by the time between the two attempts (and the retry's own item finds the step done: stale).

Concurrent attempts and erasure. A keyed raw event this request's conditional put stored before a
transaction that did not commit (`own`) is this request's; one the put found is another attempt's (a
concurrent retry that stored the message plain), and the message a duplicate when it comes to be stored
plain. An own message that comes to be stored plain takes the marker path: another attempt may have
committed it meanwhile (its marker decides). The profile-size refusal deletes only an own raw event, and a
message an earlier attempt stored (its marker, or its keyed raw event) is a duplicate, not a refusal.
Erasure writes the markers the keyed raw events it deletes lacked and a record of the erasure (a salted
hash of the customer id, `erased_key`, kept for the dedupe window); a profile created within the window
reads it (`_erasures`, one read per request that creates identified customers; again when a reload finds
the profile gone) and is marked `erased_before` (until the window passes), so a
keyed plain event from before the erasure — a client's retry of an erased one — takes the marker path and
is a duplicate instead of being written back.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb
from retention.core.config import ConfigStore
from retention.core.settings import Env
from retention.customers.profile import (
    ERASED_BEFORE,
    erased_before,
    extreme_orders,
    interest_kind,
    interest_products,
    merge_profiles,
    order_event_ids,
    product_id,
)
from retention.customers.store import (
    ProfileRepo,
    StoredProfile,
    alias_key,
    alias_of_key,
    email_index_key,
    email_key,
    interest_key,
    interest_pk,
    order_item,
    order_key,
    phone_index_key,
    profile_pk,
    timeline_key,
    to_item,
    tombstone_item,
    version_condition,
)
from retention.ingestion.scopes import CREATED_BY, refusal
from retention.ingestion.wire import Message, Rejection
from retention.journeys.catalogue import definitions
from retention.journeys.effects import (
    ATTEMPTS,
    Committed,
    after_commit,
    event_retention_seconds,
    transaction_items,
)
from retention.journeys.engine import Definitions, Effects, Engine
from retention.messaging.requests import suppression_key
from retention.schedule import due

MAX_TXN_ITEMS = 100
EARLY_PUT_WORKERS = 4  # a chunk's early raw events: conditional puts (no BatchWrite condition), in parallel
CHUNK = 24  # messages per transaction: markers + events + profile + due/history items stay under 100
PRODUCT_EVENTS = ("Product Back in Stock", "Product Price Dropped", "Product Low Stock")
# events the products package learns from (catalogue stock and prices, co-purchases, coupon redemption)
PRODUCT_LEARNING_EVENTS = frozenset({"Order Completed", "Product Viewed", "Product Clicked", "Product Added",
                                     *PRODUCT_EVENTS})
MERGE_ORDERS_IN_TRANSACTION = 50
INTEREST_PREFIX = interest_pk("")
MAX_PROFILE_ITEM_BYTES = 350 * 1024
TOO_LARGE = "too large"  # _store_idempotent: the profile would pass MAX_PROFILE_ITEM_BYTES
"""A profile item above this is refused before it is written (DynamoDB's limit is 400 KB: a write over it
fails the whole transaction, and before this guard every later event of the customer answered 500)."""


log = logging.getLogger(__name__)

class ContentionError(RuntimeError):
    """A profile kept changing under us for every attempt: the request may be retried as a whole."""


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    sends: int = 0


@dataclass
class _Outcome:
    stored: list[Message] = field(default_factory=list)  # newly stored (not duplicates)
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    committed: Committed = field(default_factory=Committed)
    customer: str = ""  # the profile the messages were stored on (after following a merge)

    def owners(self) -> list[tuple[str, Message]]:
        return [(self.customer, m) for m in self.stored]


EARLY_DUE_KINDS = frozenset({"SEGMENT", "JOURNEY"})
"""Due items written before the transaction: firing one the transaction never committed is harmless (a
SEGMENT item re-checks the stored profile; the engine drops a JOURNEY item whose journey, entry or step is
not in the profile, retention.journeys.engine.Engine._on_due_journey)."""


@dataclass
class _Early:
    """What a transaction's chunk writes before its transaction: idempotent, and harmless if the transaction
    never commits (see the module docstring)."""

    events: list[tuple[Message, dict[str, Any]]] = field(default_factory=list)  # keyed raw events
    due: list[dict[str, Any]] = field(default_factory=list)  # SEGMENT / JOURNEY due items
    updates: list[dict[str, Any]] = field(default_factory=list)  # product-interest upserts (UpdateItem kwargs)

    def take(self, effect: dict[str, Any], due_table: str) -> bool:
        """Keep `effect` (a transaction item) for before the transaction when it may go there."""
        if "Update" in effect and effect["Update"]["Key"]["pk"]["S"].startswith(INTEREST_PREFIX):
            self.updates.append(effect["Update"])
            return True
        put = effect.get("Put")
        if put and put["TableName"] == due_table and put["Item"].get("kind", {}).get("S") in EARLY_DUE_KINDS:
            self.due.append(ddb.deserialize(put["Item"]) or {})
            return True
        return False


def customer_of(msg: Message, aliases: dict[str, str]) -> str:
    if msg.user_id:
        return msg.user_id
    anon = msg.anonymous_id or ""
    return aliases.get(anon) or f"anon:{anon}"


def marker_key(source_id: str, message_id: str) -> tuple[str, str]:
    """The messageId dedupe marker (idempotency table): one per (source, messageId). The messageId is hashed
    and the item holds no customer id: a client's messageId may embed a user id or an email, and a marker
    outlives an erasure (it must, or a retried message would re-create the person)."""
    digest = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return (f"M#{source_id}#{digest}", "M")


def erased_key(customer_id: str, salt: str) -> tuple[str, str]:
    """An erasure's record (idempotency table, kept for the dedupe window): a salted hash of the customer
    id (the suppression list's salt), no customer id. A profile re-created within the window reads it."""
    digest = hashlib.sha256(f"{salt}\x00{customer_id}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return (f"E#{digest}", "E")


class Ingestor:
    def __init__(self, *, ddb_client: Any, sqs: Any, env: Env, config: ConfigStore, workers: int = 8) -> None:
        self.ddb = ddb_client
        self.sqs = sqs
        self.env = env
        self.config = config
        self.repo = ProfileRepo(ddb_client, env.profiles_table)
        self.workers = workers

    def ingest(self, messages: list[Message], source_id: str, *, now: datetime | None = None,
               scopes: frozenset[str] | None = None) -> IngestResult:
        """Store `messages` of `source_id`. `scopes` (a write key's, see retention.ingestion.scopes) refuse
        what the key may not do as `rejected` entries; None (internal callers) may do everything."""
        now = now or clock.now()
        result = IngestResult()
        seen: set[str] = set()
        unique: list[Message] = []
        for msg in messages:
            if msg.message_id in seen:
                result.duplicates += 1
                result.accepted += 1
                continue
            seen.add(msg.message_id)
            unique.append(msg)
        if not unique:
            return result
        defs = definitions(self.config)
        engine = Engine(defs)
        aliases = self._aliases(sorted(_anonymous_ids(unique)))
        groups: dict[str, list[Message]] = defaultdict(list)
        for msg in unique:
            groups[customer_of(msg, aliases)].append(msg)
        cids = {m.message_id: cid for cid, ms in groups.items() for m in ms}  # before links change `aliases`
        profiles = self.repo.load_many(list(groups), now)
        self._erasures([sp for sp in profiles.values() if not sp.exists and not sp.merged_into])
        done = Committed()
        stored: list[Message] = []

        def run(cid: str) -> _Outcome:
            return self._customer(engine, defs, source_id, profiles[cid], groups[cid], now, scopes)

        if len(groups) == 1 or self.workers <= 1:
            outcomes = [run(cid) for cid in groups]
        else:  # customers are independent: their transactions go out in parallel (latency, not CPU)
            outcomes = _in_parallel(run, list(groups), min(self.workers, len(groups)))
        for outcome in outcomes:
            result.accepted += len(outcome.stored) + outcome.duplicates
            result.duplicates += outcome.duplicates
            result.rejected += outcome.rejected
            stored += outcome.stored
            done.extend(outcome.committed)
        result.sends = after_commit(self.ddb, self.sqs, self.env, done, now)
        # every message, duplicates too: a retry completes a link that a crash interrupted
        result.sends += self._identities(unique, aliases, engine, now)
        # product events fan out once (a retried message is a duplicate) and only while live (history
        # imports start no journey). The fan-out's safety item went in with the messageId marker: if this
        # request dies before the fan-out is done, the tick does it (the journey entry id comes from the
        # messageId, so doing it twice starts nobody twice); done here, the safety item goes.
        fanned: list[due.DueItem] = []
        for msg in stored:
            if _fans_out(msg, defs, now):
                self.fan_out_product_event(msg, defs, now)
                fanned.append(fanout_item(msg, cids[msg.message_id], now))
        due.delete(self.ddb, self.env.due_table, fanned, self.env.due_shards)
        self._products([(cid, m) for o in outcomes for cid, m in o.owners()], now)
        self._count(len(stored), now, unique[0].message_id)
        return result

    def _erasures(self, new: list[StoredProfile]) -> None:
        """Profiles about to be created: one read of their erasure records (`erased_key`); a customer erased
        within the dedupe window gets `erased_before` (see `keyed_after`). One BatchGetItem per request that
        creates an identified customer, none otherwise (an anonymous profile never takes the plain path)."""
        new = [sp for sp in new if not sp.profile.id.startswith("anon:")]  # never plain: no guard needed
        if not new:
            return
        salt = self.config.secrets("suppression-salt")[0].decode()
        keys = {sp.profile.id: erased_key(sp.profile.id, salt) for sp in new}
        found = ddb.batch_get(self.ddb, self.env.idempotency_table, list(keys.values()))
        for sp in new:
            record = found.get(keys[sp.profile.id])
            if record and record.get("at"):
                sp.profile.meta[ERASED_BEFORE] = str(record["at"])

    def _count(self, stored: int, now: datetime, shard_hint: str) -> None:
        """The day's events counter (the console's overview): one ADD per request. Best effort: the events
        are stored already, and a retry of the request would be all duplicates, which count nothing."""
        from retention.analytics.counters import add_event_count
        try:
            add_event_count(self.ddb, self.env.messages_table, stored, now, shard_hint)
        except Exception as exc:  # a dashboard number never fails an ingestion
            log.warning("events counter not added (%d events): %s", stored, exc)

    def _products(self, stored: list[tuple[str, Message]], now: datetime) -> None:
        """The catalogue, recommendation counters and coupons learn from what was stored (once per messageId)."""
        relevant = [(cid, str(m.event), _with_page_url(m), m.timestamp) for cid, m in stored
                    if m.type == "track" and m.event in PRODUCT_LEARNING_EVENTS and isinstance(m.properties, dict)]
        if relevant:
            from retention.products.events import ProductEvents
            ProductEvents(self.ddb, self.env.products_table, self.env.messages_table, due_table=self.env.due_table,
                          due_shards=self.env.due_shards,
                          consumable_categories=self.config.settings().consumable_categories).observe(relevant, now)

    # ---- identity ---------------------------------------------------------------------------------
    def _aliases(self, anon_ids: list[str]) -> dict[str, str]:
        if not anon_ids:
            return {}
        found = ddb.batch_get(self.ddb, self.env.profiles_table, [alias_key(a) for a in anon_ids])
        return {alias_of_key(pk): item["customer_id"] for (pk, _), item in found.items()}

    def _identities(self, messages: list[Message], aliases: dict[str, str], engine: Engine, now: datetime) -> int:
        """identify/alias (any message with both ids) link the anonymous history to the customer: merge, no
        loss. An anonymous id already linked (to anyone) is left alone: the first identity wins."""
        links: list[tuple[str, str]] = []
        for msg in messages:
            if not msg.user_id:
                continue
            for anon in (msg.anonymous_id, msg.previous_id if msg.type == "alias" else None):
                if anon and anon != msg.user_id and anon not in aliases:
                    links.append((anon, msg.user_id))
        sends = 0
        for anon, user in dict.fromkeys(links):
            if anon in aliases:
                continue  # two users claimed it in one batch: the first one won
            aliases[anon] = user
            sends += self._join(f"anon:{anon}", user, now, engine=engine, alias=anon)
        return sends

    def link(self, anon: str, user: str, now: datetime) -> bool:
        """Link an anonymous id to a customer and merge its history; False when it was already linked."""
        if self.repo.alias_of(anon) is not None:
            return False
        self._join(f"anon:{anon}", user, now, alias=anon)
        return self.repo.alias_of(anon) == user

    def merge(self, source_id: str, target_id: str, now: datetime) -> None:
        """Join one profile (and its timeline, interests and pending journeys) into another."""
        self._join(source_id, target_id, now)

    def _join(self, source_id: str, target_id: str, now: datetime, *, engine: Engine | None = None,
              alias: str | None = None) -> int:
        """One transaction: the identity link (conditional: one winner), the merged profile (conditional on
        its version), the source's tombstone (conditional on the source's version: a writer that read the
        source before fails and follows the tombstone), the carried journeys' due items and the effects of
        re-evaluating segments. The timeline is copied before it and deleted after it (idempotent)."""
        if source_id == target_id:
            return 0
        engine = engine or Engine(definitions(self.config))
        defs = engine.defs
        env = self.env
        moved: list[dict[str, Any]] = []
        src = dst = None
        fx = Effects()
        for attempt in range(ATTEMPTS):
            src = self.repo.load(source_id, now)
            if src.merged_into:
                return 0  # already merged (a retry, or a concurrent link won)
            dst = self.repo.load(target_id, now)
            if dst.merged_into:
                return 0
            if not dst.exists:  # the customer is created by this merge: erased before? (see `_erasures`)
                self._erasures([dst])
            items: list[dict[str, Any]] = []
            fx = Effects()
            if src.exists and (src.profile.order_stats.known or src.profile.orders):
                # the orders of both at hand: the merged orders and the aggregates are exact
                self.repo.load_all_orders(src)
                self.repo.load_all_orders(dst)
            if src.exists:
                moved = self._timeline(source_id)
                if moved:  # copies first: a crash after this leaves duplicates under the old key, never a loss
                    ddb.batch_write(self.ddb, env.events_table,
                                    puts=[{**e, "pk": profile_pk(target_id), "customer_id": target_id} for e in moved])
                carried = [r for r in src.profile.journeys if r not in dst.profile.journeys]
                merge_profiles(dst.profile, src.profile, now, source_is_anonymous=False)
                raw_id = source_id.removeprefix("anon:")
                if raw_id != target_id and raw_id not in dst.profile.anonymous_ids:
                    dst.profile.anonymous_ids.append(raw_id)
                dst.sends = [*src.sends, *dst.sends]
                fx = engine.process(dst, now=now, recheck_segments=True)
                for rule_id in carried:  # the anonymous journeys' next steps now belong to the customer
                    j = dst.profile.journeys[rule_id]
                    if j.get("state") == "active" and j.get("next_due"):
                        fx.due.append(due.DueItem(at=clock.parse_iso(j["next_due"]), kind="JOURNEY",
                                                  customer_id=target_id, ref=f"{rule_id}|{j['entry']}|{j['step']}"))
                if len(dst.profile.dirty_orders()) > MERGE_ORDERS_IN_TRANSACTION:
                    # more orders than a transaction holds: written first (a retry merges them again, the same)
                    ddb.batch_write(self.ddb, env.profiles_table,
                                    puts=[order_item(target_id, o) for o in dst.profile.dirty_orders()])
                    dst.profile.orders_written()
                items = self._transaction(defs, "merge", dst, [], fx, now)
            if alias:
                pk, sk = alias_key(alias)
                items.append({"Put": {"TableName": env.profiles_table, "Item": ddb.serialize(
                    {"pk": pk, "sk": sk, "customer_id": target_id, "at": clock.iso(now)}),
                    "ConditionExpression": "attribute_not_exists(pk)"}})
            items.append({"Put": {"TableName": env.profiles_table,
                                  "Item": ddb.serialize(tombstone_item(source_id, target_id, src.version, now)),
                                  **version_condition(src)}})
            try:
                self.ddb.transact_write_items(TransactItems=items)
                break
            except Exception as exc:
                reasons = ddb.cancellation_reasons(exc)
                if alias and len(reasons) >= 2 and ddb.condition_failed_at(exc, len(items) - 2):
                    # someone linked this anonymous id first: never re-point history; take back the copies
                    if moved and self.repo.alias_of(alias) != target_id:
                        ddb.batch_write(self.ddb, env.events_table,
                                        deletes=[(profile_pk(target_id), e["sk"]) for e in moved])
                    return 0
                if not ddb.is_contention(exc):
                    raise
                ddb.backoff(attempt + 1)
        else:
            raise ContentionError(f"merge {source_id} → {target_id}: could not commit after {ATTEMPTS} attempts")
        if moved:
            ddb.batch_write(self.ddb, env.events_table, deletes=[(e["pk"], e["sk"]) for e in moved])
        if src is not None and src.exists and src.profile.orders and not src.profile.orders_legacy():
            # the source's order items are the target's now
            ddb.batch_write(self.ddb, env.profiles_table,
                            deletes=[order_key(source_id, i) for i in src.profile.orders])
        done = Committed()
        if src is not None and src.exists:
            self._move_interests(source_id, target_id, list(src.profile.interests))
            # the anonymous profile leaves its segments (segment sizes count people, not ids)
            from retention.language.segments import Transition
            gone = [Transition(group=g, segment=seg, kind="exited", at=now, reason="merged")
                    for g, members in src.profile.segments.items() for seg in members]
            if gone:
                done.transitions.append(gone)
        done.add(target_id, fx, now)
        return after_commit(self.ddb, self.sqs, env, done, now)

    def _timeline(self, customer_id: str) -> list[dict[str, Any]]:
        """A customer's raw events, strongly consistent (the version check of the merge covers later writes)."""
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.env.events_table, "KeyConditionExpression": "pk = :p",
                                  "ExpressionAttributeValues": {":p": {"S": profile_pk(customer_id)}},
                                  "ConsistentRead": True}
        while True:
            resp = self.ddb.query(**kwargs)
            out += [ddb.deserialize(raw) or {} for raw in resp.get("Items", [])]
            if not resp.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _move_interests(self, source_id: str, target_id: str, products: list[str]) -> None:
        """Re-point the product-interest rows, so back-in-stock / price-drop reach the identified customer."""
        if not products:
            return
        table = self.env.profiles_table
        old = ddb.batch_get(self.ddb, table, [interest_key(p, source_id) for p in products])
        if not old:
            return
        mine = ddb.batch_get(self.ddb, table, [(pk, profile_pk(target_id)) for pk, _ in old])
        puts = []
        for (pk, _), row in old.items():
            merged = {**row, "sk": profile_pk(target_id), "customer_id": target_id}
            theirs = mine.get((pk, profile_pk(target_id))) or {}
            for k, v in theirs.items():
                if k.endswith("_at") or k == "ttl":
                    merged[k] = max(v, merged.get(k, v))
            puts.append(merged)
        ddb.batch_write(self.ddb, table, puts=puts)
        ddb.batch_write(self.ddb, table, deletes=list(old))

    # ---- one customer ---------------------------------------------------------------------------------
    def _customer(self, engine: Engine, defs: Definitions, source_id: str, sp: StoredProfile,
                  msgs: list[Message], now: datetime, scopes: frozenset[str] | None = None) -> _Outcome:
        out = _Outcome()
        if sp.merged_into:
            sp = self._follow(sp, now)
        if scopes is not None:
            created_here = not sp.exists
            allowed = []
            for msg in sorted(msgs, key=lambda m: m.timestamp):
                why = refusal(msg, sp, source_id, scopes, created_here=created_here)
                if why:
                    out.rejected.append(Rejection(index=msg.index, messageId=msg.message_id, error=why))
                else:
                    allowed.append(msg)
            msgs = allowed
        pending = sorted(msgs, key=lambda m: m.timestamp)
        queue = deque(pending[i:i + CHUNK] for i in range(0, len(pending), CHUNK))
        own: set[str] = set()  # keyed raw events this request wrote before a transaction that did not commit
        while queue:
            chunk = queue.popleft()
            attempt = 0
            while chunk:
                if not sp.exists:
                    sp.profile.meta.setdefault(CREATED_BY, source_id)  # whose customer it is (key scopes)
                erased = erased_before(sp.profile)
                if erased is not None and erased < now - timedelta(days=defs.settings.dedupe_window_days):
                    sp.profile.meta.pop(ERASED_BEFORE)  # no retry of an erased event is left: gone at the next write
                migrated = self._orders_for(sp, chunk)
                before = sp.profile.to_doc()
                seen_before = sp.profile.last_seen_at
                fx = engine.process(sp, messages=chunk, now=now)
                if sp.profile.order_stats.stale and not sp.profile.orders_complete():
                    # the first or last order left and the others were not at hand: again, with all of them
                    sp = self._reload(sp.profile.id, now)
                    self.repo.load_all_orders(sp)
                    continue
                effects = self._effect_items(defs, sp, chunk, fx, now)
                if not migrated and self._is_plain(sp, fx, effects, before, seen_before):
                    _set_seen(sp.profile, seen_before)  # as stored: the next chunk compares with that
                    fresh, dups = self._store_plain(source_id, sp.profile.id, chunk, defs, now, own,
                                                    erased_before(sp.profile))
                    out.stored += fresh
                    out.duplicates += dups
                    out.committed.add(sp.profile.id, fx, now)
                    break
                if not migrated and self._is_idempotent_only(sp, fx, effects, before):
                    stored_soft = self._store_idempotent(source_id, sp, chunk, effects, before, seen_before, defs,
                                                        now, own)
                    if isinstance(stored_soft, tuple):
                        fresh, dups = stored_soft
                        out.stored += fresh
                        out.duplicates += dups
                        break
                    if stored_soft is None:
                        # someone else wrote the profile (or a merge left a tombstone): again, from the store
                        sp = self._reload(sp.profile.id, now)
                        attempt += 1
                        if attempt >= ATTEMPTS:
                            raise ContentionError(
                                f"profile {sp.profile.id}: could not commit after {ATTEMPTS} attempts")
                        ddb.backoff(attempt)
                        continue
                    # TOO_LARGE: the transaction path below finds and refuses the message that overflows
                early = _Early()
                items = self._transaction(defs, source_id, sp, chunk, fx, now, effects, early)
                if len(items) > MAX_TXN_ITEMS and len(chunk) > 1:
                    # many products or transitions: commit the chunk in two halves (process() changed the
                    # in-memory profile, so read it again)
                    half = len(chunk) // 2
                    queue.appendleft(chunk[half:])
                    chunk = chunk[:half]
                    sp = self._reload(sp.profile.id, now)
                    continue
                oversized = ddb.item_size(items[-1]["Put"]["Item"]) > MAX_PROFILE_ITEM_BYTES
                if not oversized:
                    try:
                        self._write_early(early, own)
                        self.ddb.transact_write_items(TransactItems=items)
                    except Exception as exc:
                        if not _item_too_large(exc):
                            if not ddb.is_contention(exc):
                                raise
                            dup = {i for i in range(len(chunk)) if ddb.condition_failed_at(exc, i)}
                            self._drop_strays(early, chunk, dup, exc)
                            own -= {chunk[i].message_id for i in dup}
                            if dup:
                                out.duplicates += len(dup)
                                chunk = [m for i, m in enumerate(chunk) if i not in dup]
                            if not chunk and not queue:
                                break  # a retried delivery: everything was stored before
                            # someone else wrote the profile, or a merge left a tombstone: start again from the
                            # store (process() changed the in-memory profile in any case)
                            cid = sp.profile.id
                            sp = self._reload(sp.profile.id, now)
                            if sp.profile.id != cid:  # merged meanwhile: the raw events go to the new profile
                                ddb.batch_write(self.ddb, self.env.events_table,
                                                deletes=[(e["pk"], e["sk"]) for _, e in early.events])
                            if not chunk:
                                break
                            attempt += 1
                            if attempt >= ATTEMPTS:
                                raise ContentionError(
                                    f"profile {sp.profile.id}: could not commit after {ATTEMPTS} attempts") from exc
                            ddb.backoff(attempt)
                            continue
                        oversized = True
                if oversized:
                    # one message at a time finds the one that overflows; it alone is refused (a `rejected`
                    # entry), the others of the batch and of the customer are stored
                    sp = self._reload(sp.profile.id, now)
                    if len(chunk) > 1:
                        queue.extendleft([[m] for m in reversed(chunk[1:])])
                        chunk = chunk[:1]
                        continue
                    msg = chunk[0]
                    if self._refuse(source_id, sp.profile.id, msg, defs, now, own):
                        out.duplicates += 1  # stored before: a retry the profile's growth since would refuse
                        break
                    out.rejected.append(Rejection(
                        index=msg.index, messageId=msg.message_id,
                        error=f"the customer's profile would grow past {MAX_PROFILE_ITEM_BYTES // 1024} KB with this "
                              "message: send fewer or smaller traits"))
                    break
                sp.version += 1
                sp.profile.orders_written()
                out.stored += chunk
                out.committed.add(sp.profile.id, fx, now)
                break
        out.customer = sp.profile.id
        return out

    def _refuse(self, source_id: str, cid: str, msg: Message, defs: Definitions, now: datetime,
                own: set[str]) -> bool:
        """A message the profile's size cap refuses. True: an earlier attempt stored it (its marker exists,
        or, keyed, its raw event that this request did not write), a retry that the profile's growth since
        would refuse: a duplicate; its raw event stays (written again where the marker recorded it: a crash
        of a plain attempt between its marker and its raw event is completed so). Else it is refused, and the
        keyed raw event this request wrote before a transaction (`own`) goes."""
        key_at = event_key_at(msg, defs.settings, now)
        expires = event_expiry(msg, defs.settings, now)
        ours = event_item(cid, msg, source_id, expires, key_at=key_at) if key_at and expires else None
        mine = ours is not None and msg.message_id in own
        marker = ddb.get(self.ddb, self.env.idempotency_table, *marker_key(source_id, msg.message_id),
                         consistent=True)
        if marker is not None:
            first = recorded_event(cid, msg, source_id, marker, expires) if expires else None
            if first is not None:
                self.ddb.put_item(TableName=self.env.events_table, Item=ddb.serialize(first))
            gone = stray(ours, first) if mine and ours is not None else None
            if gone:
                self.ddb.delete_item(TableName=self.env.events_table, Key=ddb.key(*gone))
            return True
        if ours is None:
            return False
        if mine:
            self.ddb.delete_item(TableName=self.env.events_table, Key=ddb.key(str(ours["pk"]), str(ours["sk"])))
            return False
        # a keyed plain attempt stores no marker: its raw event, if there, says the message is in
        return ddb.get(self.ddb, self.env.events_table, str(ours["pk"]), str(ours["sk"]), consistent=True) is not None

    def _write_early(self, early: _Early, own: set[str]) -> None:
        """What goes before the transaction (`_Early`): each write is idempotent, so a crash, a lost race or a
        duplicate after it is completed or undone by the next attempt (see the module docstring). A keyed raw
        event is a conditional put (the same write units as in a BatchWrite): stored, it is this request's
        (`own`); found, it is this request's from an earlier round, or another attempt's of the message (a
        concurrent retry that stored it plain): not written over, and not this request's. Several go out
        on EARLY_PUT_WORKERS threads (a mobile batch of one customer's views: one round trip per 4)."""
        if early.due:
            ddb.batch_write(self.ddb, self.env.due_table, puts=early.due)
        for update in early.updates:
            self.ddb.update_item(**update)

        def put(i: int) -> str | None:
            msg, event = early.events[i]
            try:
                self.ddb.put_item(TableName=self.env.events_table, Item=ddb.serialize(event),
                                  ConditionExpression="attribute_not_exists(pk)")
                return msg.message_id
            except Exception as exc:
                if ddb.error_code(exc) != "ConditionalCheckFailedException":
                    raise
                return None

        indexes = list(range(len(early.events)))
        stored = [put(i) for i in indexes] if len(indexes) <= 1 else \
            _in_parallel(put, indexes, min(EARLY_PUT_WORKERS, len(indexes)))
        own.update(mid for mid in stored if mid)

    def _drop_strays(self, early: _Early, chunk: list[Message], dup: set[int], exc: Exception) -> None:
        """A keyed raw event written before a transaction whose marker says "duplicate" while the marker
        recorded another key (an earlier attempt went by the marker path: the client's clock skew crossed
        STABLE_KEY_SKEW between the two): the earlier attempt's raw event is the message's, this one goes.
        At the same key it is the same item (a retry, or a concurrent delivery that won): it stays."""
        if not dup or not early.events:
            return
        reasons = ddb.cancellation_reasons(exc)
        duplicates = {chunk[i].message_id: ddb.deserialize(reasons[i].get("Item")) for i in dup}
        strays = []
        for msg, event in early.events:
            marker = duplicates.get(msg.message_id)
            if marker is None:
                continue  # not a duplicate, or DynamoDB did not hand the old marker back: keep it
            gone = stray(event, recorded_event(str(event["customer_id"]), msg, str(event["source"]), marker,
                                               int(event["ttl"])))
            if gone:
                strays.append(gone)
        if strays:
            ddb.batch_write(self.ddb, self.env.events_table, deletes=strays)

    def _orders_for(self, sp: StoredProfile, chunk: list[Message]) -> bool:
        """The orders the chunk's order events touch, read from their items before the fold; all of them
        when a refund or cancellation touches the first or last order (the next one is needed then). A
        profile whose doc still holds its orders (before they became items) is migrated first: True then
        (the profile must be written, so that the migration happens once)."""
        migrated = False
        if sp.profile.orders_legacy() and sp.exists:
            self._migrate_orders(sp)
            migrated = True
        touched, removing = order_event_ids(chunk)
        if touched:
            self.repo.load_orders(sp, touched)
            if sp.profile.order_stats.stale or removing & extreme_orders(sp.profile):
                self.repo.load_all_orders(sp)
        return migrated

    def _migrate_orders(self, sp: StoredProfile) -> None:
        """A legacy doc's orders become items (conditional puts: an item written since is newer); the doc
        drops them at its next write. Idempotent: a crash before that write leaves the legacy doc."""
        for order in sp.profile.orders.values():
            try:
                self.ddb.put_item(TableName=self.env.profiles_table,
                                  Item=ddb.serialize(order_item(sp.profile.id, order)),
                                  ConditionExpression="attribute_not_exists(pk)")
            except Exception as exc:
                if ddb.error_code(exc) != "ConditionalCheckFailedException":
                    raise
        sp.profile.orders_written(migrated=True)

    def _reload(self, customer_id: str, now: datetime) -> StoredProfile:
        """The profile again, from the store (a lost race, a merge, orders to read). Absent (erased or never
        committed meanwhile): its erasure record is read again, as for any profile about to be created."""
        sp = self._follow(self.repo.load(customer_id, now), now)
        if not sp.exists and not sp.merged_into:
            self._erasures([sp])
        return sp

    def _follow(self, sp: StoredProfile, now: datetime) -> StoredProfile:
        """The profile a tombstone points to (an anonymous visitor identified meanwhile)."""
        for _ in range(3):
            if not sp.merged_into:
                return sp
            sp = self.repo.load(sp.merged_into, now)
        return sp

    def _transaction(self, defs: Definitions, source_id: str, sp: StoredProfile, chunk: list[Message],
                     fx: Effects, now: datetime, effects: list[dict[str, Any]] | None = None,
                     early: _Early | None = None) -> list[dict[str, Any]]:
        """The transaction's items: markers first (their positions identify duplicates in
        CancellationReasons; each hands its old item back, so a keyed raw event written before the
        transaction at another key than the marker recorded is found), raw events, effects, the profile
        last. With `early`, keyed raw events, interest rows and SEGMENT / JOURNEY due items go there
        instead (written before the transaction, 1 write unit each instead of 2)."""
        env = self.env
        settings = defs.settings
        cid = sp.profile.id
        items: list[dict[str, Any]] = []
        keys = {m.message_id: event_key_at(m, settings, now) for m in chunk}
        for msg in chunk:
            items.append({"Put": {"TableName": env.idempotency_table,
                                  "Item": ddb.serialize(marker_item(source_id, msg, settings, now,
                                                                    keys[msg.message_id])),
                                  "ConditionExpression": "attribute_not_exists(pk)",
                                  "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}})
        for msg in chunk:
            expires = event_expiry(msg, settings, now)
            if expires is None:
                continue  # older than the retention: counts in the KPIs, the raw event expires at once
            key_at = keys[msg.message_id]
            event = event_item(cid, msg, source_id, expires, key_at=key_at)
            if early is not None and key_at is not None:
                early.events.append((msg, event))
            else:
                items.append({"Put": {"TableName": env.events_table, "Item": ddb.serialize(event)}})
        if effects is None:
            effects = self._effect_items(defs, sp, chunk, fx, now)
        if early is not None:
            effects = [e for e in effects if not early.take(e, env.due_table)]
        items += effects
        items.append({"Put": {"TableName": env.profiles_table, "Item": ddb.serialize(to_item(sp, now)),
                              **version_condition(sp)}})
        if len(items) > MAX_TXN_ITEMS and len(chunk) <= 1:
            raise RuntimeError(f"transaction for {cid} has {len(items)} items")
        return items  # more than MAX_TXN_ITEMS only for several messages: the caller splits the chunk

    def _effect_items(self, defs: Definitions, sp: StoredProfile, chunk: list[Message], fx: Effects,
                      now: datetime) -> list[dict[str, Any]]:
        """What goes with the profile write: internal events, history, due and safety items, fan-out
        promises, the email index, the product-interest rows (the room left for markers and events is the
        caller's: a chunk over the transaction's size is split)."""
        env = self.env
        cid = sp.profile.id
        items = transaction_items(env, cid, fx, now, event_retention_seconds(defs.settings))
        for order in sp.profile.dirty_orders():  # the orders changed, with the aggregates in the profile
            items.append({"Put": {"TableName": env.profiles_table, "Item": ddb.serialize(order_item(cid, order))}})
        for msg in chunk:
            if _fans_out(msg, defs, now):
                items.append({"Put": {"TableName": env.due_table,
                                      "Item": ddb.serialize(fanout_item(msg, cid, now).to_item(env.due_shards))}})
        self._email_changes(sp, items, now)
        interests = self._interest_updates(sp, chunk, defs.settings, now)
        # one message naming more products than a transaction holds: the most recent ones are indexed
        room = MAX_TXN_ITEMS - len(items) - 1 - 2 * len(chunk)
        if len(chunk) == 1 and len(interests) > room:
            interests = interests[:max(0, room)]
        return items + interests

    @staticmethod
    def _is_plain(sp: StoredProfile, fx: Effects, effects: list[dict[str, Any]], before: str,
                  seen_before: datetime | None) -> bool:
        """Whether the chunk changed nothing that matters (then the profile is not written). An anonymous
        profile is always written: a merge leaves a tombstone there, and only the version condition tells
        this writer to follow it (its events would be orphaned otherwise)."""
        if effects or fx.sends or fx.counters or fx.transitions or fx.due or fx.events or fx.history:
            return False
        if not sp.exists or sp.profile.id.startswith("anon:") or sp.profile.dirty_orders():
            return False
        return not _matters(sp.profile, before, seen_before)

    @staticmethod
    def _is_idempotent_only(sp: StoredProfile, fx: Effects, effects: list[dict[str, Any]], before: str) -> bool:
        """Whether the chunk's whole effect is idempotent: product interests (`interests`, the browsing times
        in `meta.activity`, `last_seen_at`: each the latest of the times seen), traits (each kept with the
        time of the message that set it, `trait_ts`: an older or the same message sets nothing new), so
        folding the same message again changes nothing, and the product-interest rows (upserts of the same
        times). Such a chunk needs no transaction with its markers (`_store_idempotent`). Not for an
        anonymous profile (a merge's tombstone, see `_is_plain`) nor a new one; anything else that changed
        (consent and its log, the email index, segments, journeys, orders, notes …) goes in a transaction."""
        if fx.sends or fx.counters or fx.transitions or fx.due or fx.events or fx.history:
            return False
        if not sp.exists or sp.profile.id.startswith("anon:") or sp.profile.dirty_orders():
            return False
        if not all("Update" in e and e["Update"]["Key"]["pk"]["S"].startswith(INTEREST_PREFIX) for e in effects):
            return False
        return _without_latest(json.loads(before)) == _without_latest(json.loads(sp.profile.to_doc()))

    def _store_idempotent(self, source_id: str, sp: StoredProfile, chunk: list[Message], effects: list[dict[str, Any]],
                         before: str, seen_before: datetime | None, defs: Definitions, now: datetime,
                         own: set[str] | None = None) -> tuple[list[Message], int] | str | None:
        """A chunk of product views, trait updates and plain events without a transaction: the product-interest
        rows, then the profile (a put conditional on its version, only when it changed), then the markers and
        raw events as for a plain event. 4 write units for a product view (was 8 to 10 in a transaction), 3 for
        an identify that changes traits and nothing else (6). Each step is
        idempotent and comes before the markers: a crash anywhere is completed by the client's retry, which
        folds the same messages again (the times are maxima: no change where the first attempt landed) and
        writes the rows and the profile again before it finds the markers. None: the profile changed under
        us: the caller reads it again. TOO_LARGE: the profile would pass its size cap: the caller takes the
        transaction path, which refuses the message that overflows (a `rejected` entry) and stores the rest."""
        for e in effects:
            self.ddb.update_item(**e["Update"])
        if _matters(sp.profile, before, seen_before):
            item = ddb.serialize(to_item(sp, now))
            if ddb.item_size(item) > MAX_PROFILE_ITEM_BYTES:
                return TOO_LARGE
            try:
                self.ddb.put_item(TableName=self.env.profiles_table, Item=item, **version_condition(sp))
            except Exception as exc:
                if ddb.error_code(exc) != "ConditionalCheckFailedException":
                    raise
                return None
            sp.version += 1
        else:
            _set_seen(sp.profile, seen_before)  # as stored
        return self._store_plain(source_id, sp.profile.id, chunk, defs, now, own, erased_before(sp.profile))

    def _store_plain(self, source_id: str, cid: str, chunk: list[Message], defs: Definitions,
                     now: datetime, own: set[str] | None = None,
                     erased: datetime | None = None) -> tuple[list[Message], int]:
        """A keyed message (`event_key_at`, `key_alone`): one conditional put of its raw event, which is its
        dedupe (a ConditionalCheckFailed is a duplicate: stored before, by this path or by a transaction, at
        the same key). Others: the marker (a conditional put that records the key), then the raw events in
        one BatchWrite at the keys the markers recorded; a keyed one near an edge of the key rule: a new
        marker, then its raw event's conditional put (a key-alone attempt may have stored it). A marker that
        exists already is a duplicate: DynamoDB hands the old marker back with the failure (no read) and its
        raw event is written again where it was (a crash between the marker and the raw event is completed
        so; otherwise the same item is written over). `own`: keyed raw events this request wrote itself
        before a transaction that did not commit (the chunk came here after a lost race or a merge): such a
        message takes the marker path, whose conditional put tells whether another attempt committed it
        meanwhile (a concurrent retry); new, the raw event found is this request's, not a duplicate.
        `erased` (`erased_before`: the profile was re-created after an erasure, within the dedupe window): a
        keyed message from before the erasure (by STABLE_KEY_SKEW) may be a retry of one the erasure deleted,
        for which it left a marker, not a raw event: it takes the marker path too (`keyed_after`)."""
        settings = defs.settings
        fresh: list[Message] = []
        puts: list[dict[str, Any]] = []
        strays: list[tuple[str, str]] = []
        for msg in chunk:
            key_at = event_key_at(msg, settings, now)
            expires = event_expiry(msg, settings, now)
            mine = bool(own and msg.message_id in own)
            if (key_at is not None and expires is not None and not mine and key_alone(msg, settings, now)
                    and keyed_after(msg, erased)):
                if self._put_keyed(event_item(cid, msg, source_id, expires, key_at=key_at), msg, own):
                    fresh.append(msg)
                continue
            item = marker_item(source_id, msg, settings, now, key_at)  # near an edge of the key rule: both
            try:
                self.ddb.put_item(TableName=self.env.idempotency_table, Item=ddb.serialize(item),
                                  ConditionExpression="attribute_not_exists(pk)",
                                  ReturnValuesOnConditionCheckFailure="ALL_OLD")
            except Exception as exc:
                if ddb.error_code(exc) != "ConditionalCheckFailedException":
                    raise
                old = ddb.deserialize(getattr(exc, "response", {}).get("Item")) or {}
                event = recorded_event(cid, msg, source_id, old, expires) if expires else None
                if event:
                    puts.append(event)
                if mine and key_at is not None and expires is not None:
                    # the raw event this request wrote before its transaction, where the attempt that
                    # committed (its marker) put it elsewhere or nowhere (an erasure's marker): it goes
                    gone = stray(event_item(cid, msg, source_id, expires, key_at=key_at), event)
                    if gone:
                        strays.append(gone)
                continue
            if key_at is not None and expires is not None:
                # a new marker for a keyed message: an attempt that had no marker (its key alone) may have
                # stored the raw event at this key already
                if self._put_keyed(event_item(cid, msg, source_id, expires, key_at=key_at), msg, own):
                    fresh.append(msg)
                continue
            fresh.append(msg)
            event = recorded_event(cid, msg, source_id, item, expires) if expires else None
            if event:
                puts.append(event)
        if puts:
            ddb.batch_write(self.ddb, self.env.events_table, puts=puts)
        if strays:
            ddb.batch_write(self.ddb, self.env.events_table, deletes=strays)
        return fresh, len(chunk) - len(fresh)

    def _put_keyed(self, event: dict[str, Any], msg: Message, own: set[str] | None) -> bool:
        """The keyed raw event's conditional put: True when this request stored it (a refused put found it
        stored by an earlier attempt: a duplicate, unless this request wrote it itself, see `own`)."""
        try:
            self.ddb.put_item(TableName=self.env.events_table, Item=ddb.serialize(event),
                              ConditionExpression="attribute_not_exists(pk)")
            return True
        except Exception as exc:
            if ddb.error_code(exc) != "ConditionalCheckFailedException":
                raise
            return bool(own and msg.message_id in own)

    def _interest_updates(self, sp: StoredProfile, chunk: list[Message], settings: Any,
                          now: datetime) -> list[dict[str, Any]]:
        """Upserts of the product-interest index (`PI#<product>` / `C#<customer>`), newest first. Interests
        older than the window are left out (a history import does not index what expired long ago); the
        row's expiry never moves back (the profile knows the latest interest in the product)."""
        window = timedelta(days=settings.interest_window_days)
        cid = sp.profile.id
        by_product: dict[str, dict[str, datetime]] = defaultdict(dict)
        for product, kind, at in _interests(chunk):
            if at + window > now:
                by_product[product][kind] = at
        out: list[tuple[datetime, dict[str, Any]]] = []
        for product, kinds in by_product.items():
            latest = max(kinds.values())
            known = sp.profile.interests.get(product)
            if known:
                latest = max(latest, clock.parse_iso(known))
            sets = {f"{k}_at": clock.iso(at) for k, at in kinds.items()}
            names = {f"#k{i}": k for i, k in enumerate(sets)} | {"#ttl": "ttl"}
            vals = {f":k{i}": v for i, v in enumerate(sets.values())} | {
                ":c": cid, ":x": int((latest + window).timestamp())}
            expr = ", ".join(f"#k{i} = :k{i}" for i in range(len(sets)))
            out.append((max(kinds.values()), {"Update": {
                "TableName": self.env.profiles_table, "Key": ddb.key(*interest_key(product, cid)),
                "UpdateExpression": f"SET {expr}, customer_id = :c, #ttl = :x",
                "ExpressionAttributeNames": names, "ExpressionAttributeValues": ddb.values(vals)}}))
        out.sort(key=lambda pair: pair[0], reverse=True)
        return [item for _, item in out]

    def _email_changes(self, sp: StoredProfile, items: list[dict[str, Any]], now: datetime) -> None:
        """A new address is checked against the suppression list (bounce, complaint, erasure are bound to
        the address): found → suppressed; clean → an old address's suppression no longer applies."""
        profile = sp.profile
        email = profile.traits.get("email")
        salt: str | None = None
        if email and sp.email_indexed != email_key(str(email)):
            pk, sk = email_index_key(str(email))
            items.append({"Put": {"TableName": self.env.profiles_table, "Item": ddb.serialize(
                {"pk": pk, "sk": sk, "customer_id": profile.id})}})
            salt = self.config.secrets("suppression-salt")[0].decode()
            self._check_address(profile, "email", str(email), salt)
        phone = profile.traits.get("phone")
        if phone and profile.meta.get("phone_checked") != phone:
            salt = salt or self.config.secrets("suppression-salt")[0].decode()
            self._check_address(profile, "sms", str(phone), salt)
            profile.meta["phone_checked"] = phone
            pk, sk = phone_index_key(str(phone))  # with the profile that now holds the number
            items.append({"Put": {"TableName": self.env.profiles_table, "Item": ddb.serialize(
                {"pk": pk, "sk": sk, "customer_id": profile.id})}})

    def _check_address(self, profile: Any, channel: str, address: str, salt: str) -> None:
        sup = ddb.get(self.ddb, self.env.messages_table, *suppression_key(address, salt))
        if sup:
            apply_suppression(profile, channel, sup.get("reason", "suppressed"), sup.get("at"))
        else:
            profile.suppressed.pop(channel, None)

    # ---- product events: fan out to interested customers (a Query per product, never a scan) -----------
    def fan_out_product_event(self, msg: Message, defs: Definitions, now: datetime) -> int:
        product = product_id(msg.properties)
        if not product:
            return 0
        rules = [r for r in defs.rules
                 if r.trigger.kind == "product_event" and r.trigger_matches_event(msg.event or "", msg.properties)]
        if not rules:
            return 0
        items: list[due.DueItem] = []
        for row in ddb.query(self.ddb, self.env.profiles_table, interest_pk(product)):
            if int(row.get("ttl", 0)) and int(row["ttl"]) < int(now.timestamp()):
                continue
            for rule in rules:
                horizon = clock.iso(now - rule.trigger.window)
                if not any(str(row.get(f"{kind}_at", "")) >= horizon for kind in rule.trigger.interest):
                    continue
                items.append(due.DueItem(at=now, kind="TRIGGER", customer_id=row["customer_id"],
                                         ref=f"{rule.id}|{msg.message_id}",
                                         payload={"rule": rule.id, "name": msg.event, "properties": msg.properties}))
        due.put(self.ddb, self.env.due_table, items, self.env.due_shards)
        return len(items)


FANOUT_AFTER = timedelta(minutes=5)


def _fans_out(msg: Message, defs: Definitions, now: datetime) -> bool:
    live_after = now - timedelta(hours=defs.settings.history_horizon_hours)
    return msg.type == "track" and msg.event in PRODUCT_EVENTS and msg.timestamp >= live_after \
        and product_id(msg.properties) is not None


def fanout_item(msg: Message, cid: str, now: datetime) -> due.DueItem:
    """The durable promise of a product event's fan-out (kind FANOUT), keyed by its messageId."""
    return due.DueItem(at=now + FANOUT_AFTER, kind="FANOUT", customer_id=cid, ref=msg.message_id,
                       payload={"message": json.loads(msg.model_dump_json())})


def apply_suppression(profile: Any, channel: str, reason: str, at: str | None) -> None:
    profile.suppressed[channel] = {"reason": reason, "at": at}


def _with_page_url(msg: Message) -> dict[str, Any]:
    """The properties, plus the page the event happened on (`context.page.url`) as `_page_url`: a product
    link of a message carries its ledger id there (recommendation clicks)."""
    props = msg.properties if isinstance(msg.properties, dict) else {}
    page = msg.context.get("page") if isinstance(msg.context, dict) else None
    url = page.get("url") if isinstance(page, dict) else None
    return {**props, "_page_url": url} if isinstance(url, str) and "rtm_lid=" in url else props


def event_expiry(msg: Message, settings: Any, now: datetime) -> int | None:
    """When the raw event expires; None when it is older than the retention already (not stored)."""
    expires = int(msg.timestamp.timestamp()) + event_retention_seconds(settings)
    return expires if expires > int(now.timestamp()) else None


STABLE_KEY_SKEW = timedelta(seconds=60)
"""A client timestamp this close to the corrected time keys the raw event (see the module docstring)."""


def event_key_at(msg: Message, settings: Any, now: datetime) -> str | None:
    """The time in a keyed message's raw-event sort key: the client's own timestamp (unchanged between the
    client's retries), when it is within STABLE_KEY_SKEW of the corrected `timestamp` and the raw event is
    kept at least as long as a marker would be (the dedupe window: the raw event IS the dedupe then). None:
    the message is deduped by its messageId marker (no client timestamp, a clock further off, an import
    whose raw event expires before the window ends)."""
    client = msg.original_timestamp
    if client is None or abs(client - msg.timestamp) > STABLE_KEY_SKEW:
        return None
    expires = event_expiry(msg, settings, now)
    window = int(timedelta(days=settings.dedupe_window_days).total_seconds())
    if expires is None or expires < int(now.timestamp()) + window:
        return None
    return clock.iso(client)


def key_alone(msg: Message, settings: Any, now: datetime) -> bool:
    """Whether a keyed message's raw event alone dedupes it on the plain path: well inside both edges of the
    key rule (within half of STABLE_KEY_SKEW, and kept at least twice the dedupe window), so that any retry
    of it within the window is keyed too (the skew moves by the network's jitter between attempts; the
    expiry only by the time between them). Near an edge the plain path also writes the marker (recording
    the keyed key): a retry that falls on the other side finds it and writes the raw event over itself."""
    client = msg.original_timestamp
    if client is None or abs(client - msg.timestamp) > STABLE_KEY_SKEW / 2:
        return False
    expires = event_expiry(msg, settings, now)
    window = int(timedelta(days=settings.dedupe_window_days).total_seconds())
    return expires is not None and expires >= int(now.timestamp()) + 2 * window


def keyed_after(msg: Message, erased: datetime | None) -> bool:
    """Whether a keyed message's raw event alone can dedupe it on a profile re-created after an erasure
    (`erased`: the erasure's time, `erased_before`; None for every other profile: True). An event from
    before the erasure (by STABLE_KEY_SKEW) may be the client's retry of one the erasure deleted, and the
    erasure wrote its marker (no raw event is left to refuse the put): the plain path checks the marker."""
    client = msg.original_timestamp
    return erased is None or (client is not None and client >= erased + STABLE_KEY_SKEW)


def marker_item(source_id: str, msg: Message, settings: Any, now: datetime,
                key_at: str | None = None) -> dict[str, Any]:
    """The messageId marker: no customer id and a hashed messageId (erasure-proof); `event_at`, the raw
    event's timestamp, and `key_at` for a keyed message (`event_key_at`: the time in its sort key), so a
    retry whose corrected timestamp moved (a new `sentAt`) or whose skew crossed STABLE_KEY_SKEW finds the
    raw event at its first key (`recorded_event`). Clients retry within minutes and imports resume within
    days: a month of markers is plenty, and keeping them as long as the events would cost as much storage
    as the events themselves."""
    pk, sk = marker_key(source_id, msg.message_id)
    ttl = int(now.timestamp()) + int(timedelta(days=settings.dedupe_window_days).total_seconds())
    item: dict[str, Any] = {"pk": pk, "sk": sk, "at": clock.iso(now), "ttl": ttl}
    if event_expiry(msg, settings, now):
        item["event_at"] = clock.iso(msg.timestamp)
        if key_at:
            item["key_at"] = key_at
    return item


def stray(ours: dict[str, Any], recorded: dict[str, Any] | None) -> tuple[str, str] | None:
    """The key of a keyed raw event an attempt wrote (`ours`) when the message's marker put the raw event
    elsewhere or nowhere (`recorded`: `recorded_event` of the marker): that copy goes. None: the same item."""
    if recorded is not None and recorded["sk"] == ours["sk"]:
        return None
    return (str(ours["pk"]), str(ours["sk"]))


def recorded_event(cid: str, msg: Message, source_id: str, marker: dict[str, Any], ttl: int
                   ) -> dict[str, Any] | None:
    """The raw event where the marker's first attempt put it (None: it stored none): at `key_at` for a
    keyed message, else at `event_at`, the corrected time of the first attempt."""
    event_at = marker.get("event_at")
    if not event_at:
        return None
    key_at = marker.get("key_at")
    return event_item(cid, msg, source_id, ttl, timestamp=str(event_at), key_at=str(key_at) if key_at else None)


SEEN_EVERY = timedelta(hours=1)
"""`last_seen_at` is stored when it moves by this much (no segment rule reads it finer than days: the
`last_seen_at` KPI, `days_since_last_seen`; the raw events keep the exact times)."""


def _matters(profile: Any, before: str, seen_before: datetime | None) -> bool:
    """Whether the profile must be written: anything changed but `last_seen_at` moving by < SEEN_EVERY."""
    seen_after = profile.last_seen_at
    if seen_before is None or seen_after is None or seen_after - seen_before >= SEEN_EVERY:
        return bool(profile.to_doc() != before)
    _set_seen(profile, seen_before)
    try:
        return bool(profile.to_doc() != before)
    finally:
        _set_seen(profile, seen_after)


def _in_parallel(fn: Any, keys: list[Any], workers: int) -> list[Any]:
    """`[fn(k) for k in keys]` on `workers` threads, as `list(pool.map(fn, keys))` answers it (every key
    runs; the first failure in key order is raised), but each thread takes the next key itself: one task
    per thread instead of one per key (a Future, a queue hand-off and a wake-up of the caller each), which
    cost about a third of a plain event's CPU with 100 customers on 8 threads."""
    results: dict[int, tuple[bool, Any]] = {}
    indexed = iter(enumerate(keys))  # next() on it is atomic under the GIL: each key is taken once

    def worker() -> None:
        for i, key in indexed:
            try:
                results[i] = (True, fn(key))
            except BaseException as exc:  # re-raised below, in key order (as pool.map does)
                results[i] = (False, exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(worker) for _ in range(workers)]:
            future.result()
    out: list[Any] = []
    for i in range(len(keys)):
        ok, value = results[i]
        if not ok:
            raise value
        out.append(value)
    return out


def _without_latest(doc: dict[str, Any]) -> dict[str, Any]:
    """A profile doc without what a message changes idempotently (latest times, latest trait values)."""
    out = {k: v for k, v in doc.items() if k not in ("interests", "last_seen_at", "traits", "trait_ts")}
    if isinstance(out.get("meta"), dict):
        out["meta"] = {k: v for k, v in out["meta"].items() if k != "activity"}
    if isinstance(out.get("kpis"), dict):
        out["kpis"] = {k: v for k, v in out["kpis"].items() if k != "last_seen_at"}
    return out


def _set_seen(profile: Any, at: datetime | None) -> None:
    profile.last_seen_at = at
    if "last_seen_at" in profile.kpis:
        profile.kpis["last_seen_at"] = clock.iso(at) if at else None


def event_item(cid: str, msg: Message, source_id: str, ttl: int, *, timestamp: str | None = None,
               key_at: str | None = None) -> dict[str, Any]:
    """The raw event. `timestamp` (the `timestamp` attribute; the marker's `event_at` for a retry) is the
    corrected time and, without `key_at`, the time in the sort key. `key_at`: a keyed message's client
    timestamp (`event_key_at`): the sort key holds it and the source (its dedupe is per source)."""
    ts = timestamp or clock.iso(msg.timestamp)
    pk, sk = timeline_key(cid, key_at, msg.message_id, source_id) if key_at else timeline_key(cid, ts, msg.message_id)
    return {"pk": pk, "sk": sk, "customer_id": cid, "type": msg.type,
            "event": msg.event or msg.name, "message_id": msg.message_id, "timestamp": ts,
            "received_at": clock.iso(msg.received_at), "source": source_id,
            "user_id": msg.user_id, "anonymous_id": msg.anonymous_id,
            "properties": json.dumps(msg.properties, ensure_ascii=False, default=str) if msg.properties else None,
            "traits": json.dumps(msg.traits, ensure_ascii=False, default=str) if msg.traits else None,
            "ttl": ttl}


def _interests(msgs: list[Message]) -> list[tuple[str, str, datetime]]:
    out: dict[tuple[str, str], datetime] = {}
    for m in msgs:
        kind = interest_kind(m.event) if m.type == "track" else None
        if not kind:
            continue
        for pid in interest_products(m.properties):
            out[(pid, kind)] = max(out.get((pid, kind), m.timestamp), m.timestamp)
    return [(p, k, at) for (p, k), at in out.items()]


def _item_too_large(exc: Exception) -> bool:
    """DynamoDB's answer to an item over 400 KB (the guard's estimate missed it): the message is refused."""
    return ddb.error_code(exc) == "ValidationException" and "size" in str(exc).lower()


def _anonymous_ids(messages: list[Message]) -> set[str]:
    ids: set[str] = set()
    for m in messages:
        if m.anonymous_id and m.anonymous_id != m.user_id:
            ids.add(m.anonymous_id)
        if m.type == "alias" and m.previous_id and m.previous_id != m.user_id:
            ids.add(m.previous_id)
    return ids

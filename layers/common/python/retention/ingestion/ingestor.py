"""track_event's library: exactly-once storage of Segment messages, identity, profiles, segments and
journey starts, in the ingestion path.

Per customer one TransactWriteItems holds the messageId markers (conditional puts: a retried or
concurrent message loses there), the raw events, the profile (conditional on its version) and the
due items of what the events started. Either all of it lands or none, so a crash never leaves a
marker without its effect. Events of one customer inside a batch update the profile once.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb
from retention.core.config import ConfigStore
from retention.core.settings import Env
from retention.customers.profile import merge_profiles
from retention.customers.store import (
    ProfileRepo,
    StoredProfile,
    email_key,
    profile_pk,
    to_item,
    tombstone_item,
    version_condition,
)
from retention.ingestion.wire import Message, Rejection
from retention.journeys.engine import Definitions, Effects, Engine
from retention.messaging.rendering import Library
from retention.messaging.requests import SendRequest, add_counters, suppression_key
from retention.schedule import due

MAX_TXN_ITEMS = 100
CHUNK = 24  # messages per transaction: markers + events + profile + due/history items stay under 100
INTEREST_EVENTS = {"Product Viewed": "viewed", "Product Clicked": "viewed", "Product Added": "carted",
                   "Product Added to Wishlist": "subscribed", "Back in Stock Subscribed": "subscribed",
                   "Price Drop Subscribed": "subscribed", "Product Subscribed": "subscribed"}
PRODUCT_EVENTS = ("Product Back in Stock", "Product Price Dropped", "Product Low Stock")
ATTEMPTS = 6


class ContentionError(RuntimeError):
    """A profile kept changing under us for every attempt: the request may be retried as a whole."""


_RETRYABLE = ("TransactionCanceledException", "TransactionConflictException", "ConditionalCheckFailedException")


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
    sends: list[SendRequest] = field(default_factory=list)
    counters: list[Any] = field(default_factory=list)
    transitions: list[Any] = field(default_factory=list)
    completed: list[Message] = field(default_factory=list)  # a crashed delivery's messages, finished now


def customer_of(msg: Message, aliases: dict[str, str]) -> str:
    if msg.user_id:
        return msg.user_id
    anon = msg.anonymous_id or ""
    return aliases.get(anon) or f"anon:{anon}"


def definitions(config: ConfigStore) -> Definitions:
    lib = Library(config)
    return Definitions(rules=lib.enabled_rules(), groups=lib.segment_groups(), settings=config.settings())


class Ingestor:
    def __init__(self, *, ddb_client: Any, sqs: Any, env: Env, config: ConfigStore, workers: int = 8) -> None:
        self.ddb = ddb_client
        self.sqs = sqs
        self.env = env
        self.config = config
        self.repo = ProfileRepo(ddb_client, env.profiles_table)
        self.workers = workers

    def ingest(self, messages: list[Message], source_id: str, *, now: datetime | None = None) -> IngestResult:
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
        profiles = self.repo.load_many(list(groups), now)
        sends: list[SendRequest] = []
        counters: list[tuple[str, int, str, dict[str, float], str]] = []
        stored: list[Message] = []

        def run(cid: str) -> _Outcome:
            return self._customer(engine, defs, source_id, profiles[cid], groups[cid], now)

        if len(groups) == 1 or self.workers <= 1:
            outcomes = [run(cid) for cid in groups]
        else:  # customers are independent: their transactions go out in parallel (latency, not CPU)
            with ThreadPoolExecutor(max_workers=min(self.workers, len(groups))) as pool:
                outcomes = list(pool.map(run, list(groups)))
        for outcome in outcomes:
            result.accepted += len(outcome.stored) + outcome.duplicates
            result.duplicates += outcome.duplicates
            stored += outcome.stored + outcome.completed
            sends += outcome.sends
            counters += outcome.counters
        transitions = [o.transitions for o in outcomes if o.transitions]
        if transitions:
            from retention.analytics import segstats
            segstats.record(self.ddb, self.env.messages_table, transitions, now)
        self._enqueue(sends, now)
        result.sends = len(sends)
        for rule, step, variant, values, hint in counters:
            add_counters(self.ddb, self.env.messages_table, rule, step, variant, values, now, hint)
        # every message, duplicates too: a retry completes a link that a crash interrupted
        result.sends += self._identities(unique, aliases, engine, now)
        # product events fan out once (a retried message is a duplicate) and only while live (history
        # imports start no journey)
        live_after = now - timedelta(hours=defs.settings.history_horizon_hours)
        for msg in stored:
            if msg.type == "track" and msg.event in PRODUCT_EVENTS and msg.timestamp >= live_after:
                self.fan_out_product_event(msg, defs, now)
        return result

    # ---- identity ---------------------------------------------------------------------------------
    def _aliases(self, anon_ids: list[str]) -> dict[str, str]:
        if not anon_ids:
            return {}
        found = ddb.batch_get(self.ddb, self.env.profiles_table, [(f"A#{a}", "ALIAS") for a in anon_ids])
        return {pk[2:]: item["customer_id"] for (pk, _), item in found.items()}

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
            items: list[dict[str, Any]] = []
            fx = Effects()
            if src.exists:
                moved = self._timeline(source_id)
                if moved:  # copies first: a crash after this leaves duplicates under the old key, never a loss
                    ddb.batch_write(self.ddb, env.events_table,
                                    puts=[{**e, "pk": profile_pk(target_id), "customer_id": target_id} for e in moved])
                carried = [r for r in src.profile.journeys if r not in dst.profile.journeys]
                merge_profiles(dst.profile, src.profile, now, source_is_anonymous=False)
                remember_applied(dst.profile, applied_ring(src.profile))  # the source's messages stay done
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
                items = self._transaction(defs, "merge", dst, [], fx, now)
            if alias:
                items.append({"Put": {"TableName": env.profiles_table, "Item": ddb.serialize(
                    {"pk": f"A#{alias}", "sk": "ALIAS", "customer_id": target_id, "at": clock.iso(now)}),
                    "ConditionExpression": "attribute_not_exists(pk)"}})
            items.append({"Put": {"TableName": env.profiles_table,
                                  "Item": ddb.serialize(tombstone_item(source_id, target_id, src.version, now)),
                                  **version_condition(src)}})
            try:
                self.ddb.transact_write_items(TransactItems=items)
                break
            except Exception as exc:
                reasons = _reasons(exc)
                if alias and len(reasons) >= 2 and _failed(reasons, len(items) - 2):
                    # someone linked this anonymous id first: never re-point history; take back the copies
                    if moved and self.repo.alias_of(alias) != target_id:
                        ddb.batch_write(self.ddb, env.events_table,
                                        deletes=[(profile_pk(target_id), e["sk"]) for e in moved])
                    return 0
                if ddb.error_code(exc) not in _RETRYABLE:
                    raise
                ddb.backoff(attempt + 1)
        else:
            raise ContentionError(f"merge {source_id} → {target_id}: could not commit after {ATTEMPTS} attempts")
        if moved:
            ddb.batch_write(self.ddb, env.events_table, deletes=[(e["pk"], e["sk"]) for e in moved])
        if src is not None and src.exists:
            self._move_interests(source_id, target_id, list(src.profile.interests))
        self._enqueue(fx.sends, now)
        for rule, step, variant, values in fx.counters:
            add_counters(self.ddb, env.messages_table, rule, step, variant, values, now, target_id)
        if src is not None and src.exists:
            # the anonymous profile leaves its segments (segment sizes count people, not ids)
            from retention.analytics import segstats
            from retention.language.segments import Transition
            gone = [Transition(group=g, segment=seg, kind="exited", at=now, reason="merged")
                    for g, members in src.profile.segments.items() for seg in members]
            if gone or fx.transitions:
                segstats.record(self.ddb, env.messages_table, [t for t in (gone, fx.transitions) if t], now)
        return len(fx.sends)

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
        old = ddb.batch_get(self.ddb, table, [(f"PI#{p}", profile_pk(source_id)) for p in products])
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
                  msgs: list[Message], now: datetime) -> _Outcome:
        """Exactly once without a transaction for the plain case (DESIGN §10: ≤ 3 write units per event).

        Per message, in this order: the messageId marker (conditional put; it records where the raw event
        goes), the raw event (a plain put at that key), then, only when something that matters changed,
        the profile (conditional on its version) carrying the message in its `applied` ring. A crash after
        the marker leaves a marker whose message is not in the ring: the retry finds the marker (the
        failed put returns it, no read), applies the message again and writes the event at the recorded
        key; a message in the ring is done. Re-applying a message the profile never took in is what a
        first delivery does; one whose effect did not matter (a plain event) changes nothing again."""
        out = _Outcome()
        if sp.merged_into:
            sp = self._follow(sp, now)
        pending = sorted(msgs, key=lambda m: m.timestamp)
        queue = deque(pending[i:i + CHUNK] for i in range(0, len(pending), CHUNK))
        keys: dict[str, tuple[str, str | None]] = {}  # messageId → (customer, event sort key) of its marker
        claimed: set[str] = set()  # markers this delivery put (the others are duplicates or completions)
        events_written: dict[str, str] = {}  # messageId → the customer whose timeline has its raw event
        while queue:
            chunk = queue.popleft()
            attempt = 0
            while chunk:
                applied = set(applied_ring(sp.profile))
                done = [m for m in chunk if applied_id(source_id, m.message_id) in applied]
                for m in done:  # taken in already (a retry, or a concurrent delivery completed ours)
                    if m.message_id in claimed:
                        out.stored.append(m)
                    else:
                        out.duplicates += 1
                chunk = [m for m in chunk if applied_id(source_id, m.message_id) not in applied]
                if not chunk:
                    break
                for m in chunk:
                    if m.message_id not in keys:
                        self._claim(source_id, sp.profile.id, m, now, defs, keys, claimed)
                before = sp.profile.to_doc()
                seen_before = sp.profile.last_seen_at
                fx = engine.process(sp, messages=chunk, now=now)
                items = self._effect_items(defs, sp, chunk, fx, now)
                # an anonymous profile is always written: a merge leaves a tombstone there, and only the
                # version condition tells this writer to follow it (its events would be orphaned otherwise)
                write = bool(items) or not sp.exists or sp.profile.id.startswith("anon:") or _matters(
                    sp.profile, before, seen_before)
                if write and len(items) + 1 > MAX_TXN_ITEMS and len(chunk) > 1:
                    half = len(chunk) // 2  # many products or transitions: two halves (re-read: process() ran)
                    queue.appendleft(chunk[half:])
                    chunk = chunk[:half]
                    sp = self._follow(self.repo.load(sp.profile.id, now), now)
                    continue
                self._write_events(sp.profile.id, chunk, keys, events_written, source_id, defs, now)
                if write:
                    remember_applied(sp.profile, [applied_id(source_id, m.message_id) for m in chunk])
                    try:
                        self._write_profile(sp, items, now)
                    except Exception as exc:
                        if ddb.error_code(exc) not in _RETRYABLE:
                            raise
                        # someone else wrote the profile (or a merge left a tombstone): start again from the
                        # store; messages it already took in are in its ring
                        sp = self._follow(self.repo.load(sp.profile.id, now), now)
                        self._move_events(sp.profile.id, events_written, keys)
                        attempt += 1
                        if attempt >= ATTEMPTS:
                            raise ContentionError(f"profile {sp.profile.id}: could not commit after {ATTEMPTS} "
                                                  "attempts") from exc
                        ddb.backoff(attempt)
                        continue
                    sp.version += 1
                for m in chunk:
                    if m.message_id in claimed:
                        out.stored.append(m)
                    else:
                        out.duplicates += 1  # a completion: counted as the duplicate it is for the client
                        out.completed.append(m)
                out.sends += fx.sends
                out.counters += [(*c, sp.profile.id) for c in fx.counters]
                out.transitions += fx.transitions
                break
        return out

    def _claim(self, source_id: str, cid: str, msg: Message, now: datetime, defs: Definitions,
               keys: dict[str, tuple[str, str | None]], claimed: set[str]) -> None:
        """The messageId marker: a conditional put that records where the raw event is stored. When it
        exists already, DynamoDB hands back the old marker with the failure (no read)."""
        settings = defs.settings
        marker_ttl = int(now.timestamp()) + int(timedelta(days=settings.dedupe_window_days).total_seconds())
        sk = event_sk(msg) if _event_expiry(msg, settings, now) else None
        item = {"pk": f"M#{source_id}#{msg.message_id}", "sk": "M", "customer_id": cid, "event_sk": sk,
                "at": clock.iso(now), "ttl": marker_ttl}
        try:
            self.ddb.put_item(TableName=self.env.idempotency_table, Item=ddb.serialize(item),
                              ConditionExpression="attribute_not_exists(pk)",
                              ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except Exception as exc:
            if ddb.error_code(exc) != "ConditionalCheckFailedException":
                raise
            old = ddb.deserialize(getattr(exc, "response", {}).get("Item")) or {}
            keys[msg.message_id] = (str(old.get("customer_id") or cid), old.get("event_sk"))
            return
        keys[msg.message_id] = (cid, sk)
        claimed.add(msg.message_id)

    def _write_events(self, cid: str, chunk: list[Message], keys: dict[str, tuple[str, str | None]],
                      written: dict[str, str], source_id: str, defs: Definitions, now: datetime) -> None:
        """The raw events at the keys their markers recorded (a retry writes over the same item)."""
        puts = []
        for m in chunk:
            if written.get(m.message_id) == cid:
                continue
            expires = _event_expiry(m, defs.settings, now)
            _, sk = keys.get(m.message_id, (cid, None))
            if expires and sk:  # else older than the retention: counts in the KPIs, no raw event
                puts.append(event_item(cid, m, source_id, expires, sk=sk))
            written[m.message_id] = cid
        if puts:
            ddb.batch_write(self.ddb, self.env.events_table, puts=puts)

    def _move_events(self, cid: str, written: dict[str, str], keys: dict[str, tuple[str, str | None]]) -> None:
        """After following a tombstone: the raw events written under the merged-away id are taken back (they
        are written again under the customer with the chunk)."""
        stale = [(mid, old) for mid, old in written.items() if old != cid]
        deletes = [(profile_pk(old), sk) for mid, old in stale if (sk := keys.get(mid, (old, None))[1])]
        for mid, _ in stale:
            del written[mid]
        if deletes:
            ddb.batch_write(self.ddb, self.env.events_table, deletes=deletes)

    def _effect_items(self, defs: Definitions, sp: StoredProfile, chunk: list[Message], fx: Effects,
                      now: datetime) -> list[dict[str, Any]]:
        """What goes with the profile write: internal events, history, due and safety items, the email
        index, the product-interest rows."""
        retention_s = int(timedelta(days=defs.settings.event_retention_days).total_seconds())
        items = effect_items(self.env, sp.profile.id, fx, now, retention_s)
        self._email_changes(sp, items, now)
        interests = self._interest_updates(sp, chunk, defs.settings, now)
        room = MAX_TXN_ITEMS - len(items) - 1
        if len(chunk) == 1 and len(interests) > room:
            # one message naming more products than a transaction holds: the most recent ones are indexed
            interests = interests[:max(0, room)]
        items += interests
        if len(items) + 1 > MAX_TXN_ITEMS and len(chunk) <= 1:
            raise RuntimeError(f"transaction for {sp.profile.id} has {len(items) + 1} items")
        return items

    def _write_profile(self, sp: StoredProfile, items: list[dict[str, Any]], now: datetime) -> None:
        """The profile alone is one conditional put (one unit per KB); with effects, one transaction."""
        profile_put = {"TableName": self.env.profiles_table, "Item": ddb.serialize(to_item(sp, now)),
                       **version_condition(sp)}
        if not items:
            self.ddb.put_item(**profile_put)
        else:
            self.ddb.transact_write_items(TransactItems=[*items, {"Put": profile_put}])

    def _follow(self, sp: StoredProfile, now: datetime) -> StoredProfile:
        """The profile a tombstone points to (an anonymous visitor identified meanwhile)."""
        for _ in range(3):
            if not sp.merged_into:
                return sp
            sp = self.repo.load(sp.merged_into, now)
        return sp

    def _transaction(self, defs: Definitions, source_id: str, sp: StoredProfile, chunk: list[Message],
                     fx: Effects, now: datetime) -> list[dict[str, Any]]:
        """A merge's profile write and its effects, as transaction items (the caller adds the link and the
        tombstone)."""
        items = self._effect_items(defs, sp, chunk, fx, now)
        items.append({"Put": {"TableName": self.env.profiles_table, "Item": ddb.serialize(to_item(sp, now)),
                              **version_condition(sp)}})
        return items

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
                "TableName": self.env.profiles_table, "Key": ddb.key(f"PI#{product}", profile_pk(cid)),
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
            items.append({"Put": {"TableName": self.env.profiles_table, "Item": ddb.serialize(
                {"pk": email_key(str(email)), "sk": "EMAIL", "customer_id": profile.id})}})
            salt = self.config.secrets("suppression-salt")[0].decode()
            self._check_address(profile, "email", str(email), salt)
        phone = profile.traits.get("phone")
        if phone and profile.meta.get("phone_checked") != phone:
            salt = salt or self.config.secrets("suppression-salt")[0].decode()
            self._check_address(profile, "sms", str(phone), salt)
            profile.meta["phone_checked"] = phone

    def _check_address(self, profile: Any, channel: str, address: str, salt: str) -> None:
        sup = ddb.get(self.ddb, self.env.messages_table, *suppression_key(address, salt))
        if sup:
            apply_suppression(profile, channel, sup.get("reason", "suppressed"), sup.get("at"))
        else:
            profile.suppressed.pop(channel, None)

    def _enqueue(self, sends: list[SendRequest], now: datetime) -> None:
        if not sends:
            return
        enqueue(self.sqs, self.env.send_queue_url, sends)
        due.delete(self.ddb, self.env.due_table, safety_items(sends, now), self.env.due_shards)

    # ---- product events: fan out to interested customers (a Query per product, never a scan) -----------
    def fan_out_product_event(self, msg: Message, defs: Definitions, now: datetime) -> int:
        product = _product_id(msg.properties)
        if not product:
            return 0
        rules = [r for r in defs.rules
                 if r.trigger.kind == "product_event" and r.trigger_matches_event(msg.event or "", msg.properties)]
        if not rules:
            return 0
        items: list[due.DueItem] = []
        for row in ddb.query(self.ddb, self.env.profiles_table, f"PI#{product}"):
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


def apply_suppression(profile: Any, channel: str, reason: str, at: str | None) -> None:
    profile.suppressed[channel] = {"reason": reason, "at": at}


def safety_items(sends: list[SendRequest], now: datetime) -> list[due.DueItem]:
    """A send stays durable in the due index until the queue has it (deleted right after the enqueue; a
    crash in between leaves it for the tick, and the send ledger stops a second send)."""
    return [due.DueItem(at=now + timedelta(minutes=5), kind="SEND", customer_id=s.customer_id, ref=s.ledger_id,
                        payload=json.loads(s.model_dump_json())) for s in sends]


def effect_items(env: Env, cid: str, fx: Effects, now: datetime, retention_s: int) -> list[dict[str, Any]]:
    """What the engine decided for one customer, as transaction items: internal events (segment
    transitions) on the timeline, history rows, due items and the sends' safety items."""
    expires = int(now.timestamp()) + retention_s
    items: list[dict[str, Any]] = []
    for ev in fx.events:
        items.append({"Put": {"TableName": env.events_table, "Item": ddb.serialize(
            {"pk": profile_pk(cid), "sk": f"{ev['timestamp']}#{ev['message_id']}", "customer_id": cid,
             "type": "track", "event": ev["event"], "properties": json.dumps(ev["properties"]),
             "message_id": ev["message_id"], "timestamp": ev["timestamp"], "internal": True, "ttl": expires})}})
    for h in fx.history:
        items.append({"Put": {"TableName": env.profiles_table, "Item": ddb.serialize(
            {"pk": profile_pk(cid), "sk": f"H#{h['at']}#{h['group']}#{h['segment']}#{h['kind']}", **h,
             "ttl": expires})}})
    for d in [*fx.due, *safety_items(fx.sends, now)]:
        items.append({"Put": {"TableName": env.due_table, "Item": ddb.serialize(d.to_item(env.due_shards))}})
    return items


def enqueue(sqs: Any, queue_url: str, sends: list[SendRequest]) -> None:
    if sends and not queue_url:
        from retention.core.settings import SettingsError
        raise SettingsError(f"SEND_QUEUE_URL is not set: cannot queue {len(sends)} sends")
    for start in range(0, len(sends), 10):
        chunk = sends[start:start + 10]
        entries = [{"Id": str(i), "MessageBody": s.model_dump_json()} for i, s in enumerate(chunk)]
        for attempt in range(ATTEMPTS):
            resp = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            failed = {f["Id"] for f in resp.get("Failed", [])}
            if not failed:
                break
            entries = [e for e in entries if e["Id"] in failed]
            ddb.backoff(attempt + 1)
        else:
            raise RuntimeError(f"could not enqueue {len(entries)} sends")


def event_sk(msg: Message) -> str:
    return f"{clock.iso(msg.timestamp)}#{msg.message_id}"


def _event_expiry(msg: Message, settings: Any, now: datetime) -> int | None:
    """When the raw event expires; None when it is older than the retention already (not stored)."""
    expires = int(msg.timestamp.timestamp()) + int(timedelta(days=settings.event_retention_days).total_seconds())
    return expires if expires > int(now.timestamp()) else None


APPLIED_KEEP = 48  # the ring covers a crashed chunk (≤ CHUNK messages) and concurrent deliveries of it
SEEN_EVERY = timedelta(hours=1)


def applied_id(source_id: str, message_id: str) -> str:
    """A short, source-qualified id for the profile's ring of applied messages (48 bits: collisions
    among the last few dozen messages of one customer are negligible)."""
    import hashlib
    return hashlib.blake2b(f"{source_id}|{message_id}".encode(), digest_size=6).hexdigest()


def applied_ring(profile: Any) -> list[str]:
    return list(profile.meta.get("applied") or [])


def remember_applied(profile: Any, ids: list[str]) -> None:
    ring = [i for i in applied_ring(profile) if i not in ids] + ids
    profile.meta["applied"] = ring[-APPLIED_KEEP:]


def _matters(profile: Any, before: str, seen_before: datetime | None) -> bool:
    """Whether the profile must be written: anything changed but `last_seen_at`, which is stored when it
    moves by an hour or more (no segment rule reads it finer than days; the raw events keep the exact
    times)."""
    seen_after = profile.last_seen_at
    if seen_before is None or seen_after is None or seen_after - seen_before >= SEEN_EVERY:
        return profile.to_doc() != before
    kpi_seen = profile.kpis.get("last_seen_at")
    profile.last_seen_at = seen_before
    if "last_seen_at" in profile.kpis:
        profile.kpis["last_seen_at"] = clock.iso(seen_before)
    try:
        return profile.to_doc() != before
    finally:
        profile.last_seen_at = seen_after
        if "last_seen_at" in profile.kpis:
            profile.kpis["last_seen_at"] = kpi_seen


def event_item(cid: str, msg: Message, source_id: str, ttl: int, *, sk: str | None = None) -> dict[str, Any]:
    ts = clock.iso(msg.timestamp)
    return {"pk": profile_pk(cid), "sk": sk or event_sk(msg), "customer_id": cid, "type": msg.type,
            "event": msg.event or msg.name, "message_id": msg.message_id, "timestamp": ts,
            "received_at": clock.iso(msg.received_at), "source": source_id,
            "user_id": msg.user_id, "anonymous_id": msg.anonymous_id,
            "properties": json.dumps(msg.properties, ensure_ascii=False, default=str) if msg.properties else None,
            "traits": json.dumps(msg.traits, ensure_ascii=False, default=str) if msg.traits else None,
            "ttl": ttl}


def _product_id(props: dict[str, Any]) -> str | None:
    for key in ("product_id", "sku", "id"):
        v = props.get(key)
        if v not in (None, ""):
            return str(v)
    return None


def _interests(msgs: list[Message]) -> list[tuple[str, str, datetime]]:
    out: dict[tuple[str, str], datetime] = {}
    for m in msgs:
        kind = INTEREST_EVENTS.get(m.event or "") if m.type == "track" else None
        if not kind:
            continue
        products = [m.properties] + [p for p in m.properties.get("products", []) or [] if isinstance(p, dict)]
        for p in products:
            pid = _product_id(p)
            if pid:
                out[(pid, kind)] = max(out.get((pid, kind), m.timestamp), m.timestamp)
    return [(p, k, at) for (p, k), at in out.items()]


def _reasons(exc: Exception) -> list[dict[str, Any]]:
    """TransactionCanceledException's CancellationReasons, one per item in request order (botocore puts
    them at the top of the error response; moto does the same)."""
    return list(getattr(exc, "response", {}).get("CancellationReasons") or [])


def _failed(reasons: list[dict[str, Any]], index: int) -> bool:
    return index < len(reasons) and reasons[index].get("Code") == "ConditionalCheckFailed"


def _anonymous_ids(messages: list[Message]) -> set[str]:
    ids: set[str] = set()
    for m in messages:
        if m.anonymous_id and m.anonymous_id != m.user_id:
            ids.add(m.anonymous_id)
        if m.type == "alias" and m.previous_id and m.previous_id != m.user_id:
            ids.add(m.previous_id)
    return ids

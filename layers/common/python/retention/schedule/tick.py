"""evaluate_triggers' library: the minute tick reads the due index from its watermark to now (reads grow
with what is due), applies each customer's items through the engine with one conditional profile write,
enqueues sends, and deletes what it handled. Running twice, late or concurrently is harmless: journey
transitions check the step they expect, and the send ledger stops a second send."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb
from retention.core.config import ConfigStore
from retention.core.settings import Env
from retention.customers.store import ProfileRepo, to_item, version_condition
from retention.journeys.catalogue import definitions
from retention.journeys.effects import (
    ATTEMPTS,
    Committed,
    after_commit,
    enqueue,
    event_retention_seconds,
    replay_stats,
    transaction_items,
)
from retention.journeys.engine import Engine
from retention.messaging.requests import SendRequest
from retention.schedule import broadcasts, due

FIRST_TICK_LOOKBACK = timedelta(hours=1)


@dataclass
class TickResult:
    due_items: int = 0
    customers: int = 0
    sends: int = 0
    stale: int = 0
    broadcasts: int = 0
    fanouts: int = 0  # product fan-outs a dead ingestion request left to the tick
    pending_unknown: int = 0  # send claims found pending past the sender's timeout (metric + alarm)
    stats_replayed: int = 0  # counters a dead request committed but never added (retention.journeys.effects)
    watermark: str | None = None


class Ticker:
    def __init__(self, *, ddb_client: Any, sqs: Any, env: Env, config: ConfigStore) -> None:
        self.ddb = ddb_client
        self.sqs = sqs
        self.env = env
        self.config = config
        self.repo = ProfileRepo(ddb_client, env.profiles_table)

    def tick(self, now: datetime | None = None) -> TickResult:
        now = now or clock.now()
        result = TickResult()
        mark = self.config.watermark()
        since = clock.parse_iso(mark) if mark else now - FIRST_TICK_LOOKBACK
        items = list(due.read_due(self.ddb, self.env.due_table, since, now, self.env.due_shards))
        result.due_items = len(items)
        by_customer: dict[str, list[due.DueItem]] = defaultdict(list)
        for item in items:
            if item.kind == "FANOUT":
                result.fanouts += self._fan_out(item, now)
            elif item.kind == "PENDING":
                result.pending_unknown += self._sweep_pending(item, now)
            elif item.kind == "STATS":
                result.stats_replayed += int(replay_stats(self.ddb, self.env, item))
            else:
                by_customer[item.customer_id].append(item)
        if by_customer:
            engine = Engine(definitions(self.config))
            for cid, cust_items in by_customer.items():
                result.sends += self._customer(engine, cid, cust_items, now)[0]
            result.customers = len(by_customer)
        due.delete(self.ddb, self.env.due_table, items, self.env.due_shards)
        result.broadcasts = broadcasts.fire_due(self.config, self.sqs, self.env.recompute_queue_url, since, now)
        # the watermark trails by the current hour: later items of this hour are read next minute again
        self.config.set_watermark(clock.iso(now))
        result.watermark = clock.iso(now)
        return result

    def _fan_out(self, item: due.DueItem, now: datetime) -> int:
        """A product event whose request died before its fan-out: do it now (idempotent per messageId)."""
        from retention.ingestion.ingestor import Ingestor
        from retention.ingestion.wire import Message
        msg = Message.model_validate(item.payload["message"])
        ingestor = Ingestor(ddb_client=self.ddb, sqs=self.sqs, env=self.env, config=self.config)
        ingestor.fan_out_product_event(msg, definitions(self.config), now)
        return 1

    def _sweep_pending(self, item: due.DueItem, now: datetime) -> int:
        """A send-ledger claim still `pending` past the sender's timeout (retention.messaging.sender)."""
        from retention.messaging.sender import reconcile_pending
        return 1 if reconcile_pending(self.ddb, self.env, item.ref, now) else 0

    def recheck(self, engine: Engine, cid: str, now: datetime) -> int:
        """Re-evaluate one customer's segments (full recompute); returns the number of transitions."""
        return self._customer(engine, cid, [], now, recheck=True)[1]

    def _customer(self, engine: Engine, cid: str, items: list[due.DueItem], now: datetime,
                  recheck: bool = False) -> tuple[int, int]:
        sends_only = bool(items) and all(i.kind == "SEND" for i in items)
        if sends_only:
            enqueue(self.sqs, self.env.send_queue_url, [SendRequest.model_validate(i.payload) for i in items])
            return len(items), 0
        for attempt in range(ATTEMPTS):
            sp = self.repo.load(cid, now)
            if not sp.exists:
                return 0, 0
            # orders live in their own items (retention.customers.store): the ones a due event names (a
            # replenishment reminder of an order refunded since must run nothing) are read with the profile
            named = {str(i.payload.get("properties", {}).get("order_id") or "") for i in items if i.kind == "EVENT"}
            if named - {""}:
                self.repo.load_orders(sp, named - {""})
            fx = engine.process(sp, due_items=items, now=now,
                                recheck_segments=recheck or any(i.kind == "SEGMENT" for i in items))
            if not fx.changed and not fx.sends:
                return 0, 0
            if not (fx.events or fx.history or fx.transitions or fx.counters):
                try:
                    self._store_step(sp, cid, fx, now)
                except Exception as exc:
                    if ddb.is_contention(exc):
                        ddb.backoff(attempt)
                        continue
                    raise
                return len(fx.sends), 0
            tx: list[dict[str, Any]] = [{"Put": {"TableName": self.env.profiles_table,
                                                 "Item": ddb.serialize(to_item(sp, now)), **version_condition(sp)}}]
            tx += transaction_items(self.env, cid, fx, now, event_retention_seconds(engine.defs.settings))
            try:
                for start in range(0, len(tx), 100):
                    self.ddb.transact_write_items(TransactItems=tx[start:start + 100])
            except Exception as exc:
                if ddb.is_contention(exc):
                    ddb.backoff(attempt)
                    continue
                raise
            done = Committed()
            done.add(cid, fx, now)
            after_commit(self.ddb, self.sqs, self.env, done, now)
            return len(fx.sends), len(fx.transitions)
        raise RuntimeError(f"tick: profile {cid} kept changing; retried {ATTEMPTS} times")

    def _store_step(self, sp: Any, cid: str, fx: Any, now: datetime) -> None:
        """A journey step that moved no segment and counted nothing (a wait ended, a send is due): the sends
        are enqueued, the next due items put, then the profile written (conditional on its version), without
        a transaction and without SEND safety items: 3 write units instead of 8. Everything before the profile
        write is safe to repeat: a crash or a lost race leaves the processed due item in place, the next
        attempt folds it again from the stored profile, its send has the same ledger id (a second copy in the
        queue is a `duplicate` there) and a due item of a step never committed is stale when it comes due
        (the engine checks the step it expects)."""
        enqueue(self.sqs, self.env.send_queue_url, fx.sends)
        due.put(self.ddb, self.env.due_table, fx.due, self.env.due_shards)
        self.ddb.put_item(TableName=self.env.profiles_table, Item=ddb.serialize(to_item(sp, now)),
                          **version_condition(sp))

"""The send brake: marketing email pauses by itself before SES would put the account under review.

SES reviews an account at a 5 % bounce rate or a 0.1 % complaint rate (and may pause it at 10 % / 0.5 %);
the brake trips at half of the review thresholds (settings `brake_bounce_rate` 2.5 %, `brake_complaint_rate`
0.05 %), measured per sending identity (the From domain) over two windows:
- the last N sends (setting `brake_window_sends`, default 1,000), and
- a rolling 24 hours;
a window holding fewer than `brake_min_sends` (100) sends never trips it. While paused, marketing messages
are deferred (not dropped: the due index brings them back every `DEFER_MINUTES` until sending resumes);
transactional messages keep flowing. `resume` (admin) starts a fresh window: the counts before it no longer
count, so a resumed identity is not paused again by the very bounces that paused it.

Keys:
  config table   SENDING / <identity>                state: marketing active|paused, reason, since, epoch
  messages table BRAKE#<identity>#<epoch> / H#<hour>#<shard>   sent, bounced, complained (ADD counters)
The counters are hourly and sharded (a busy hour of sends is spread over SHARDS items); the epoch moves at
each resume. Cost: one UpdateItem per hard bounce or complaint (plus the evaluation, a Query of at most
WINDOW_DAYS of hourly rows, only when a bounce or a complaint arrives), and one per batch of send_message
for its emails: inside the sender's `batch()` the `sent` counts are summed in memory per hourly row and
written when the batch is done (`flush`), one UpdateItem with +N. Until then `evaluate` adds them from
memory, so this Brake sees its batch's sends. A send is counted after its ledger says `sent`: a crash
before the flush loses the batch's counts (at most once, as a crash after the send always could); the
loss errs on the safe side (fewer sends, so higher rates). Sending itself never reads these counters: it
checks the pause state (`paused`), which the feedback function sets when a bounce or complaint trips a
window.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb
from retention.core.config import ConfigStore

log = logging.getLogger(__name__)

SHARDS = 4
WINDOW_DAYS = 7  # the "last N sends" window looks back at most this far
DEFER_MINUTES = 30
SES_REVIEW = {"bounce": 0.05, "complaint": 0.001}  # SES's own review thresholds, for the record


def sending_identity(sender: str) -> str:
    """`Shop <news@shop.example>` → `shop.example` (SES reputation is per identity; ours is the domain)."""
    text = str(sender or "").strip()
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1: text.index(">")]
    return text.rsplit("@", 1)[-1].strip().lower() or "default"


def _hour(at: datetime) -> str:
    return clock.iso(at)[:13]


def _shard(hint: str) -> int:
    return int(hashlib.sha256(hint.encode()).hexdigest()[:8], 16) % SHARDS


class Brake:
    def __init__(self, dynamodb: Any, messages_table: str, config: ConfigStore) -> None:
        self.ddb = dynamodb
        self.table = messages_table
        self.config = config
        # inside a send batch: the sends not written yet, {(identity, epoch, hour, shard): {counter: n}}
        self.deferred = False
        self._pending: dict[tuple[str, int, str, int], dict[str, int]] = {}

    # ---- state ---------------------------------------------------------------------------------------
    def state(self, identity: str, *, fresh: bool = False) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            item = ddb.get(self.config.client, self.config.table, "SENDING", identity, consistent=True)
            return item or {"marketing": "active", "epoch": 0, "since": None, "reason": None}
        if fresh:
            return load()
        return dict(self.config._cached(f"sending:{identity}", load))

    def paused(self, identity: str) -> bool:
        """Checked before every marketing send (cached with the configuration: a pause reaches every
        sender within the config cache's 30 s)."""
        return self.state(identity).get("marketing") == "paused"

    # ---- counting ------------------------------------------------------------------------------------
    def _add(self, identity: str, epoch: int, counter: str, at: datetime, hint: str, n: int = 1,
             shard: int | None = None) -> None:
        self.ddb.update_item(
            TableName=self.table,
            Key=ddb.key(f"BRAKE#{identity}#{epoch}", f"H#{_hour(at)}#{_shard(hint) if shard is None else shard}"),
            UpdateExpression="ADD #c :n SET #t = if_not_exists(#t, :ttl)",
            ExpressionAttributeNames={"#c": counter, "#t": "ttl"},
            ExpressionAttributeValues=ddb.values({":n": n, ":ttl": int(at.timestamp()) + (WINDOW_DAYS + 2) * 86400}))

    def count_send(self, identity: str, at: datetime, hint: str) -> None:
        """One email sent from `identity` (marketing or transactional, a staff test send too: SES's rates count
        every mail). Written at once, or summed until `flush` inside a batch (`deferred`)."""
        epoch = int(self.state(identity).get("epoch", 0))
        hour = _hour(at)
        # a batch's sends of one hour go to one row: the shard of the first one
        key = next((k for k in self._pending if k[:3] == (identity, epoch, hour)), None) \
            or (identity, epoch, hour, _shard(hint))
        sums = self._pending.setdefault(key, {})
        sums["sent"] = sums.get("sent", 0) + 1
        if not self.deferred:
            self.flush()

    def flush(self) -> int:
        """Write the summed sends (one UpdateItem per hourly row); the first error is raised after every row
        was tried (a row that failed is lost: at most once)."""
        pending, self._pending = self._pending, {}
        error: Exception | None = None
        for (identity, epoch, hour, shard), sums in pending.items():
            at = clock.parse_iso(f"{hour}:00:00Z")
            for counter, n in sums.items():
                try:
                    self._add(identity, epoch, counter, at, "", n=n, shard=shard)
                except Exception as exc:
                    log.warning("brake counter lost: %s %s %s +%s", identity, hour, counter, n, exc_info=True)
                    error = error or exc
        if error is not None:
            raise error
        return len(pending)

    def record_feedback(self, identity: str, kind: str, at: datetime, hint: str) -> dict[str, Any] | None:
        """A hard bounce or a complaint: counted, then the windows are checked. Returns the new state when
        this one paused marketing."""
        if kind not in ("bounced", "complained"):
            return None
        state = self.state(identity, fresh=True)
        epoch = int(state.get("epoch", 0))
        self._add(identity, epoch, kind, at, hint)
        if state.get("marketing") == "paused":
            return None
        status = self.evaluate(identity, at, epoch=epoch)
        if not status["trip"]:
            return None
        return self._pause(identity, epoch, status, at)

    # ---- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, identity: str, now: datetime, *, epoch: int | None = None) -> dict[str, Any]:
        settings = self.config.settings()
        if epoch is None:
            epoch = int(self.state(identity, fresh=True).get("epoch", 0))
        lo = f"H#{_hour(now - timedelta(days=WINDOW_DAYS))}"
        hours: dict[str, dict[str, int]] = {}
        rows = list(ddb.query(self.ddb, self.table, f"BRAKE#{identity}#{epoch}", sk_between=(lo, "H#~")))
        # this instance's sends not written yet (a send batch in progress) count too
        rows += [{"sk": f"H#{hour}#{shard}", **sums} for (ident, ep, hour, shard), sums in self._pending.items()
                 if ident == identity and ep == epoch and f"H#{hour}" >= lo]
        for row in rows:
            hour = str(row["sk"]).split("#")[1]
            acc = hours.setdefault(hour, {"sent": 0, "bounced": 0, "complained": 0})
            for k in acc:
                acc[k] += int(row.get(k, 0) or 0)
        newest_first = sorted(hours.items(), reverse=True)
        day_start = _hour(now - timedelta(hours=24))
        day = _sum(v for h, v in newest_first if h > day_start)
        last: dict[str, int] = {"sent": 0, "bounced": 0, "complained": 0}
        for _, v in newest_first:
            for k in last:
                last[k] += v[k]
            if last["sent"] >= settings.brake_window_sends:
                break
        windows: list[dict[str, Any]] = [
            {"kind": "last_sends", "size": settings.brake_window_sends, **last},
            {"kind": "24h", "hours": 24, **day},
        ]
        tripped: dict[str, Any] | None = None
        for w in windows:
            w["bounce_rate"] = round(w["bounced"] / w["sent"], 5) if w["sent"] else 0.0
            w["complaint_rate"] = round(w["complained"] / w["sent"], 5) if w["sent"] else 0.0
            w["min_sends"] = settings.brake_min_sends
            w["enough"] = w["sent"] >= settings.brake_min_sends
            if tripped is None and w["enough"] and (w["bounce_rate"] > settings.brake_bounce_rate
                                                    or w["complaint_rate"] > settings.brake_complaint_rate):
                tripped = w
        shown = tripped or windows[0]
        reason = None
        if tripped is not None:
            what = ("complaint", tripped["complaint_rate"], settings.brake_complaint_rate) \
                if tripped["complaint_rate"] > settings.brake_complaint_rate else \
                ("bounce", tripped["bounce_rate"], settings.brake_bounce_rate)
            span = f"the last {tripped['sent']} sends" if tripped["kind"] == "last_sends" else "the last 24 hours"
            reason = (f"{what[0]} rate {what[1] * 100:.2f} % over {span} passed {what[2] * 100:g} % "
                      f"(half of SES's review threshold)")
        return {"trip": tripped is not None, "reason": reason, "window": shown, "windows": windows}

    def status(self, identity: str, now: datetime | None = None) -> dict[str, Any]:
        """`GET /admin/sending`: {marketing, reason, since, bounce_rate, complaint_rate, window, identity}."""
        now = now or clock.now()
        state = self.state(identity, fresh=True)
        ev = self.evaluate(identity, now, epoch=int(state.get("epoch", 0)))
        paused = state.get("marketing") == "paused"
        window = ev["window"]
        stored = json.loads(state["window"]) if paused and state.get("window") else None
        return {"identity": identity, "marketing": "paused" if paused else "active",
                "reason": state.get("reason") if paused else None, "since": state.get("since"),
                "bounce_rate": window["bounce_rate"], "complaint_rate": window["complaint_rate"],
                "window": {**window, "started_at": state.get("window_started_at")},
                "paused_window": stored, "windows": ev["windows"],
                "thresholds": {"bounce_rate": self.config.settings().brake_bounce_rate,
                               "complaint_rate": self.config.settings().brake_complaint_rate,
                               "min_sends": self.config.settings().brake_min_sends,
                               "window_sends": self.config.settings().brake_window_sends}}

    # ---- transitions ---------------------------------------------------------------------------------
    def _pause(self, identity: str, epoch: int, status: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        item = {"pk": "SENDING", "sk": identity, "marketing": "paused", "reason": status["reason"],
                "since": clock.iso(now), "epoch": epoch, "paused_by": "brake",
                "window": json.dumps(status["window"]),
                "window_started_at": self.state(identity, fresh=True).get("window_started_at")}
        try:
            # one pause per window: a concurrent feedback that also tripped it loses quietly
            self.config.client.put_item(
                TableName=self.config.table, Item=ddb.serialize({k: v for k, v in item.items() if v is not None}),
                ConditionExpression="attribute_not_exists(pk) OR (marketing <> :p AND epoch = :e)",
                ExpressionAttributeValues=ddb.values({":p": "paused", ":e": epoch}))
        except Exception as exc:
            if ddb.is_conditional_failure(exc):
                return None
            raise
        self.config.invalidate()
        log.warning("marketing email paused for %s: %s", identity, status["reason"])
        from retention.admin.people import People
        People(self.config).audit("brake", "pause", "sending", identity, detail={"reason": status["reason"]},
                                  now=now)
        return item

    def resume(self, identity: str, *, by: str, now: datetime | None = None) -> dict[str, Any]:
        """Marketing flows again, counted in a fresh window (a new epoch)."""
        now = now or clock.now()
        state = self.state(identity, fresh=True)
        epoch = int(state.get("epoch", 0)) + 1
        was = state.get("marketing", "active")
        self.config.client.put_item(TableName=self.config.table, Item=ddb.serialize(
            {"pk": "SENDING", "sk": identity, "marketing": "active", "since": clock.iso(now), "epoch": epoch,
             "resumed_by": by, "window_started_at": clock.iso(now)}))
        self.config.invalidate()
        return {"identity": identity, "marketing": "active", "was": was, "since": clock.iso(now), "epoch": epoch}

    def identities(self) -> list[str]:
        return [str(item["sk"]) for item in ddb.query(self.config.client, self.config.table, "SENDING")]


def _sum(rows: Any) -> dict[str, int]:
    acc = {"sent": 0, "bounced": 0, "complained": 0}
    for v in rows:
        for k in acc:
            acc[k] += v[k]
    return acc

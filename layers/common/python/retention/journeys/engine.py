"""The per-customer engine, pure: fold events into the profile, move segments, start / advance / exit
journeys, and say what must be written and sent. Ingestion and the minute tick both call `process`;
the caller persists the result with one conditional write of the profile (exactly once per transition).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock
from retention.customers import profile as profiles
from retention.customers.store import StoredProfile
from retention.journeys import cart
from retention.language import conditions, segments
from retention.messaging.requests import SendRequest
from retention.schedule.due import DueItem

GOAL_EVENT = "Order Completed"
MAX_STEPS_PER_ADVANCE = 50


@dataclass
class Definitions:
    rules: list[Any]  # enabled rules (retention.language.rules.Rule)
    groups: list[Any]  # segment groups (retention.language.segments.SegmentGroup)
    settings: Any  # retention.core.config.Settings


@dataclass
class Effects:
    events: list[dict[str, Any]] = field(default_factory=list)  # internal events for the timeline
    history: list[dict[str, Any]] = field(default_factory=list)  # segment history rows
    due: list[DueItem] = field(default_factory=list)
    sends: list[SendRequest] = field(default_factory=list)
    counters: list[tuple[str, int, str, dict[str, float]]] = field(default_factory=list)
    transitions: list[Any] = field(default_factory=list)
    changed: bool = False
    # the steps run, one row each, when the caller asks for them (the dry-run); None: not recorded
    trace: list[dict[str, Any]] | None = None

    def count(self, rule: str, step: int, variant: str, **counters: float) -> None:
        self.counters.append((rule, step, variant, dict(counters)))


# ---- journey helpers -------------------------------------------------------------------------------

def journey_slot(rule: Any, properties: dict[str, Any] | None) -> str:
    """Where a rule's journey lives in the profile: `<rule>` or, for a keyed rule, `<rule>#<key value>`."""
    key = getattr(rule, "journey_key", None)
    value = (properties or {}).get(key) if key else None
    return f"{rule.id}#{value}" if value not in (None, "") else str(rule.id)


def rule_of(slot: str) -> str:
    return slot.split("#", 1)[0]


def entry_id(rule_id: str, trigger_key: str) -> str:
    return hashlib.sha256(f"{rule_id}|{trigger_key}".encode()).hexdigest()[:16]


def customer_tz(profile: Any, defs: Definitions) -> str:
    return str(profile.traits.get("timezone") or defs.settings.default_timezone)


def in_global_control(customer_id: str, percent: float) -> bool:
    if percent <= 0:
        return False
    h = int(hashlib.sha256(f"global-control|{customer_id}".encode()).hexdigest()[:8], 16)
    return (h % 10000) < percent * 100


def running(journey: dict[str, Any] | None) -> bool:
    """Active, or held out but still following the timeline (a control journey sends nothing, yet moves
    segments like the treated ones, so the comparison stays fair)."""
    if not journey:
        return False
    return journey.get("state") == "active" or (journey.get("state") == "control" and not journey.get("ended_at"))


def _end(journey: dict[str, Any], state: str, now: datetime, reason: str | None = None) -> None:
    if journey.get("state") != "control":
        journey["state"] = state
    journey.update(ended_at=clock.iso(now), next_due=None)
    if reason:
        journey["exit_reason"] = reason


def _can_enter(rule: Any, journey: dict[str, Any] | None, now: datetime) -> bool:
    if not journey:
        return True
    if running(journey):
        return False
    if journey.get("exit_reason") == "cart_emptied" and "last_send_step" not in journey:
        return True  # a cart cleared before any reminder: the next cart is a new abandonment, not a repeat
    re_entry = rule.re_entry
    if not re_entry.allowed:
        return False
    cooldown = re_entry.cooldown or timedelta(0)
    entered = journey.get("entered_at")
    return not entered or clock.parse_iso(entered) + cooldown <= now


ANONYMOUS_PREFIX = "anon:"  # profiles of visitors not identified yet (retention.ingestion.ingestor)


def segment_event(customer_id: str, group: str, segment: str, kind: str, reason: str, now: datetime,
                  expires: int) -> dict[str, Any]:
    """The internal `Segment Entered` / `Segment Exited` event of a segment move, as the timeline keeps it:
    the same (id included) for the same move at the same time, so the STATS safety item can write it again
    (retention.journeys.effects: it is written after the commit, not inside the transaction)."""
    name = "Segment Entered" if kind == "entered" else "Segment Exited"
    mid = "seg-" + hashlib.sha256(f"{customer_id}|{group}|{segment}|{kind}|{clock.iso(now)}".encode()).hexdigest()[:20]
    return {"type": "track", "event": name, "properties": {"group": group, "segment": segment, "reason": reason},
            "timestamp": clock.iso(now), "message_id": mid, "internal": True, "segment_move": True, "ttl": expires}


def reacts_to(rule: Any, name: str) -> bool:
    """Whether an event called `name` can do anything to `rule` in `Engine._on_event`, its properties aside:
    end a running journey (`exit_when`), refresh a running journey's trigger (`trigger.update`: the latest
    matching event, or any cart event) or start one. False for most rules and most events: the engine
    looks at the rules an event name reacts with only."""
    if rule.exit_may_match(name) or rule.trigger_may_match(name):
        return True
    return getattr(rule.trigger, "update", "first") == "cart" and cart.is_cart_event(name)


class Engine:
    def __init__(self, defs: Definitions) -> None:
        self.defs = defs
        self.rules = {r.id: r for r in defs.rules}
        self._by_event: dict[str, list[Any]] = {}  # event name → the rules it reacts with, in rule order

    def rules_for(self, name: str) -> list[Any]:
        """The rules an event called `name` can act on (`reacts_to`), computed once per name and engine."""
        found = self._by_event.get(name)
        if found is None:
            found = self._by_event[name] = [r for r in self.defs.rules if reacts_to(r, name)]
        return found

    # ---- entry point -------------------------------------------------------------------------------
    def process(self, sp: StoredProfile, *, messages: list[Any] = (),  # type: ignore[assignment]
                due_items: list[DueItem] = (), now: datetime,  # type: ignore[assignment]
                live_after: datetime | None = None, recheck_segments: bool = False,
                trace: list[dict[str, Any]] | None = None) -> Effects:
        """Apply `messages` (normalized wire messages, any order) and `due_items` to one customer; with
        `trace`, every journey step run is appended to it as a row."""
        fx = Effects(trace=trace)
        profile = sp.profile
        live_after = live_after or (now - timedelta(hours=self.defs.settings.history_horizon_hours))
        live_events: list[dict[str, Any]] = []
        for msg in sorted(messages, key=lambda m: m.timestamp):
            changes = profiles.apply_message(profile, msg, now, self.defs.settings.contact_events)
            profiles.note_activity(profile, msg)
            fx.changed = True
            if msg.type == "track" and msg.event:
                ev = {"name": msg.event, "properties": msg.properties, "timestamp": msg.timestamp,
                      "message_id": msg.message_id}
                if msg.event == GOAL_EVENT or msg.event in self._goal_events():
                    self._attribute(sp, ev, fx, now)
                if msg.timestamp >= live_after:
                    live_events.append(ev)
            del changes
        if messages or recheck_segments:
            seg_events = self._segments(sp, fx, now, reason="event" if messages else "deadline")
            # a history import moves segments but must not start journeys (DESIGN §3 "History")
            if recheck_segments or any(m.timestamp >= live_after for m in messages):
                live_events += seg_events
        if messages:
            self._date_triggers(sp, fx, now)
        for ev in live_events:
            self._on_event(sp, ev, fx, now)
        for item in due_items:
            if item.kind == "JOURNEY":
                self._on_due_journey(sp, item, fx, now)
            elif item.kind == "SEND":
                fx.sends.append(SendRequest.model_validate(item.payload))
            elif item.kind == "TRIGGER":
                self._on_scheduled_trigger(sp, item, fx, now)
            elif item.kind == "EVENT":
                self._on_due_event(sp, item, fx, now)
        return fx

    def replay_event(self, sp: StoredProfile, ev: dict[str, Any], *, now: datetime,
                     trace: list[dict[str, Any]] | None = None) -> Effects:
        """Journeys only: `ev` ({name, properties, timestamp, message_id}), already part of the profile, starts
        or ends journeys exactly as in `process`, without folding it into KPIs or segments again (the
        dry-run replays stored events on a copy of today's profile)."""
        fx = Effects(trace=trace)
        self._on_event(sp, ev, fx, now)
        return fx

    def _goal_events(self) -> set[str]:
        return {r.goal.event for r in self.defs.rules}

    # ---- segments ---------------------------------------------------------------------------------
    def _segments(self, sp: StoredProfile, fx: Effects, now: datetime, reason: str) -> list[dict[str, Any]]:
        profile = sp.profile
        if not self.defs.groups:
            return []
        facts = profiles.facts(profile, now)
        manual = profile.meta.setdefault("manual_segments", {})
        evaluation = segments.evaluate(self.defs.groups, facts, manual, now)
        transitions = segments.apply_evaluation(profile.segments, evaluation, now, reason)
        for group, _segment in evaluation.expired_manual:
            manual.pop(group, None)
        internal: list[dict[str, Any]] = []
        expires = int(now.timestamp()) + int(timedelta(days=self.defs.settings.event_retention_days).total_seconds())
        for t in transitions:
            move = segment_event(profile.id, t.group, t.segment, t.kind, t.reason, now, expires)
            internal.append({"name": move["event"], "properties": move["properties"], "timestamp": now,
                             "message_id": move["message_id"]})
            fx.events.append(move)
            fx.history.append({"group": t.group, "segment": t.segment, "kind": t.kind, "at": clock.iso(now),
                               "reason": t.reason})
            fx.transitions.append(t)
            fx.changed = True
        nxt = evaluation.next_change_at
        stored = profile.meta.get("segments_due_at")
        nxt_iso = clock.iso(nxt) if nxt else None
        if stored and stored > clock.iso(now) and (nxt_iso is None or nxt_iso >= stored):
            # a re-check is due already, no later than the next change: it re-evaluates then and schedules
            # what follows. A browsing customer's next change moves with every view (warm for 30 days after
            # the last one): a SEGMENT item per view cost 2 write units each and fired as a no-op re-check.
            return internal
        if nxt_iso != stored:
            profile.meta["segments_due_at"] = nxt_iso
            fx.changed = True
            if nxt is not None:
                fx.due.append(DueItem(at=nxt, kind="SEGMENT", customer_id=profile.id, ref="segments"))
        return internal

    # ---- journeys -----------------------------------------------------------------------------------
    def _on_event(self, sp: StoredProfile, ev: dict[str, Any], fx: Effects, now: datetime) -> None:
        profile = sp.profile
        name, props = ev["name"], ev.get("properties") or {}
        for rule in self.rules_for(name):
            slot = journey_slot(rule, props)
            journey = profile.journeys.get(slot)
            if running(journey) and rule.exit_matches(name, props):
                _end(journey, "exited", now, f"goal:{name}")  # type: ignore[arg-type]
                fx.changed = True
                continue
            if (running(journey) and getattr(rule.trigger, "update", "first") != "first"
                    and _refresh_trigger(rule, journey, name, props, now)):  # type: ignore[arg-type]
                fx.changed = True
                continue
            if rule.trigger.kind != "product_event" and rule.trigger_matches_event(name, props):
                self._start(sp, rule, trigger_key=ev["message_id"], trigger=ev, fx=fx, now=now, slot=slot)

    def _date_triggers(self, sp: StoredProfile, fx: Effects, now: datetime) -> None:
        """One due item per (customer, date rule) for the next occurrence (birthday, …), rewritten only when
        the date or the timezone changes, so the yearly trigger costs nothing per event."""
        profile = sp.profile
        stored = profile.meta.setdefault("date_triggers", {})
        for rule in self.defs.rules:
            if rule.trigger.kind != "date_attribute":
                continue
            value = profile.traits.get(rule.trigger.date_attribute)
            at = rule.trigger.next_at(value, customer_tz(profile, self.defs), now) if value else None
            iso = clock.iso(at) if at else None
            if stored.get(rule.id) == iso:
                continue
            stored[rule.id] = iso
            fx.changed = True
            if at is not None:
                fx.due.append(DueItem(at=at, kind="TRIGGER", customer_id=profile.id, ref=f"{rule.id}|{iso}",
                                      payload={"rule": rule.id, "name": rule.trigger.date_attribute,
                                               "properties": {"date": value}, "date": iso}))

    def _on_due_event(self, sp: StoredProfile, item: DueItem, fx: Effects, now: datetime) -> None:
        """An event written ahead of time (a replenishment reminder): recorded in the customer's timeline now
        and run through the journeys like any event. An order refunded or cancelled since runs nothing."""
        props = dict(item.payload.get("properties") or {})
        order = sp.profile.orders.get(str(props.get("order_id") or ""))
        if order is not None and order.status in ("refunded", "cancelled"):
            return
        name = str(item.payload.get("name") or "")
        if not name:
            return
        mid = str(item.payload.get("message_id") or f"due-{item.ref}")
        fx.events.append({"type": "track", "event": name, "properties": props, "timestamp": clock.iso(now),
                          "message_id": mid, "internal": True})
        fx.changed = True
        self._on_event(sp, {"name": name, "properties": props, "timestamp": now, "message_id": mid}, fx, now)

    def _on_scheduled_trigger(self, sp: StoredProfile, item: DueItem, fx: Effects, now: datetime) -> None:
        rule = self.rules.get(item.payload.get("rule", ""))
        if rule is None:
            return
        if rule.trigger.kind == "date_attribute":
            stored = sp.profile.meta.setdefault("date_triggers", {})
            if stored.get(rule.id) != item.payload.get("date"):
                return  # the date changed since this item was written
            stored.pop(rule.id, None)
            self._start(sp, rule, trigger_key=item.ref, trigger={"name": item.payload.get("name"),
                                                                  "properties": item.payload.get("properties", {}),
                                                                  "timestamp": now}, fx=fx, now=now)
            self._date_triggers(sp, fx, now + timedelta(seconds=1))  # next year's
            return
        segment = rule.trigger.segment if rule.trigger.kind == "schedule" else None
        if segment and segment not in profiles.facts(sp.profile, now)["segments"]:
            return  # a broadcast to one segment: the customer is not (or no longer) in it
        trigger = {"name": item.payload.get("name", rule.id), "properties": item.payload.get("properties", {}),
                   "timestamp": now}
        self._start(sp, rule, trigger_key=item.ref, trigger=trigger, fx=fx, now=now)

    def _start(self, sp: StoredProfile, rule: Any, *, trigger_key: str, trigger: dict[str, Any], fx: Effects,
               now: datetime, slot: str | None = None) -> None:
        profile = sp.profile
        slot = slot or str(rule.id)
        journey = profile.journeys.get(slot)
        entry = entry_id(rule.id, trigger_key)
        if journey and journey.get("entry") == entry:
            return  # the same trigger seen again (retry, double tick)
        if not _can_enter(rule, journey, now):
            return
        if rule.audience is not None and not profile.id.startswith(ANONYMOUS_PREFIX) \
                and not conditions.evaluate(rule.audience, profiles.facts(profile, now)):
            # a known customer outside the audience when the trigger fires enters no journey (the sender
            # re-checks before every send): without consent he does not use up a marketing chain, so a later
            # consent (the double opt-in's confirmation) can still start it once. An anonymous visitor enters:
            # he may identify himself, with consent, before the first send.
            return
        from retention.language.rules import in_holdout
        holdout = in_holdout(profile.id, rule.id, float(getattr(rule, "holdout_percent", 0) or 0)) or \
            (not rule.is_transactional and in_global_control(profile.id, self.defs.settings.control_group_percent))
        entries = int((journey or {}).get("entries", 0)) + 1
        new = {"entry": entry, "state": "control" if holdout else "active", "step": 0, "variant": None,
               "holdout": holdout, "entered_at": clock.iso(now), "next_due": None, "exit_reason": None,
               "ended_at": None, "entries": entries,
               "trigger": {"name": trigger.get("name"), "properties": _small(trigger.get("properties") or {})}}
        if getattr(rule.trigger, "update", "first") == "cart":
            new["trigger"] = {"name": trigger.get("name"), "properties": _small(
                cart.fold(None, str(trigger.get("name") or ""), trigger.get("properties") or {}))}
        if slot != rule.id:
            new["slot"] = slot
            _prune_keyed(profile.journeys, rule.id, now)
        profile.journeys[slot] = new
        fx.changed = True
        fx.count(rule.id, -1, "holdout" if holdout else "default", entered=1)
        self._advance(sp, rule, new, fx, now)

    def _on_due_journey(self, sp: StoredProfile, item: DueItem, fx: Effects, now: datetime) -> None:
        slot, entry, step = item.ref.split("|")
        journey = sp.profile.journeys.get(slot)
        rule = self.rules.get(rule_of(slot))
        if rule is None or not journey or journey.get("entry") != entry or not running(journey) \
                or int(journey.get("step", -1)) != int(step):
            return  # stale: already advanced, exited, or the rule was disabled
        journey["step"] = rule.next_index(int(step))
        journey["next_due"] = None
        fx.changed = True
        self._advance(sp, rule, journey, fx, now)

    def _advance(self, sp: StoredProfile, rule: Any, journey: dict[str, Any], fx: Effects, now: datetime) -> None:
        """Run steps from journey['step'] until a wait that ends in the future, or the end."""
        from retention.language import rules as rules_mod
        profile = sp.profile
        for _ in range(MAX_STEPS_PER_ADVANCE):
            idx = journey["step"]
            step = rule.step_at(int(idx)) if idx is not None else None
            fx.changed = True
            if step is None:
                journey["step"] = len(rule.steps)
                _end(journey, "completed", now)
                return
            idx = int(idx)
            kind = step.kind
            nxt: int | None = rule.next_index(idx)
            row: dict[str, Any] | None = None
            if fx.trace is not None:
                row = {"entry": journey["entry"], "step": idx, "kind": kind, "at": clock.iso(now)}
                if step.id:
                    row["label"] = step.id
                fx.trace.append(row)
            if kind == "wait":
                lasts = reorder_time(profile, self.defs.settings.consumable_categories)
                due_at = rules_mod.next_wait_due(step, now, customer_tz(profile, self.defs), reorder=lasts)
                if row is not None:
                    row["until"] = clock.iso(due_at)
                if due_at > now:
                    journey["next_due"] = clock.iso(due_at)
                    fx.due.append(DueItem(at=due_at, kind="JOURNEY", customer_id=profile.id,
                                          ref=f"{journey.get('slot', rule.id)}|{journey['entry']}|{idx}"))
                    return
            elif kind == "send" and journey.get("holdout"):
                journey["last_send_step"] = None  # held out: nothing is sent, nothing can be opened
            elif kind == "send":
                template, variant = rules_mod.choose_variant(step, profile.id, rule.id)
                if row is not None:
                    row.update(template=template, variant=variant, channel=step.send.channel)
                if variant != "default":
                    journey["variant"] = variant
                trig = journey.get("trigger") or {}
                fx.sends.append(SendRequest(customer_id=profile.id, rule=rule.id, entry=journey["entry"], step=idx,
                                            channel=step.send.channel, template=template, variant=variant,
                                            transactional=bool(rule.is_transactional),
                                            event={"name": trig.get("name"), "properties": trig.get("properties", {})}))
                journey["last_send_step"] = idx
            elif kind == "branch":
                taken = self._branch_taken(sp, rule, journey, step, now)
                nxt = rule.next_index(idx, branch_taken=taken)
                if row is not None:
                    row.update(taken=taken, next="end" if nxt is None else nxt)
                    if step.branch.engagement is not None:
                        row["engagement"] = step.branch.engagement.what
            elif kind == "goto" and row is not None:
                row.update(kind="branch", taken=True, next="end" if nxt is None else nxt)
            elif kind in ("set_segment", "clear_segment"):
                manual = profile.meta.setdefault("manual_segments", {})
                if row is not None:
                    row.update(group=step.set_segment.group, segment=step.set_segment.segment) \
                        if kind == "set_segment" else row.update(group=step.clear_segment.group)
                if kind == "set_segment":
                    spec = step.set_segment
                    until = now + spec.until if spec.until else None
                    manual[spec.group] = {"segment": spec.segment, "reason": spec.reason or f"journey {rule.id}",
                                          "until": clock.iso(until) if until else None}
                else:
                    manual.pop(step.clear_segment.group, None)
                journey["step"] = nxt
                for ev in self._segments(sp, fx, now, reason=f"journey:{rule.id}"):
                    self._on_event(sp, ev, fx, now)
                if not running(journey):
                    return
            journey["step"] = nxt
        _end(journey, "exited", now, "too_many_steps")

    def _branch_taken(self, sp: StoredProfile, rule: Any, journey: dict[str, Any], step: Any, now: datetime) -> bool:
        spec = step.branch
        engagement = spec.engagement
        if engagement is not None:
            want, expected = engagement.what, engagement.expected
            last = journey.get("last_send_step")
            key = f"{rule.id}|{journey['entry']}|{last}"
            engaged = want in sp.profile.meta.get("engagement", {}).get(key, [])
            return engaged == expected
        facts = profiles.facts(sp.profile, now)
        trig = journey.get("trigger") or {}
        # the event that started the journey is visible to branches (`{event: Order Ready for Pickup}`)
        facts["event"] = {"name": trig.get("name"), "properties": trig.get("properties") or {},
                          "timestamp": clock.parse_iso(journey["entered_at"])}
        return bool(conditions.evaluate(spec.condition, facts))

    # ---- attribution --------------------------------------------------------------------------------
    def _attribution_window(self, rule_id: str) -> timedelta:
        """The rule's own window when it sets one, else the global setting (default 5 days)."""
        rule = self.rules.get(rule_id)
        if rule is not None and "attribution_window" in rule.model_fields_set:
            return rule.attribution_window  # type: ignore[no-any-return]
        return timedelta(days=self.defs.settings.attribution_window_days)

    def _goal_test(self, ev: dict[str, Any]) -> Any:
        """rule id → is `ev` that rule's goal (its event and its `where`)? A rule no longer enabled keeps the
        default goal (an order)."""
        name, props = ev["name"], ev.get("properties") or {}
        cache: dict[str, bool] = {}

        def is_goal(rule_id: str) -> bool:
            if rule_id not in cache:
                rule = self.rules.get(rule_id)
                cache[rule_id] = rule.goal_matches(name, props) if rule is not None else name == GOAL_EVENT
            return cache[rule_id]
        return is_goal

    def _attribute(self, sp: StoredProfile, ev: dict[str, Any], fx: Effects, now: datetime) -> None:
        """Last touch: the latest message within the window before the goal event, of a rule whose goal this
        event is, gets the conversion and the revenue (row conventions of retention.analytics.stats). Other
        journeys of rules with this goal, entered within the window, count one conversion each on their entry
        row (step -1) — only when the customer was sent a message of the rule in that entry (a journey still
        waiting for its first send did nothing to convert anyone) — and holdout ones on the `holdout` row, so
        the uplift compares like with like."""
        at = ev["timestamp"]
        revenue = _revenue(ev.get("properties") or {})
        window = self._attribution_window
        is_goal = self._goal_test(ev)
        sends = [s for s in sp.sends if s.get("rule") and clock.parse_iso(s["at"]) <= at]
        candidates = [s for s in sends if at - window(s["rule"]) <= clock.parse_iso(s["at"]) and is_goal(s["rule"])]
        credited = None
        if candidates:
            last = max(candidates, key=lambda s: s["at"])
            credited = last["rule"]
            fx.count(last["rule"], int(last["step"]), str(last.get("variant") or "default"),
                     converted=1, revenue=revenue)
            conv = sp.profile.meta.setdefault("conversions", [])
            conv.append({"ledger": last.get("ledger"), "rule": last["rule"], "at": clock.iso(at), "revenue": revenue})
            del conv[:-20]
        for slot, journey in sp.profile.journeys.items():
            rule_id = rule_of(slot)
            entered = journey.get("entered_at")
            if not entered or journey.get("converted_entry") == journey.get("entry") or not is_goal(rule_id):
                continue
            if not at - window(rule_id) <= clock.parse_iso(entered) <= at:
                continue
            if journey.get("holdout"):
                journey["converted_entry"] = journey.get("entry")
                fx.count(rule_id, -1, "holdout", converted=1, revenue=revenue)
            elif rule_id == credited:
                journey["converted_entry"] = journey.get("entry")
            elif any(s["rule"] == rule_id and s["at"] >= entered for s in sends):
                journey["converted_entry"] = journey.get("entry")
                fx.count(rule_id, -1, "default", converted=1)
        fx.changed = True


def reorder_time(profile: Any, consumable_categories: dict[str, int]) -> timedelta | None:
    """How long the customer's latest order lasts: the shortest `consumable_categories` days (the setting,
    {category: days}) of its categories; None when none of them is listed (the wait's own default)."""
    if not consumable_categories:
        return None
    known = {profiles.category_key(name): int(days) for name, days in consumable_categories.items()}
    noted = profile.meta.get(profiles.LAST_ORDER_KEY)
    categories = noted.get("categories") if isinstance(noted, dict) else None
    days = [known[c] for c in categories or [] if c in known]
    return timedelta(days=min(days)) if days else None


def _prune_keyed(journeys: dict[str, Any], rule_id: str, now: datetime, keep: timedelta = timedelta(days=30)) -> None:
    """Keyed journeys (one per order) that ended a while ago leave the profile, so it does not grow with
    the order history."""
    horizon = clock.iso(now - keep)
    for slot in [s for s, j in journeys.items() if s.startswith(f"{rule_id}#") and j.get("ended_at")
                 and j["ended_at"] < horizon]:
        del journeys[slot]


def _revenue(props: dict[str, Any]) -> float:
    for key in ("revenue", "total", "value"):
        v = props.get(key)
        try:
            if v is not None:
                return round(float(v), 2)
        except (TypeError, ValueError):
            continue
    return 0.0


def _refresh_trigger(rule: Any, journey: dict[str, Any], name: str, props: dict[str, Any], now: datetime) -> bool:
    """A running journey's trigger kept current (`trigger.update`): the latest matching event, or the cart
    folded from cart events; an emptied cart ends the journey. False when the event changes nothing."""
    update = rule.trigger.update
    if update == "latest":
        if not rule.trigger_matches_event(name, props):
            return False
        journey["trigger"] = {"name": name, "properties": _small(props)}
        return True
    if not cart.is_cart_event(name):
        return False
    current = (journey.get("trigger") or {}).get("properties") or {}
    folded = cart.fold(current, name, props)
    if cart.is_empty(folded):
        _end(journey, "exited", now, "cart_emptied")
        return True
    journey["trigger"] = {"name": name, "properties": _small(folded)}
    return True


def _small(props: dict[str, Any], limit: int = 4000) -> dict[str, Any]:
    """Trigger properties kept for templates (cart contents, product); bounded so profiles stay small."""
    import json
    raw = json.dumps(props, default=str, ensure_ascii=False)
    if len(raw) <= limit:
        return props
    return {k: v for k, v in props.items() if not isinstance(v, list | dict)}

"""The admin API's and the CLI's library: customers (view, timeline, erasure), definitions (validate,
apply with versions, rollback), stats and NPS reports."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from retention.analytics.counters import read_counters
from retention.core import clock, ddb
from retention.core.errors import NotFoundError
from retention.core.runtime import Deps
from retention.customers.store import ProfileRepo, profile_pk
from retention.messaging.requests import LEDGER_PREFIX

if TYPE_CHECKING:
    from retention.journeys.catalogue import Catalogue

KIND_OF = {"rules": "RULE", "segments": "SEGDEF", "templates": "TEMPLATE"}


def _iso(value: Any) -> str | None:
    return clock.iso(value) if value is not None else None


def segments_view(current: dict[str, Any], groups: list[Any]) -> dict[str, Any]:
    from retention.language.segments import summarize
    summary = summarize(current, groups)
    flags: list[str] = []
    for g in groups:
        if not g.exclusive and g.group != "markers":
            flags += summary.get(g.group) or []
    return {"lifecycle": summary.get("lifecycle"), "flags": sorted(flags), "nps_group": summary.get("nps_group"),
            "potential": summary.get("potential"), "groups": summary}


class Admin:
    def __init__(self, d: Deps) -> None:
        self.d = d
        self.repo = ProfileRepo(d.dynamodb, d.env.profiles_table)

    @cached_property
    def library(self) -> Catalogue:
        """The definitions (journeys engine, segment language): loaded by the routes that read them, not at
        the admin API's cold start."""
        from retention.journeys.catalogue import Catalogue
        return Catalogue(self.d.config)

    # ---- customers ---------------------------------------------------------------------------------
    def customer(self, customer_id: str) -> dict[str, Any]:
        from retention.customers.profile import compute_kpis, consent_flags
        now = clock.now()
        sp = self.repo.load(customer_id, now)
        if not sp.exists or sp.profile.erased:
            raise NotFoundError(f"customer '{customer_id}' not found")
        p = sp.profile
        consent = consent_flags(p)
        for ch in ("email", "sms"):
            if p.suppressed.get(ch):
                consent[ch] = False
        journeys = [{"rule": slot.split("#", 1)[0], "state": j.get("state"), "step": j.get("step"),
                     "entered_at": j.get("entered_at"), "variant": j.get("variant"), "next_due": j.get("next_due"),
                     "exit_reason": j.get("exit_reason"), **({"key": slot.split("#", 1)[1]} if "#" in slot else {})}
                    for slot, j in sorted(p.journeys.items())]
        from retention.analytics.stats import engagement_score
        kpis = compute_kpis(p, now)
        return {"id": p.id, "traits": p.traits, "consent": consent, "kpis": kpis,
                "engagement_score": engagement_score(kpis, now),
                "segments": segments_view(p.segments, self.library.segment_groups()),
                "journeys": journeys, "messages": self.messages(customer_id),
                "anonymous_ids": p.anonymous_ids, "nps": p.nps, "suppressed": p.suppressed,
                "consent_log": p.consent_log[-10:], "created_at": _iso(p.created_at),
                "last_seen_at": _iso(p.last_seen_at)}

    def messages(self, customer_id: str, limit: int = 100) -> list[dict[str, Any]]:
        keys = list(ddb.query(self.d.dynamodb, self.d.env.messages_table, customer_id, index="by_customer",
                              pk_name="customer_id", sk_name="created_at", forward=False, limit=limit))
        # the index holds the keys only (infra/constructs/storage.py): the ledger items, newest first
        found = ddb.batch_get(self.d.dynamodb, self.d.env.messages_table, [(k["pk"], k["sk"]) for k in keys])
        rows = [found.get((k["pk"], k["sk"]), k) for k in keys]
        return [{"rule": r.get("rule"), "channel": r.get("channel_used") or r.get("channel"), "status": r.get("status"),
                 "sent_at": r.get("sent_at"), "step": r.get("step"), "variant": r.get("variant"),
                 "template": r.get("template"), "reason": r.get("reason"), "created_at": r.get("created_at"),
                 "subject": r.get("subject"), "ledger_id": str(r.get("pk") or "").removeprefix(LEDGER_PREFIX)}
                for r in rows]

    def events(self, customer_id: str, limit: int = 100, before: str | None = None) -> dict[str, Any]:
        if not self.repo.load(customer_id, clock.now(), consistent=False).exists:
            raise NotFoundError(f"customer '{customer_id}' not found")
        items = ddb.query(self.d.dynamodb, self.d.env.events_table, profile_pk(customer_id),
                          sk_between=("0", before) if before else None, forward=False, limit=limit)
        events = []
        for e in items:
            events.append({"type": e.get("type"), "event": e.get("event"), "timestamp": e.get("timestamp"),
                           "messageId": e.get("message_id"), "received_at": e.get("received_at"),
                           "properties": json.loads(e["properties"]) if e.get("properties") else {},
                           "traits": json.loads(e["traits"]) if e.get("traits") else None,
                           "internal": bool(e.get("internal", False))})
        events.reverse()  # time order, oldest first
        return {"customer_id": customer_id, "events": events}

    def forget(self, customer_id: str) -> dict[str, Any]:
        """Erasure: every item naming the person goes (retention.customers.erasure); a salted hash of each
        address stays on the suppression list (no re-subscribe without fresh consent)."""
        from retention.customers.erasure import Eraser
        result = Eraser(self.d).erase(customer_id)
        from retention.products.recommend import Recommendations
        Recommendations(self.d.dynamodb, self.d.env.products_table).forget_customer(customer_id)  # his purchases
        return result

    # ---- definitions -------------------------------------------------------------------------------
    def list(self, kind: str) -> list[dict[str, Any]]:
        return [{"id": k, "version": v["version"], "enabled": bool(v.get("enabled", True)),
                 "applied_at": v.get("applied_at")} for k, v in sorted(self.d.config.current(kind).items())]

    def get(self, kind: str, def_id: str) -> dict[str, Any]:
        item = self.d.config.get_definition(kind, def_id)
        return {"id": def_id, "version": item["version"], "enabled": bool(item.get("enabled", True)),
                "body": item["body"], "text": item.get("text"), "applied_at": item.get("applied_at")}

    # ---- stats ---------------------------------------------------------------------------------------
    def rule_stats(self, rule: str, date_from: str | None, date_to: str | None) -> dict[str, Any]:
        from retention.analytics.stats import rule_report
        known = self.d.config.current("RULE")
        if rule not in known:
            raise NotFoundError(f"rule '{rule}' not found")
        rows = read_counters(self.d.dynamodb, self.d.env.messages_table, rule, date_from, date_to)
        return rule_report(rule, rows, date_from=date_from, date_to=date_to)

    def funnel(self, date_from: str | None, date_to: str | None) -> dict[str, Any]:
        """Lifecycle sizes per day, the flows between segments and seed 000's relationship steps."""
        from retention.analytics.segstats import funnel_report
        from retention.core.errors import BadRequestError
        try:
            return funnel_report(self.d.dynamodb, self.d.env.messages_table, date_from, date_to)
        except ValueError as exc:
            raise BadRequestError(f"from/to are dates (YYYY-MM-DD): {exc}") from exc

    def overview(self) -> dict[str, Any]:
        out = []
        for rule in sorted(self.d.config.current("RULE")):
            rep = self.rule_stats(rule, (clock.now() - timedelta(days=30)).date().isoformat(), None)
            out.append({"rule": rule, **rep["totals"]})
        return {"rules": out}

"""Unsubscribe and preferences (`/u/<token>`): what the preference page shows, and the page's choice or
an RFC 8058 one-click unsubscribe applied through ingestion (consent log, segments and journeys react as
for any identify), with the unsubscribe counted on the message's row."""

from __future__ import annotations

import hashlib
from typing import Any

from retention.analytics.counters import add_counters
from retention.core import clock, ddb
from retention.core.runtime import Deps
from retention.customers.store import ProfileRepo
from retention.ingestion.wire import internal_message
from retention.messaging import links
from retention.messaging.requests import ledger_key

PREFS_SOURCE = "preferences"


class Preferences:
    def __init__(self, d: Deps) -> None:
        self.d = d
        self.repo = ProfileRepo(d.dynamodb, d.env.profiles_table)

    def verify_unsub_token(self, token: str) -> dict[str, Any]:
        return links.verify_unsubscribe(token, self.d.config.secrets("links"), clock.now())

    def preferences_of(self, customer_id: str) -> dict[str, bool]:
        """Per channel: is marketing consent granted now (what the preference page shows as ticked)."""
        sp = self.repo.load(customer_id, clock.now(), consistent=False)
        return {ch: bool(c.granted) for ch, c in sp.profile.consent.items()} if sp.exists else {}

    def set_preferences(self, token: str, channels: dict[str, bool], source: str,
                        locale: str | None = None) -> dict[str, Any]:
        """Apply the page's choice or a one-click unsubscribe at once (through ingestion: consent log,
        segments and journeys react). Only revocations are written (the link never grants), so a repeated
        one-click POST or an unchanged form neither logs twice nor counts twice. `locale` (the language of
        the shop's messages, from the preferences page) is written when it differs from the one in use.
        A customer already erased stays erased."""
        from retention.surveys.pages import normalize_locale
        claims = self.verify_unsub_token(token)
        customer = str(claims["c"])
        now = clock.now()
        sp = self.repo.load(customer, now)
        if not sp.exists or sp.profile.erased:
            return {"customer_id": customer, "channels": channels, "changed": {}}
        current = {ch: bool(c.granted) for ch, c in sp.profile.consent.items()}
        # The link travels in a mail anyone on the thread can click: it may revoke, never grant (a ticked box
        # for a refused channel would turn a refusal into consent without the person's proof, 38-FZ / GDPR).
        # Subscribing again goes through the shop's own double opt-in.
        refused = sorted(ch for ch, granted in channels.items() if granted and not current.get(ch, False))
        changed = {ch: False for ch, granted in channels.items() if not granted and current.get(ch, False)}
        in_use = normalize_locale(sp.profile.traits.get("locale")) or \
            normalize_locale(self.d.config.settings().default_locale)
        new_locale = normalize_locale(locale)
        new_locale = new_locale if new_locale and new_locale != in_use else None
        if not changed and not new_locale:
            return {"customer_id": customer, "channels": channels, "changed": {}, "not_granted": refused}
        traits: dict[str, Any] = {
            f"{ch}_consent": {"granted": granted, "source": source, "at": clock.iso(now),
                              "evidence": {"token_ledger": claims.get("l"), "channel": claims.get("ch")}}
            for ch, granted in changed.items()}
        if new_locale:
            traits["locale"] = new_locale
        mid = "pref-" + hashlib.sha256(
            f"{token}|{sorted(changed.items())}|{new_locale}|{clock.iso(now)}".encode()).hexdigest()[:24]
        from retention.ingestion.ingestor import Ingestor  # at the first change: a page's GET never ingests
        ingestor = Ingestor(ddb_client=self.d.dynamodb, sqs=self.d.sqs, env=self.d.env, config=self.d.config)
        ingestor.ingest([internal_message(customer, type_="identify", traits=traits, message_id=mid)],
                        PREFS_SOURCE, now=now)
        if not all(changed.values()):
            ledger = claims.get("l")
            item = ddb.get(self.d.dynamodb, self.d.env.messages_table, *ledger_key(str(ledger))) if ledger else None
            if item and item.get("rule"):
                # on the row of the message's step/variant and send day (retention.analytics.stats)
                day = clock.parse_iso(str(item["sent_at"])) if item.get("sent_at") else now
                add_counters(self.d.dynamodb, self.d.env.messages_table, str(item["rule"]), int(item.get("step", 0)),
                             str(item.get("variant") or "default"), {"unsubscribed": 1}, day, str(ledger))
        return {"customer_id": customer, "channels": channels, "changed": changed, "locale": new_locale}

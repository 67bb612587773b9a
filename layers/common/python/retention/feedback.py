"""Delivery feedback from SES (configuration set → SNS → this). First open/click per message counts once
(conditional update on the ledger), so SNS redeliveries and repeated opens never inflate the rates."""

from __future__ import annotations

import json
from typing import Any

from retention import clock, ddb, profiles
from retention.messaging import add_counters, ledger_key, suppression_key
from retention.runtime import Deps
from retention.store import ProfileRepo

EVENT_COUNTER = {"Delivery": "delivered", "Open": "opened", "Click": "clicked", "Bounce": "bounced",
                 "Complaint": "complained", "Reject": "rejected"}
ATTEMPTS = 5


class Feedback:
    def __init__(self, d: Deps) -> None:
        self.d = d
        self.repo = ProfileRepo(d.dynamodb, d.env.profiles_table)

    def handle_sns_message(self, message: str) -> str | None:
        try:
            event = json.loads(message)
        except ValueError:
            return None
        return self.handle(event)

    def handle(self, event: dict[str, Any]) -> str | None:
        kind = event.get("eventType") or event.get("notificationType")
        counter = EVENT_COUNTER.get(str(kind))
        mail = event.get("mail") or {}
        tags = mail.get("tags") or {}
        ledger_id = (tags.get("ledger") or [None])[0]
        if not counter or not ledger_id:
            return None
        now = clock.now()
        table = self.d.env.messages_table
        # first occurrence only: the ledger remembers each kind of feedback it got
        try:
            self.d.dynamodb.update_item(
                TableName=table, Key=ddb.key(*ledger_key(ledger_id)),
                UpdateExpression="SET #k = :t" + (", #s = :st" if counter in ("delivered", "bounced", "complained",
                                                                              "rejected") else ""),
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": f"{counter}_at", **({"#s": "status"} if counter in (
                    "delivered", "bounced", "complained", "rejected") else {})},
                ExpressionAttributeValues=ddb.values({":t": clock.iso(now), **({":st": counter} if counter in (
                    "delivered", "bounced", "complained", "rejected") else {})}))
        except Exception as exc:
            if ddb.is_conditional_failure(exc):
                return "duplicate"
            raise
        ledger = ddb.get(self.d.dynamodb, table, *ledger_key(ledger_id)) or {}
        customer = ledger.get("customer_id")
        add_counters(self.d.dynamodb, table, str(ledger.get("rule", "unknown")), int(ledger.get("step", 0)),
                     str(ledger.get("variant") or "default"), {counter: 1}, now, ledger_id)
        permanent = counter == "complained" or (counter == "bounced" and
                                                (event.get("bounce") or {}).get("bounceType") == "Permanent")
        if permanent:
            self._suppress(event, counter, now)
        if customer:
            self._profile(str(customer), ledger, counter, permanent, now)
        return counter

    def _suppress(self, event: dict[str, Any], counter: str, now: Any) -> None:
        salt = self.d.config.secrets("suppression-salt")[0].decode()
        section = event.get("bounce") or event.get("complaint") or {}
        recipients = [r.get("emailAddress") for r in section.get("bouncedRecipients", [])
                      + section.get("complainedRecipients", [])] or (event.get("mail") or {}).get("destination", [])
        for addr in filter(None, recipients):
            pk, sk = suppression_key(str(addr), salt)
            self.d.dynamodb.put_item(TableName=self.d.env.messages_table, Item=ddb.serialize(
                {"pk": pk, "sk": sk, "reason": counter, "at": clock.iso(now)}))

    def _profile(self, customer: str, ledger: dict[str, Any], counter: str, permanent: bool, now: Any) -> None:
        for _ in range(ATTEMPTS):
            sp = self.repo.load(customer, now)
            if not sp.exists:
                return
            p = sp.profile
            if counter in ("delivered", "opened", "clicked"):
                profiles.record_message_stat(p, counter, now)
                key = f"{ledger.get('rule')}|{ledger.get('entry')}|{ledger.get('step')}"
                engagement = p.meta.setdefault("engagement", {})
                kinds = engagement.setdefault(key, [])
                if counter not in kinds:
                    kinds.append(counter)
                if len(engagement) > 50:
                    for old in list(engagement)[:-50]:
                        engagement.pop(old)
            if permanent:
                p.suppressed["email"] = {"reason": counter, "at": clock.iso(now)}
            try:
                self.repo.save(sp, now)
                return
            except Exception as exc:
                if not ddb.is_conditional_failure(exc):
                    raise

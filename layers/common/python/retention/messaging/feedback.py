"""Delivery feedback from SES (configuration set → SNS → this): delivery, bounce, complaint, reject, open,
click. Hard bounces and complaints put the address on the suppression list (salted hash) and suppress the
profile's email channel; statuses, daily counters and the profile's open/click rates update. A transient
(soft) bounce is counted as `soft_bounced` and changes nothing else.

Each kind of feedback counts once per message, and nothing is lost when the function dies half-way (SNS
and Lambda redeliver):
1. the suppression list entry (idempotent put) comes first: a complaint is never forgotten;
2. the profile update is idempotent by itself (`meta.engagement` remembers the kinds each message got,
   `suppressed` is a set-once mark);
3. then the ledger's `<kind>_at` is set with a condition (first occurrence only) and only the winner
   adds to the counters.
A repeated open is answered by the ledger read alone (no profile write).
"""

from __future__ import annotations

import json
from typing import Any

from retention.analytics.counters import add_counters
from retention.core import clock, ddb
from retention.core.runtime import Deps
from retention.customers import profile as profiles
from retention.customers.store import ProfileRepo
from retention.messaging.requests import ledger_key, suppression_key

EVENT_COUNTER = {"Delivery": "delivered", "Open": "opened", "Click": "clicked", "Bounce": "bounced",
                 "Complaint": "complained", "Reject": "rejected"}
STATUS_COUNTERS = ("delivered", "bounced", "complained", "rejected")
# a later, worse status wins over an earlier one (a Delivery arriving after a Complaint must not hide it)
STATUS_RANK = {"sent": 0, "pending": 0, "delivered": 1, "rejected": 2, "bounced": 3, "complained": 4}
ATTEMPTS = 5
ENGAGEMENT_KEEP = 50


class Feedback:
    def __init__(self, d: Deps) -> None:
        self.d = d
        self.repo = ProfileRepo(d.dynamodb, d.env.profiles_table)
        self.paused: list[dict[str, Any]] = []  # the send brake's pauses this invocation caused (for the alarm)

    def _brake(self, event: dict[str, Any], counter: str, now: Any, hint: str) -> None:
        """Hard bounces and complaints feed the send brake of the identity the message was sent from."""
        if counter not in ("bounced", "complained"):
            return
        from retention.messaging.brake import Brake, sending_identity
        source = (event.get("mail") or {}).get("source") or self.d.env.sender_email
        paused = Brake(self.d.dynamodb, self.d.env.messages_table, self.d.config).record_feedback(
            sending_identity(str(source)), counter, now, hint)
        if paused:
            self.paused.append(paused)

    def handle_sns_message(self, message: str) -> str | None:
        try:
            event = json.loads(message)
        except ValueError:
            return None
        return self.handle(event) if isinstance(event, dict) else None

    def handle(self, event: dict[str, Any]) -> str | None:
        kind = event.get("eventType") or event.get("notificationType")
        counter = EVENT_COUNTER.get(str(kind))
        if not counter:
            return None
        mail = event.get("mail") or {}
        tags = mail.get("tags") or {}
        ledger_id = (tags.get("ledger") or [None])[0]
        now = clock.now()
        permanent = counter == "complained" or (counter == "bounced" and
                                                (event.get("bounce") or {}).get("bounceType") == "Permanent")
        if counter == "bounced" and not permanent:
            counter = "soft_bounced"  # a transient bounce: counted apart, no status change, no suppression
        recipients = _recipients(event) if permanent else []
        if permanent:
            self._suppress(recipients, counter, now)
        if not ledger_id:
            if permanent:
                self._brake(event, counter, now, str(mail.get("messageId") or ""))
            return counter if permanent else None
        table = self.d.env.messages_table
        ledger = ddb.get(self.d.dynamodb, table, *ledger_key(ledger_id), consistent=True)
        if not ledger:
            if permanent:
                self._brake(event, counter, now, ledger_id)
            return counter if permanent else None
        if ledger.get(f"{counter}_at"):
            return "duplicate"
        customer = ledger.get("customer_id")
        if customer:
            self._profile(str(customer), ledger, counter, permanent, recipients, now)
        # first occurrence only: the ledger remembers each kind of feedback it got
        names = {"#k": f"{counter}_at"}
        vals: dict[str, Any] = {":t": clock.iso(now)}
        update = "SET #k = :t"
        if counter in STATUS_COUNTERS:
            rank = STATUS_RANK[counter]
            worse = [s for s, r in STATUS_RANK.items() if r >= rank and s not in ("sent", "pending")]
            if ledger.get("status") not in worse:
                update += ", #s = :st"
                names["#s"] = "status"
                vals[":st"] = counter
        try:
            self.d.dynamodb.update_item(
                TableName=table, Key=ddb.key(*ledger_key(ledger_id)), UpdateExpression=update,
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#k)",
                ExpressionAttributeNames=names, ExpressionAttributeValues=ddb.values(vals))
        except Exception as exc:
            if _conditional(exc):
                return "duplicate"
            raise
        # the counter row of the message's own step/variant and send day (retention.analytics.stats)
        day = clock.parse_iso(str(ledger["sent_at"])) if ledger.get("sent_at") else now
        add_counters(self.d.dynamodb, table, str(ledger.get("rule", "unknown")), int(ledger.get("step", 0)),
                     str(ledger.get("variant") or "default"), {counter: 1}, day, ledger_id)
        self._brake(event, counter, now, ledger_id)  # once per message: only the ledger's first winner gets here
        return counter

    def _suppress(self, recipients: list[str], counter: str, now: Any) -> None:
        if not recipients:
            return
        salt = self.d.config.secrets("suppression-salt")[0].decode()
        for addr in recipients:
            pk, sk = suppression_key(addr, salt)
            self.d.dynamodb.put_item(TableName=self.d.env.messages_table, Item=ddb.serialize(
                {"pk": pk, "sk": sk, "reason": counter, "at": clock.iso(now)}))

    def _profile(self, customer: str, ledger: dict[str, Any], counter: str, permanent: bool,
                 recipients: list[str], now: Any) -> None:
        key = f"{ledger.get('rule')}|{ledger.get('entry')}|{ledger.get('step')}"
        for _ in range(ATTEMPTS):
            sp = self.repo.load(customer, now)
            if not sp.exists:
                return
            p = sp.profile
            changed = False
            if counter in ("delivered", "opened", "clicked"):
                engagement = p.meta.setdefault("engagement", {})
                kinds = engagement.setdefault(key, [])
                if counter not in kinds:
                    kinds.append(counter)
                    profiles.record_message_stat(p, counter, now)
                    changed = True
                if len(engagement) > ENGAGEMENT_KEEP:
                    for old in list(engagement)[:-ENGAGEMENT_KEEP]:
                        engagement.pop(old)
            email = str(p.traits.get("email") or "").strip().lower()
            # the profile's channel is suppressed only when its current address is the one that failed
            # (a customer who changed the address after the send keeps receiving at the new one)
            if permanent and not p.suppressed.get("email") and (not recipients or email in recipients):
                p.suppressed["email"] = {"reason": counter, "at": clock.iso(now)}
                changed = True
            if not changed:
                return
            try:
                self.repo.save(sp, now)
                return
            except Exception as exc:
                if not _conditional(exc):
                    raise
        raise RuntimeError(f"feedback: profile {customer} kept changing; retried {ATTEMPTS} times")


def _conditional(exc: BaseException) -> bool:
    """A failed condition (a botocore ReadTimeoutError has `response = None`: not one)."""
    response = getattr(exc, "response", None)
    code = ((response or {}).get("Error") or {}).get("Code") if isinstance(response, dict) else None
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


def _recipients(event: dict[str, Any]) -> list[str]:
    """The addresses a hard bounce or a complaint is about (lower-cased)."""
    section = event.get("bounce") or event.get("complaint") or {}
    listed = [r.get("emailAddress") for r in section.get("bouncedRecipients", [])
              + section.get("complainedRecipients", []) if isinstance(r, dict)]
    addresses = [a for a in listed if a] or list((event.get("mail") or {}).get("destination") or [])
    out = []
    for addr in addresses:
        text = str(addr).strip()
        if "<" in text and text.endswith(">"):  # "Name <addr>"
            text = text.rsplit("<", 1)[1][:-1]
        if text and text.lower() not in out:
            out.append(text.lower())
    return out

"""Erasure (right to be forgotten, DESIGN §6): every item that names the person goes, in every table.

What names a person, and where it lives (the test scans every table after an erasure for the id, the
email and the phone):
- profiles: the profile, its order items and its history rows (the `C#<id>` partition), the same for each
  anonymous id it absorbed (`C#anon:<a>`: merge tombstones and the visitor's history), identity links
  (`A#<a>`), the email and phone indexes (`X#<hash>`), product-interest rows (`PI#<product>` / `C#<id>`);
- events: the timelines of the customer and of its anonymous ids;
- due: pending journey steps, triggers, sends and re-checks carrying the customer id. The due index is
  keyed by time, not by customer, so it is scanned with a filter: it holds only pending work, and an
  erasure is a rare, audited admin action (never a per-minute path);
- messages: send-ledger rows keep the exactly-once record (their key is a hash) but lose the customer id,
  subject and error details; NPS answers keep the score (and stage, shop, time) for the aggregates under
  an anonymous key, with no id, no comment, no event id;
- idempotency: messageId and webhook markers carry no customer id and a hashed messageId (see
  retention.ingestion.ingestor) — nothing to delete. A raw event keyed by its client timestamp has no
  marker (the raw event is its dedupe): for each raw event received within the dedupe window, erasure
  writes the marker it did not have, so a client's retry of it after the erasure is a duplicate and does
  not re-create the person (`_remember`);
- kept on purpose: a salted hash of each address on the suppression list, so a later import cannot
  re-subscribe it without fresh consent.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb
from retention.core.errors import NotFoundError
from retention.core.runtime import Deps
from retention.customers.store import (
    ProfileRepo,
    alias_key,
    email_index_key,
    interest_key,
    phone_index_key,
    profile_pk,
)
from retention.messaging.requests import suppression_key

NPS_MONTHS_BACK = 36
"""NPS answers are looked up month by month from the customer's first sign of life (at most this far)."""


class Eraser:
    def __init__(self, d: Deps) -> None:
        self.d = d
        self.client = d.dynamodb
        self.env = d.env
        self.repo = ProfileRepo(d.dynamodb, d.env.profiles_table)

    def erase(self, customer_id: str) -> dict[str, Any]:
        now = clock.now()
        sp = self.repo.load(customer_id, now)
        if not sp.exists:
            raise NotFoundError(f"customer '{customer_id}' not found")
        p = sp.profile
        client, env = self.client, self.env
        anons = sorted({a.removeprefix("anon:") for a in p.anonymous_ids})
        ids = [customer_id, *(f"anon:{a}" for a in anons)]

        salt = self.d.config.secrets("suppression-salt")[0].decode()
        for trait in ("email", "phone"):
            addr = p.traits.get(trait)
            if addr:
                pk, sk = suppression_key(str(addr), salt)
                client.put_item(TableName=env.messages_table, Item=ddb.serialize(
                    {"pk": pk, "sk": sk, "reason": "erased", "at": clock.iso(now)}))

        events: list[tuple[str, str]] = []
        own: list[tuple[str, str]] = []
        raw: list[dict[str, Any]] = []
        for cid in ids:
            timeline = list(ddb.query(client, env.events_table, profile_pk(cid)))
            events += [(e["pk"], e["sk"]) for e in timeline]
            raw += [e for e in timeline if not e.get("internal")]
            own += [(i["pk"], i["sk"]) for i in ddb.query(client, env.profiles_table, profile_pk(cid))]
        self._remember(raw, now)
        self._erased(customer_id, salt, now)
        ddb.batch_write(client, env.events_table, deletes=events)
        extra = [alias_key(a) for a in anons]
        extra += [interest_key(prod, cid) for prod in p.interests for cid in ids]
        if p.traits.get("email"):
            extra.append(email_index_key(str(p.traits["email"])))
        if p.traits.get("phone"):
            extra.append(phone_index_key(str(p.traits["phone"])))
        ddb.batch_write(client, env.profiles_table, deletes=list(dict.fromkeys(own + extra)))

        due_items = self._due_items(ids)
        ddb.batch_write(client, env.due_table, deletes=due_items)

        ledger = 0
        for cid in ids:
            for row in ddb.query(client, env.messages_table, cid, index="by_customer",
                                 pk_name="customer_id", sk_name="created_at"):
                # keep the exactly-once record (its key is a hash), drop what identifies the person
                client.update_item(TableName=env.messages_table, Key=ddb.key(row["pk"], row["sk"]),
                                   UpdateExpression="REMOVE subject, customer_id, detail, reason, coupon, products "
                                                    "SET erased = :t",
                                   ExpressionAttributeValues={":t": {"BOOL": True}})
                ledger += 1
        answers = self._anonymise_nps(ids, p.created_at, now)
        return {"customer_id": customer_id, "erased": True, "events_deleted": len(events),
                "messages_anonymised": ledger, "due_items_deleted": len(due_items), "nps_anonymised": answers}

    def _remember(self, raw: list[dict[str, Any]], now: datetime) -> None:
        """The messageId markers of the raw events received within the dedupe window (hashed, no customer
        id: retention.ingestion.ingestor.marker_key), written before the events go: a retried message finds
        its marker on the path every message of an absent profile takes (the transaction) and is dropped as
        a duplicate. A marker that exists already is written over (its raw event is gone either way)."""
        from retention.ingestion.ingestor import marker_key  # ingestion owns the markers' keys
        window = timedelta(days=self.d.config.settings().dedupe_window_days)
        markers: dict[tuple[str, str], dict[str, Any]] = {}
        for e in raw:
            received = e.get("received_at")
            if not e.get("source") or not e.get("message_id") or not received:
                continue
            expires = clock.parse_iso(str(received)) + window
            if expires <= now:
                continue
            pk, sk = marker_key(str(e["source"]), str(e["message_id"]))
            markers[(pk, sk)] = {"pk": pk, "sk": sk, "at": clock.iso(now), "ttl": int(expires.timestamp())}
        ddb.batch_write(self.client, self.env.idempotency_table, puts=list(markers.values()))

    def _erased(self, customer_id: str, salt: str, now: datetime) -> None:
        """The erasure's record for the dedupe window (a salted hash of the id, no customer id: see
        retention.ingestion.ingestor.erased_key): a profile re-created within the window dedupes its older
        keyed events by their markers, so a retry of an erased one is not written back."""
        from retention.ingestion.ingestor import erased_key  # ingestion owns the key
        window = timedelta(days=self.d.config.settings().dedupe_window_days)
        pk, sk = erased_key(customer_id, salt)
        self.client.put_item(TableName=self.env.idempotency_table, Item=ddb.serialize(
            {"pk": pk, "sk": sk, "at": clock.iso(now), "ttl": int((now + window).timestamp())}))

    def _due_items(self, ids: list[str]) -> list[tuple[str, str]]:
        names = {f":c{i}": {"S": cid} for i, cid in enumerate(ids)}
        kwargs: dict[str, Any] = {
            "TableName": self.env.due_table, "ProjectionExpression": "pk, sk",
            "FilterExpression": f"customer_id IN ({', '.join(names)})", "ExpressionAttributeValues": names}
        found: list[tuple[str, str]] = []
        while True:
            resp = self.client.scan(**kwargs)
            found += [(i["pk"]["S"], i["sk"]["S"]) for i in resp.get("Items", [])]
            if not resp.get("LastEvaluatedKey"):
                return found
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _anonymise_nps(self, ids: list[str], since: datetime | None, now: datetime) -> int:
        """Each answer's row is replaced by one under an opaque key with the score and its context only."""
        start = max(since or now - timedelta(days=31 * NPS_MONTHS_BACK), now - timedelta(days=31 * NPS_MONTHS_BACK))
        month = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        from retention.surveys.answers import answers_pk  # the surveys own their keys (and import customers)
        done = 0
        table = self.env.messages_table
        while month <= now:
            pk = answers_pk(month)
            for cid in ids:
                for row in ddb.query(self.client, table, pk, sk_prefix=f"{cid}#"):
                    opaque = "erased#" + hashlib.sha256(f"{row['pk']}|{row['sk']}".encode()).hexdigest()[:24]
                    keep = {k: row[k] for k in ("score", "survey", "stage", "shop", "at", "source") if k in row}
                    self.client.transact_write_items(TransactItems=[
                        {"Put": {"TableName": table, "Item": ddb.serialize({"pk": pk, "sk": opaque, **keep,
                                                                            "erased": True})}},
                        {"Delete": {"TableName": table, "Key": ddb.key(row["pk"], row["sk"])}}])
                    done += 1
            month = (month + timedelta(days=32)).replace(day=1)
        return done

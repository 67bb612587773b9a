"""NPS answers (score links and the signed webhook), the double opt-in confirmation and one-click survey
answers, fed through the same ingestion path as shop events: profile, segments and journeys react in one
place (unsubscribe / preferences: retention.surveys.preferences).

Keys owned here: `NPS#<YYYY-MM>` / `<customer>#<survey ref>` (messages table, one answer per invitation
and month), `W#<event_id>` / `W` (idempotency table, webhook replay protection) and `SV#<ledger>` / `SV`
(idempotency table, one survey answer per message in the rule's stats)."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from retention.analytics.stats import ANSWER_PREFIX
from retention.core import clock, ddb, tokens
from retention.core.errors import BadRequestError, ConflictError, NotFoundError
from retention.core.runtime import Deps
from retention.customers.profile import Profile
from retention.customers.store import ProfileRepo
from retention.ingestion.wire import internal_message
from retention.messaging import links
from retention.messaging.requests import SendRequest, ledger_key
from retention.surveys import nps

if TYPE_CHECKING:  # the ingestion pipeline (journeys, segments, rules) loads at the first answer, not at import:
    from retention.ingestion.ingestor import Ingestor  # a link page's GET never ingests

NPS_SOURCE = "nps"
OPTIN_SOURCE = "double_opt_in"
SURVEY_SOURCE = "survey"
SUBSCRIPTION_CONFIRMED = "Subscription Confirmed"  # starts the welcome chains (scenarios/rules/welcome.yaml)
SURVEY_ANSWERED = "Survey Answered"
# how long a webhook event_id is remembered (survey tools retry for hours, not weeks)
REPLAY_WINDOW = timedelta(days=30)


def answers_pk(month: datetime) -> str:
    """The partition of one month's answers."""
    return f"NPS#{clock.iso(month)[:7]}"


log = logging.getLogger(__name__)


def _day(value: str, name: str) -> datetime:
    try:
        return clock.parse_iso(value.strip()[:10] + "T00:00:00Z")
    except (ValueError, TypeError) as exc:
        raise BadRequestError(f"'{name}' is a date YYYY-MM-DD, got {value!r}") from exc


def recent_comments(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The latest `limit` answers with a comment, newest first: `{"at", "score", "comment", "customer_id",
    "survey", "stage", "shop"}`. Rows without a customer (anonymised by an erasure) never count."""
    with_comment = [r for r in rows if str(r.get("comment") or "").strip() and r.get("customer_id")
                    and not str(r["customer_id"]).startswith("erased#")]
    with_comment.sort(key=lambda r: str(r["at"]), reverse=True)
    return [{"at": r["at"], "score": int(r["score"]), "comment": str(r["comment"]).strip(),
             "customer_id": r["customer_id"], "survey": r.get("survey"), "stage": r.get("stage"),
             "shop": r.get("shop")} for r in with_comment[:limit]]


class Surveys:
    def __init__(self, d: Deps) -> None:
        self.d = d
        self.repo = ProfileRepo(d.dynamodb, d.env.profiles_table)

    def _ingestor(self) -> Ingestor:
        from retention.ingestion.ingestor import Ingestor
        return Ingestor(ddb_client=self.d.dynamodb, sqs=self.d.sqs, env=self.d.env, config=self.d.config)

    # ---- NPS ---------------------------------------------------------------------------------------
    def verify_nps_token(self, token: str) -> dict[str, Any]:
        return links.verify_nps(token, self.d.config.secrets("links"), clock.now())

    def _existing(self, customer_id: str) -> Profile:
        sp = self.repo.load(customer_id, clock.now(), consistent=False)
        if not sp.exists or sp.profile.erased:
            raise NotFoundError(f"customer '{customer_id}' not found")
        return sp.profile

    def record(self, response: nps.NpsResponse, *, message_id: str, ref: str | None,
               profile: Profile | None = None) -> bool:
        """Store one answer: the `NPS Answered` event through ingestion (profile, segments and journeys
        react) and the report row. False when the same message was recorded before."""
        if profile is None:
            self._existing(response.customer_id)
        now = clock.now()
        ref = ref or response.ref or response.survey
        props = {"score": response.score, "comment": response.comment, "survey": response.survey,
                 "stage": response.stage, "shop": response.shop, "ref": ref, "source": response.source}
        result = self._ingestor().ingest([internal_message(response.customer_id, event="NPS Answered",
                                                           properties=props, message_id=message_id,
                                                           at=response.at)], NPS_SOURCE, now=now)
        if result.duplicates:
            return False
        # one row per (customer, survey invitation) per month: a later answer replaces the earlier one
        row = {"pk": answers_pk(response.at), "sk": f"{response.customer_id}#{ref}",
               "customer_id": response.customer_id, "score": response.score, "comment": response.comment,
               "survey": response.survey, "stage": response.stage, "shop": response.shop, "ref": ref,
               "at": clock.iso(response.at), "source": response.source, "event_id": response.event_id}
        self.d.dynamodb.put_item(TableName=self.d.env.messages_table, Item=ddb.serialize(row))
        return True

    @staticmethod
    def _invitation(profile: Profile, rule: str, ledger: str | None) -> dict[str, Any]:
        """The event that started the journey which sent this survey (its shop and CJM stage), when the
        customer is still in that journey entry: the ledger id is derived from (customer, rule, entry,
        step), so a match needs no read."""
        state = profile.journeys.get(rule)
        if not ledger or not isinstance(state, dict) or not state.get("entry"):
            return {}
        last = int(state.get("last_send_step", state.get("step", 0)) or 0)
        for step in range(max(last, int(state.get("step", 0) or 0)) + 1):
            probe = SendRequest(customer_id=profile.id, rule=rule, entry=str(state["entry"]), step=step,
                                channel="email", template="-")
            if probe.ledger_id == ledger:
                trigger = state.get("trigger") or {}
                return {"name": trigger.get("name"), "properties": trigger.get("properties") or {}}
        return {}

    def answer_link(self, token: str, score: Any, comment: str | None) -> nps.NpsResponse:
        claims = self.verify_nps_token(token)
        value = nps.validate_score(score)
        customer = str(claims["c"])
        survey = str(claims.get("s") or "nps")
        ledger = str(claims["l"]) if claims.get("l") else None
        profile = self._existing(customer)
        trigger = self._invitation(profile, survey, ledger)
        props = trigger.get("properties") or {}
        shop = props.get("shop")
        response = nps.NpsResponse(customer_id=customer, score=value, comment=comment or None, survey=survey,
                                   stage=nps.stage_for_event(trigger.get("name")),
                                   shop=shop if isinstance(shop, str) else None,
                                   at=clock.now(), source="link", ref=ledger or survey)
        mid = "nps-" + hashlib.sha256(f"{token}|{value}|{comment}|{clock.iso(clock.now())}".encode()).hexdigest()[:24]
        self.record(response, message_id=mid, ref=response.ref, profile=profile)
        return response

    def webhook(self, raw: bytes, signature: str | None) -> nps.NpsResponse:
        now = clock.now()
        # authenticate before parsing anything
        tokens.verify_webhook(signature, raw, self.d.config.secrets("nps-webhook"), now)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequestError(f"body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise BadRequestError("the webhook body must be a JSON object")
        payload = nps.WebhookPayload.model_validate(body)
        customer = payload.userId or (self.repo.customer_by_email(payload.email) if payload.email else None)
        if not customer:
            raise NotFoundError(f"no customer with email {payload.email!r}")
        # before the event id is claimed: an answer about an unknown customer does not burn its event_id
        profile = self._existing(customer)
        claim = ddb.key(f"W#{payload.event_id}", "W")
        try:
            self.d.dynamodb.put_item(TableName=self.d.env.idempotency_table, Item=ddb.serialize(
                {"pk": f"W#{payload.event_id}", "sk": "W", "at": clock.iso(now),  # no customer id: erasure-proof
                 "ttl": int((now + REPLAY_WINDOW).timestamp())}), ConditionExpression="attribute_not_exists(pk)")
        except Exception as exc:
            if ddb.is_conditional_failure(exc):
                raise ConflictError(f"event {payload.event_id} was already received (replay)",
                                    code="replayed") from exc
            raise
        response = payload.to_response(customer, received_at=now)
        try:
            self.record(response, message_id=f"nps-webhook-{payload.event_id}", ref=payload.survey or "nps",
                        profile=profile)
        except Exception:
            # not recorded: the survey tool's retry must not be taken for a replay
            try:
                self.d.dynamodb.delete_item(TableName=self.d.env.idempotency_table, Key=claim)
            except Exception:
                log.warning("could not release the webhook claim %s", payload.event_id, exc_info=True)
            raise
        return response

    def report(self, date_from: str | None, date_to: str | None, period: str = "month",
               comments: int = 0) -> dict[str, Any]:
        """The NPS report (retention.surveys.nps.aggregate). `comments` > 0 adds `comments`: the latest that
        many answers with a comment, newest first (the console's NPS page). An erased customer's answers keep
        only their score (retention.customers.erasure), so his comments are never among them."""
        now = clock.now()
        start = _day(date_from, "from") if date_from else clock.parse_iso(clock.iso(now - timedelta(days=365))[:10]
                                                                           + "T00:00:00Z")
        end = _day(date_to, "to") if date_to else clock.parse_iso(clock.iso(now)[:10] + "T00:00:00Z")
        end = end + timedelta(days=1) - timedelta(microseconds=1)
        if end < start:
            raise BadRequestError("'from' is after 'to'")
        lo, hi = clock.iso(start), clock.iso(end)
        rows: list[dict[str, Any]] = []
        month = start.replace(day=1)
        while month <= end:
            for item in ddb.query(self.d.dynamodb, self.d.env.messages_table, answers_pk(month)):
                if lo <= item["at"] <= hi:
                    rows.append({"customer_id": item.get("customer_id") or item["sk"], "score": item["score"],
                                 "comment": item.get("comment"), "survey": item.get("survey", "nps"),
                                 "stage": item.get("stage"), "shop": item.get("shop"), "ref": item.get("ref"),
                                 "at": item["at"], "source": item.get("source", "link")})
            month = (month + timedelta(days=32)).replace(day=1)
        report = nps.aggregate(rows, period=period)  # type: ignore[arg-type]
        for summary in [report["overall"], *report["by_stage"].values(), *report["by_shop"].values(),
                        *report["trend"]]:
            summary["label_ru"] = None if summary["nps"] is None else nps.nps_label_ru(summary["nps"])
        report["period"] = period
        report["scale"] = [{"from": low, "label": en, "label_ru": ru} for low, en, ru in nps.NPS_SCALE]
        report["from"] = clock.iso(start)[:10]
        report["to"] = clock.iso(end)[:10]
        if comments > 0:
            report["comments"] = recent_comments(rows, comments)
        return report

    # ---- double opt-in ---------------------------------------------------------------------------
    def verify_optin_token(self, token: str) -> dict[str, Any]:
        return links.verify_optin(token, self.d.config.secrets("links"), clock.now())

    def confirm_optin(self, token: str, evidence: dict[str, Any]) -> dict[str, Any]:
        """The POST of the double opt-in page: email consent granted and confirmed (source, time, evidence:
        the link's ledger id and the request's address and agent), and `Subscription Confirmed` {via}, which
        starts the welcome chain of the sign-up or subscription that asked. Idempotent per link: a second
        POST changes nothing and starts nothing."""
        claims = self.verify_optin_token(token)
        customer = str(claims["c"])
        now = clock.now()
        profile = self._existing(customer)
        already = bool(profile.consent.get("email") and profile.consent["email"].effective)
        proof = {"ledger": claims.get("l"), **{k: v for k, v in evidence.items() if v}}
        digest = hashlib.sha256(token.encode()).hexdigest()[:24]
        messages = [internal_message(customer, type_="identify", message_id=f"optin-{digest}", traits={
            "email_consent": {"granted": True, "confirmed": True, "source": OPTIN_SOURCE, "at": clock.iso(now),
                              "evidence": proof}})]
        messages.append(internal_message(customer, event=SUBSCRIPTION_CONFIRMED, message_id=f"optin-ev-{digest}",
                                         properties={"via": str(claims.get("v") or ""), "ref": claims.get("l")}))
        result = self._ingestor().ingest(messages, OPTIN_SOURCE, now=now)
        return {"customer_id": customer, "confirmed": True, "already": already or bool(result.duplicates)}

    # ---- one-click surveys (reactivation "why did you leave?", browse abandonment) ------------------
    def verify_survey_token(self, token: str) -> dict[str, Any]:
        return links.verify_survey(token, self.d.config.secrets("links"), clock.now())

    def answer_survey(self, token: str) -> dict[str, Any]:
        """The POST of a survey answer link: the reason goes on the profile (trait `survey_<rule>`, the latest
        answer wins, and a `Survey Answered` event) and, once per message, on the rule's stats
        (`answer:<reason>` on the message's step/variant row and send day)."""
        claims = self.verify_survey_token(token)
        customer, survey, reason = str(claims["c"]), str(claims["s"]), str(claims["r"])
        ledger = str(claims["l"]) if claims.get("l") else None
        now = clock.now()
        self._existing(customer)
        trait = "survey_" + survey.replace("-", "_")
        digest = hashlib.sha256(f"{token}".encode()).hexdigest()[:24]
        self._ingestor().ingest([
            internal_message(customer, type_="identify", message_id=f"survey-{digest}",
                             traits={trait: reason, f"{trait}_at": clock.iso(now)}),
            internal_message(customer, event=SURVEY_ANSWERED, message_id=f"survey-ev-{digest}",
                             properties={"survey": survey, "reason": reason, "ref": ledger})], SURVEY_SOURCE, now=now)
        counted = False
        item = ddb.get(self.d.dynamodb, self.d.env.messages_table, *ledger_key(ledger)) if ledger else None
        if item and item.get("rule"):
            try:  # one answer per message in the stats, however often the button is pressed
                self.d.dynamodb.put_item(TableName=self.d.env.idempotency_table, Item=ddb.serialize(
                    {"pk": f"SV#{ledger}", "sk": "SV", "at": clock.iso(now), "reason": reason,
                     "ttl": int((now + REPLAY_WINDOW * 13).timestamp())}),
                    ConditionExpression="attribute_not_exists(pk)")
                counted = True
            except Exception as exc:
                if not ddb.is_conditional_failure(exc):
                    raise
            if counted:
                from retention.analytics.counters import add_counters
                day = clock.parse_iso(str(item["sent_at"])) if item.get("sent_at") else now
                add_counters(self.d.dynamodb, self.d.env.messages_table, str(item["rule"]), int(item.get("step", 0)),
                             str(item.get("variant") or "default"), {f"{ANSWER_PREFIX}{reason}": 1}, day, str(ledger))
        return {"customer_id": customer, "survey": survey, "reason": reason, "counted": counted}

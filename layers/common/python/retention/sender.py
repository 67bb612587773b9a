"""send_message's library: ledger first, checks, render, provider call, ledger marked sent.

Exactly once: the ledger item for (customer, rule, entry, step) is claimed with a conditional write
before SES/SNS is called. A duplicate SQS delivery finds it claimed and does nothing; a timeout after
the provider call leaves it `pending`, and a pending claim is never retried (never twice beats at
least once for marketing mail). Definite provider failures (throttling) release the claim and the
SQS message is retried with backoff; permanent rejections are recorded and not retried.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from retention import clock, ddb, due, tokens
from retention.config import ConfigStore, Settings
from retention.messaging import SendRequest, add_counters, ledger_key
from retention.settings import Env
from retention.store import ProfileRepo, StoredProfile, profile_pk

RETRYABLE = {"Throttling", "ThrottlingException", "TooManyRequestsException", "ServiceUnavailable",
             "InternalFailure", "SendingPausedException", "LimitExceededException", "InternalServerError"}
UNSUBSCRIBE_TTL = timedelta(days=365)
NPS_TTL = timedelta(days=30)


class RetryableSendError(Exception):
    """The provider refused for now (throttling): the SQS message must come back later."""


@dataclass
class Outcome:
    status: str  # sent | skipped | duplicate | deferred | failed
    reason: str | None = None
    provider_id: str | None = None


def local_time(tz_name: str | None, default_tz: str, now: datetime) -> datetime:
    try:
        return now.astimezone(ZoneInfo(tz_name or default_tz))
    except Exception:
        return now.astimezone(ZoneInfo(default_tz))


def quiet_until(window: Any, local_now: datetime) -> datetime | None:
    """End of the quiet window if `local_now` is inside it (windows may cross midnight)."""
    if window is None:
        return None
    sh, sm = (int(x) for x in window.start.split(":"))
    eh, em = (int(x) for x in window.end.split(":"))
    start = local_now.replace(hour=sh, minute=sm, second=0, microsecond=0)
    end = local_now.replace(hour=eh, minute=em, second=0, microsecond=0)
    if start == end:
        return None
    if start < end:
        return end if start <= local_now < end else None
    if local_now >= start:
        return end + timedelta(days=1)
    if local_now < end:
        return end
    return None


def cap_reached(sends: list[dict[str, Any]], channel: str, settings: Settings, now: datetime) -> bool:
    for cap in settings.frequency_caps.get(channel, []):
        horizon = clock.iso(now - timedelta(hours=cap.hours))
        recent = [s for s in sends if s.get("channel") == channel and s.get("marketing") and s.get("at", "") >= horizon]
        if len(recent) >= cap.count:
            return True
    return False


class Sender:
    def __init__(self, *, ddb_client: Any, ses: Any, sns: Any, sqs: Any, env: Env, config: ConfigStore,
                 renderer: Any) -> None:
        self.ddb = ddb_client
        self.ses = ses
        self.sns = sns
        self.sqs = sqs
        self.env = env
        self.config = config
        self.profiles = ProfileRepo(ddb_client, env.profiles_table)
        self.renderer = renderer  # retention.rendering.Renderer: template lookup + render + MIME

    # ---- ledger ------------------------------------------------------------------------------
    def _claim(self, req: SendRequest, now: datetime) -> bool:
        pk, sk = ledger_key(req.ledger_id)
        item = {"pk": pk, "sk": sk, "status": "pending", "customer_id": req.customer_id, "rule": req.rule,
                "entry": req.entry, "step": req.step, "variant": req.variant, "template": req.template,
                "channel": req.channel, "created_at": clock.iso(now), "claimed_at": clock.iso(now)}
        try:
            self.ddb.put_item(TableName=self.env.messages_table, Item=ddb.serialize(item),
                              ConditionExpression="attribute_not_exists(pk) OR #s IN (:r, :d)",
                              ExpressionAttributeNames={"#s": "status"},
                              ExpressionAttributeValues={":r": {"S": "retry"}, ":d": {"S": "deferred"}})
            return True
        except Exception as exc:
            if ddb.is_conditional_failure(exc):
                return False
            raise

    def _finish(self, req: SendRequest, status: str, now: datetime, **extra: Any) -> None:
        sets = {"status": status, "updated_at": clock.iso(now), **{k: v for k, v in extra.items() if v is not None}}
        names = {f"#a{i}": k for i, k in enumerate(sets)}
        vals = {f":a{i}": ddb.value(v) for i, v in enumerate(sets.values())}
        self.ddb.update_item(TableName=self.env.messages_table, Key=ddb.key(*ledger_key(req.ledger_id)),
                             UpdateExpression="SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(sets))),
                             ExpressionAttributeNames=names, ExpressionAttributeValues=vals)

    def _skip(self, req: SendRequest, reason: str, now: datetime) -> Outcome:
        self._finish(req, "skipped", now, reason=reason)
        add_counters(self.ddb, self.env.messages_table, req.rule, req.step, req.variant,
                     {"suppressed": 1, f"suppressed:{reason}": 1}, now, req.ledger_id)
        return Outcome("skipped", reason)

    # ---- the send ------------------------------------------------------------------------------
    def send(self, req: SendRequest) -> Outcome:
        now = clock.now()
        if not self._claim(req, now):
            return Outcome("duplicate")
        settings = self.config.settings()
        sp, suppressed = self._load(req, settings)
        profile = sp.profile
        if not sp.exists or profile.erased:
            return self._skip(req, "no_profile", now)
        rule = self.renderer.rule(req.rule)
        journey = profile.journeys.get(req.rule) or {}
        if rule is not None and journey and journey.get("entry") == req.entry and journey.get("state") == "exited":
            return self._skip(req, "journey_exited", now)
        channel = self._channel(req, profile)
        if channel is None:
            return self._skip(req, "no_channel", now)
        address = profile.traits.get("email") if channel == "email" else profile.traits.get("phone")
        if not address:
            return self._skip(req, f"no_{'address' if channel == 'email' else 'phone'}", now)
        if suppressed.get(channel):
            return self._skip(req, "suppressed", now)
        marketing = not req.transactional
        if marketing and not self.renderer.has_consent(profile, channel, now):
            return self._skip(req, "no_consent", now)
        if rule is not None and not self.renderer.audience_ok(rule, profile, now):
            return self._skip(req, "audience", now)
        window = settings.quiet_hours.get(channel)
        tz = profile.traits.get("timezone")
        until = quiet_until(window, local_time(tz, settings.default_timezone, now))
        if until is not None:
            return self._defer(req, until.astimezone(now.tzinfo), now)
        if marketing and cap_reached(sp.sends, channel, settings, now):
            return self._skip(req, "frequency_cap", now)
        try:
            rendered = self.renderer.render(req, profile, channel, now)
        except Exception as exc:  # template errors are recorded, never retried forever
            self._finish(req, "failed", now, reason=f"render: {exc}"[:500])
            add_counters(self.ddb, self.env.messages_table, req.rule, req.step, req.variant,
                         {"failed": 1}, now, req.ledger_id)
            return Outcome("failed", f"render: {exc}")
        try:
            provider_id = self._deliver(req, channel, address, rendered)
        except RetryableSendError:
            self._finish(req, "retry", now)
            raise
        except PermanentSendError as exc:
            self._finish(req, "rejected", now, reason=str(exc)[:500])
            add_counters(self.ddb, self.env.messages_table, req.rule, req.step, req.variant,
                         {"rejected": 1}, now, req.ledger_id)
            return Outcome("failed", str(exc))
        self._mark_sent(req, sp, channel, address, rendered, provider_id, now)
        return Outcome("sent", provider_id=provider_id)

    def _load(self, req: SendRequest, settings: Settings) -> tuple[StoredProfile, dict[str, bool]]:
        """One read: suppression (bounce, complaint, unsubscribe, erased address) is mirrored on the profile."""
        sp = self.profiles.load(req.customer_id, clock.now(), consistent=True)
        sup = getattr(sp.profile, "suppressed", {}) or {}
        return sp, {ch: bool(sup.get(ch)) for ch in ("email", "sms")}

    def _channel(self, req: SendRequest, profile: Any) -> str | None:
        if req.channel != "preferred":
            return req.channel
        preferred = str(profile.traits.get("preferred_channel") or "").lower()
        has_email = bool(profile.traits.get("email"))
        has_phone = bool(profile.traits.get("phone"))
        now = clock.now()
        ok = {"email": has_email and (req.transactional or self.renderer.has_consent(profile, "email", now)),
              "sms": has_phone and (req.transactional or self.renderer.has_consent(profile, "sms", now))}
        if ok.get(preferred):
            return preferred
        # cheapest consented channel first: email costs a fraction of an SMS
        for ch in ("email", "sms"):
            if ok[ch]:
                return ch
        return None

    def _defer(self, req: SendRequest, until: datetime, now: datetime) -> Outcome:
        deferred = req.model_copy(update={"not_before": clock.iso(until)})
        due.put(self.ddb, self.env.due_table,
                [due.DueItem(at=until, kind="SEND", customer_id=req.customer_id, ref=req.ledger_id,
                             payload=json.loads(deferred.model_dump_json()))], self.env.due_shards)
        self._finish(req, "deferred", now, not_before=clock.iso(until), reason="quiet_hours")
        return Outcome("deferred", "quiet_hours")

    def _deliver(self, req: SendRequest, channel: str, address: str, rendered: Any) -> str:
        try:
            if channel == "email":
                kwargs: dict[str, Any] = {
                    "FromEmailAddress": self.env.sender_email,
                    "Destination": {"ToAddresses": [address]},
                    "Content": {"Raw": {"Data": rendered.raw}},
                    "EmailTags": [{"Name": "ledger", "Value": req.ledger_id},
                                  {"Name": "rule", "Value": _tag(req.rule)},
                                  {"Name": "step", "Value": str(req.step)},
                                  {"Name": "variant", "Value": _tag(req.variant)}],
                }
                if self.env.ses_configuration_set:
                    kwargs["ConfigurationSetName"] = self.env.ses_configuration_set
                resp = self.ses.send_email(**kwargs)
                return str(resp.get("MessageId", ""))
            sms_type = "Transactional" if req.transactional else "Promotional"
            resp = self.sns.publish(PhoneNumber=address, Message=rendered.sms, MessageAttributes={
                "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": sms_type},
                "AWS.SNS.SMS.SenderID": {"DataType": "String", "StringValue": self.env.sms_sender_id},
            })
            return str(resp.get("MessageId", ""))
        except Exception as exc:
            code = ddb.error_code(exc)
            if code in RETRYABLE:
                raise RetryableSendError(code) from exc
            if code is not None:
                raise PermanentSendError(f"{code}: {exc}") from exc
            raise

    def _mark_sent(self, req: SendRequest, sp: StoredProfile, channel: str, address: str, rendered: Any,
                   provider_id: str, now: datetime) -> None:
        """Ledger `sent` and the profile's send list in one transaction (one request, both or neither)."""
        entry = {"at": clock.iso(now), "rule": req.rule, "step": req.step, "variant": req.variant,
                 "channel": channel, "marketing": not req.transactional, "ledger": req.ledger_id}
        lk = ledger_key(req.ledger_id)
        ledger_update = {"Update": {
            "TableName": self.env.messages_table, "Key": ddb.key(*lk),
            "UpdateExpression": "SET #s = :s, sent_at = :t, provider_id = :p, channel_used = :c, subject = :sub",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": ddb.values({":s": "sent", ":t": clock.iso(now), ":p": provider_id,
                                                     ":c": channel, ":sub": getattr(rendered, "subject", "") or ""})}}
        profile_update = {"Update": {
            "TableName": self.env.profiles_table, "Key": ddb.key(profile_pk(req.customer_id), "P"),
            "UpdateExpression": "SET sends = list_append(if_not_exists(sends, :empty), :e), version = version + :one",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": ddb.values({":e": [entry], ":empty": [], ":one": 1})}}
        for attempt in range(4):
            try:
                self.ddb.transact_write_items(TransactItems=[ledger_update, profile_update])
                break
            except Exception as exc:
                if ddb.error_code(exc) in ("TransactionConflictException", "TransactionCanceledException") \
                        and attempt < 3:
                    ddb.backoff(attempt + 1)
                    continue
                # the message went out: the ledger must say so even if the profile update cannot be made
                self._finish(req, "sent", now, sent_at=clock.iso(now), provider_id=provider_id, channel_used=channel)
                break
        add_counters(self.ddb, self.env.messages_table, req.rule, req.step, req.variant, {"sent": 1}, now,
                     req.ledger_id)


class PermanentSendError(Exception):
    """MessageRejected, invalid address, …: recorded, never retried."""


def _tag(value: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in value)[:250] or "_"


def unsubscribe_url(base: str, secrets: list[bytes], customer_id: str, channel: str, ledger: str,
                    now: datetime) -> str:
    token = tokens.sign({"c": customer_id, "ch": channel, "l": ledger}, secrets[0],
                        expires_at=now + UNSUBSCRIBE_TTL, purpose="unsub")
    return f"{base.rstrip('/')}/u/{token}"


def nps_urls(base: str, secrets: list[bytes], customer_id: str, survey: str, ledger: str,
             now: datetime) -> tuple[dict[int, str], str]:
    token = tokens.sign({"c": customer_id, "s": survey, "l": ledger}, secrets[0], expires_at=now + NPS_TTL,
                        purpose="nps")
    root = f"{base.rstrip('/')}/nps/{token}"
    return {n: f"{root}?score={n}" for n in range(11)}, root

"""send_message's library: ledger first, checks, render, provider call, ledger marked sent.

Exactly once: the ledger item for (customer, rule, entry, step) is claimed with a conditional write
before SES/SNS is called. A duplicate SQS delivery finds it claimed and does nothing; a timeout after
the provider call leaves it `pending`, and a pending claim is never retried (never twice beats at
least once for marketing mail). Nothing is lost either:

- an error before the provider is called (a throttled profile read, a config read …) releases the
  claim (status `retry`) and the SQS message comes back;
- throttling is retried here a few times with backoff, then the claim is released (`retry`) and the
  SQS message comes back later (the handler backs its visibility off);
- a connection that never reached the provider (connect timeout, endpoint unreachable) is `retry` too;
- permanent rejections (MessageRejected, an invalid address) are recorded (`rejected`) and not retried;
- other provider errors release the claim and fail the record, so SQS retries and finally parks the
  message in the DLQ (redrivable: the ledger still allows a re-claim).

The provider clients must not retry on their own (botocore retries a read timeout, which would send
the message a second time behind the ledger's back): see retention.messaging.delivery.provider_clients.

Every message not sent has its reason on the ledger (`reason`) and in the daily counters
(`suppressed` + `suppressed:<reason>`, the row conventions of retention.analytics.stats).

DynamoDB requests per sent message (configuration cached): the sweeper's reminder and the claim (2 PutItem),
profile (GetItem), the profile's `sends` then the ledger `sent` (2 UpdateItem: 1 write unit each, where one
transaction of both cost 4; see _mark_sent for the crash between them) = 5; the tick reads the ledger and
deletes the reminder when it comes due. A recommendation block adds its reads (retention.products.recommend),
a pool coupon GetItem + Query + GetItem + one transaction. The daily counters (`sent`, `suppressed:<reason>`)
and, for an email, the send brake's hourly counter of the sending identity (retention.messaging.brake) are one
UpdateItem per distinct counter row per SQS batch: inside `batch()` they are summed in memory and written when
the batch is done (N sends of one rule/step/variant: one UpdateItem with +N). Called outside `batch()` (tests,
tools) `send` writes them at once, as before.

The counters stay at most once: they are added after the ledger's winning write (the claim, then `sent` or
the reason), so a redelivered message adds nothing; a crash between that write and the flush loses the counts
of the batch so far and never counts one twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from retention.analytics.counters import CounterBatch
from retention.core import clock, ddb
from retention.core.config import ConfigStore, Settings
from retention.core.errors import RetentionError
from retention.core.settings import Env
from retention.customers.store import ProfileRepo, StoredProfile, profile_pk
from retention.messaging.requests import SendRequest, ledger_key
from retention.schedule import due

log = logging.getLogger(__name__)

RETRYABLE = {"Throttling", "ThrottlingException", "TooManyRequestsException", "ServiceUnavailable",
             "ServiceUnavailableException", "InternalFailure", "SendingPausedException", "LimitExceededException",
             "InternalServerError", "InternalError", "RequestLimitExceeded", "ThrottledException"}
# the message (or its address) is refused for good: recorded, never retried
PERMANENT = {"MessageRejected", "BadRequestException", "InvalidParameter", "InvalidParameterValue",
             "InvalidParameterException", "InvalidParameterValueException", "MailFromDomainNotVerifiedException",
             "MailFromDomainNotVerified", "ValidationError", "ValidationException"}
ADDRESS_HINTS = ("address", "recipient", "phone", "destination", "mailbox", "e.164", "e164")
AFTER_RENDER_SECONDS = 5.0  # kept for the provider call (its timeouts) and the ledger after a render
RENDER_BUDGET_SECONDS = 2.0
PROVIDER_ATTEMPTS = 3  # in-process tries on throttling before the SQS message is handed back
UNSUBSCRIBE_SOURCES = {"one_click", "preferences", "unsubscribe", "list_unsubscribe", "link"}
SUPPRESSION_REASONS = {"bounced", "complained", "erased", "unsubscribed"}


class RetryableSendError(Exception):
    """The provider refused for now (throttling): the SQS message must come back later."""


class PermanentSendError(Exception):
    """MessageRejected, invalid address, …: recorded, never retried."""

    def __init__(self, message: str, reason: str = "rejected") -> None:
        super().__init__(message)
        self.reason = reason


class ProviderError(Exception):
    """An unexpected provider error before the message was accepted: SQS retries, then the DLQ."""


@dataclass
class Outcome:
    status: str  # sent | skipped | duplicate | deferred | failed | unknown
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


def cap_reached(sends: list[dict[str, Any]], channel: str, settings: Settings, now: datetime,
                rule: Any = None) -> bool:
    """Global caps per channel (settings.frequency_caps), then the rule's own caps if it has any
    (`frequency_caps: {email: [{count, hours}]}` or a list for every channel) on its sends alone.
    Only marketing sends count; transactional messages are exempt and never counted."""
    marketing = [s for s in sends if s.get("channel") == channel and s.get("marketing")]
    if _over(marketing, settings.frequency_caps.get(channel, []), now):
        return True
    own = getattr(rule, "frequency_caps", None) if rule is not None else None
    if own:
        caps = own.get(channel, []) if isinstance(own, dict) else own
        rule_id = getattr(rule, "id", None)
        return _over([s for s in marketing if s.get("rule") == rule_id], caps, now)
    return False


def _over(sends: list[dict[str, Any]], caps: Any, now: datetime) -> bool:
    for cap in caps or []:
        count = cap["count"] if isinstance(cap, dict) else cap.count
        hours = cap["hours"] if isinstance(cap, dict) else cap.hours
        horizon = clock.iso(now - timedelta(hours=float(hours)))
        if sum(1 for s in sends if s.get("at", "") >= horizon) >= int(count):
            return True
    return False


@dataclass
class _Ready:
    """Everything checked and rendered: what the provider call needs."""

    sp: StoredProfile
    channel: str
    address: str
    rendered: Any


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
        self.renderer = renderer  # retention.messaging.rendering.Renderer: template lookup + render + MIME
        # seconds left in the Lambda invocation (the handler sets it): a render gets what is left minus the
        # time the provider call and the ledger need, so a slow template fails its message, not the batch
        self.time_left: Callable[[], float] | None = None
        from retention.messaging.brake import Brake, sending_identity
        self.brake = Brake(ddb_client, env.messages_table, config)
        self.identity = sending_identity(env.sender_email)
        self.counters = CounterBatch(ddb_client, env.messages_table)

    # ---- batches -----------------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        """The sends inside add to the daily counters and the brake's hourly counter once per distinct row,
        when the block ends (also when it ends with an error: what was sent counts). A counter write that
        fails is logged and lost (at most once), never raised: the sends themselves are done."""
        self.counters.deferred = self.brake.deferred = True
        try:
            yield
        finally:
            self.counters.deferred = self.brake.deferred = False
            self.flush()

    def flush(self) -> None:
        for what in (self.counters, self.brake):
            try:
                what.flush()
            except Exception:
                log.warning("counter writes of the batch failed (counts lost, sends done)", exc_info=True)

    # ---- ledger ------------------------------------------------------------------------------
    def _claim(self, req: SendRequest, now: datetime) -> bool:
        pk, sk = ledger_key(req.ledger_id)
        item = {"pk": pk, "sk": sk, "status": "pending", "customer_id": req.customer_id, "rule": req.rule,
                "entry": req.entry, "step": req.step, "variant": req.variant, "template": req.template,
                "channel": req.channel, "created_at": clock.iso(now), "claimed_at": clock.iso(now),
                "ttl": int(now.timestamp()) + self.config.settings().ledger_retention_days * 86400}
        # the sweeper's reminder first, then the claim: a crash or a lost provider answer after the claim
        # leaves it `pending` with its reminder, and the tick reconciles it (reconcile_pending) instead of
        # nobody. Two plain writes (2 + 1 write units with the index) instead of one transaction (5): a
        # reminder without its claim (a crash in between, a duplicate delivery) is a no-op sweep, and every
        # reminder is left to the tick (a read of the ledger and one delete when it comes due), not deleted
        # by `sent` (2 write units inside its transaction)
        self.ddb.put_item(TableName=self.env.due_table,
                          Item=ddb.serialize(pending_item(req, now).to_item(self.env.due_shards)))
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
        ddb.set_fields(self.ddb, self.env.messages_table, *ledger_key(req.ledger_id), sets)

    def _release(self, req: SendRequest, now: datetime, reason: str) -> None:
        """Nothing was handed to the provider: the claim becomes re-claimable (`retry`). Best effort —
        the caller re-raises the original error either way."""
        try:
            self.ddb.update_item(
                TableName=self.env.messages_table, Key=ddb.key(*ledger_key(req.ledger_id)),
                UpdateExpression="SET #s = :r, updated_at = :t, reason = :why",
                ConditionExpression="#s = :p", ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=ddb.values({":r": "retry", ":p": "pending", ":t": clock.iso(now),
                                                      ":why": reason[:500]}))
        except Exception:
            log.warning("could not release the ledger claim %s", req.ledger_id, exc_info=True)

    def _not_sent(self, req: SendRequest, status: str, reason: str, now: datetime,
                  detail: str | None = None) -> Outcome:
        """Record why a message is not sent: ledger status + reason, `suppressed` counters."""
        self._finish(req, status, now, reason=reason, detail=(detail or None) and detail[:500])
        self.counters.add(req.rule, req.step, req.variant, {"suppressed": 1, f"suppressed:{reason}": 1}, now,
                          req.ledger_id)
        return Outcome("failed" if status in ("failed", "rejected") else "skipped", reason)

    def _skip(self, req: SendRequest, reason: str, now: datetime) -> Outcome:
        return self._not_sent(req, "skipped", reason, now)

    # ---- the send ------------------------------------------------------------------------------
    def send(self, req: SendRequest) -> Outcome:
        now = clock.now()
        if not self._claim(req, now):
            return Outcome("duplicate")
        try:
            if not req.transactional and self.renderer.template_category(req.template) == "transactional":
                # a service message inside a marketing journey (the sign-up confirmation): no marketing
                # consent needed, exempt from caps; suppression and quiet hours still apply
                req = req.model_copy(update={"transactional": True})
            ready = self._prepare(req, now)
        except Exception as exc:
            # nothing reached the provider: hand the message back instead of losing it behind a pending claim
            self._release(req, now, f"error before sending: {type(exc).__name__}: {exc}")
            raise
        if isinstance(ready, Outcome):
            return ready
        try:
            provider_id = self._deliver(req, ready.channel, ready.address, ready.rendered)
        except RetryableSendError as exc:
            self._finish(req, "retry", now, reason=f"throttled: {exc}"[:500])
            raise
        except PermanentSendError as exc:
            return self._not_sent(req, "rejected", exc.reason, now, detail=str(exc))
        except ProviderError as exc:
            self._release(req, now, str(exc))
            raise
        except Exception as exc:
            # a read timeout or a broken connection after the request went out: the provider may have
            # accepted the message. The claim stays `pending` (never re-claimed, never sent twice); SES
            # feedback (delivery, bounce) fills in the status if it did go out.
            try:
                self._finish(req, "pending", now, reason=f"provider_unknown: {type(exc).__name__}: {exc}"[:500])
            except Exception:
                log.warning("could not note the unknown outcome on %s", req.ledger_id, exc_info=True)
            log.warning("provider outcome unknown for %s: %s", req.ledger_id, exc)
            return Outcome("unknown", "provider_unknown")
        self._mark_sent(req, ready.sp, ready.channel, ready.address, ready.rendered, provider_id, now)
        return Outcome("sent", provider_id=provider_id)

    def _prepare(self, req: SendRequest, now: datetime) -> _Ready | Outcome:
        """Checks at send time (profile, journey, channel, address, suppression, consent, audience, quiet
        hours, caps), then the render. An Outcome when the message is not sent now."""
        settings = self.config.settings()
        sp, suppressed = self._load(req, settings)
        profile = sp.profile
        if not sp.exists or profile.erased:
            return self._skip(req, "no_profile", now)
        rule = self.renderer.rule(req.rule)
        journey = next((j for s, j in profile.journeys.items()
                        if s.split("#", 1)[0] == req.rule and j.get("entry") == req.entry), None) or {}
        if rule is not None and journey and journey.get("entry") == req.entry and journey.get("state") == "exited":
            return self._skip(req, "journey_exited", now)
        if rule is not None and not rule.enabled and not req.transactional:
            # disabled since the message was queued: its marketing stops now (a transactional message, an
            # order confirmation, still goes: the customer expects it)
            return self._skip(req, "rule_disabled", now)
        channel, address, why = channel_decision(
            req.channel, profile, transactional=req.transactional, suppressed=suppressed,
            consented=lambda ch: self.renderer.has_consent(profile, ch, now),
            supported=lambda: self._template_channels(req, profile), sms_countries=settings.sms_allowed())
        if why is not None or channel is None:
            return self._skip(req, why or "no_channel", now)
        marketing = not req.transactional
        if rule is not None and not self.renderer.audience_ok(rule, profile, now):
            return self._skip(req, "audience", now)
        if marketing and channel == "email" and self.brake.paused(self.identity):
            # the send brake: marketing email waits (deferred, re-checked every DEFER_MINUTES) until resumed
            from retention.messaging.brake import DEFER_MINUTES
            return self._defer(req, now + timedelta(minutes=DEFER_MINUTES), now, reason="sending_paused")
        window = settings.quiet_hours.get(channel)
        tz = profile.traits.get("timezone")
        until = quiet_until(window, local_time(tz, settings.default_timezone, now))
        if until is not None:
            return self._defer(req, until.astimezone(now.tzinfo), now)
        if marketing and cap_reached(sp.sends, channel, settings, now, rule):
            return self._skip(req, "frequency_cap", now)
        spec = self.renderer.send_spec(req) if rule is not None else None
        wanted = getattr(spec, "coupon", None) if not req.transactional else None
        minimum = getattr(spec, "min_recommendations", None)
        recommender = self.renderer.recommender(req, profile, channel, now)
        try:
            from retention.language.templates import render_deadline
            budget = self.time_left() - AFTER_RENDER_SECONDS if self.time_left else RENDER_BUDGET_SECONDS
            with render_deadline(max(0.0, min(budget, RENDER_BUDGET_SECONDS))):
                if wanted is not None and minimum:
                    # products first: a code is not spent on a message that would be skipped for want of them
                    self.renderer.render(req, profile, channel, now, coupon=_PLACEHOLDER_COUPON,
                                         recommender=recommender)
                    if _too_few(recommender, minimum):
                        return self._skip(req, "no_recommendations", now)
                    recommender = self.renderer.recommender(req, profile, channel, now)
                coupon = None
                if wanted is not None:
                    coupon = self._coupon(req, wanted, now)
                    if coupon is None:
                        return self._skip(req, "coupon_pool_empty", now)
                rendered = self.renderer.render(req, profile, channel, now, coupon=coupon, recommender=recommender)
                if minimum and _too_few(recommender, minimum):
                    return self._skip(req, "no_recommendations", now)
        except (RetentionError, LookupError, ValueError) as exc:
            # the template's fault (undefined variable, sandbox, size caps, SMS length, not applied …):
            # recorded, never retried forever. Anything else (a throttled config read) propagates and
            # releases the claim, so the message is retried instead of being written off.
            code = getattr(exc, "code", None)
            reason = code if code in ("sms_too_long", "sms_empty") else "render_error"
            return self._not_sent(req, "failed", str(reason), now, detail=f"{type(exc).__name__}: {exc}")
        return _Ready(sp=sp, channel=channel, address=str(address), rendered=rendered)

    def _coupon(self, req: SendRequest, wanted: Any, now: datetime) -> dict[str, Any] | None:
        """This send's code from the step's pool (the same one on a retry); the signed fallback code when the
        pool is empty and the step allows it; None when it is empty and it does not."""
        from retention.products.coupons import Coupons, PoolEmptyError
        coupons = Coupons(self.ddb, self.env.products_table)
        issue_key = req.ledger_id
        if wanted.per == "journey":
            import hashlib
            issue_key = hashlib.sha256(f"{req.customer_id}|{req.rule}|{req.entry}|pool:{wanted.pool}".encode()
                                       ).hexdigest()[:32]
        try:
            return coupons.issue(wanted.pool, customer_id=req.customer_id, rule=req.rule, entry=req.entry,
                                 step=req.step, variant=req.variant, ledger_id=issue_key, now=now).context()
        except PoolEmptyError:
            log.warning("coupon pool %s is empty (rule %s, step %s)", wanted.pool, req.rule, req.step)
            if wanted.fallback != "hmac":
                return None
        meta = coupons.meta(wanted.pool) or {}  # its discount and validity; a META row: the pool is registered
        discount = str(meta.get("discount") or wanted.discount or "10%")
        expires = now + timedelta(days=int(meta.get("valid_days") or wanted.valid_days))
        return coupons.issue_fallback(self.config.secrets("coupons")[0], wanted.pool, discount=discount,
                                      expires_at=expires, customer_id=req.customer_id, rule=req.rule,
                                      entry=req.entry, step=req.step, variant=req.variant, ledger_id=issue_key,
                                      code_step=req.step if wanted.per == "step" else -1, now=now,
                                      registered=bool(meta)).context()

    def _load(self, req: SendRequest, settings: Settings) -> tuple[StoredProfile, dict[str, str]]:
        """One read: suppression (bounce, complaint, erased address) is mirrored on the profile.
        Returns {channel: reason} for the suppressed channels."""
        sp = self.profiles.load(req.customer_id, clock.now(), consistent=True)
        return sp, suppression_reasons(sp.profile)

    def _template_channels(self, req: SendRequest, profile: Any) -> set[str]:
        try:
            template = self.renderer.library.templates().get(req.template)
            if template is not None:
                return set(template.channels(self.renderer.locale(profile)))
        except Exception:  # the render step reports a broken template with its reason
            log.debug("template channels of %s unknown", req.template, exc_info=True)
        return {"email", "sms"}

    def _defer(self, req: SendRequest, until: datetime, now: datetime, reason: str = "quiet_hours") -> Outcome:
        deferred = req.model_copy(update={"not_before": clock.iso(until)})
        due.put(self.ddb, self.env.due_table,
                [due.DueItem(at=until, kind="SEND", customer_id=req.customer_id, ref=req.ledger_id,
                             payload=json.loads(deferred.model_dump_json()))], self.env.due_shards)
        self._finish(req, "deferred", now, not_before=clock.iso(until), reason=reason)
        return Outcome("deferred", reason)

    def _deliver(self, req: SendRequest, channel: str, address: str, rendered: Any) -> str:
        for attempt in range(1, PROVIDER_ATTEMPTS + 1):
            try:
                return self._call_provider(req, channel, address, rendered)
            except Exception as exc:
                code = ddb.error_code(exc)
                if code in RETRYABLE:
                    if attempt < PROVIDER_ATTEMPTS:
                        ddb.backoff(attempt, base=0.1)
                        continue
                    raise RetryableSendError(code) from exc
                if code in PERMANENT:
                    text = f"{code}: {exc}"
                    reason = "invalid_address" if code != "MessageRejected" and any(
                        h in str(exc).lower() for h in ADDRESS_HINTS) else "rejected"
                    raise PermanentSendError(text, reason) from exc
                if code is not None:
                    raise ProviderError(f"{code}: {exc}") from exc
                if _never_sent(exc):
                    raise RetryableSendError(type(exc).__name__) from exc
                raise
        raise AssertionError("unreachable")

    def _call_provider(self, req: SendRequest, channel: str, address: str, rendered: Any) -> str:
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
        attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": sms_type}}
        if self.env.sms_sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": self.env.sms_sender_id}
        resp = self.sns.publish(PhoneNumber=address, Message=rendered.sms, MessageAttributes=attributes)
        return str(resp.get("MessageId", ""))

    def _mark_sent(self, req: SendRequest, sp: StoredProfile, channel: str, address: str, rendered: Any,
                   provider_id: str, now: datetime) -> None:
        """The message is out: the profile's contact record, then the ledger `sent`. Two plain writes (1 + 1
        write units) instead of one transaction (2 + 2): nothing else rides along (a coupon is issued in its
        own transaction before the provider call).

        The profile first, so a crash between the two never leaves a send the caps cannot see: the ledger
        stays `pending` with the contact already recorded (caps stay conservative), a redelivery finds the
        claim (never sent twice) and the tick's sweeper reconciles it as for any lost answer
        (reconcile_pending; SES feedback fills the status in). The contact record is guarded by the ledger
        id (`last_send`), so a retried request that had been applied appends nothing. If the profile cannot
        be written (erased since, an error), the ledger is still marked: the message went out."""
        entry = {"at": clock.iso(now), "rule": req.rule, "step": req.step, "variant": req.variant,
                 "channel": channel, "marketing": not req.transactional, "ledger": req.ledger_id}
        for attempt in range(4):
            try:
                self.ddb.update_item(
                    TableName=self.env.profiles_table, Key=ddb.key(profile_pk(req.customer_id), "P"),
                    UpdateExpression="SET sends = list_append(if_not_exists(sends, :empty), :e), "
                                     "version = version + :one, last_send = :l",
                    ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(last_send) OR last_send <> :l)",
                    ExpressionAttributeValues=ddb.values({":e": [entry], ":empty": [], ":one": 1,
                                                          ":l": req.ledger_id}))
                break
            except Exception as exc:
                # an ingestion or tick transaction on the same profile: botocore does not retry that code
                if ddb.is_transaction_conflict(exc) and attempt < 3:
                    ddb.backoff(attempt + 1)
                    continue
                if not ddb.is_conditional_failure(exc):  # conditional: recorded before, or no profile any more
                    log.warning("could not record send %s on the profile", req.ledger_id, exc_info=True)
                break
        sets = {":s": "sent", ":p": provider_id, ":t": clock.iso(now), ":c": channel,
                ":sub": getattr(rendered, "subject", "") or ""}
        expr = "sent_at = :t, provider_id = :p, channel_used = :c, subject = :sub"
        # what the console's re-render needs and cannot derive later (a few dozen bytes: the item stays in
        # one write unit): the template version rendered, the issued coupon and the products shown
        for attr, value in (("template_version", getattr(rendered, "template_version", None)),
                            ("coupon", getattr(rendered, "coupon", None)),
                            ("products", getattr(rendered, "products", None))):
            if value is not None:
                expr += f", {attr} = :{attr}"
                sets[f":{attr}"] = value
        self._ledger_sent(req, expr, sets)
        self.counters.add(req.rule, req.step, req.variant, {"sent": 1}, now, req.ledger_id)
        if channel == "email":
            self.brake.count_send(self.identity, now, req.ledger_id)

    def _ledger_sent(self, req: SendRequest, expr: str, sets: dict[str, Any]) -> None:
        """The ledger `pending → sent` with the send's details. The provider took the message already, so
        nothing here raises: a failed record would come back and find its claim (never sent twice) but the
        send's counts would be lost. An error is retried with backoff (4 attempts, as the profile's record);
        still failing, the ledger stays `pending`, is logged, and the sweeper reconciles it (`unknown`,
        alarmed) while SES feedback fills its status in."""
        key = ddb.key(*ledger_key(req.ledger_id))
        feedback_first = False
        errors = 0
        while True:
            try:
                if feedback_first:
                    self.ddb.update_item(TableName=self.env.messages_table, Key=key, UpdateExpression=f"SET {expr}",
                                         ExpressionAttributeValues=ddb.values(sets))
                else:
                    self.ddb.update_item(TableName=self.env.messages_table, Key=key,
                                         UpdateExpression=f"SET #s = :s, {expr} REMOVE reason",
                                         ConditionExpression="#s = :pending", ExpressionAttributeNames={"#s": "status"},
                                         ExpressionAttributeValues=ddb.values({**sets, ":pending": "pending"}))
                return
            except Exception as exc:
                if not feedback_first and ddb.is_conditional_failure(exc):
                    # SES feedback got there first (a Delivery, a Bounce): its status stays, the details go in
                    feedback_first = True
                    sets = {k: v for k, v in sets.items() if k != ":s"}
                    continue
                errors += 1
                if errors == 4:
                    log.error("ledger %s: the message went out but its %s could not be written", req.ledger_id,
                              "details" if feedback_first else "`sent` (left pending for the sweeper)",
                              exc_info=True)
                    return
                ddb.backoff(errors)

PENDING_SWEEP_AFTER = timedelta(minutes=15)
"""Longer than a send's Lambda timeout plus SES's usual delivery feedback delay: a claim still `pending`
then was left by a crash or a lost provider answer."""


def pending_item(req: SendRequest, now: datetime) -> due.DueItem:
    return due.DueItem(at=now + PENDING_SWEEP_AFTER, kind="PENDING", customer_id=req.customer_id,
                       ref=req.ledger_id)


def reconcile_pending(client: Any, env: Env, ledger_id: str, now: datetime) -> bool:
    """The sweeper for one claim. Feedback by the ledger tag (delivery, bounce …) has already moved a sent
    message on; a claim still `pending` means nobody knows whether the provider accepted it. SES offers
    no lookup by message, so it is never provably unsent: it becomes `unknown` (never sent twice), is
    counted (the `PendingSendsUnknown` metric, alarmed) and keeps taking late feedback. True when it was
    stale."""
    row = ddb.get(client, env.messages_table, *ledger_key(ledger_id), consistent=True)
    if not row or row.get("status") != "pending":
        return False
    try:
        client.update_item(
            TableName=env.messages_table, Key=ddb.key(*ledger_key(ledger_id)),
            UpdateExpression="SET #s = :u, updated_at = :t, reason = if_not_exists(reason, :why)",
            ConditionExpression="#s = :p", ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=ddb.values({":u": "unknown", ":p": "pending", ":t": clock.iso(now),
                                                  ":why": "provider_unknown: still pending at the sweep"}))
    except Exception as exc:
        if ddb.is_conditional_failure(exc):
            return False  # feedback or the sender got there first
        raise
    log.warning("send claim %s was still pending at the sweep: marked unknown", ledger_id)
    return True


def suppression_reasons(profile: Any) -> dict[str, str]:
    """{channel: why} for the suppressed channels (bounce, complaint, erased address; mirrored on the
    profile so a send needs one read)."""
    sup = getattr(profile, "suppressed", {}) or {}
    out: dict[str, str] = {}
    for ch in ("email", "sms"):
        why = sup.get(ch)
        if why:
            reason = str(why.get("reason") or "") if isinstance(why, dict) else ""
            out[ch] = reason if reason in SUPPRESSION_REASONS else "suppressed"
    return out


def address_of(profile: Any, channel: str) -> Any:
    """The channel's address, checked (an email address, an E.164 number); None when there is none,
    _INVALID when it cannot be used."""
    raw = profile.traits.get("email") if channel == "email" else profile.traits.get("phone")
    if not raw:
        return None
    if channel == "email":
        from retention.core.errors import BadRequestError
        from retention.messaging.mime import validate_address
        try:
            return validate_address(str(raw))
        except BadRequestError:
            return _INVALID
    from retention.messaging.sms import normalize_phone
    return normalize_phone(str(raw)) or _INVALID


def _sms_destination_ok(profile: Any, countries: set[str] | None) -> bool:
    """SMS goes only to allow-listed countries (SMS pumping bills premium and far-away numbers)."""
    if countries is None:
        return True
    from retention.messaging.sms import sms_country_allowed
    address = address_of(profile, "sms")
    return bool(address) and address is not _INVALID and sms_country_allowed(str(address), countries)


def consent_reason(profile: Any, channel: str) -> str:
    consent = (getattr(profile, "consent", {}) or {}).get(channel)
    if consent is not None and not consent.granted and (consent.source or "") in UNSUBSCRIBE_SOURCES:
        return "unsubscribed"
    return "no_consent"


def channel_decision(channel: str, profile: Any, *, transactional: bool, suppressed: dict[str, str],
                     consented: Callable[[str], bool],
                     supported: Callable[[], set[str]] = lambda: {"email", "sms"},
                     sms_countries: set[str] | None = None,
                     ) -> tuple[str | None, Any, str | None]:
    """(the channel used, its address, why the message is not sent or None): the sender's checks before
    the audience, quiet hours and caps, also what a preview or a dry-run reports. `preferred` takes the
    customer's preferred channel when usable, else the cheapest usable one (email costs a fraction of
    an SMS)."""
    if channel == "preferred":
        can = supported()
        ok = {ch: bool(profile.traits.get("email" if ch == "email" else "phone")) and ch in can
              and not suppressed.get(ch) and (transactional or consented(ch))
              and (ch != "sms" or _sms_destination_ok(profile, sms_countries)) for ch in ("email", "sms")}
        preferred = str(profile.traits.get("preferred_channel") or "").lower()
        chosen = preferred if ok.get(preferred) else next((ch for ch in ("email", "sms") if ok[ch]), None)
        if chosen is None:
            return None, None, "no_channel"
        channel = chosen
    address = address_of(profile, channel)
    if not address:
        return channel, None, "no_address" if channel == "email" else "no_phone"
    if address is _INVALID:
        return channel, None, "invalid_address"
    if channel == "sms" and not _sms_destination_ok(profile, sms_countries):
        return channel, address, "sms_country"  # settings.sms_countries (default: the shop's country)
    if suppressed.get(channel):
        return channel, address, suppressed[channel]
    if not transactional and not consented(channel):
        return channel, address, consent_reason(profile, channel)
    return channel, address, None


_PLACEHOLDER_COUPON = {"code": "PENDING", "discount": "", "expires_at": None}


def _too_few(recommender: Any, minimum: int) -> bool:
    """A `recommend()` call of the template returned fewer products than the step requires."""
    return any(count < minimum for _, count in recommender.calls)


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid address>"


_INVALID: Any = _Invalid()


def _never_sent(exc: BaseException) -> bool:
    """Errors raised before a request reached the provider (so retrying cannot send twice)."""
    try:
        from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, ConnectTimeoutError | EndpointConnectionError)


def _tag(value: str) -> str:
    """An SES tag value: ASCII letters, digits, `_` and `-` only (SES refuses anything else)."""
    return "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_" else "_" for ch in value)[:250] or "_"

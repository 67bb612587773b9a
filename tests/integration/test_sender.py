"""send_message's library on moto: exactly once (ledger), checks at send time with recorded reasons,
rendering faults, provider faults (throttling, timeouts, rejections) and the DynamoDB cost of a send.

Each test builds its own small rule + templates (applied through the config store), so the scenario
library is not needed. Faults are injected with small proxy clients around the moto ones."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError
from retention.analytics.counters import read_counters
from retention.core import clock, ddb
from retention.messaging.mime import parse_email
from retention.messaging.requests import SendRequest, ledger_key

# --------------------------------------------------------------------------------------------- fixtures

UNSUB = '<a href="{{ links.unsubscribe }}">Отписаться</a>'
PROMO = {
    "id": "t-promo", "category": "marketing", "default_locale": "ru",
    "locales": {
        "ru": {"subject": "Привет, {{ customer.first_name or 'друг' }}!",
               "html": "<p>Здравствуйте, {{ customer.first_name }}!</p><p>Код {{ coupon }}</p>" + UNSUB,
               "sms": "{{ customer.first_name }}, скидка 10% по коду {{ coupon }}"},
        "en": {"subject": "Hello, {{ customer.first_name }}!",
               "text": "Hi {{ customer.first_name }}. Unsubscribe: {{ links.unsubscribe }}",
               "sms": "{{ customer.first_name }}: 10% off with {{ coupon }}"},
    },
}
ORDER = {
    "id": "t-order", "category": "transactional", "default_locale": "ru",
    "locales": {"ru": {"subject": "Заказ {{ event.properties.order_id }} готов",
                       "text": "Заказ {{ event.properties.order_id }} ждёт вас.",
                       "sms": "Заказ {{ event.properties.order_id }} ждёт вас"}},
}
RULES = {
    "promo": {"id": "promo", "trigger": {"event": "Promo Requested"},
              "steps": [{"send": {"channel": "email", "template": "t-promo"}}]},
    "promo-b": {"id": "promo-b", "trigger": {"event": "Promo B Requested"},
                "steps": [{"send": {"channel": "email", "template": "t-promo"}}]},
    "promo-sms": {"id": "promo-sms", "trigger": {"event": "Promo Sms Requested"},
                  "steps": [{"send": {"channel": "sms", "template": "t-promo"}}]},
    "promo-any": {"id": "promo-any", "trigger": {"event": "Promo Any Requested"},
                  "steps": [{"send": {"channel": "preferred", "template": "t-promo"}}]},
    "vip-only": {"id": "vip-only", "trigger": {"event": "Vip Requested"},
                 "audience": {"trait": "vip", "eq": True},
                 "steps": [{"send": {"channel": "email", "template": "t-promo"}}]},
    "order": {"id": "order", "category": "transactional", "trigger": {"event": "Order Ready"},
              "steps": [{"send": {"channel": "email", "template": "t-order"}}]},
}


def apply(stack: Any, *templates: dict[str, Any]) -> None:
    cfg = stack.deps.config
    for t in (PROMO, ORDER, *templates):
        cfg.apply("TEMPLATE", t["id"], t)
    for rule_id, body in RULES.items():
        cfg.apply("RULE", rule_id, body)


def customer(stack: Any, uid: str, email: str | None = "anna@example.com", consent: bool = True,
             **traits: Any) -> None:
    t: dict[str, Any] = {"first_name": "Анна", **traits}
    if email is not None:
        t["email"] = email
        t["email_consent"] = consent
    digest = hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:16]
    stack.ingest([{"type": "identify", "userId": uid, "messageId": f"id-{uid}-{digest}", "traits": t}])


def request(uid: str = "u1", rule: str = "promo", step: int = 0, entry: str = "e1", **kw: Any) -> SendRequest:
    kw.setdefault("channel", "email")
    kw.setdefault("template", "t-promo" if rule != "order" else "t-order")
    kw.setdefault("transactional", rule == "order")
    return SendRequest(customer_id=uid, rule=rule, entry=entry, step=step, **kw)


def emails() -> list[dict[str, Any]]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends
    return [parse_email(m.raw_data.encode()) for m in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages]


def sms_messages() -> list[tuple[str, str]]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends
    return list(sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sms_messages.values())


def ledger(stack: Any, req: SendRequest) -> dict[str, Any]:
    item = ddb.get(stack.deps.dynamodb, stack.deps.env.messages_table, *ledger_key(req.ledger_id), consistent=True)
    assert item is not None, "no ledger item"
    return item


def totals(stack: Any, rule: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in read_counters(stack.deps.dynamodb, stack.deps.env.messages_table, rule):
        for k, v in row.items():
            if k not in ("pk", "sk", "date", "step", "variant", "rule"):
                out[k] = out.get(k, 0) + int(v)
    return out


def stored(stack: Any, uid: str) -> Any:
    from retention.customers.store import ProfileRepo
    return ProfileRepo(stack.deps.dynamodb, stack.deps.env.profiles_table).load(uid, clock.now())


def sender(stack: Any, *, ses: Any = None, sns: Any = None, dynamodb: Any = None, **env: Any) -> Any:
    from retention.messaging.rendering import Renderer
    from retention.messaging.sender import Sender
    d = stack.deps
    e = d.env.model_copy(update=env) if env else d.env
    return Sender(ddb_client=dynamodb or d.dynamodb, ses=ses or d.sesv2, sns=sns or d.sns, sqs=d.sqs, env=e,
                  config=d.config, renderer=Renderer(d.config, e))


def client_error(code: str, message: str, op: str = "SendEmail") -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    return ClientError(response, op)


class FaultySES:
    """Wraps the moto SESv2 client: each call takes the next action from `script` (then 'ok').

    throttle / reject / bad_address: raise before anything is sent;
    connect_timeout: the request never left (botocore ConnectTimeoutError);
    timeout_after: SES accepted the message, then the answer was lost (ReadTimeoutError)."""

    def __init__(self, real: Any, *script: str) -> None:
        self.real = real
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []

    def send_email(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        action = self.script.pop(0) if self.script else "ok"
        if action == "throttle":
            raise client_error("Throttling", "Maximum sending rate exceeded.")
        if action == "too_many":
            raise client_error("TooManyRequestsException", "Too many requests")
        if action == "reject":
            raise client_error("MessageRejected", "Email address is not verified.")
        if action == "bad_address":
            raise client_error("BadRequestException", "Illegal address")
        if action == "access_denied":
            raise client_error("AccessDeniedException", "not authorized to perform ses:SendEmail")
        if action == "connect_timeout":
            raise ConnectTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com")
        resp = self.real.send_email(**kwargs)
        if action == "timeout_after":
            raise ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com")
        return resp


class RecordingSNS:
    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.real.publish(**kwargs)


class FaultyDynamo:
    """Delegates to the moto client; `fail[op]` = how many next calls of that operation raise `error`."""

    def __init__(self, real: Any, error: Exception, skip: dict[str, int] | None = None, **fail: int) -> None:
        self.real = real
        self.error = error
        self.fail = dict(fail)
        self.skip = dict(skip or {})  # calls that pass before the failures start

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name in self.fail:
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                if self.skip.get(name, 0) > 0:
                    self.skip[name] -= 1
                    return attr(*args, **kwargs)
                if self.fail[name] > 0:
                    self.fail[name] -= 1
                    raise self.error
                return attr(*args, **kwargs)
            return wrapped
        return attr


@pytest.fixture
def s(stack: Any) -> Any:
    customer(stack, "u1", timezone="Europe/Moscow")
    apply(stack)
    return stack


# --------------------------------------------------------------------------------------------- the happy path


def test_email_sent_once_with_headers_tags_configuration_set_and_ledger(s: Any) -> None:
    s.deps.sesv2.create_configuration_set(ConfigurationSetName="retention-events")
    ses = FaultySES(s.deps.sesv2)
    snd = sender(s, ses=ses, ses_configuration_set="retention-events")
    req = request()
    out = snd.send(req)
    assert out.status == "sent" and out.provider_id
    # a duplicate SQS delivery: the ledger stops it
    assert snd.send(req).status == "duplicate"
    assert len(ses.calls) == 1
    call = ses.calls[0]
    assert call["ConfigurationSetName"] == "retention-events"
    assert {t["Name"]: t["Value"] for t in call["EmailTags"]} == {
        "ledger": req.ledger_id, "rule": "promo", "step": "0", "variant": "default"}
    [mail] = emails()
    assert mail["subject"] == "Привет, Анна!"
    h = mail["headers"]
    assert h["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "<https://shop.test/api/u/" in h["List-Unsubscribe"] and "<mailto:" in h["List-Unsubscribe"]
    assert h["X-Retention-Ledger"] == req.ledger_id
    assert "Здравствуйте, Анна!" in mail["html"]
    item = ledger(s, req)
    assert item["status"] == "sent" and item["provider_id"] == out.provider_id and item["channel_used"] == "email"
    assert item["subject"] == "Привет, Анна!"
    sp = stored(s, "u1")
    assert [(x["rule"], x["channel"], x["marketing"], x["ledger"]) for x in sp.sends] == [
        ("promo", "email", True, req.ledger_id)]
    assert totals(s, "promo") == {"sent": 1}


def test_sms_publish_with_sender_id_and_type(s: Any) -> None:
    customer(s, "u2", email=None, phone="8 (916) 123-45-67", sms_consent=True)
    sns = RecordingSNS(s.deps.sns)
    snd = sender(s, sns=sns, sms_sender_id="Romashka")
    assert snd.send(request("u2", rule="promo-sms", channel="sms")).status == "sent"
    [call] = sns.calls
    assert call["PhoneNumber"] == "+79161234567"
    assert call["MessageAttributes"]["AWS.SNS.SMS.SenderID"]["StringValue"] == "Romashka"
    assert call["MessageAttributes"]["AWS.SNS.SMS.SMSType"]["StringValue"] == "Promotional"
    assert call["Message"].startswith("Анна, скидка 10% по коду ")
    # transactional SMS
    sender(s, sns=sns).send(request("u2", rule="order", channel="sms", template="t-order",
                                    event={"name": "Order Ready", "properties": {"order_id": "A-17"}}))
    assert sns.calls[-1]["MessageAttributes"]["AWS.SNS.SMS.SMSType"]["StringValue"] == "Transactional"
    assert sns.calls[-1]["Message"] == "Заказ A-17 ждёт вас"
    assert len(sms_messages()) == 2


def test_sms_longer_than_the_cap_fails_cleanly(s: Any) -> None:
    s.deps.config.apply("TEMPLATE", "t-long-sms", {
        "id": "t-long-sms", "locales": {"ru": {"sms": "{{ 'Очень длинное сообщение. ' * 40 }}"}}})
    customer(s, "u2", email=None, phone="+79161234567", sms_consent=True)
    req = request("u2", rule="promo-sms", channel="sms", template="t-long-sms")
    out = sender(s).send(req)
    assert (out.status, out.reason) == ("failed", "sms_too_long")
    item = ledger(s, req)
    assert item["status"] == "failed" and item["reason"] == "sms_too_long" and "segments" in item["detail"]
    assert sms_messages() == []
    assert sender(s).send(req).status == "duplicate"  # never retried forever
    assert totals(s, "promo-sms") == {"suppressed": 1, "suppressed:sms_too_long": 1}


# --------------------------------------------------------------------------------------------- provider faults


def test_throttling_backs_off_in_process_and_sends_once(s: Any) -> None:
    ses = FaultySES(s.deps.sesv2, "throttle", "too_many")
    out = sender(s, ses=ses).send(request())
    assert out.status == "sent"
    assert len(ses.calls) == 3 and len(emails()) == 1


def test_persistent_throttling_hands_the_message_back_then_sends_once(s: Any) -> None:
    from retention.messaging.sender import RetryableSendError
    req = request()
    ses = FaultySES(s.deps.sesv2, "throttle", "throttle", "throttle")
    with pytest.raises(RetryableSendError):
        sender(s, ses=ses).send(req)
    assert emails() == []
    assert ledger(s, req)["status"] == "retry"  # re-claimable
    # SQS delivers the message again later: sent, once
    assert sender(s, ses=ses).send(req).status == "sent"
    assert sender(s, ses=ses).send(req).status == "duplicate"
    assert len(emails()) == 1
    assert ledger(s, req)["status"] == "sent" and "reason" not in ledger(s, req)
    assert totals(s, "promo") == {"sent": 1}


def test_connect_timeout_never_reached_ses_so_it_is_retried(s: Any) -> None:
    from retention.messaging.sender import RetryableSendError
    req = request()
    ses = FaultySES(s.deps.sesv2, "connect_timeout")
    with pytest.raises(RetryableSendError):
        sender(s, ses=ses).send(req)
    assert ledger(s, req)["status"] == "retry"
    assert sender(s, ses=ses).send(req).status == "sent"
    assert len(emails()) == 1


def test_timeout_after_ses_accepted_is_never_sent_again(s: Any) -> None:
    req = request()
    ses = FaultySES(s.deps.sesv2, "timeout_after")
    out = sender(s, ses=ses).send(req)
    assert (out.status, out.reason) == ("unknown", "provider_unknown")
    assert len(emails()) == 1  # SES did accept it
    item = ledger(s, req)
    assert item["status"] == "pending" and item["reason"].startswith("provider_unknown")
    # SQS redelivers (or the record is replayed): the pending claim is never re-claimed
    for _ in range(3):
        assert sender(s, ses=ses).send(req).status == "duplicate"
    assert len(emails()) == 1 and len(ses.calls) == 1


class Crash(BaseException):
    """The function dies here (a timeout, an out-of-memory kill): nothing after it runs, no handler catches it."""


class CrashAt:
    """The moto client; the UpdateItem calls on `table` numbered in `at` crash instead of running."""

    def __init__(self, real: Any, table: str, *at: int) -> None:
        self.real, self.table, self.at, self.calls = real, table, set(at), 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def update_item(self, **kwargs: Any) -> Any:
        if kwargs.get("TableName") == self.table:
            self.calls += 1
            if self.calls in self.at:
                raise Crash(kwargs["TableName"])
        return self.real.update_item(**kwargs)


def test_a_lost_answer_of_the_ledger_update_after_ses_is_retried_not_sent_again(s: Any) -> None:
    """The ledger's `sent` update times out after SES took the message: it is retried (the message is out,
    the record must not fail), the ledger says `sent`, and a redelivery is a duplicate."""
    req = request()
    lost = ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
    # the profile's contact record, then the ledger `sent`, whose first answer is lost
    flaky = FaultyDynamo(s.deps.dynamodb, lost, skip={"update_item": 1}, update_item=1)
    assert sender(s, dynamodb=flaky).send(req).status == "sent"
    assert len(emails()) == 1
    assert ledger(s, req)["status"] == "sent"
    assert totals(s, "promo") == {"sent": 1}
    # SQS redelivers all the same: duplicate, nothing sent twice
    assert sender(s).send(req).status == "duplicate"
    assert len(emails()) == 1


def test_crash_after_ses_before_the_profile_write(s: Any) -> None:
    """The first window: the message is out, nothing recorded yet. The claim stays `pending` (its sweeper
    reminder is in the due index), a redelivery is a duplicate: never sent twice."""
    req = request()
    with pytest.raises(Crash):
        sender(s, dynamodb=CrashAt(s.deps.dynamodb, s.deps.env.profiles_table, 1)).send(req)
    assert len(emails()) == 1 and ledger(s, req)["status"] == "pending"
    assert stored(s, "u1").sends == []
    assert sender(s).send(req).status == "duplicate" and len(emails()) == 1


def test_crash_between_the_profile_write_and_the_ledger_sent(s: Any) -> None:
    """The second window: the contact is on the profile (the caps see it), the ledger still `pending`; a
    redelivery is a duplicate, the next marketing email is capped, and the tick's sweeper marks the claim
    `unknown` (never re-sent); no `sent` counted (at most once)."""
    from retention.messaging.sender import PENDING_SWEEP_AFTER, reconcile_pending
    req = request()
    with pytest.raises(Crash):
        sender(s, dynamodb=CrashAt(s.deps.dynamodb, s.deps.env.messages_table, 1)).send(req)
    assert len(emails()) == 1 and ledger(s, req)["status"] == "pending"
    assert [x["ledger"] for x in stored(s, "u1").sends] == [req.ledger_id]
    assert sender(s).send(req).status == "duplicate"
    capped = sender(s).send(request(rule="promo-b"))
    assert (capped.status, capped.reason) == ("skipped", "frequency_cap")
    assert len(emails()) == 1 and "sent" not in totals(s, "promo")
    assert reconcile_pending(s.deps.dynamodb, s.deps.env, req.ledger_id, clock.now() + PENDING_SWEEP_AFTER)
    assert ledger(s, req)["status"] == "unknown"


def test_feedback_before_the_ledger_sent_keeps_its_status(s: Any) -> None:
    """SES's Delivery can reach the ledger before the sender marks it sent: the status stays `delivered`,
    the send's details (sent_at, provider id, subject) are filled in, and it counts as sent."""
    from retention.messaging.feedback import Feedback
    req = request()

    class DeliveredFirst:
        def __init__(self, real: Any) -> None:
            self.real, self.done = real, False

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def update_item(self, **kwargs: Any) -> Any:
            if kwargs.get("TableName") == s.deps.env.messages_table and not self.done:
                self.done = True
                Feedback(s.deps).handle({"eventType": "Delivery", "mail": {
                    "messageId": "m", "destination": ["anna@example.com"], "tags": {"ledger": [req.ledger_id]}},
                    "delivery": {}})
            return self.real.update_item(**kwargs)

    assert sender(s, dynamodb=DeliveredFirst(s.deps.dynamodb)).send(req).status == "sent"
    item = ledger(s, req)
    assert item["status"] == "delivered" and item["sent_at"] and item["provider_id"] and item["subject"]
    assert totals(s, "promo") == {"sent": 1, "delivered": 1}


def test_error_before_the_provider_call_releases_the_claim(s: Any) -> None:
    req = request()
    throttled = client_error("ProvisionedThroughputExceededException", "slow down", "GetItem")
    flaky = FaultyDynamo(s.deps.dynamodb, throttled, get_item=1)
    with pytest.raises(ClientError):
        sender(s, dynamodb=flaky).send(req)
    assert emails() == []
    assert ledger(s, req)["status"] == "retry"
    assert sender(s).send(req).status == "sent"  # nothing lost
    assert len(emails()) == 1


def test_an_aws_error_while_rendering_is_retried_not_written_off(s: Any) -> None:
    req = request()
    snd = sender(s)
    real = snd.renderer

    class FlakyRenderer:  # e.g. the signing secret read from the config table is throttled
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def render(self, *args: Any, **kwargs: Any) -> Any:
            raise client_error("ProvisionedThroughputExceededException", "slow down", "GetItem")

    snd.renderer = FlakyRenderer()
    with pytest.raises(ClientError):
        snd.send(req)
    assert ledger(s, req)["status"] == "retry"
    assert sender(s).send(req).status == "sent"
    assert len(emails()) == 1


def test_message_rejected_is_recorded_and_not_retried(s: Any) -> None:
    req = request()
    ses = FaultySES(s.deps.sesv2, "reject")
    out = sender(s, ses=ses).send(req)
    assert (out.status, out.reason) == ("failed", "rejected")
    item = ledger(s, req)
    assert item["status"] == "rejected" and "MessageRejected" in item["detail"]
    assert sender(s, ses=ses).send(req).status == "duplicate"
    assert len(ses.calls) == 1 and emails() == []
    assert totals(s, "promo") == {"suppressed": 1, "suppressed:rejected": 1}


def test_invalid_address_reported_by_ses_is_recorded(s: Any) -> None:
    req = request()
    out = sender(s, ses=FaultySES(s.deps.sesv2, "bad_address")).send(req)
    assert (out.status, out.reason) == ("failed", "invalid_address")
    assert ledger(s, req)["status"] == "rejected"


def test_unexpected_provider_error_fails_the_record_and_keeps_it_reclaimable(s: Any) -> None:
    from retention.messaging.sender import ProviderError
    req = request()
    ses = FaultySES(s.deps.sesv2, "access_denied")
    with pytest.raises(ProviderError):
        sender(s, ses=ses).send(req)
    assert ledger(s, req)["status"] == "retry"  # SQS retries, then the DLQ; a redrive can still send it
    assert sender(s, ses=ses).send(req).status == "sent"
    assert len(emails()) == 1


def test_invalid_address_on_the_profile_is_skipped_before_ses(s: Any) -> None:
    customer(s, "u3", email="a..b@example.com")
    ses = FaultySES(s.deps.sesv2)
    req = request("u3")
    out = sender(s, ses=ses).send(req)
    assert (out.status, out.reason) == ("skipped", "invalid_address")
    assert ses.calls == [] and ledger(s, req)["reason"] == "invalid_address"


# --------------------------------------------------------------------------------------------- templates


def test_missing_template_variable_is_recorded_not_retried(s: Any) -> None:
    s.deps.config.apply("TEMPLATE", "t-broken", {"id": "t-broken", "locales": {"ru": {
        "subject": "Привет, {{ customer.traits.nickname }}", "text": "x {{ links.unsubscribe }}"}}})
    req = request(template="t-broken")
    out = sender(s).send(req)
    assert (out.status, out.reason) == ("failed", "render_error")
    item = ledger(s, req)
    assert item["status"] == "failed" and "nickname" in item["detail"]
    assert sender(s).send(req).status == "duplicate"
    assert emails() == []
    assert totals(s, "promo") == {"suppressed": 1, "suppressed:render_error": 1}


def test_template_injection_is_refused_by_the_sandbox(s: Any) -> None:
    s.deps.config.apply("TEMPLATE", "t-evil", {"id": "t-evil", "locales": {"ru": {
        "subject": "{{ ''.__class__.__mro__[1].__subclasses__() }}", "text": "{{ links.unsubscribe }}"}}})
    req = request(template="t-evil")
    out = sender(s).send(req)
    assert (out.status, out.reason) == ("failed", "render_error")
    assert "Security" in ledger(s, req)["detail"] or "unsafe" in ledger(s, req)["detail"]
    assert emails() == []


def test_template_syntax_in_customer_data_is_not_evaluated_and_html_is_escaped(s: Any) -> None:
    customer(s, "u4", email="eve@example.com", first_name="{{ ''.__class__ }}<script>x</script>")
    assert sender(s).send(request("u4")).status == "sent"
    [mail] = emails()
    assert mail["subject"] == "Привет, {{ ''.__class__ }}<script>x</script>!"
    assert "<script>" not in mail["html"] and "&lt;script&gt;" in mail["html"]
    assert "{{ &#39;&#39;.__class__ }}" in mail["html"] or "{{ ''.__class__ }}" in mail["html"]
    assert "<class" not in mail["html"]


def test_crlf_in_a_name_cannot_inject_headers(s: Any) -> None:
    customer(s, "u5", email="bob@example.com", first_name="Bob\r\nBcc: victim@example.org\r\n\r\nspam")
    ses = FaultySES(s.deps.sesv2)
    assert sender(s, ses=ses).send(request("u5")).status == "sent"
    [mail] = emails()
    assert "Bcc" not in mail["headers"]
    assert "\r" not in mail["subject"] and "\n" not in mail["subject"]
    assert mail["subject"].startswith("Привет, Bob")
    assert ses.calls[0]["Destination"] == {"ToAddresses": ["bob@example.com"]}
    raw = ses.calls[0]["Content"]["Raw"]["Data"]
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"victim" not in head.replace(b"=?utf-8?B?", b"")


def test_cyrillic_names_and_long_subjects_survive_mime(s: Any) -> None:
    name = "Александра-Екатерина Константиновна"
    customer(s, "u6", email="sasha@example.com", first_name=name)
    s.deps.config.apply("TEMPLATE", "t-long", {"id": "t-long", "locales": {"ru": {
        "subject": "{{ customer.first_name }}, мы подобрали для вас товары в любимой категории — скидки до 50 %",
        "html": "<p>{{ customer.first_name }}</p>" + UNSUB}}})
    assert sender(s).send(request("u6", template="t-long")).status == "sent"
    [mail] = emails()
    assert mail["subject"] == f"{name}, мы подобрали для вас товары в любимой категории — скидки до 50 %"
    assert name in mail["html"] and name in mail["text"]


def test_oversized_render_is_refused(s: Any) -> None:
    s.deps.config.apply("TEMPLATE", "t-huge", {"id": "t-huge", "locales": {"ru": {
        "subject": "Много", "html": "{% for i in range(5000) %}<p>{{ 'Ы' * 100 }}</p>{% endfor %}"
                                    "{{ links.unsubscribe }}"}}})
    req = request(template="t-huge")
    out = sender(s).send(req)
    assert (out.status, out.reason) == ("failed", "render_error")
    assert "larger than" in ledger(s, req)["detail"]
    assert emails() == []


# --------------------------------------------------------------------------------------------- checks


def test_no_consent_is_skipped_with_the_reason(s: Any) -> None:
    customer(s, "u7", email="no@example.com", consent=False)
    req = request("u7")
    out = sender(s).send(req)
    assert (out.status, out.reason) == ("skipped", "no_consent")
    assert ledger(s, req)["status"] == "skipped" and ledger(s, req)["reason"] == "no_consent"
    assert totals(s, "promo") == {"suppressed": 1, "suppressed:no_consent": 1}
    assert emails() == []


def test_unknown_customer_is_skipped(s: Any) -> None:
    out = sender(s).send(request("ghost"))
    assert (out.status, out.reason) == ("skipped", "no_profile")


def test_suppressed_address_is_skipped_even_for_transactional(s: Any) -> None:
    from retention.customers.store import ProfileRepo
    repo = ProfileRepo(s.deps.dynamodb, s.deps.env.profiles_table)
    sp = repo.load("u1", clock.now())
    sp.profile.suppressed["email"] = {"reason": "bounced", "at": clock.iso(clock.now())}
    repo.save(sp, clock.now())
    for req in (request(), request(rule="order", event={"properties": {"order_id": "1"}})):
        out = sender(s).send(req)
        assert (out.status, out.reason) == ("skipped", "bounced")
    assert emails() == []


def test_audience_is_checked_at_send_time(s: Any) -> None:
    req = request(rule="vip-only")
    assert (sender(s).send(req).reason) == "audience"
    customer(s, "u8", email="vip@example.com", vip=True)
    assert sender(s).send(request("u8", rule="vip-only")).status == "sent"


def test_transactional_is_sent_without_marketing_consent(s: Any) -> None:
    customer(s, "u9", email="buyer@example.com", consent=False)
    req = request("u9", rule="order", event={"name": "Order Ready", "properties": {"order_id": "A-1"}})
    assert sender(s).send(req).status == "sent"
    [mail] = emails()
    assert mail["subject"] == "Заказ A-1 готов"


def test_frequency_caps_16h_and_weekly_transactional_exempt(s: Any, now: datetime) -> None:
    snd = sender(s)
    assert snd.send(request(rule="promo", entry="a")).status == "sent"
    # a second marketing email within 16 h: capped, with the reason
    capped = request(rule="promo-b", entry="a")
    out = snd.send(capped)
    assert (out.status, out.reason) == ("skipped", "frequency_cap")
    assert ledger(s, capped)["reason"] == "frequency_cap"
    assert totals(s, "promo-b") == {"suppressed": 1, "suppressed:frequency_cap": 1}
    # transactional mail is exempt (and does not count against the cap)
    assert snd.send(request(rule="order", entry="a", event={"properties": {"order_id": "7"}})).status == "sent"
    # 17 h later: the 16 h cap has passed; twice more, then the weekly cap (3 / 168 h) holds
    for i, expected in enumerate(("sent", "sent", "skipped")):
        clock.set_now(now + timedelta(hours=17 * (i + 1)))
        out = snd.send(request(rule="promo", entry=f"w{i}"))
        assert out.status == expected, (i, out)
    assert out.reason == "frequency_cap"
    # after a week the first one no longer counts
    clock.set_now(now + timedelta(days=7, hours=1))
    assert snd.send(request(rule="promo", entry="late")).status == "sent"
    assert len(emails()) == 5


def test_frequency_caps_are_per_channel(s: Any) -> None:
    customer(s, "u2", email="both@example.com", phone="+79161234567", sms_consent=True)
    assert sender(s).send(request("u2")).status == "sent"
    assert sender(s).send(request("u2", rule="promo-sms", channel="sms")).status == "sent"


def test_preferred_channel_picks_the_consented_preferred_channel(s: Any) -> None:
    customer(s, "p1", email="p1@example.com", phone="+79160000001", sms_consent=True, preferred_channel="sms")
    customer(s, "p2", email="p2@example.com", phone="+79160000002", sms_consent=False, preferred_channel="sms")
    customer(s, "p3", email="p3@example.com", consent=False, phone="+79160000003", sms_consent=False,
             preferred_channel="email")
    snd = sender(s)
    assert snd.send(request("p1", rule="promo-any", channel="preferred")).status == "sent"
    assert sms_messages() == [("+79160000001", sms_messages()[0][1])] and emails() == []
    # no SMS consent: falls back to the consented email
    assert snd.send(request("p2", rule="promo-any", channel="preferred")).status == "sent"
    assert [m["to"] for m in emails()] == ["p2@example.com"]
    # no consent anywhere: nothing sent, reason recorded
    req = request("p3", rule="promo-any", channel="preferred")
    assert (snd.send(req).reason) == "no_channel"
    assert ledger(s, req)["reason"] == "no_channel"
    assert len(sms_messages()) == 1 and len(emails()) == 1


# --------------------------------------------------------------------------------------------- quiet hours


def _sms_quiet(stack: Any) -> None:
    stack.deps.config.put_settings({"quiet_hours": {"sms": {"start": "21:00", "end": "09:00"},
                                                    "email": {"start": "22:00", "end": "08:00"}}})


@pytest.mark.parametrize(("tz", "at", "until"), [
    # 22:30 in Moscow (UTC+3) → 09:00 Moscow next morning = 06:00 UTC
    ("Europe/Moscow", datetime(2026, 11, 24, 19, 30), datetime(2026, 11, 25, 6, 0)),
    # 06:30 in Vladivostok (UTC+10) → 09:00 the same local morning = 23:00 UTC the evening before
    ("Asia/Vladivostok", datetime(2026, 11, 24, 20, 30), datetime(2026, 11, 24, 23, 0)),
])
def test_quiet_hours_defer_to_the_end_of_the_window_in_the_customer_timezone(
        s: Any, tz: str, at: datetime, until: datetime) -> None:
    from datetime import UTC

    from retention.schedule import due
    _sms_quiet(s)
    customer(s, "q1", email=None, phone="+79161112233", sms_consent=True, timezone=tz)
    clock.set_now(at.replace(tzinfo=UTC))
    req = request("q1", rule="promo-sms", channel="sms")
    out = sender(s).send(req)
    assert (out.status, out.reason) == ("deferred", "quiet_hours")
    item = ledger(s, req)
    assert item["status"] == "deferred" and item["not_before"] == clock.iso(until.replace(tzinfo=UTC))
    assert sms_messages() == []
    # the deferred SEND due item carries the request
    items = list(due.read_due(s.deps.dynamodb, s.deps.env.due_table, clock.now(),
                              until.replace(tzinfo=UTC) + timedelta(minutes=1), s.deps.env.due_shards))
    [d] = [i for i in items if i.kind == "SEND"]
    assert d.at == until.replace(tzinfo=UTC) and d.ref == req.ledger_id
    carried = SendRequest.model_validate(d.payload)
    assert carried.ledger_id == req.ledger_id and carried.not_before == clock.iso(until.replace(tzinfo=UTC))
    # a duplicate delivery during the night defers again (same due item), sends nothing
    assert sender(s).send(req).status == "deferred"
    # the tick at the end of the window enqueues it; the send goes out once
    clock.set_now(until.replace(tzinfo=UTC))
    s.ticker().tick()
    queued = s.queued_sends()
    assert [q.ledger_id for q in queued] == [req.ledger_id]
    assert sender(s).send(queued[0]).status == "sent"
    assert sender(s).send(queued[0]).status == "duplicate"
    assert [p for p, _ in sms_messages()] == ["+79161112233"]


def test_email_quiet_hours_are_separate_from_sms(s: Any) -> None:
    from datetime import UTC
    _sms_quiet(s)
    customer(s, "q2", email="q2@example.com", phone="+79161112244", sms_consent=True, timezone="Europe/Moscow")
    clock.set_now(datetime(2026, 11, 24, 18, 30, tzinfo=UTC))  # 21:30 Moscow: SMS quiet, email not yet
    assert sender(s).send(request("q2", rule="promo-sms", channel="sms")).status == "deferred"
    assert sender(s).send(request("q2")).status == "sent"


def test_unknown_timezone_falls_back_to_the_default(s: Any) -> None:
    from datetime import UTC
    _sms_quiet(s)
    customer(s, "q3", email=None, phone="+79161112255", sms_consent=True, timezone="Mars/Olympus")
    clock.set_now(datetime(2026, 11, 24, 22, 0, tzinfo=UTC))  # 22:00 UTC (default timezone): quiet
    out = sender(s).send(request("q3", rule="promo-sms", channel="sms"))
    assert out.status == "deferred"


# --------------------------------------------------------------------------------------------- cost


def test_dynamodb_requests_per_sent_email(s: Any) -> None:
    """Five for the message (the sweeper's reminder and the claim: two plain puts; the profile read; the
    profile's contact record and the ledger `sent`: two plain updates, cheaper in write units than one
    transaction), plus the batch's counter rows: the rule's counters and the send brake's hourly counter
    of the sending identity, once per batch."""
    for i in range(6):
        customer(s, f"c{i}", email=f"c{i}@example.com")
    snd = sender(s)
    assert snd.send(request("u1")).status == "sent"  # warms the per-container caches (settings, definitions)
    s.counter.reset()
    with snd.batch():
        for i in range(6):
            assert snd.send(request(f"c{i}")).status == "sent"
    assert s.counter.count("sesv2", "SendEmail") == 6
    assert s.counter.count("dynamodb") <= 6 * 5 + 2, dict(s.counter.calls)
    assert s.counter.count("dynamodb", "TransactWriteItems") == 0
    assert s.counter.count("dynamodb", "UpdateItem") == 2 * 6 + 2  # profile + ledger each; counters + brake once
    # a skipped message costs no more than a sent one
    customer(s, "c-no", email="cno@example.com", consent=False)
    s.counter.reset()
    assert snd.send(request("c-no")).status == "skipped"
    assert s.counter.count("dynamodb") <= 5, dict(s.counter.calls)


def test_a_rules_own_frequency_cap_counts_only_its_sends(now: datetime) -> None:
    """Per-rule caps (a `frequency_caps` on the rule, when the rule model carries one) on top of the global ones."""
    from types import SimpleNamespace

    from retention.core.config import Settings
    from retention.messaging.sender import cap_reached
    settings = Settings(frequency_caps={"email": [{"count": 5, "hours": 24}]})
    at = clock.iso(now - timedelta(hours=2))
    sends = [{"at": at, "channel": "email", "marketing": True, "rule": "a"},
             {"at": at, "channel": "email", "marketing": True, "rule": "b"},
             {"at": at, "channel": "email", "marketing": False, "rule": "a"}]
    rule_a = SimpleNamespace(id="a", frequency_caps={"email": [{"count": 1, "hours": 168}]})
    rule_c = SimpleNamespace(id="c", frequency_caps={"email": [{"count": 1, "hours": 168}]})
    assert cap_reached(sends, "email", settings, now, rule_a)
    assert not cap_reached(sends, "email", settings, now, rule_c)
    assert not cap_reached(sends, "email", settings, now)
    assert cap_reached(sends, "email", Settings(frequency_caps={"email": [{"count": 2, "hours": 16}]}), now)

"""Test sends: a template rendered with the sample profile, mailed to a staff person's own address.

A separate, clearly marked path through the send queue (only send_message calls SES):
- the console (admin_api) enqueues a TestSendRequest (`kind: test_send`) naming the person and the address
  it read from the people records (retention.admin.people, `PEOPLE / <name>`);
- the sender re-checks at send time that the address is that person's address on record and that the
  person still has an active token: a forged request naming any other address is refused (never a
  customer's address, never a typed one);
- rendered with the sample context (Анна / Anna, the sample order: no real customer's data); the subject is
  prefixed "[TEST] "; the coupon is a visible placeholder (no code is issued); the links are the sample
  context's inert ones (engine.example / shop.example: nothing acts on a customer);
- a ledger of its own (`TEST#<request id>` / `L` in the messages table, conditional claim): a redelivered SQS
  message does not send twice; no daily counters, no profile `sends`, no rule stats (the send brake's
  hourly counter does count it: SES's reputation counts every mail, and its bounce reaches the brake);
- quiet hours, caps and consent do not apply (staff mail); the send brake's pause still stops a marketing
  template (a transactional one flows, as for customers);
- SES gets no `ledger` tag (its feedback never touches a customer's ledger), a `test_send` tag instead.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any, Literal

from pydantic import BaseModel, Field

from retention.core import clock, ddb
from retention.core.errors import BadRequestError

log = logging.getLogger(__name__)

KIND: Literal["test_send"] = "test_send"
TEST_LEDGER_PREFIX = "TEST#"
SUBJECT_PREFIX = "[TEST] "
PLACEHOLDER_COUPON = {"code": "TEST-NO-COUPON", "discount": "10%", "expires_at": None}
LOCALES = ("ru", "en")
RETENTION_DAYS = 30


class TestSendRequest(BaseModel):
    """One test send (the send queue's second kind of message, told apart by `kind`)."""

    __test__ = False  # not a pytest class
    model_config = {"defer_build": True, "extra": "forbid"}
    kind: Literal["test_send"] = KIND
    request_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    person: str = Field(min_length=1, max_length=100)
    to: str = Field(min_length=3, max_length=320)
    template: str = Field(min_length=1, max_length=200)
    locale: Literal["ru", "en"] = "ru"
    requested_at: str = ""


def is_test_send(body: str) -> bool:
    """Whether a send-queue body is a test send (cheap: before any model validation)."""
    if '"test_send"' not in body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("kind") == KIND


def testsend_ledger_key(request_id: str) -> tuple[str, str]:
    return (f"{TEST_LEDGER_PREFIX}{request_id}", "L")


def enqueue(d: Any, person: str, template_id: str, locale: str) -> TestSendRequest:
    """The console's side (admin_api): the person's address from the people records, the template must be
    applied, then one message on the send queue. BadRequestError when the person has no address."""
    from retention.admin.people import People
    from retention.journeys.catalogue import Catalogue
    to = People(d.config).email_of(person)
    if not to:
        raise BadRequestError(f"{person} has no email address on record: an admin sets it on the console's "
                              "Tokens page (People's email addresses)", code="no_email")
    if Catalogue(d.config).templates().get(template_id) is None:
        raise BadRequestError(f"template '{template_id}' is not applied")
    req = TestSendRequest(request_id=secrets.token_hex(12), person=person, to=to, template=template_id,
                          locale="en" if locale == "en" else "ru", requested_at=clock.iso(clock.now()))
    d.sqs.send_message(QueueUrl=d.env.queue("send"), MessageBody=req.model_dump_json())
    return req


class TestSender:
    """The sender's test-send path (same SES client, same From, same configuration set)."""

    __test__ = False

    def __init__(self, sender: Any) -> None:
        self.s = sender  # retention.messaging.sender.Sender

    def send(self, req: TestSendRequest) -> Any:
        from retention.messaging.sender import Outcome
        now = clock.now()
        if not self._claim(req, now):
            return Outcome("duplicate")
        try:
            why = self._refusal(req)
            if why is not None:
                self._finish(req, "rejected", now, reason=why)
                log.warning("test send %s refused: %s", req.request_id, why)
                return Outcome("skipped", why)
            raw, subject = self._render(req, now)
        except Exception as exc:
            self._finish(req, "retry", now, reason=f"error before sending: {type(exc).__name__}: {exc}"[:500])
            raise
        kwargs: dict[str, Any] = {
            "FromEmailAddress": self.s.env.sender_email, "Destination": {"ToAddresses": [req.to]},
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": [{"Name": KIND, "Value": "1"}, {"Name": "template", "Value": _tag(req.template)}]}
        if self.s.env.ses_configuration_set:
            kwargs["ConfigurationSetName"] = self.s.env.ses_configuration_set
        try:
            provider_id = str(self.s.ses.send_email(**kwargs).get("MessageId", ""))
        except Exception as exc:
            # a test send is never retried behind an unknown outcome: recorded, the person sends again
            self._finish(req, "failed", now, reason=f"{type(exc).__name__}: {exc}"[:500])
            log.warning("test send %s failed: %s", req.request_id, exc)
            return Outcome("failed", "provider_error")
        self._finish(req, "sent", now, sent_at=clock.iso(now), provider_id=provider_id, subject=subject)
        # SES's reputation counts this mail (and its bounce, if any, reaches the brake through feedback):
        # the brake's hourly counter of the identity counts it too, so its rates stay SES's rates
        self.s.brake.count_send(self.s.identity, now, testsend_ledger_key(req.request_id)[0])
        return Outcome("sent", provider_id=provider_id)

    def _refusal(self, req: TestSendRequest) -> str | None:
        from retention.admin.people import People
        if People(self.s.config).staff_address(req.person, req.to) is None:
            return "not_a_person"  # the address is not this person's address on record
        template = self.s.renderer.library.templates().get(req.template)
        if template is None:
            return "template_not_applied"
        if getattr(template, "category", None) != "transactional" and self.s.brake.paused(self.s.identity):
            return "sending_paused"
        return None

    def _render(self, req: TestSendRequest, now: Any) -> tuple[bytes, str]:
        from retention.language import templates
        from retention.language.templates import coupon_value, sample_context
        from retention.messaging import layout
        from retention.messaging.mime import build_email, with_display_name
        template = self.s.renderer.library.templates().get(req.template)
        settings = self.s.config.settings()
        ctx = sample_context(req.locale)  # the sample profile: no real customer's data, inert links
        ctx["coupon"] = coupon_value(dict(PLACEHOLDER_COUPON))  # a visible placeholder: no code is issued
        ctx["shop"] = {**ctx["shop"], "name": settings.shop_name or ctx["shop"]["name"],
                       "brand": settings.brand.model_dump()}
        out = templates.render(template, req.locale, ctx, channel="email")
        if not out.subject:
            raise templates.TemplateRenderError(f"template '{req.template}' has no email content")
        subject = SUBJECT_PREFIX + out.subject
        html = out.html
        if html is not None:
            html = layout.wrap(html, subject=subject, preheader=out.preheader, locale=req.locale,
                               marketing=getattr(template, "category", None) != "transactional",
                               brand=settings.brand.model_dump(), shop=ctx["shop"], links=ctx["links"])
        domain = self.s.env.sender_email.rsplit("@", 1)[-1].strip("> ")
        raw = build_email(sender=with_display_name(self.s.env.sender_email, settings.brand.from_name
                                                   or settings.shop_name),
                          to=req.to, subject=subject, html=html, text=out.text,
                          preheader=None if html is not None else out.preheader, reply_to=settings.brand.reply_to,
                          unsubscribe_url=ctx["links"]["unsubscribe"], unsubscribe_mailto=None,
                          message_id_domain=domain,
                          headers={"X-Retention-Test": "1", "X-Retention-Template": req.template,
                                   "X-Retention-Requested-By": _ascii(req.person)}, now=now)
        return raw, subject

    def _claim(self, req: TestSendRequest, now: Any) -> bool:
        item = {"pk": testsend_ledger_key(req.request_id)[0], "sk": "L", "status": "pending", "kind": KIND,
                "person": req.person, "to": req.to, "template": req.template, "locale": req.locale,
                "created_at": clock.iso(now), "ttl": int(now.timestamp()) + RETENTION_DAYS * 86400}
        try:
            self.s.ddb.put_item(TableName=self.s.env.messages_table, Item=ddb.serialize(item),
                                ConditionExpression="attribute_not_exists(pk) OR #s = :r",
                                ExpressionAttributeNames={"#s": "status"},
                                ExpressionAttributeValues={":r": {"S": "retry"}})
            return True
        except Exception as exc:
            if ddb.is_conditional_failure(exc):
                return False
            raise

    def _finish(self, req: TestSendRequest, status: str, now: Any, **extra: Any) -> None:
        sets = {"status": status, "updated_at": clock.iso(now), **{k: v for k, v in extra.items() if v is not None}}
        ddb.set_fields(self.s.ddb, self.s.env.messages_table, *testsend_ledger_key(req.request_id), sets)


def _tag(value: str) -> str:
    return "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_" else "_" for ch in value)[:250] or "_"


def _ascii(value: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in value)[:100]

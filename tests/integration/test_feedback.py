"""SES feedback (configuration set events via SNS) on moto: statuses, counters, open/click rates, the
suppression list (hard bounces, complaints, erasure) and what it does to later sends."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from retention.core import clock, ddb
from retention.messaging.requests import SendRequest, suppression_key

from tests.integration.test_sender import (
    FaultyDynamo,
    customer,
    emails,
    ledger,
    request,
    sender,
    stored,
    totals,
)
from tests.support import LambdaContext, load_handler

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "feedback" / "handler.py"


@pytest.fixture(scope="module")
def handler() -> Any:
    return load_handler("feedback")


def ses_event(kind: str, req: SendRequest | None, to: str = "anna@example.com", **section: Any) -> dict[str, Any]:
    tags = {"rule": [req.rule], "step": [str(req.step)], "variant": [req.variant], "ledger": [req.ledger_id]} \
        if req else {}
    event: dict[str, Any] = {"eventType": kind, "mail": {
        "timestamp": clock.iso(clock.now()), "source": "news@example.com", "messageId": "ses-1",
        "destination": [to], "tags": tags}}
    if kind == "Bounce":
        event["bounce"] = {"bounceType": section.get("bounce_type", "Permanent"), "bounceSubType": "General",
                           "bouncedRecipients": [{"emailAddress": to, "status": "5.1.1"}]}
    elif kind == "Complaint":
        event["complaint"] = {"complainedRecipients": [{"emailAddress": to}], "complaintFeedbackType": "abuse"}
    else:
        event[kind.lower()] = section or {}
    return event


def notify(handler: Any, *events: dict[str, Any]) -> dict[str, Any]:
    records = [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(e)}} for e in events]
    return handler.lambda_handler({"Records": records}, LambdaContext())


def feedback(stack: Any) -> Any:
    from retention.messaging.feedback import Feedback
    return Feedback(stack.deps)


def suppressed_on_list(stack: Any, address: str) -> Any:
    salt = stack.deps.config.secrets("suppression-salt")[0].decode()
    return ddb.get(stack.deps.dynamodb, stack.deps.env.messages_table, *suppression_key(address, salt))


def test_delivery_open_click_update_status_counters_and_rates_once(s: Any, sent: SendRequest, handler: Any) -> None:
    assert notify(handler, ses_event("Delivery", sent))["handled"] == 1
    assert ledger(s, sent)["status"] == "delivered"
    # an SNS redelivery and repeated opens never inflate anything
    notify(handler, ses_event("Delivery", sent), ses_event("Open", sent), ses_event("Open", sent),
           ses_event("Click", sent, link="https://shop.test/p/1"), ses_event("Open", sent))
    item = ledger(s, sent)
    assert item["status"] == "delivered" and item["opened_at"] and item["clicked_at"]
    assert totals(s, "promo") == {"sent": 1, "delivered": 1, "opened": 1, "clicked": 1}
    p = stored(s, "u1").profile
    assert p.message_stats == {"delivered": 1, "opened": 1, "clicked": 1}
    assert p.kpis["open_rate"] == 1.0 and p.kpis["click_rate"] == 1.0
    # a second message delivered but never opened halves the rates
    clock.set_now(clock.now() + timedelta(days=1))
    second = request(entry="e2")
    assert sender(s).send(second).status == "sent"
    notify(handler, ses_event("Delivery", second))
    p = stored(s, "u1").profile
    assert p.kpis["open_rate"] == 0.5 and p.kpis["click_rate"] == 0.5


def test_feedback_counts_on_the_send_day(s: Any, sent: SendRequest, handler: Any) -> None:
    clock.set_now(clock.now() + timedelta(days=2))
    notify(handler, ses_event("Open", sent))
    from retention.analytics.counters import read_counters
    rows = read_counters(s.deps.dynamodb, s.deps.env.messages_table, "promo")
    assert {r["date"] for r in rows if r.get("opened")} == {"2026-11-24"}


def test_hard_bounce_suppresses_the_address_and_later_sends(s: Any, sent: SendRequest, handler: Any) -> None:
    notify(handler, ses_event("Bounce", sent))
    assert ledger(s, sent)["status"] == "bounced"
    entry = suppressed_on_list(s, "Anna@Example.com")  # the list is case-insensitive
    assert entry and entry["reason"] == "bounced"
    assert "anna@example.com" not in json.dumps(entry)  # only a salted hash is kept
    assert stored(s, "u1").profile.suppressed["email"]["reason"] == "bounced"
    assert totals(s, "promo")["bounced"] == 1
    later = request(rule="promo-b", entry="x")
    out = sender(s).send(later)
    assert (out.status, out.reason) == ("skipped", "bounced")
    assert ledger(s, later)["reason"] == "bounced"
    assert len(emails()) == 1


def test_soft_bounce_changes_nothing_but_its_counter(s: Any, sent: SendRequest, handler: Any) -> None:
    notify(handler, ses_event("Delivery", sent), ses_event("Bounce", sent, bounce_type="Transient"))
    assert ledger(s, sent)["status"] == "delivered"
    assert suppressed_on_list(s, "anna@example.com") is None
    assert not stored(s, "u1").profile.suppressed
    assert totals(s, "promo").get("soft_bounced") == 1 and "bounced" not in totals(s, "promo")


def test_complaint_suppresses_and_survives_a_delivery_reported_late(s: Any, sent: SendRequest, handler: Any) -> None:
    notify(handler, ses_event("Complaint", sent), ses_event("Delivery", sent))
    assert ledger(s, sent)["status"] == "complained"  # the later Delivery does not hide it
    assert suppressed_on_list(s, "anna@example.com")["reason"] == "complained"
    assert stored(s, "u1").profile.suppressed["email"]["reason"] == "complained"
    assert sender(s).send(request(rule="promo-b")).reason == "complained"


def test_a_suppressed_address_imported_again_stays_suppressed(s: Any, sent: SendRequest, handler: Any) -> None:
    notify(handler, ses_event("Complaint", sent))
    customer(s, "other", email="ANNA@example.com")  # the same person under another id, e.g. a CSV import
    assert stored(s, "other").profile.suppressed["email"]["reason"] == "complained"
    out = sender(s).send(request("other"))
    assert (out.status, out.reason) == ("skipped", "complained")


def test_complaint_redelivered_after_a_crash_is_applied_once(s: Any, sent: SendRequest) -> None:
    from retention.messaging.feedback import Feedback
    lost = ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
    d = s.deps
    flaky = type(d)(d.env, dynamodb=FaultyDynamo(d.dynamodb, lost, update_item=1), sqs=d.sqs)
    flaky.config = d.config
    with pytest.raises(ReadTimeoutError):
        Feedback(flaky).handle(ses_event("Complaint", sent))
    # the suppression is already there: nothing waits for the retry to be safe
    assert suppressed_on_list(s, "anna@example.com")["reason"] == "complained"
    assert stored(s, "u1").profile.suppressed["email"]["reason"] == "complained"
    assert feedback(s).handle(ses_event("Complaint", sent)) == "complained"
    assert feedback(s).handle(ses_event("Complaint", sent)) == "duplicate"
    assert totals(s, "promo")["complained"] == 1


def test_bounce_of_an_old_address_does_not_suppress_the_new_one(s: Any, sent: SendRequest) -> None:
    customer(s, "u1", email="anna.new@example.com")
    feedback(s).handle(ses_event("Bounce", sent, to="anna@example.com"))
    assert suppressed_on_list(s, "anna@example.com")
    assert not stored(s, "u1").profile.suppressed
    clock.set_now(clock.now() + timedelta(hours=17))  # past the 16 h cap
    assert sender(s).send(request(rule="promo", entry="e9")).status == "sent"
    assert emails()[-1]["to"] == "anna.new@example.com"


def test_complaint_without_a_ledger_tag_still_suppresses_the_address(s: Any) -> None:
    assert feedback(s).handle(ses_event("Complaint", None, to="stranger@example.com")) == "complained"
    assert suppressed_on_list(s, "stranger@example.com")


def test_garbage_and_unknown_messages_are_ignored(s: Any, handler: Any) -> None:
    fake = SendRequest(customer_id="nobody", rule="promo", entry="x", step=0, channel="email", template="t-promo")
    result = handler.lambda_handler({"Records": [
        {"Sns": {"Message": "not json"}}, {"Sns": {"Message": "[1, 2]"}},
        {"Sns": {"Message": json.dumps({"eventType": "Rendering Failure", "mail": {}})}},
        {"Sns": {"Message": json.dumps(ses_event("Open", fake))}}]}, LambdaContext())
    assert result["handled"] == 0


def test_erasure_keeps_a_salted_hash_so_a_reimport_stays_suppressed(s: Any, sent: SendRequest) -> None:
    from retention.admin.views import Admin
    Admin(s.deps).forget("u1")
    assert suppressed_on_list(s, "anna@example.com")["reason"] == "erased"
    # a message still queued for the erased customer is not sent
    assert sender(s).send(request(rule="promo-b")).reason == "no_profile"
    # the address comes back in an import, without fresh consent handling: still suppressed
    customer(s, "u1-new", email="anna@example.com")
    assert sender(s).send(request("u1-new")).reason == "erased"
    assert len(emails()) == 1

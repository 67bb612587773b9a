"""The thin slice on moto (in process): Signed Up → welcome journey → send queue → SES raw email."""

from __future__ import annotations

from typing import Any

from retention.messaging.mime import parse_email


def identify(uid: str, email: str, consent: bool = True, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": uid, "messageId": f"id-{uid}-{email}",
            "traits": {"email": email, "email_consent": consent, **traits}}


def track(uid: str, event: str, mid: str, **props: Any) -> dict[str, Any]:
    return {"type": "track", "userId": uid, "event": event, "messageId": mid, "properties": props}


def sent_emails() -> list[dict[str, Any]]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends
    return [parse_email(m.raw_data.encode()) for m in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages]


def test_signed_up_sends_the_welcome_email_once(library_stack: Any) -> None:
    s = library_stack
    s.ingest([identify("u1", "anna@example.com", first_name="Анна"), track("u1", "Signed Up", "m1")])
    sends = s.queued_sends()
    assert [(r.rule, r.step) for r in sends][:1] == [("welcome", 1)]  # step 0 sets the welcome_chain segment
    sender = s.sender()
    outcomes = [sender.send(r).status for r in sends]
    assert outcomes[0] == "sent"
    # the same SQS message delivered again: the ledger stops a second send
    assert sender.send(sends[0]).status == "duplicate"
    mails = sent_emails()
    assert len(mails) == 1
    assert "Анна" in mails[0]["subject"] or "Анна" in (mails[0]["text"] or "")
    assert mails[0]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    p = s.profile("u1")
    assert p.journeys["welcome"]["state"] == "active"


def test_a_refused_consent_gets_no_welcome_and_no_double_opt_in(library_stack: Any) -> None:
    """Issue 14: the welcome chain is marketing (email consent only), and a customer who refused consent gets
    no double opt-in request either: nothing but service mail (order confirmations, statuses)."""
    from tests.support import advance
    s = library_stack
    s.ingest([identify("u2", "bob@example.com", consent=False), track("u2", "Signed Up", "m2")])
    outcomes = [s.sender().send(r) for r in s.queued_sends()]
    assert [o.status for o in outcomes if o.status == "sent"] == []
    advance(s, days=2)  # the first-order offer is marketing too: nothing
    assert sent_emails() == []
    s.ingest([track("u2", "Order Completed", "o2", order_id="o2", revenue=10)])
    sent = [s.sender().send(r) for r in s.queued_sends()]
    assert [o.status for o in sent if o.status == "sent"] == ["sent"]  # the order confirmation is service mail
    assert len(sent_emails()) == 1

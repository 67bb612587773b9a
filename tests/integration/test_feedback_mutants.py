"""Feedback behaviour that surviving mutants of `make mutate` showed untested (bench/results/mutation.md):
lost races on the ledger and the profile, the retry budget of the profile write, status ranks, the
variant's counter row, and the addresses a complaint is about. Each test names the mutant it kills."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from botocore.exceptions import ClientError
from retention.analytics.counters import read_counters
from retention.messaging.requests import SendRequest

from tests.integration.test_feedback import feedback, ses_event, suppressed_on_list
from tests.integration.test_sender import FaultyDynamo, ledger, request, sender, stored

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


def conflict(op: str) -> ClientError:
    response: Any = {"Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"},
                     "ResponseMetadata": {"HTTPStatusCode": 400}}
    return ClientError(response, op)


def flaky_feedback(stack: Any, client: Any) -> Any:
    from retention.messaging.feedback import Feedback
    deps = copy.copy(stack.deps)
    deps.dynamodb = client
    return Feedback(deps)


def test_a_lost_race_on_the_ledger_is_a_duplicate_not_an_error(s: Any, sent: SendRequest) -> None:
    """Kills `… if isinstance(response, dict) else None` → `if not isinstance(…)` and `(response or {})` →
    `(response and {})` in `_conditional`: when another delivery of the same notification set
    `delivered_at` between the read and the conditional update, the loser answers `duplicate` (SNS must
    not redeliver it forever) and counts nothing."""
    flaky = FaultyDynamo(s.deps.dynamodb, conflict("UpdateItem"), update_item=1)
    assert flaky_feedback(s, flaky).handle(ses_event("Delivery", sent)) == "duplicate"
    rows = read_counters(s.deps.dynamodb, s.deps.env.messages_table, "promo")
    assert not any(r.get("delivered") for r in rows)


def test_a_profile_written_in_between_is_read_again_up_to_five_times(s: Any, sent: SendRequest) -> None:
    """Kills `except Exception` → another exception type in `_profile`, and `ATTEMPTS = 5` → 4 / 6: a
    profile changed by someone else between the read and the conditional write is read again and the
    engagement applied to the new version, five attempts in all; past them the notification fails (SNS
    redelivers it)."""
    flaky = FaultyDynamo(s.deps.dynamodb, conflict("PutItem"), put_item=4)
    assert flaky_feedback(s, flaky).handle(ses_event("Delivery", sent)) == "delivered"
    assert stored(s, "u1").profile.message_stats == {"delivered": 1}

    flaky = FaultyDynamo(s.deps.dynamodb, conflict("PutItem"), put_item=5)
    with pytest.raises(RuntimeError, match="retried 5 times"):
        flaky_feedback(s, flaky).handle(ses_event("Open", sent))
    assert not ledger(s, sent).get("opened_at")


def test_a_rejection_after_a_delivery_shows_as_rejected(s: Any, sent: SendRequest) -> None:
    """Kills `STATUS_RANK["rejected"] = 2` → 1: a later, worse status wins over an earlier one."""
    fb = feedback(s)
    assert fb.handle(ses_event("Delivery", sent)) == "delivered"
    assert fb.handle(ses_event("Reject", sent)) == "rejected"
    assert ledger(s, sent)["status"] == "rejected"
    assert fb.handle(ses_event("Delivery", sent)) == "duplicate"
    assert ledger(s, sent)["status"] == "rejected"


def test_feedback_counts_on_the_row_of_the_variant_sent(s: Any) -> None:
    """Kills `str(ledger.get("variant") or "default")` → `and` in `handle`: an A/B send's opens count on
    its own variant's row, else the test's winner is picked on wrong numbers."""
    req = request(variant="B")
    assert sender(s).send(req).status == "sent"
    assert feedback(s).handle(ses_event("Open", req)) == "opened"
    rows = read_counters(s.deps.dynamodb, s.deps.env.messages_table, "promo")
    assert {r["variant"]: int(r.get("opened") or 0) for r in rows if r.get("opened")} == {"B": 1}


def test_a_complaint_without_its_recipient_list_is_about_the_mail_destination(s: Any, sent: SendRequest) -> None:
    """Kills `(event.get("mail") or {}).get("destination")` → `and` in `_recipients`: with no
    `complainedRecipients`, the complaint is about the address the message went to."""
    event = ses_event("Complaint", sent)
    event["complaint"]["complainedRecipients"] = []
    assert feedback(s).handle(event) == "complained"
    assert suppressed_on_list(s, "anna@example.com")["reason"] == "complained"
    assert stored(s, "u1").profile.suppressed["email"]["reason"] == "complained"


def test_a_recipient_with_a_stray_angle_bracket_is_taken_as_written_not_a_crash(s: Any, sent: SendRequest) -> None:
    """Kills `if "<" in text and text.endswith(">")` → `or` in `_recipients`: only `Name <addr>` is
    unwrapped; `addr>` (no opening bracket) must not crash the handler (SNS would redeliver it forever)."""
    event = ses_event("Complaint", sent, to="anna@example.com>")
    assert feedback(s).handle(event) == "complained"
    assert suppressed_on_list(s, "anna@example.com>")["reason"] == "complained"
    event = ses_event("Complaint", request(entry="e9"), to="Anna <Other@Example.com>")
    feedback(s).handle(event)
    assert suppressed_on_list(s, "other@example.com")["reason"] == "complained"


def test_a_bounce_is_about_its_bounced_recipients_not_every_destination(s: Any, sent: SendRequest) -> None:
    """Kills `event.get("bounce") or event.get("complaint") or {}` → `and` in `_recipients`: of a message
    to two addresses, only the one that bounced goes on the suppression list."""
    event = ses_event("Bounce", sent)
    event["mail"]["destination"] = ["anna@example.com", "boss@example.com"]
    assert feedback(s).handle(event) == "bounced"
    assert suppressed_on_list(s, "anna@example.com")["reason"] == "bounced"
    assert suppressed_on_list(s, "boss@example.com") is None

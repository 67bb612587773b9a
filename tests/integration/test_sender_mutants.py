"""Sender behaviour that surviving mutants of `make mutate` showed untested (bench/results/mutation.md).
Each test names the mutant it kills. On moto, with its own small rule and template."""

from __future__ import annotations

import re
from typing import Any

import pytest
from retention.messaging.requests import SendRequest

from tests.support import record_backoff, sent_emails

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

UNSUB = '<a href="{{ links.unsubscribe }}">unsubscribe</a>'
GIFT = {"id": "t-gift", "category": "marketing", "default_locale": "en", "locales": {"en": {
    "subject": "A gift", "html": "<p>Code {{ coupon.code }}: {{ coupon.discount }} off</p>" + UNSUB}}}


def _code(mail: dict[str, Any]) -> str:
    found = re.search(r"Code ([A-Z0-9_-]+):", mail["html"])
    assert found, mail["html"]
    return found.group(1)


def test_a_journey_wide_fallback_code_is_shared_by_its_steps_and_never_a_per_step_code(stack: Any) -> None:
    """Kills `step=req.step if wanted.per == "step" else -1` → `else 0` in `_coupon`: the journey-wide fallback
    code would be the very code of the journey's first step when that step draws its own code from the same
    pool. The pool is empty, so every code here is the signed fallback."""
    cfg = stack.deps.config
    cfg.apply("TEMPLATE", "t-gift", GIFT)
    coupon = {"pool": "gift", "fallback": "hmac"}
    cfg.apply("RULE", "gift", {"id": "gift", "trigger": {"event": "Gift"}, "steps": [
        {"send": {"channel": "email", "template": "t-gift", "coupon": coupon}},
        {"send": {"channel": "email", "template": "t-gift", "coupon": {**coupon, "per": "journey"}}},
        {"send": {"channel": "email", "template": "t-gift", "coupon": {**coupon, "per": "journey"}}}]})
    cfg.put_settings({"frequency_caps": {"email": []}})
    stack.ingest([{"type": "identify", "userId": "u1", "messageId": "id-u1",
                   "traits": {"email": "u1@example.com", "email_consent": True}}])
    sender = stack.sender()
    for step in (0, 1, 2):
        req = SendRequest(customer_id="u1", rule="gift", entry="e1", step=step, channel="email", template="t-gift")
        assert sender.send(req).status == "sent"
    per_step, journey_1, journey_2 = (_code(m) for m in sent_emails())
    assert journey_1 == journey_2
    assert per_step != journey_1


# ---- journeys, channels, the sent transaction ---------------------------------------------------------

NOTE = {"id": "t-note", "category": "marketing", "default_locale": "en", "locales": {"en": {
    "subject": "News", "html": "<p>News for you</p>" + UNSUB}}}  # email content only


@pytest.fixture
def note(stack: Any) -> Any:
    cfg = stack.deps.config
    cfg.apply("TEMPLATE", "t-note", NOTE)
    cfg.apply("RULE", "note", {"id": "note", "trigger": {"event": "Note"}, "journey_key": "order_id",
                               "steps": [{"send": {"channel": "email", "template": "t-note"}}]})
    stack.ingest([{"type": "identify", "userId": "u1", "messageId": "id-u1", "traits": {
        "email": "u1@example.com", "email_consent": True, "phone": "+79161234567", "sms_consent": True,
        "preferred_channel": "sms"}}])
    return stack


def _request(entry: str = "e1", channel: Any = "email") -> SendRequest:
    return SendRequest(customer_id="u1", rule="note", entry=entry, step=0, channel=channel, template="t-note")


def test_a_send_of_a_journey_that_has_exited_is_skipped_whichever_slot_it_is_in(note: Any) -> None:
    """Kills `… if s.split("#", 1)[0] == req.rule and j.get("entry") == req.entry` → `or` in `_prepare`: the
    journey of a send is the one of its rule *and* its entry. With one journey per order (`note#A` still
    active, `note#B` exited by its goal), the send queued for order B is dropped, the one for A goes."""
    from retention.core import clock
    from retention.customers.store import ProfileRepo
    d = note.deps
    repo = ProfileRepo(d.dynamodb, d.env.profiles_table)
    sp = repo.load("u1", clock.now())
    base = {"step": 0, "holdout": False, "entered_at": clock.iso(clock.now())}
    sp.profile.journeys["note#A"] = {**base, "entry": "eA", "state": "active", "slot": "note#A"}
    sp.profile.journeys["note#B"] = {**base, "entry": "eB", "state": "exited", "slot": "note#B",
                                     "exit_reason": "goal:Order Completed", "ended_at": clock.iso(clock.now())}
    repo.save(sp, clock.now())
    sender = note.sender()
    out = sender.send(_request("eB"))
    assert (out.status, out.reason) == ("skipped", "journey_exited")
    out = sender.send(_request("eA"))
    assert out.status == "sent", out
    assert len(sent_emails()) == 1


def test_a_queued_marketing_send_of_a_rule_disabled_since_is_skipped_a_transactional_one_goes(note: Any) -> None:
    """A marketer who disables a rule stops its queued marketing at once (issue 21's open question: it went
    out); an order confirmation queued before (transactional) still goes: the customer expects it."""
    from retention.core.config import ConfigStore
    note.deps.config.set_enabled("RULE", "note", False)
    ConfigStore.invalidate()
    sender = note.sender()
    out = sender.send(_request("eD"))
    assert (out.status, out.reason) == ("skipped", "rule_disabled")
    assert sent_emails() == []
    out = sender.send(SendRequest(customer_id="u1", rule="note", entry="eT", step=0, channel="email",
                                  template="t-note", transactional=True))
    assert out.status == "sent", out
    assert len(sent_emails()) == 1


def test_the_preferred_channel_needs_content_for_it_in_the_template(note: Any) -> None:
    """Kills `if template is not None:` → `if template is None:` in `_template_channels` (every template
    would look like it had SMS content): the customer prefers SMS, but the template has email content
    only, so `preferred` sends the email."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends
    out = note.sender().send(_request(channel="preferred"))
    assert out.status == "sent"
    assert len(sent_emails()) == 1
    assert not sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sms_messages


class UpdateFaults:
    """The moto client; UpdateItem calls on `table` counted, and those numbered in `fail` raise `error`."""

    def __init__(self, real: Any, table: str, error: Exception, *fail: int) -> None:
        self.real, self.table, self.error, self.fail, self.calls = real, table, error, set(fail), 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != "update_item":
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("TableName") != self.table:
                return attr(*args, **kwargs)
            self.calls += 1
            if self.calls in self.fail:
                raise self.error
            return attr(*args, **kwargs)
        return counted


def test_a_failed_profile_write_is_not_retried_the_ledger_still_says_sent(note: Any) -> None:
    """When the profile's contact record cannot be written (anything but a failed condition), the ledger is
    marked sent all the same and the send ends: the message is out; no more attempts at the failing write."""
    from botocore.exceptions import ClientError
    from retention.core import ddb
    from retention.messaging.rendering import Renderer
    from retention.messaging.requests import ledger_key
    from retention.messaging.sender import Sender
    d = note.deps
    response: Any = {"Error": {"Code": "ValidationException", "Message": "item too large"},
                     "ResponseMetadata": {"HTTPStatusCode": 400}}
    flaky = UpdateFaults(d.dynamodb, d.env.profiles_table, ClientError(response, "UpdateItem"), 1)
    sender = Sender(ddb_client=flaky, ses=d.sesv2, sns=d.sns, sqs=d.sqs, env=d.env, config=d.config,
                    renderer=Renderer(d.config, d.env))
    req = _request()
    assert sender.send(req).status == "sent"
    assert flaky.calls == 1
    ledger = ddb.get(d.dynamodb, d.env.messages_table, *ledger_key(req.ledger_id), consistent=True)
    assert ledger is not None and ledger["status"] == "sent"
    assert len(sent_emails()) == 1


def test_a_profile_write_that_meets_a_transaction_conflict_is_retried(note: Any) -> None:
    """An ingestion or tick transaction on the same profile cancels the contact record with a
    TransactionConflict (botocore does not retry it): the sender backs off and writes it, so the caps see it."""
    from botocore.exceptions import ClientError
    from retention.core import clock
    from retention.customers.store import ProfileRepo
    from retention.messaging.rendering import Renderer
    from retention.messaging.sender import Sender
    d = note.deps
    response: Any = {"Error": {"Code": "TransactionConflictException", "Message": "conflict"},
                     "ResponseMetadata": {"HTTPStatusCode": 400}}
    flaky = UpdateFaults(d.dynamodb, d.env.profiles_table, ClientError(response, "UpdateItem"), 1, 2)
    sender = Sender(ddb_client=flaky, ses=d.sesv2, sns=d.sns, sqs=d.sqs, env=d.env, config=d.config,
                    renderer=Renderer(d.config, d.env))
    req = _request()
    assert sender.send(req).status == "sent"
    assert flaky.calls == 3
    stored = ProfileRepo(d.dynamodb, d.env.profiles_table).load("u1", clock.now())
    assert [s.get("ledger") for s in stored.sends] == [req.ledger_id]
    assert len(sent_emails()) == 1


class LedgerSentFaults:
    """The moto client; the ledger's `sent` UpdateItems (they set `sent_at`) numbered in `fail` raise `error`."""

    def __init__(self, real: Any, error: Exception, fail: set[int]) -> None:
        self.real, self.error, self.fail, self.calls = real, error, fail, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def update_item(self, **kwargs: Any) -> Any:
        if "sent_at = :t" in str(kwargs.get("UpdateExpression")):
            self.calls += 1
            if self.calls in self.fail:
                raise self.error
        return self.real.update_item(**kwargs)


@pytest.mark.parametrize("failures,status", [({1, 2}, "sent"), ({1, 2, 3, 4, 5}, "pending")])
def test_a_ledger_sent_write_that_fails_after_the_provider_took_the_message_keeps_the_counts(
        note: Any, failures: set[int], status: str) -> None:
    """Review finding 3 of issue 17: the provider accepted the message, then the ledger's `sent` update meets
    an error that is not a failed condition (a 500, a throttle past botocore's retries). It is retried with
    backoff; still failing, the ledger stays `pending` for the sweeper — but the send is not failed (its SQS
    record would come back to a claim that sends nothing) and its counts are kept."""
    from botocore.exceptions import ClientError
    from retention.core import ddb
    from retention.messaging.rendering import Renderer
    from retention.messaging.requests import ledger_key
    from retention.messaging.sender import Sender

    from tests.integration.test_sender import totals
    d = note.deps
    response: Any = {"Error": {"Code": "InternalServerError", "Message": "boom"},
                     "ResponseMetadata": {"HTTPStatusCode": 500}}
    flaky = LedgerSentFaults(d.dynamodb, ClientError(response, "UpdateItem"), failures)
    sender = Sender(ddb_client=flaky, ses=d.sesv2, sns=d.sns, sqs=d.sqs, env=d.env, config=d.config,
                    renderer=Renderer(d.config, d.env))
    req = _request()
    assert sender.send(req).status == "sent"
    assert flaky.calls == min(len(failures) + 1, 4)
    ledger = ddb.get(d.dynamodb, d.env.messages_table, *ledger_key(req.ledger_id), consistent=True)
    assert ledger is not None and ledger["status"] == status
    assert totals(note, "note").get("sent") == 1
    assert len(sent_emails()) == 1


@pytest.mark.parametrize("feedback_at,failures,calls", [(1, {2}, 3), (4, {1, 2, 3}, 5)])
def test_a_ledger_sent_write_after_feedback_keeps_the_feedback_status_through_an_error(
        note: Any, feedback_at: int, failures: set[int], calls: int) -> None:
    """SES feedback marked the ledger first (the conditional update fails), and 500s come before or after
    that: retried, the feedback's status stays and the send's details go in (the switch to the details-only
    update is not one of the 4 attempts at an error)."""
    from botocore.exceptions import ClientError
    from retention.core import ddb
    from retention.messaging.rendering import Renderer
    from retention.messaging.requests import ledger_key
    from retention.messaging.sender import Sender
    d = note.deps
    req = _request()

    class FeedbackFirst(LedgerSentFaults):
        def update_item(self, **kwargs: Any) -> Any:
            if "sent_at = :t" in str(kwargs.get("UpdateExpression")) and self.calls == feedback_at - 1:
                ddb.set_fields(self.real, d.env.messages_table, *ledger_key(req.ledger_id), {"status": "delivered"})
            return super().update_item(**kwargs)

    response: Any = {"Error": {"Code": "InternalServerError", "Message": "boom"},
                     "ResponseMetadata": {"HTTPStatusCode": 500}}
    flaky = FeedbackFirst(d.dynamodb, ClientError(response, "UpdateItem"), failures)
    sender = Sender(ddb_client=flaky, ses=d.sesv2, sns=d.sns, sqs=d.sqs, env=d.env, config=d.config,
                    renderer=Renderer(d.config, d.env))
    assert sender.send(req).status == "sent"
    assert flaky.calls == calls
    ledger = ddb.get(d.dynamodb, d.env.messages_table, *ledger_key(req.ledger_id), consistent=True)
    assert ledger is not None and ledger["status"] == "delivered" and ledger.get("sent_at")


def test_a_profile_write_applied_then_retried_records_the_send_once(note: Any) -> None:
    """The contact record is guarded by the ledger id: a request that was applied and sent again (botocore
    retries an UpdateItem whose answer was lost) appends nothing the second time, and the send goes on."""
    from retention.core import clock
    from retention.customers.store import ProfileRepo
    from retention.messaging.sender import Sender

    class AppliedTwice:
        def __init__(self, real: Any, table: str) -> None:
            self.real, self.table, self.retries = real, table, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def update_item(self, **kwargs: Any) -> Any:
            if kwargs.get("TableName") == self.table and self.retries == 0:
                self.real.update_item(**kwargs)  # applied; the answer is lost, so it is sent again
                self.retries += 1
            return self.real.update_item(**kwargs)

    d = note.deps
    from retention.messaging.rendering import Renderer
    client = AppliedTwice(d.dynamodb, d.env.profiles_table)
    sender = Sender(ddb_client=client, ses=d.sesv2, sns=d.sns, sqs=d.sqs, env=d.env, config=d.config,
                    renderer=Renderer(d.config, d.env))
    repo = ProfileRepo(d.dynamodb, d.env.profiles_table)
    before = repo.load("u1", clock.now()).version
    req = _request()
    assert sender.send(req).status == "sent" and client.retries == 1
    stored = repo.load("u1", clock.now())
    assert [s.get("ledger") for s in stored.sends] == [req.ledger_id]
    assert stored.version == before + 1
    assert _ledger(note, req)["status"] == "sent"


class FailingClient:
    """A moto client whose operation `op` raises `errors` in turn (then works); every call counted."""

    def __init__(self, real: Any, op: str, *errors: Exception) -> None:
        self.real, self.op, self.errors, self.calls = real, op, list(errors), 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != self.op:
            return attr

        def failing(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.errors:
                raise self.errors.pop(0)
            return attr(*args, **kwargs)
        return failing


def _client_error(code: str, message: str, op: str) -> Exception:
    from botocore.exceptions import ClientError
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    return ClientError(response, op)


def _sender(stack: Any, **clients: Any) -> Any:
    from retention.messaging.rendering import Renderer
    from retention.messaging.sender import Sender
    d = stack.deps
    return Sender(ddb_client=clients.get("dynamodb", d.dynamodb), ses=clients.get("ses", d.sesv2), sns=d.sns,
                  sqs=d.sqs, env=d.env, config=d.config, renderer=Renderer(d.config, d.env))


def _ledger(stack: Any, req: SendRequest) -> dict[str, Any]:
    from retention.core import ddb
    from retention.messaging.requests import ledger_key
    item = ddb.get(stack.deps.dynamodb, stack.deps.env.messages_table, *ledger_key(req.ledger_id), consistent=True)
    assert item is not None
    return item


def test_the_reason_of_a_released_claim_is_cut_at_500_characters(note: Any) -> None:
    """Kills `":why": reason[:500]` → `[:499]` in `_release`: an error before the provider call hands the
    message back (`retry`) with its reason, bounded so the ledger item stays small."""
    long = "x" * 2000
    flaky = FailingClient(note.deps.dynamodb, "get_item", _client_error("InternalServerError", long, "GetItem"))
    req = _request()
    with pytest.raises(Exception, match="InternalServerError"):
        _sender(note, dynamodb=flaky).send(req)
    ledger = _ledger(note, req)
    assert ledger["status"] == "retry"
    assert len(ledger["reason"]) == 500 and ledger["reason"].startswith("error before sending: ClientError")


def test_provider_throttling_backs_off_for_fractions_of_a_second(note: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills `ddb.backoff(attempt, base=0.1)` → `base=1.1` / `-0.9` in `_deliver`: two throttled SES calls
    then a success wait at most 0.2 s and 0.4 s (full jitter: each sleep is drawn below its bound), far
    inside the few seconds a send's Lambda has left. Sleeps are recorded, not slept."""
    bounds = record_backoff(monkeypatch)
    slow = _client_error("TooManyRequestsException", "slow down", "SendEmail")
    ses = FailingClient(note.deps.sesv2, "send_email", slow, slow)
    assert _sender(note, ses=ses).send(_request()).status == "sent"
    assert ses.calls == 3
    assert bounds == pytest.approx([0.2, 0.4])


@pytest.mark.parametrize(("channel", "missing", "reason"), [("email", "email", "no_address"),
                                                             ("sms", "phone", "no_phone")])
def test_a_customer_without_the_address_of_the_channel_is_skipped_with_its_name(
        note: Any, channel: Any, missing: str, reason: str) -> None:
    """Kills `"no_address" if channel == "email" else "no_phone"` → `!=` in `channel_decision`."""
    note.ingest([{"type": "identify", "userId": "u2", "messageId": "id-u2", "traits": {
        "email": "u2@example.com", "email_consent": True, "phone": "+79161234568", "sms_consent": True,
        missing: None}}])
    req = SendRequest(customer_id="u2", rule="note", entry="e2", step=0, channel=channel, template="t-note")
    out = note.sender().send(req)
    assert (out.status, out.reason) == ("skipped", reason)


def test_a_render_gets_only_the_time_left_in_the_invocation(note: Any) -> None:
    """Kills `render_deadline(max(0.0, …))` → `max(1.0, …)` in `_prepare`: with less than the 5 s kept for
    the provider call and the ledger, the render has no time at all and fails its own message."""
    sender = note.sender()
    sender.time_left = lambda: 4.0
    req = _request()
    out = sender.send(req)
    assert (out.status, out.reason) == ("failed", "render_error")
    assert "took longer" in _ledger(note, req).get("detail", "")


def test_a_journey_wide_pooled_code_is_issued_under_a_key_stable_across_releases(stack: Any) -> None:
    """Kills `hexdigest()[:32]` → `[:33]` in `_coupon`: the journey-wide code is issued once under
    sha256(customer|rule|entry|pool:<pool>)[:32]; a step after a deploy must find the code issued before it,
    not draw a second one from the pool."""
    import hashlib

    from retention.products.coupons import Coupons
    cfg = stack.deps.config
    cfg.apply("TEMPLATE", "t-gift", GIFT)
    coupon = {"pool": "gift", "per": "journey"}
    cfg.apply("RULE", "gift", {"id": "gift", "trigger": {"event": "Gift"}, "steps": [
        {"send": {"channel": "email", "template": "t-gift", "coupon": coupon}}]})
    stack.ingest([{"type": "identify", "userId": "u1", "messageId": "id-u1",
                   "traits": {"email": "u1@example.com", "email_consent": True}}])
    coupons = Coupons(stack.deps.dynamodb, stack.deps.env.products_table)
    coupons.upload("gift", ["G-1", "G-2"], "15%", 7)
    req = SendRequest(customer_id="u1", rule="gift", entry="e1", step=0, channel="email", template="t-gift")
    assert stack.sender().send(req).status == "sent"
    key = hashlib.sha256(b"u1|gift|e1|pool:gift").hexdigest()[:32]
    issued = coupons.issued_for(key)
    assert issued is not None and _code(sent_emails()[0]) == issued.code


def test_a_send_exactly_at_the_cap_horizon_still_counts() -> None:
    """Kills `s.get("at", "") >= horizon` → `>` in `_over`: the 16-hour email cap counts a send made 16 hours
    ago to the second."""
    from datetime import timedelta

    from retention.core import clock
    from retention.core.config import Settings
    from retention.messaging.sender import cap_reached
    now = clock.now()
    sends = [{"channel": "email", "marketing": True, "rule": "r", "at": clock.iso(now - timedelta(hours=16))}]
    assert cap_reached(sends, "email", Settings(), now)
    sends[0]["at"] = clock.iso(now - timedelta(hours=16, seconds=1))
    assert not cap_reached(sends, "email", Settings(), now)


def test_per_step_pooled_codes_are_one_per_step_and_a_send_bumps_the_profile_version(stack: Any) -> None:
    """Kills `if wanted.per == "journey"` → `!=` in `_coupon` (per-step sends would share the journey's
    code), and `":one": 1` → 0 in `_mark_sent` (the profile's version must move with the send it records,
    or a writer that read it before would overwrite the send)."""
    from retention.core import clock
    from retention.customers.store import ProfileRepo
    from retention.products.coupons import Coupons
    cfg = stack.deps.config
    cfg.apply("TEMPLATE", "t-gift", GIFT)
    coupon = {"pool": "gift"}
    cfg.apply("RULE", "gift", {"id": "gift", "trigger": {"event": "Gift"}, "steps": [
        {"send": {"channel": "email", "template": "t-gift", "coupon": coupon}},
        {"send": {"channel": "email", "template": "t-gift", "coupon": coupon}}]})
    cfg.put_settings({"frequency_caps": {"email": []}})
    stack.ingest([{"type": "identify", "userId": "u1", "messageId": "id-u1",
                   "traits": {"email": "u1@example.com", "email_consent": True}}])
    Coupons(stack.deps.dynamodb, stack.deps.env.products_table).upload("gift", ["G-1", "G-2"], "15%", 7)
    repo = ProfileRepo(stack.deps.dynamodb, stack.deps.env.profiles_table)
    before = repo.load("u1", clock.now()).version
    sender = stack.sender()
    for step in (0, 1):
        req = SendRequest(customer_id="u1", rule="gift", entry="e1", step=step, channel="email", template="t-gift")
        assert sender.send(req).status == "sent"
    assert sorted(_code(m) for m in sent_emails()) == ["G-1", "G-2"]
    assert repo.load("u1", clock.now()).version == before + 2

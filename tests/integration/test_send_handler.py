"""functions/send_message/handler.py with SQS events on moto: partial batch failures, poison records,
duplicate deliveries in one batch, throttling handed back with a visibility back-off, and the DLQ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_sender import FaultySES, apply, customer, emails, ledger, request
from tests.support import LambdaContext, load_handler

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "send_message" / "handler.py"


@pytest.fixture(scope="module")
def handler() -> Any:
    return load_handler("send_message")


def put(stack: Any, bodies: list[str], queue: str | None = None) -> None:
    for body in bodies:
        stack.deps.sqs.send_message(QueueUrl=queue or stack.send_queue, MessageBody=body)


def receive(stack: Any, queue: str | None = None, n: int = 10) -> list[dict[str, Any]]:
    resp = stack.deps.sqs.receive_message(QueueUrl=queue or stack.send_queue, MaxNumberOfMessages=n,
                                          AttributeNames=["All"], VisibilityTimeout=0)
    return resp.get("Messages", [])


def event_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                         "attributes": m.get("Attributes", {}), "messageAttributes": {},
                         "md5OfBody": m.get("MD5OfBody", ""), "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:send", "awsRegion": "us-east-1"}
                        for m in messages]}


def invoke(handler: Any, messages: list[dict[str, Any]]) -> set[str]:
    result = handler.lambda_handler(event_of(messages), LambdaContext())
    return {f["itemIdentifier"] for f in result["batchItemFailures"]}


def ledger_of(message: dict[str, Any]) -> str:
    from retention.messaging.requests import SendRequest
    return SendRequest.model_validate_json(message["Body"]).ledger_id


@pytest.fixture
def s(stack: Any) -> Any:
    for uid in ("u1", "u2", "u3"):
        customer(stack, uid, email=f"{uid}@example.com")
    apply(stack)
    return stack


def test_a_throttled_record_comes_back_the_others_complete(s: Any, handler: Any) -> None:
    ok, throttled = request("u1"), request("u2")
    put(s, [ok.model_dump_json(), throttled.model_dump_json()])
    msgs = receive(s)
    ids = {ledger_of(m): m["MessageId"] for m in msgs}
    s.deps.sesv2 = FaultySES(s.deps.sesv2, "ok", "throttle", "throttle", "throttle")
    s.counter.reset()
    failed = invoke(handler, msgs)
    assert failed == {ids[throttled.ledger_id]}
    assert [m["to"] for m in emails()] == ["u1@example.com"]
    assert ledger(s, throttled)["status"] == "retry"
    # the throttled message's next delivery is pushed out (visibility back-off)
    assert s.counter.count("sqs", "ChangeMessageVisibility") == 1
    # SQS delivers it again once SES has calmed down: sent, once
    again = [m for m in msgs if m["MessageId"] == ids[throttled.ledger_id]]
    assert invoke(handler, again) == set()
    assert invoke(handler, again) == set()  # and a duplicate of that delivery does nothing
    assert sorted(m["to"] for m in emails()) == ["u1@example.com", "u2@example.com"]


def test_poison_records_fail_alone_and_do_not_crash_the_batch(s: Any, handler: Any) -> None:
    good = request("u1")
    put(s, ["this is not json", json.dumps({"customer_id": "u2"}), good.model_dump_json()])
    msgs = receive(s)
    poison = {m["MessageId"] for m in msgs if m["Body"] != good.model_dump_json()}
    assert invoke(handler, msgs) == poison
    assert [m["to"] for m in emails()] == ["u1@example.com"]


def test_a_batch_of_only_poison_reports_every_record_without_raising(s: Any, handler: Any) -> None:
    put(s, ["{", "[]"])
    msgs = receive(s)
    assert invoke(handler, msgs) == {m["MessageId"] for m in msgs}


def test_duplicate_deliveries_in_one_batch_send_once(s: Any, handler: Any) -> None:
    body = request("u3").model_dump_json()
    put(s, [body, body, body])
    msgs = receive(s)
    assert len(msgs) == 3
    assert invoke(handler, msgs) == set()
    assert [m["to"] for m in emails()] == ["u3@example.com"]


def test_timeout_after_ses_accepted_completes_the_record_and_never_resends(s: Any, handler: Any) -> None:
    req = request("u1")
    put(s, [req.model_dump_json()])
    msgs = receive(s)
    s.deps.sesv2 = FaultySES(s.deps.sesv2, "timeout_after")
    assert invoke(handler, msgs) == set()
    assert ledger(s, req)["status"] == "pending"
    assert invoke(handler, msgs) == set()  # redelivered anyway: still one email
    assert len(emails()) == 1


def test_rejected_and_skipped_records_complete(s: Any, handler: Any) -> None:
    customer(s, "nc", email="nc@example.com", consent=False)
    rejected, skipped = request("u1"), request("nc")
    put(s, [rejected.model_dump_json(), skipped.model_dump_json()])
    s.deps.sesv2 = FaultySES(s.deps.sesv2, "reject")
    assert invoke(handler, receive(s)) == set()
    assert ledger(s, rejected)["status"] == "rejected" and ledger(s, skipped)["reason"] == "no_consent"


def test_poison_message_lands_in_the_dlq_after_max_receive_count(s: Any, handler: Any) -> None:
    sqs = s.deps.sqs
    dlq = sqs.create_queue(QueueName="send-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    main = sqs.create_queue(QueueName="send-main", Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})})["QueueUrl"]
    good = request("u2")
    put(s, ["poison", good.model_dump_json()], queue=main)
    # what the Lambda event source mapping does: receive, invoke, delete what did not fail
    for _ in range(6):
        msgs = receive(s, queue=main)
        if not msgs:
            break
        failed = invoke(handler, msgs)
        for m in msgs:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=main, ReceiptHandle=m["ReceiptHandle"])
    parked = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in parked] == ["poison"]
    assert [m["to"] for m in emails()] == ["u2@example.com"]


class NoDelaySQS:
    """The moto SQS client, recording SendMessage calls and dropping their delay (moto waits in real time)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sent: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def send_message(self, **kwargs: Any) -> Any:
        self.sent.append(kwargs)
        return self.real.send_message(**{k: v for k, v in kwargs.items() if k != "DelaySeconds"})


def test_a_message_throttled_again_and_again_is_requeued_not_parked_in_the_dlq(s: Any, handler: Any) -> None:
    req = request("u1")
    put(s, [req.model_dump_json()])
    [msg] = receive(s)
    msg["Attributes"]["ApproximateReceiveCount"] = "3"  # its third delivery: two more and the DLQ would take it
    s.deps.sesv2 = FaultySES(s.deps.sesv2, "throttle", "throttle", "throttle")
    sqs = s.deps.sqs = NoDelaySQS(s.deps.sqs)
    assert invoke(handler, [msg]) == set()  # the record completes …
    assert [c["MessageBody"] for c in sqs.sent] == [msg["Body"]]  # … because a fresh copy is queued
    assert 0 < sqs.sent[0]["DelaySeconds"] <= 900
    assert ledger(s, req)["status"] == "retry"
    s.deps.sqs.real.delete_message(QueueUrl=s.send_queue, ReceiptHandle=msg["ReceiptHandle"])
    fresh = receive(s)
    assert len(fresh) == 1 and fresh[0]["MessageId"] != msg["MessageId"]
    assert invoke(handler, fresh) == set()
    assert [m["to"] for m in emails()] == ["u1@example.com"]

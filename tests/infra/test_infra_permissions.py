"""Least privilege: spot checks on what each function's role may do."""

from __future__ import annotations

import pytest

from infra.stack import ACCESS

NAMES = list(ACCESS)
READ = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"}
WRITE = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}


def actions_on(grants, target):
    return {action for action, t in grants if t == target}


@pytest.mark.parametrize("name", NAMES)
def test_no_service_wildcards_and_config_readable(synth, name):
    grants = synth.grants(name)
    assert not any(action.endswith(":*") or action == "*" for action, _ in grants)
    assert actions_on(grants, "table:config") >= READ
    # The only '*' resources: X-Ray (no resource-level permissions) and SMS for send_message.
    star = actions_on(grants, "*")
    allowed = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    if name == "send_message":
        allowed |= {"sns:Publish"}
    assert star == allowed
    assert actions_on(grants, "log-group") == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert not any(
        target.startswith("table:") and target.endswith("]") and not target.startswith("table:config[")
        for _, target in grants
    )


@pytest.mark.parametrize("name", [n for n in NAMES if n != "admin_api"])
def test_config_writes_limited_to_secrets_and_watermark(synth, name):
    grants = synth.grants(name)
    assert not actions_on(grants, "table:config") & WRITE  # no unconditional write: rules stay admin-only
    # the feedback function also keeps the send brake's state and audits its pauses
    allowed = {"evaluate_triggers": "table:config[SECRET,TICK]",
               "feedback": "table:config[AUDIT,SECRET,SENDING]"}.get(name, "table:config[SECRET]")
    conditional = {(a, t) for a, t in grants if t.startswith("table:config[")}
    assert conditional == {("dynamodb:PutItem", allowed), ("dynamodb:UpdateItem", allowed)}


def test_admin_api_manages_config(synth):
    grants = synth.grants("admin_api")
    assert actions_on(grants, "table:config") >= READ | WRITE | {"dynamodb:Scan"}


def test_track_event(synth):
    grants = synth.grants("track_event")
    for table in ("profiles", "events", "idempotency"):
        assert actions_on(grants, f"table:{table}") >= (READ | WRITE)
    assert not actions_on(grants, "table:config") & WRITE
    assert "dynamodb:PutItem" in actions_on(grants, "table:due")
    assert "sqs:SendMessage" in actions_on(grants, "queue:send")
    assert not any(action.startswith(("ses:", "sns:")) for action, _ in grants)
    assert not any(action == "dynamodb:Scan" for action, _ in grants)
    assert not actions_on(grants, "queue:recompute")


def test_send_message(synth):
    grants = synth.grants("send_message")
    assert "dynamodb:Scan" not in actions_on(grants, "table:profiles")
    assert not any(action == "dynamodb:Scan" for action, _ in grants)
    assert {"ses:SendRawEmail", "ses:SendEmail"} <= actions_on(grants, "ses:identity")
    assert {"ses:SendRawEmail", "ses:SendEmail"} <= actions_on(grants, "ses:configuration-set")
    assert "sns:Publish" in actions_on(grants, "*")
    assert actions_on(grants, "table:messages") >= (READ | WRITE)
    assert "dynamodb:PutItem" in actions_on(grants, "table:due")  # quiet-hours deferral
    # Consumes the send queue (event source); feeds it only with the fresh copy of a message throttled
    # too often (retention.messaging.delivery), never the recompute queue.
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= actions_on(grants, "queue:send")
    assert "sqs:SendMessage" in actions_on(grants, "queue:send")
    assert not actions_on(grants, "queue:recompute")
    assert not actions_on(grants, "table:idempotency")


def test_only_send_message_can_send_email_or_sms(synth):
    for name in NAMES:
        if name != "send_message":
            assert not any(action.startswith(("ses:", "sns:Publish")) for action, _ in synth.grants(name)), name


def test_scan_only_where_a_full_scan_is_the_job(synth):
    scanners = {name for name in NAMES if any(a == "dynamodb:Scan" for a, _ in synth.grants(name))}
    assert scanners == {"admin_api", "recompute"}


def test_gsi_query_is_scoped_to_by_customer(synth):
    grants = synth.grants("admin_api")
    assert "dynamodb:Query" in actions_on(grants, "table:messages/index")
    for policy in synth.resources("AWS::IAM::Policy").values():
        assert "/index/*" not in str(policy)


def test_queue_senders(synth):
    senders = {name for name in NAMES if ("sqs:SendMessage", "queue:send") in synth.grants(name)}
    assert senders == {"track_event", "evaluate_triggers", "send_message", "nps_webhook", "preferences", "admin_api",
                       "recompute"}
    recompute_senders = {name for name in NAMES if ("sqs:SendMessage", "queue:recompute") in synth.grants(name)}
    assert recompute_senders == {"evaluate_triggers", "admin_api", "recompute"}
    assert not any(t == "queue:send" and a == "sqs:SendMessage" for a, t in synth.grants("feedback"))
    for name in NAMES:  # a dead-letter queue is only watched: its depth, by the admin API
        dlq = {(a, t) for a, t in synth.grants(name) if t.endswith("_dlq")}
        expected = {("sqs:GetQueueAttributes", f"queue:{q}_dlq") for q in ("send", "recompute", "feedback")}
        assert dlq == (expected if name == "admin_api" else set()), name


def test_evaluate_triggers_reads_and_consumes_due_items(synth):
    grants = synth.grants("evaluate_triggers")
    assert {"dynamodb:Query", "dynamodb:DeleteItem"} <= actions_on(grants, "table:due")
    assert "dynamodb:Scan" not in actions_on(grants, "table:due")  # a tick reads only the due buckets


@pytest.mark.parametrize("name", ["track_event", "nps_webhook", "preferences"])
def test_ingestion_paths(synth, name):
    grants = synth.grants(name)
    for table in ("profiles", "events", "idempotency", "messages", "products"):
        assert actions_on(grants, f"table:{table}") >= READ | WRITE, table
    assert "dynamodb:PutItem" in actions_on(grants, "table:due")
    assert "sqs:SendMessage" in actions_on(grants, "queue:send")


def test_products_table_for_the_sender_and_the_admin_api_only_besides_ingestion(synth):
    assert actions_on(synth.grants("send_message"), "table:products") >= READ | WRITE  # coupons are issued
    assert actions_on(synth.grants("admin_api"), "table:products") >= READ | WRITE
    for name in ("evaluate_triggers", "feedback", "recompute"):
        assert not actions_on(synth.grants(name), "table:products"), name
    assert "dynamodb:Scan" not in actions_on(synth.grants("admin_api"), "table:products")

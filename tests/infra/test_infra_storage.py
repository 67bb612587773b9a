"""DynamoDB tables and SQS queues."""

from __future__ import annotations

from aws_cdk.assertions import Match

from infra.constructs.storage import TABLE_ROLES

KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]


def test_six_tables_with_pk_sk_on_demand_pitr_sse_ttl(synth):
    assert len(synth.resources("AWS::DynamoDB::Table")) == len(TABLE_ROLES) == 7
    for role in TABLE_ROLES:
        _, table = synth.by_role(f"table:{role}")
        props = table["Properties"]
        assert props["KeySchema"] == KEYS, role
        assert {"AttributeName": "pk", "AttributeType": "S"} in props["AttributeDefinitions"]
        assert {"AttributeName": "sk", "AttributeType": "S"} in props["AttributeDefinitions"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        # PITR everywhere but on the raw events and the messageId markers (expiring items, no customer data
        # to restore; PITR would double their storage bill)
        assert props["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": role not in ("events", "idempotency")}, role
        assert props["SSESpecification"] == {"SSEEnabled": True}  # AWS-managed KMS key, no CMK
        assert "KMSMasterKeyId" not in props["SSESpecification"]
        assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
        assert "TableName" not in props  # CloudFormation names them: several stages per account


def test_messages_gsi_by_customer(synth):
    _, messages = synth.by_role("table:messages")
    gsis = messages["Properties"]["GlobalSecondaryIndexes"]
    assert gsis == [
        {
            "IndexName": "by_customer",
            "KeySchema": [
                {"AttributeName": "customer_id", "KeyType": "HASH"},
                {"AttributeName": "created_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    ]
    for role in set(TABLE_ROLES) - {"messages"}:
        assert "GlobalSecondaryIndexes" not in synth.by_role(f"table:{role}")[1]["Properties"]


def test_tables_destroyed_outside_prod_retained_in_prod(synth, variant):
    for role in TABLE_ROLES:
        assert synth.by_role(f"table:{role}")[1]["DeletionPolicy"] == "Delete"
        assert variant.by_role(f"table:{role}")[1]["DeletionPolicy"] == "Retain"
        assert variant.by_role(f"table:{role}")[1]["UpdateReplacePolicy"] == "Retain"


def test_queues_with_dlq_visibility_sse(synth):
    queues = synth.resources("AWS::SQS::Queue")
    assert len(queues) == 5  # send + DLQ, recompute + DLQ, the SES feedback subscription's DLQ
    _, feedback_dlq = synth.by_role("queue:feedback_dlq")
    assert feedback_dlq["Properties"]["SqsManagedSseEnabled"] is True
    for role, visibility in (("send", 180), ("recompute", 1800)):
        _, queue = synth.by_role(f"queue:{role}")
        dlq_lid, dlq = synth.by_role(f"queue:{role}_dlq")
        props = queue["Properties"]
        assert props["VisibilityTimeout"] == visibility
        assert props["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_lid, "Arn"]}, "maxReceiveCount": 5}
        assert props["SqsManagedSseEnabled"] is True
        assert dlq["Properties"]["SqsManagedSseEnabled"] is True
        assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    # Visibility at least 6x the consumer's timeout (AWS guidance for Lambda event sources).
    assert 6 * synth.function("send_message")["Properties"]["Timeout"] <= 180
    assert 6 * synth.function("recompute")["Properties"]["Timeout"] <= 1800


def test_every_queue_denies_non_tls(synth):
    policies = synth.resources("AWS::SQS::QueuePolicy").values()
    secured = set()
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}:
                secured.update(q["Ref"] for q in policy["Properties"]["Queues"])
    assert secured == set(synth.resources("AWS::SQS::Queue"))


def test_outputs(synth):
    outputs = synth.json["Outputs"]
    expected = {
        "ApiUrl",
        "SendQueueUrl",
        "SendDlqUrl",
        "RecomputeQueueUrl",
        "RecomputeDlqUrl",
        *(f"{role.capitalize()}TableName" for role in TABLE_ROLES),
    }
    assert expected <= set(outputs)
    synth.template.has_output("ProfilesTableName", {"Value": {"Ref": synth.model.roles["table:profiles"]}})
    synth.template.has_output("ApiUrl", {"Value": Match.object_like({"Fn::Join": Match.any_value()})})

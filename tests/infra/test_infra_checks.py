"""cdk-nag (AwsSolutions), cfn-lint, and a deployment of the template into moto."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from cdk_nag import AwsSolutionsChecks
from moto import mock_aws

from infra.local_deploy import delete_event_source_mappings, deploy_to_moto, patch_moto_gaps

REGION = "eu-west-1"


def test_cdk_nag_aws_solutions_has_no_unacknowledged_finding(synth):
    report = AwsSolutionsChecks().validate_scope(synth.stack)
    findings = [
        f"{v.rule_name} ({v.severity}): {v.description} at "
        f"{[r.resource_logical_id or r.template_path for r in v.violating_resources]}"
        for v in report.violations
    ]
    assert report.success, "\n".join(findings)
    assert findings == []


def _cfn_lint() -> str | None:
    local = Path(sys.executable).parent / "cfn-lint"
    return str(local) if local.exists() else shutil.which("cfn-lint")


def test_cfn_lint_passes(synth, variant):
    cfn_lint = _cfn_lint()
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed")
    files = [str(synth.template_path), str(variant.template_path)]
    proc = subprocess.run([cfn_lint, *files], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # no error, no warning


def test_template_deploys_into_moto(synth):
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        stack = deploy_to_moto(synth.template_path, synth.assets_path, cfn, s3)

        status = cfn.describe_stacks(StackName=stack.stack_name)["Stacks"][0]["StackStatus"]
        assert status == "CREATE_COMPLETE"
        ddb = boto3.client("dynamodb", region_name=REGION)
        assert set(stack.tables) == {"profiles", "events", "config", "due", "messages", "idempotency", "products"}
        assert set(ddb.list_tables()["TableNames"]) == set(stack.tables.values())
        for name in stack.tables.values():
            keys = ddb.describe_table(TableName=name)["Table"]["KeySchema"]
            assert [k["AttributeName"] for k in keys] == ["pk", "sk"]
        gsis = ddb.describe_table(TableName=stack.tables["messages"])["Table"]["GlobalSecondaryIndexes"]
        assert [g["IndexName"] for g in gsis] == ["by_customer"]

        sqs = boto3.client("sqs", region_name=REGION)
        assert set(stack.queues) == {"send", "send_dlq", "recompute", "recompute_dlq", "feedback_dlq"}
        attrs = sqs.get_queue_attributes(QueueUrl=stack.queues["send"], AttributeNames=["All"])["Attributes"]
        assert attrs["VisibilityTimeout"] == "180"
        assert '"maxReceiveCount": 5' in attrs["RedrivePolicy"] or '"maxReceiveCount":5' in attrs["RedrivePolicy"]
        assert set(stack.topics) == {"ses_events", "alarms"}

        # Function environments resolved from the template match what moto stored.
        lam = boto3.client("lambda", region_name=REGION)
        assert set(stack.functions) == {
            "track_event",
            "evaluate_triggers",
            "send_message",
            "nps_webhook",
            "feedback",
            "preferences",
            "admin_api",
            "recompute",
        }
        for info in stack.functions.values():
            config = lam.get_function_configuration(FunctionName=info.physical_name)
            assert config["Environment"]["Variables"] == info.environment
            assert config["Handler"] == info.handler == "handler.lambda_handler"
            assert info.handler_dir == Path(__file__).resolve().parents[2] / "functions" / info.name
        env = stack.functions["track_event"].environment
        assert env["PROFILES_TABLE"] == stack.tables["profiles"]
        assert env["SEND_QUEUE_URL"] == stack.queues["send"]
        assert env["PUBLIC_BASE_URL"] == f"https://{stack.rest_api_id}.execute-api.{REGION}.amazonaws.com/dev"
        assert stack.ses_configuration_set == "retention-dev"
        assert stack.outputs["ProfilesTableName"] == stack.tables["profiles"]

        # Routes: the template's API resources exist in moto's API Gateway.
        apigw = boto3.client("apigateway", region_name=REGION)
        paths = {r["path"] for r in apigw.get_resources(restApiId=stack.rest_api_id, limit=500)["items"]}
        assert {route.path for route in stack.routes} <= paths
        assert len(stack.routes) == 20  # 14 + the console (GET /console, ANY /console/{proxy+}) + /survey, /optin
        assert [tuple(s) for s in stack.event_sources] == [("send", "send_message", 10), ("recompute", "recompute", 1)]
        assert "AWS::ApiGateway::Stage" in stack.skipped_types

        assert delete_event_source_mappings(lam, stack) == 2
        patch_moto_gaps(stack, ddb)
        ttl = ddb.describe_time_to_live(TableName=stack.tables["due"])["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "ttl"

"""Lambda functions, the layer, their logs, environment and triggers."""

from __future__ import annotations

import json

import pytest

from infra.constructs.functions import FUNCTION_SPECS
from infra.layer import PYTHON_VERSION

NAMES = [
    "track_event",
    "evaluate_triggers",
    "send_message",
    "nps_webhook",
    "feedback",
    "preferences",
    "admin_api",
    "recompute",
]
TIMEOUTS = {
    "track_event": 10,
    "nps_webhook": 10,
    "preferences": 10,
    "admin_api": 10,
    "send_message": 30,
    "evaluate_triggers": 60,
    "recompute": 300,
}
ENV_KEYS = {
    "PROFILES_TABLE",
    "EVENTS_TABLE",
    "CONFIG_TABLE",
    "DUE_TABLE",
    "MESSAGES_TABLE",
    "IDEMPOTENCY_TABLE",
    "PRODUCTS_TABLE",
    "SEND_QUEUE_URL",
    "RECOMPUTE_QUEUE_URL",
    "SENDER_EMAIL",
    "PUBLIC_BASE_URL",
    "SES_CONFIGURATION_SET",
    "SMS_SENDER_ID",
    "STAGE",
    "DUE_SHARDS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "PYDANTIC_DISABLE_PLUGINS",
}
DLQ_KEYS = {"SEND_DLQ_URL", "RECOMPUTE_DLQ_URL", "FEEDBACK_DLQ_URL"}


def test_all_functions_present(synth):
    assert sorted(synth.model.functions) == sorted(NAMES) == sorted(s.name for s in FUNCTION_SPECS)
    assert len(synth.resources("AWS::Lambda::Function")) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_function_settings(synth, name):
    props = synth.function(name)["Properties"]
    assert props["Runtime"] == f"python{PYTHON_VERSION}"
    assert float(PYTHON_VERSION) >= 3.12
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["Handler"] == "handler.lambda_handler"
    assert props["MemorySize"] == 512
    if name in TIMEOUTS:
        assert props["Timeout"] == TIMEOUTS[name]
    layer_lid, _ = synth.by_role("layer:common")
    assert props["Layers"] == [{"Ref": layer_lid}]
    meta = synth.function(name)["Metadata"]
    assert meta["retention:handler_dir"] == f"functions/{name}"


@pytest.mark.parametrize("name", NAMES)
def test_function_environment(synth, name):
    env = synth.function(name)["Properties"]["Environment"]["Variables"]
    # only the admin API watches the dead-letter queues (their depth on the console's overview)
    assert set(env) == ENV_KEYS | (DLQ_KEYS if name == "admin_api" else set())
    if name == "admin_api":
        for role in ("send", "recompute", "feedback"):
            assert env[f"{role.upper()}_DLQ_URL"] == {"Ref": synth.model.roles[f"queue:{role}_dlq"]}
    for role in ("profiles", "events", "config", "due", "messages", "idempotency", "products"):
        assert env[f"{role.upper()}_TABLE"] == {"Ref": synth.model.roles[f"table:{role}"]}
    assert env["SEND_QUEUE_URL"] == {"Ref": synth.model.roles["queue:send"]}
    assert env["RECOMPUTE_QUEUE_URL"] == {"Ref": synth.model.roles["queue:recompute"]}
    assert env["SENDER_EMAIL"] == "Shop <news@example.com>"
    assert env["SES_CONFIGURATION_SET"] == "retention-dev"
    assert env["SMS_SENDER_ID"] == "Shop"
    assert env["STAGE"] == "dev"
    assert env["DUE_SHARDS"] == "4"
    assert env["POWERTOOLS_SERVICE_NAME"] == f"retention-{name}"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Retention"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert env["PYDANTIC_DISABLE_PLUGINS"] == "__all__"  # no entry-point scan at the first model build
    # Built from the RestApi id (not the Stage) to avoid a dependency cycle.
    url = json.dumps(env["PUBLIC_BASE_URL"])
    assert synth.model.roles["api"] in url and ".execute-api." in url and '"/dev"' in url


def test_public_base_url_from_context(variant):
    for name in NAMES:
        assert (
            variant.function(name)["Properties"]["Environment"]["Variables"]["PUBLIC_BASE_URL"]
            == "https://shop.example.com"
        )


def test_explicit_log_groups_no_log_retention_custom_resource(synth):
    log_groups = synth.resources("AWS::Logs::LogGroup")
    for name in NAMES:
        ref = synth.function(name)["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert log_groups[ref]["Properties"]["RetentionInDays"] == 30
    types = {r["Type"] for r in synth.json["Resources"].values()}
    assert "Custom::LogRetention" not in types
    assert not any(t.startswith("Custom::") or t == "AWS::CloudFormation::CustomResource" for t in types)


def test_layer(synth):
    _, layer = synth.by_role("layer:common")
    props = layer["Properties"]
    assert props["CompatibleRuntimes"] == [f"python{PYTHON_VERSION}"]
    assert props["CompatibleArchitectures"] == ["arm64"]
    assert len(synth.resources("AWS::Lambda::LayerVersion")) == 1
    # The asset holds python/retention (the library) next to the third-party packages.
    assets = json.loads(synth.assets_path.read_text())["files"]
    key = props["Content"]["S3Key"].removesuffix(".zip")
    staged = synth.assets_path.parent / assets[key]["source"]["path"]
    assert (staged / "python" / "retention" / "__init__.py").is_file()
    assert not (staged / "python" / "boto3").exists() and not (staged / "python" / "botocore").exists()


def test_no_managed_policies_on_function_roles(synth):
    for name in NAMES:
        role_lid = synth.function(name)["Properties"]["Role"]["Fn::GetAtt"][0]
        role = synth.json["Resources"][role_lid]["Properties"]
        assert "ManagedPolicyArns" not in role
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}


def test_sqs_consumers(synth, variant):
    mappings = list(synth.resources("AWS::Lambda::EventSourceMapping").values())
    assert len(mappings) == 2
    by_fn = {m["Properties"]["FunctionName"]["Ref"]: m["Properties"] for m in mappings}
    send = by_fn[synth.model.functions["send_message"].logical_id]
    assert send["EventSourceArn"] == {"Fn::GetAtt": [synth.model.roles["queue:send"], "Arn"]}
    assert send["BatchSize"] == 10
    assert send["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert send["ScalingConfig"] == {"MaximumConcurrency": 50}
    recompute = by_fn[synth.model.functions["recompute"].logical_id]
    assert recompute["EventSourceArn"] == {"Fn::GetAtt": [synth.model.roles["queue:recompute"], "Arn"]}
    assert recompute["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    variant_send = next(
        m["Properties"]
        for m in variant.resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["BatchSize"] == 10
    )
    assert variant_send["ScalingConfig"] == {"MaximumConcurrency": 20}


def test_schedules(synth):
    rules = synth.resources("AWS::Events::Rule")
    assert len(rules) == 2
    tick = synth.by_role("schedule:tick")[1]["Properties"]
    assert tick["ScheduleExpression"] == "rate(1 minute)"
    assert tick["State"] == "ENABLED"
    assert tick["Targets"][0]["Arn"] == {"Fn::GetAtt": [synth.model.functions["evaluate_triggers"].logical_id, "Arn"]}
    assert "Input" not in tick["Targets"][0]
    nightly = synth.by_role("schedule:nightly_recompute")[1]["Properties"]
    assert nightly["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert nightly["Targets"][0]["Arn"] == {"Fn::GetAtt": [synth.model.functions["recompute"].logical_id, "Arn"]}
    assert json.loads(nightly["Targets"][0]["Input"]) == {"action": "full_recompute", "reason": "nightly"}
    # EventBridge may invoke the targets.
    permissions = [
        p["Properties"]
        for p in synth.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert len(permissions) == 2


def test_read_stack_model(synth):
    assert synth.model.schedules == [
        ("rate(1 minute)", "evaluate_triggers", None),
        ("cron(0 2 * * ? *)", "recompute", {"action": "full_recompute", "reason": "nightly"}),
    ]
    assert sorted(synth.model.event_sources) == [("recompute", "recompute", 1), ("send", "send_message", 10)]
    assert synth.model.subscriptions == [("ses_events", "feedback")]


def test_every_spec_has_its_handler_and_a_missing_one_is_a_synth_error():
    from infra.constructs.functions import FunctionSpec, code_dir

    assert [code_dir(spec).name for spec in FUNCTION_SPECS] == [spec.name for spec in FUNCTION_SPECS]
    with pytest.raises(FileNotFoundError, match=r"functions/not_written/handler\.py is missing"):
        code_dir(FunctionSpec("not_written", 10, 512, "a function nobody wrote"))

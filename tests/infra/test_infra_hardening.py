"""Stack hardening (issue 15): reserved concurrency for ingestion, per-method throttling, the opt-in WAF
rate rule, no sns:Publish to topics, a DLQ and alarms for what could otherwise be lost silently."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.config import StackConfig


def test_ingestion_has_reserved_concurrency(synth: Any, variant: Any) -> None:
    assert synth.function("track_event")["Properties"]["ReservedConcurrentExecutions"] == 100
    assert "ReservedConcurrentExecutions" not in variant.function("track_event")["Properties"]  # 0 = off
    assert "ReservedConcurrentExecutions" not in synth.function("send_message")["Properties"]


def test_ingestion_routes_are_throttled_per_method(synth: Any) -> None:
    (stage,) = synth.resources("AWS::ApiGateway::Stage").values()
    settings = {(m["ResourcePath"], m["HttpMethod"]): m for m in stage["Properties"]["MethodSettings"]}
    batch = settings[("/~1v1~1batch", "POST")]
    assert batch["ThrottlingRateLimit"] == 500 and batch["ThrottlingBurstLimit"] == 1000
    assert settings[("/~1v1~1track", "POST")]["ThrottlingRateLimit"] == 200


def test_waf_rate_rule_is_opt_in(synth: Any, variant: Any) -> None:
    assert not synth.resources("AWS::WAFv2::WebACL")
    (acl,) = variant.resources("AWS::WAFv2::WebACL").values()
    rule = acl["Properties"]["Rules"][0]
    assert rule["Statement"]["RateBasedStatement"] == {"Limit": 2000, "AggregateKeyType": "IP"}
    assert rule["Action"] == {"Block": {}}
    assert len(variant.resources("AWS::WAFv2::WebACLAssociation")) == 1


def test_the_sender_cannot_publish_to_topics(synth: Any) -> None:
    role_lid = synth.function("send_message")["Properties"]["Role"]["Fn::GetAtt"][0]
    denies = [s for p in synth.resources("AWS::IAM::Policy").values() if {"Ref": role_lid} in p["Properties"]["Roles"]
              for s in p["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert len(denies) == 1 and denies[0]["Action"] == "sns:Publish"
    assert ":sns:*:*:*" in json.dumps(denies[0]["Resource"])


def test_ses_feedback_subscription_has_a_dlq_and_an_alarm(synth: Any) -> None:
    (sub,) = [s for s in synth.resources("AWS::SNS::Subscription").values() if s["Properties"]["Protocol"] == "lambda"]
    dlq_lid, _ = synth.by_role("queue:feedback_dlq")
    assert sub["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_lid, "Arn"]}
    alarms = synth.resources("AWS::CloudWatch::Alarm").values()
    assert any(json.dumps(a["Properties"].get("Dimensions", "")).count(dlq_lid) for a in alarms)
    assert any(a["Properties"].get("MetricName") == "PendingSendsUnknown" for a in alarms)


def test_bad_values_are_refused() -> None:
    class Node:
        def __init__(self, **ctx: Any) -> None:
            self.ctx = ctx

        def try_get_context(self, key: str) -> Any:
            return self.ctx.get(key)

    with pytest.raises(ValueError, match="wafRateLimit"):
        StackConfig.from_node(Node(wafRateLimit=5))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ingestConcurrency"):
        StackConfig.from_node(Node(ingestConcurrency=-1))  # type: ignore[arg-type]

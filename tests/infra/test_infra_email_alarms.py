"""SES configuration set and events topic, SNS topics, CloudWatch alarms."""

from __future__ import annotations

from infra.constructs.functions import FUNCTION_SPECS

SES_EVENTS = ["send", "delivery", "bounce", "complaint", "reject", "open", "click", "renderingFailure", "deliveryDelay"]


def test_configuration_set_and_event_destination(synth):
    config_set_lid, config_set = synth.by_role("ses:configuration_set")
    assert config_set["Properties"]["Name"] == "retention-dev"
    (destination,) = synth.resources("AWS::SES::ConfigurationSetEventDestination").values()
    props = destination["Properties"]
    assert props["ConfigurationSetName"] == {"Ref": config_set_lid}
    assert sorted(props["EventDestination"]["MatchingEventTypes"]) == sorted(SES_EVENTS)
    assert props["EventDestination"]["Enabled"] is True
    topic_lid, _ = synth.by_role("topic:ses_events")
    assert props["EventDestination"]["SnsDestination"] == {"TopicARN": {"Ref": topic_lid}}


def test_feedback_subscribed_to_ses_events(synth):
    topic_lid, _ = synth.by_role("topic:ses_events")
    subscriptions = [
        s["Properties"]
        for s in synth.resources("AWS::SNS::Subscription").values()
        if s["Properties"]["Protocol"] == "lambda"
    ]
    dlq_lid, _ = synth.by_role("queue:feedback_dlq")
    assert subscriptions == [
        {
            "Protocol": "lambda",
            "TopicArn": {"Ref": topic_lid},
            "Endpoint": {"Fn::GetAtt": [synth.model.functions["feedback"].logical_id, "Arn"]},
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_lid, "Arn"]}},
        }
    ]


def test_topics_enforce_tls(synth):
    topics = set(synth.resources("AWS::SNS::Topic"))
    assert topics == {synth.model.roles["topic:ses_events"], synth.model.roles["topic:alarms"]}
    secured = set()
    for policy in synth.resources("AWS::SNS::TopicPolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                secured.update(t["Ref"] for t in policy["Properties"]["Topics"])
    assert secured == topics


def test_no_identity_by_default_identity_on_request(synth, variant):
    assert not synth.resources("AWS::SES::EmailIdentity")
    assert "DkimName1" not in synth.json["Outputs"]
    (identity,) = variant.resources("AWS::SES::EmailIdentity").values()
    assert identity["Properties"]["EmailIdentity"] == "example.com"
    assert identity["Properties"]["ConfigurationSetAttributes"] == {
        "ConfigurationSetName": {"Ref": variant.model.roles["ses:configuration_set"]}
    }
    assert identity["Properties"]["DkimAttributes"] == {"SigningEnabled": True}
    assert identity["Properties"]["MailFromAttributes"] == {"MailFromDomain": "bounce.example.com",
                                                            "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"}
    outputs = variant.json["Outputs"]
    lid = variant.model.roles["ses:identity"]
    assert outputs["DkimName1"]["Value"] == {"Fn::GetAtt": [lid, "DkimDNSTokenName1"]}
    assert outputs["DkimValue3"]["Value"] == {"Fn::GetAtt": [lid, "DkimDNSTokenValue3"]}
    assert outputs["MailFromDomain"]["Value"] == "bounce.example.com"


def test_sender_domain_alone_creates_the_identity():
    from infra.config import DEFAULTS, StackConfig

    class Node:
        def __init__(self, ctx):
            self.ctx = ctx

        def try_get_context(self, key):
            return self.ctx.get(key)

    assert DEFAULTS["createIdentity"] == "auto"
    on = StackConfig.from_node(Node({"senderDomain": "Shop.Example", "createIdentity": "auto"}))
    assert on.create_identity and on.identity_domain == "shop.example"
    assert not StackConfig.from_node(Node({"createIdentity": "auto"})).create_identity
    assert not StackConfig.from_node(Node({"senderDomain": "shop.example", "createIdentity": "false"})).create_identity


def test_outputs_for_bootstrap(synth):
    from cli.bootstrap import OUTPUT_ENV
    outputs = synth.json["Outputs"]
    assert {"ApiUrl", *OUTPUT_ENV} <= set(outputs)


def test_alarms(synth):
    every = [a["Properties"] for a in synth.resources("AWS::CloudWatch::Alarm").values()]
    topic = {"Ref": synth.model.roles["topic:alarms"]}
    # three DLQs (send, recompute, SES feedback), the sweeper's unknown sends, one per function, an empty coupon
    # pool, the brake, and SES's two reputation metrics
    assert len(every) == 4 + len(FUNCTION_SPECS) + 1 + 1 + 2
    reputation = {a["MetricName"]: a for a in every if a.get("Namespace") == "AWS/SES"}
    assert {k: (a["Threshold"], a["ComparisonOperator"], a["AlarmActions"]) for k, a in reputation.items()} == {
        "Reputation.BounceRate": (0.025, "GreaterThanOrEqualToThreshold", [topic]),
        "Reputation.ComplaintRate": (0.0005, "GreaterThanOrEqualToThreshold", [topic])}
    (paused,) = [a for a in every if a["MetricName"] == "MarketingPaused"]
    assert paused["Namespace"] == "Retention" and paused["Dimensions"] == [{"Name": "service",
                                                                            "Value": "retention-feedback"}]
    alarms = [a for a in every if a.get("Namespace") != "AWS/SES"]
    for alarm in alarms:
        assert alarm["AlarmActions"] == [topic]
        assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["Period"] == 300
        assert alarm["TreatMissingData"] == "notBreaching"
    dlq_alarms = {
        a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in alarms
        if a["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }
    assert dlq_alarms == {synth.model.roles["queue:send_dlq"], synth.model.roles["queue:recompute_dlq"],
                          synth.model.roles["queue:feedback_dlq"]}
    error_alarms = {a["Dimensions"][0]["Value"]["Ref"] for a in alarms if a["MetricName"] == "Errors"}
    assert error_alarms == {info.logical_id for info in synth.model.functions.values()}
    assert all(a["Statistic"] == "Sum" for a in alarms if a["MetricName"] == "Errors")
    (coupon,) = [a for a in alarms if a["MetricName"] == "CouponPoolEmpty"]
    assert coupon["Namespace"] == "Retention" and coupon["Statistic"] == "Sum"
    assert coupon["Dimensions"] == [{"Name": "service", "Value": "retention-send_message"}]


def test_alarm_email_subscription_only_when_configured(synth, variant):
    def emails(s):
        return [
            x["Properties"]
            for x in s.resources("AWS::SNS::Subscription").values()
            if x["Properties"]["Protocol"] == "email"
        ]

    assert emails(synth) == []
    assert emails(variant) == [
        {"Protocol": "email", "Endpoint": "ops@example.com", "TopicArn": {"Ref": variant.model.roles["topic:alarms"]}}
    ]


def test_local_synthesizer_has_no_bootstrap_rule(synth, variant):
    assert "BootstrapVersion" in synth.json.get("Parameters", {})
    assert "BootstrapVersion" not in variant.json.get("Parameters", {})
    assert "Rules" not in variant.json
    assert variant.stack.stack_name == "Retention-prod"

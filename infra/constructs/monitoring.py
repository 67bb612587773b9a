"""CloudWatch alarms to an SNS topic: any DLQ message, any function error, a send skipped for an empty
coupon pool, the send brake, the SES account's reputation."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.common import set_role

PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alarm_email: str = "") -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "AlarmTopic", display_name="Retention alarms", enforce_ssl=True)
        set_role(self.topic, "topic:alarms")
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self._action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, description: str) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        self.alarms.append(alarm)
        return alarm

    def dlq_not_empty(self, role: str, dlq: sqs.IQueue) -> cloudwatch.Alarm:
        cid = "".join(part.capitalize() for part in role.split("_"))
        metric = dlq.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
        return self._alarm(f"{cid}DlqNotEmpty", metric, f"The {role} dead-letter queue has messages")

    def marketing_paused(self, *, service: str) -> cloudwatch.Alarm:
        """The send brake paused marketing email (the feedback function's `MarketingPaused` metric)."""
        metric = cloudwatch.Metric(namespace="Retention", metric_name="MarketingPaused",
                                   dimensions_map={"service": service}, period=PERIOD, statistic="Sum")
        return self._alarm("MarketingPaused", metric,
                           "The send brake paused marketing email (bounce or complaint rate above half of SES's "
                           "review threshold): see GET /admin/sending, then retention sending resume")

    def ses_reputation(self, configuration_set: str) -> list[cloudwatch.Alarm]:
        """The account's SES reputation metrics at half of SES's review thresholds (5 % bounces, 0.1 %
        complaints): the account-wide view, including mail the brake does not see."""
        out = []
        for cid, name, threshold in (("SesBounceRate", "Reputation.BounceRate", 0.025),
                                     ("SesComplaintRate", "Reputation.ComplaintRate", 0.0005)):
            alarm = cloudwatch.Alarm(
                self, cid,
                metric=cloudwatch.Metric(namespace="AWS/SES", metric_name=name, period=Duration.hours(1),
                                         statistic="Maximum"),
                threshold=threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"SES {name} at half of the review threshold ({configuration_set} sends)",
            )
            alarm.add_alarm_action(self._action)
            self.alarms.append(alarm)
            out.append(alarm)
        return out

    def function_errors(self, name: str, function: lambda_.IFunction) -> cloudwatch.Alarm:
        cid = "".join(part.capitalize() for part in name.split("_"))
        metric = function.metric_errors(period=PERIOD, statistic="Sum")
        return self._alarm(f"{cid}Errors", metric, f"The {name} function reported errors")

    def pending_sends_unknown(self) -> cloudwatch.Alarm:
        """The tick's sweeper found send claims still pending past the sender's timeout: a message may or
        may not have gone out (retention.messaging.sender.reconcile_pending)."""
        metric = cloudwatch.Metric(namespace="Retention", metric_name="PendingSendsUnknown",
                                   dimensions_map={"service": "retention-evaluate_triggers"},
                                   period=PERIOD, statistic="Sum")
        return self._alarm("PendingSendsUnknown", metric,
                           "Send claims were still pending at the sweep: outcome unknown, check the provider")

    def coupon_pool_empty(self, service: str) -> cloudwatch.Alarm:
        """send_message emits `CouponPoolEmpty` (Powertools metrics, namespace Retention, dimension service)
        when a step's coupon pool has no code left and the send is skipped."""
        metric = cloudwatch.Metric(namespace="Retention", metric_name="CouponPoolEmpty",
                                   dimensions_map={"service": service}, period=PERIOD, statistic="Sum")
        return self._alarm("CouponPoolEmpty", metric,
                           "A send was skipped because its coupon pool is empty: upload codes "
                           "(retention coupons upload)")

"""The retention engine stack: storage, queues, functions, API, schedules, email, alarms.

Least privilege: each function's role gets only the DynamoDB actions listed for it in ACCESS
(never `dynamodb:*`, and Scan only where a full scan is the job), sends only to the queues in
QUEUE_SENDERS, and only send_message may call SES / SNS.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_xray as xray
from constructs import Construct

from infra.config import StackConfig
from infra.constructs.api import Api
from infra.constructs.common import acknowledge, set_role
from infra.constructs.email import Email
from infra.constructs.functions import FUNCTION_SPECS, SPECS_BY_NAME, Functions
from infra.constructs.monitoring import Monitoring
from infra.constructs.queues import WorkQueue
from infra.constructs.storage import TABLE_ROLES, Storage

DUE_SHARDS = 4
SEND_BATCH_SIZE = 10
RECOMPUTE_BATCH_SIZE = 1  # one parallel-scan segment per invocation (up to 300 s of work)
TICK_SCHEDULE = "rate(1 minute)"
NIGHTLY_SCHEDULE = "cron(0 2 * * ? *)"  # 02:00 UTC
NIGHTLY_INPUT = {"action": "full_recompute", "reason": "nightly"}

# DynamoDB action sets: r = point reads and queries (incl. the GSI), w = writes, s = Scan.
ACTIONS = {
    "r": (
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:ConditionCheckItem",
        "dynamodb:DescribeTable",
    ),
    "w": ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"),
    "s": ("dynamodb:Scan",),
}
# function -> table role -> action sets, derived from what the library does on each path:
# the ingestion pipeline (track_event, and nps_webhook / preferences through Surveys -> Ingestor)
# dedupes in idempotency, writes profiles, events, due items and message counters; the tick and
# recompute (through the Ticker) advance journeys the same way; send_message writes the ledger
# and counters and defers to the due index; only admin_api (erasure, listings) and recompute
# (the parallel scan) may Scan.
# products: ingestion learns stock and prices, counts co-purchases and redeems coupons; the sender reads
# recommendations and issues coupons.
_INGEST = {"profiles": "rw", "events": "rw", "idempotency": "rw", "config": "r", "due": "w", "messages": "rw",
           "products": "rw"}
ACCESS: dict[str, dict[str, str]] = {
    "track_event": dict(_INGEST),
    "evaluate_triggers": {"profiles": "rw", "events": "rw", "config": "r", "due": "rw", "messages": "rw"},
    "send_message": {"profiles": "rw", "config": "r", "due": "w", "messages": "rw", "products": "rw"},
    "nps_webhook": dict(_INGEST),
    "feedback": {"profiles": "rw", "config": "r", "messages": "rw"},
    "preferences": dict(_INGEST),
    "admin_api": {
        "profiles": "rws",
        "events": "rw",
        "idempotency": "rw",
        "config": "rws",
        "due": "rw",
        "messages": "rws",
        "products": "rw",
    },
    "recompute": {"profiles": "rws", "events": "rw", "config": "r", "due": "rw", "messages": "rw"},
}
# Writes to the config table are limited by partition key (dynamodb:LeadingKeys) outside the
# admin API: signing secrets and the suppression salt are created on first use by whichever
# function needs them first (conditional put on `SECRET`), and the tick keeps its watermark
# under `TICK`. Rules, segments, templates, write keys and admin tokens stay admin-only.
# The feedback function also keeps the send brake's state (`SENDING`) and records its pauses (`AUDIT`).
CONFIG_WRITES: dict[str, tuple[str, ...]] = {
    name: {"evaluate_triggers": ("SECRET", "TICK"), "feedback": ("SECRET", "SENDING", "AUDIT")}.get(name, ("SECRET",))
    for name in ACCESS if name != "admin_api"
}
CONFIG_WRITE_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem")
QUEUE_SENDERS: dict[str, tuple[str, ...]] = {
    # send_message re-sends a message throttled too often as a fresh delayed copy (messaging/delivery.py)
    "send": ("track_event", "evaluate_triggers", "send_message", "nps_webhook", "preferences", "admin_api",
             "recompute"),
    # recompute re-queues the rest of its scan segment; admin_api fans out after a segment change; the
    # tick fans a scheduled rule's (broadcast's) audience out.
    "recompute": ("evaluate_triggers", "admin_api", "recompute"),
}

# the admin API reads queue depths (pending sends, dead letters) of the stack's queues
WATCH_ACTIONS = ("sqs:GetQueueAttributes",)


class RetentionStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        removal = RemovalPolicy.RETAIN if config.is_production else RemovalPolicy.DESTROY

        self.storage = Storage(self, "Storage", removal_policy=removal)
        self.send_queue = WorkQueue(
            self,
            "SendQueue",
            role="send",
            visibility_timeout=Duration.seconds(6 * SPECS_BY_NAME["send_message"].timeout_seconds),
        )
        self.recompute_queue = WorkQueue(
            self,
            "RecomputeQueue",
            role="recompute",
            visibility_timeout=Duration.seconds(6 * SPECS_BY_NAME["recompute"].timeout_seconds),
        )
        self.email = Email(
            self,
            "Email",
            stage=config.stage,
            sender_domain=config.identity_domain,
            sender_address=config.sender_address,
            create_identity=config.create_identity,
        )

        environment = {
            **{f"{role.upper()}_TABLE": table.table_name for role, table in self.storage.tables.items()},
            "SEND_QUEUE_URL": self.send_queue.queue.queue_url,
            "RECOMPUTE_QUEUE_URL": self.recompute_queue.queue.queue_url,
            "SENDER_EMAIL": config.sender_email,
            "SES_CONFIGURATION_SET": self.email.configuration_set_name,
            "SMS_SENDER_ID": config.sms_sender_id,
            "STAGE": config.stage,
            "DUE_SHARDS": str(DUE_SHARDS),
            "POWERTOOLS_METRICS_NAMESPACE": "Retention",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            # no pydantic plugins are used: without this, the first model build scans every package's
            # entry points on sys.path (10–50 ms of each cold start)
            "PYDANTIC_DISABLE_PLUGINS": "__all__",
        }
        self.functions = Functions(self, "Functions", environment=environment, removal_policy=removal)
        # X-Ray samples instead of tracing every request: the default rule keeps one trace a second per
        # function (≈ 2.6 M traces, ≈ $13 a month for the reference shop); 1 % of this stack's requests
        # is enough to see where time goes. CloudFormation names the functions `<stack>-…`.
        xray.CfnSamplingRule(self, "TraceSampling", sampling_rule=xray.CfnSamplingRule.SamplingRuleProperty(
            rule_name=f"{self.stack_name}-sampling"[:32], priority=100, fixed_rate=0.01, reservoir_size=0,
            service_name=f"{self.stack_name}*", service_type="*", host="*", http_method="*", url_path="*",
            resource_arn="*", version=1))
        fns = self.functions.functions

        if config.ingest_concurrency:
            cfn_track = fns["track_event"].node.default_child
            assert isinstance(cfn_track, lambda_.CfnFunction)
            cfn_track.reserved_concurrent_executions = config.ingest_concurrency
        self.api = Api(self, "Api", stage_name=config.stage, functions=dict(fns), removal_policy=removal,
                       waf_rate_limit=config.waf_rate_limit)
        self.ingest_url = self._ingest_url(fns["track_event"]) if config.ingest_url else None
        public_base_url = config.public_base_url or self.api.base_url
        for function in fns.values():
            function.add_environment("PUBLIC_BASE_URL", public_base_url)

        self._grant_tables(fns)
        self._grant_queues(fns)
        self._grant_messaging(fns["send_message"])
        self._wire_triggers(fns)
        self._watch_queues(fns["admin_api"])
        self._alarms(fns)
        self._outputs()

    def _ingest_url(self, track_event: lambda_.Function) -> lambda_.FunctionUrl:
        """A function URL for the Segment routes (POST /v1/batch, /v1/track …): the same handler as the REST
        API's /v1 routes, without API Gateway's $3.50 per million requests (for the reference shop's 2 M
        ingestion requests a month, $7 of an engine overhead of about $60). Function URLs cost nothing beyond
        the invocation. What API Gateway gave these routes and the URL does not: stage and per-method
        throttling (track_event's reserved concurrency, `ingestConcurrency`, bounds it instead), the opt-in
        WAF rule, access logs (the function logs every request's outcome). Authentication is the write key,
        checked before the body is read, as behind API Gateway. No CORS: the clients are servers and SDKs.
        CDK grants both lambda:InvokeFunctionUrl and lambda:InvokeFunction (with lambda:InvokedViaFunctionUrl)
        to the public principal, as function URLs need since October 2025."""
        url = track_event.add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE,
                                           invoke_mode=lambda_.InvokeMode.BUFFERED)
        set_role(url, "ingest:url")
        return url

    # -- permissions ---------------------------------------------------------------------------
    def _grant_tables(self, fns: dict[str, lambda_.Function]) -> None:
        for name, access in ACCESS.items():
            for role, letters in access.items():
                table = self.storage.tables[role]
                actions = [action for letter in letters for action in ACTIONS[letter]]
                resources = [table.table_arn]
                if "r" in letters and role == "messages":
                    resources.append(f"{table.table_arn}/index/by_customer")
                fns[name].add_to_role_policy(iam.PolicyStatement(actions=actions, resources=resources))
        config_arn = self.storage.tables["config"].table_arn
        for name, leading_keys in CONFIG_WRITES.items():
            fns[name].add_to_role_policy(
                iam.PolicyStatement(
                    actions=list(CONFIG_WRITE_ACTIONS),
                    resources=[config_arn],
                    conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": list(leading_keys)}},
                )
            )

    def _grant_queues(self, fns: dict[str, lambda_.Function]) -> None:
        queues = {"send": self.send_queue.queue, "recompute": self.recompute_queue.queue}
        for role, senders in QUEUE_SENDERS.items():
            for name in senders:
                queues[role].grant_send_messages(fns[name])

    def _watch_queues(self, admin_api: lambda_.Function) -> None:
        """The admin API shows how many sends wait and how many messages sit in the dead-letter queues
        (GET /admin/health, the console's overview): it learns the DLQs' URLs from its environment and may
        read the DLQs' attributes, nothing more (no receive, no send to a DLQ). The send and recompute queues'
        attributes come with its send grant (grant_send_messages includes sqs:GetQueueAttributes)."""
        watched = {"SEND_DLQ_URL": self.send_queue.dlq, "RECOMPUTE_DLQ_URL": self.recompute_queue.dlq,
                   "FEEDBACK_DLQ_URL": self.feedback_dlq}
        for var, queue in watched.items():
            admin_api.add_environment(var, queue.queue_url)
        admin_api.add_to_role_policy(iam.PolicyStatement(
            actions=list(WATCH_ACTIONS),
            resources=[q.queue_arn for q in watched.values()]))

    def _grant_messaging(self, send_message: lambda_.Function) -> None:
        send_message.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ses:SendRawEmail", "ses:SendEmail"],
                resources=[*self.email.identity_arns, self.email.configuration_set_arn],
            )
        )
        # SMS goes straight to a phone number: sns:Publish has no ARN to scope it to. Publishing to any
        # topic (the SES events topic, the alarm topic, another application's) is denied outright.
        send_message.add_to_role_policy(iam.PolicyStatement(actions=["sns:Publish"], resources=["*"]))
        send_message.add_to_role_policy(iam.PolicyStatement(
            effect=iam.Effect.DENY, actions=["sns:Publish"],
            resources=[f"arn:{Aws.PARTITION}:sns:*:*:*"]))
        assert send_message.role is not None  # Functions always passes an explicit role
        acknowledge(
            send_message.role,
            "AwsSolutions-IAM5[Resource::*]",
            "sns:Publish to a phone number (SMS) cannot be scoped to a resource ARN; the role's "
            "other '*' is X-Ray tracing, which has no resource-level permissions either.",
        )

    # -- triggers ------------------------------------------------------------------------------
    def _wire_triggers(self, fns: dict[str, lambda_.Function]) -> None:
        fns["send_message"].add_event_source(
            event_sources.SqsEventSource(
                self.send_queue.queue,
                batch_size=SEND_BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=self.config.send_concurrency,
            )
        )
        fns["recompute"].add_event_source(
            event_sources.SqsEventSource(
                self.recompute_queue.queue,
                batch_size=RECOMPUTE_BATCH_SIZE,
                report_batch_item_failures=True,
            )
        )

        tick = events.Rule(
            self,
            "TickRule",
            description="Minute tick: due journeys, segment re-checks",
            schedule=events.Schedule.expression(TICK_SCHEDULE),
        )
        # A failed tick is not retried: the next one resumes from the watermark.
        tick.add_target(targets.LambdaFunction(fns["evaluate_triggers"], retry_attempts=0))
        set_role(tick, "schedule:tick")

        nightly = events.Rule(
            self,
            "NightlyRecomputeRule",
            description="Nightly full segment recompute",
            schedule=events.Schedule.expression(NIGHTLY_SCHEDULE),
        )
        nightly.add_target(
            targets.LambdaFunction(
                fns["recompute"],
                event=events.RuleTargetInput.from_object(NIGHTLY_INPUT),
                retry_attempts=2,
            )
        )
        set_role(nightly, "schedule:nightly_recompute")

        # SNS retries a failed delivery to Lambda for a while, then drops it: the DLQ keeps the SES events
        # (bounces, complaints) the feedback function could not take, and an alarm says so
        self.feedback_dlq = sqs.Queue(self, "FeedbackDlq", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                      enforce_ssl=True, retention_period=Duration.days(14))
        set_role(self.feedback_dlq, "queue:feedback_dlq")
        acknowledge(self.feedback_dlq, "AwsSolutions-SQS3",
                    "This queue is itself the dead-letter queue of the SES events subscription.")
        self.email.events_topic.add_subscription(
            subscriptions.LambdaSubscription(fns["feedback"], dead_letter_queue=self.feedback_dlq))

    def _alarms(self, fns: dict[str, lambda_.Function]) -> None:
        self.monitoring = Monitoring(self, "Monitoring", alarm_email=self.config.alarm_email)
        self.monitoring.dlq_not_empty("send", self.send_queue.dlq)
        self.monitoring.dlq_not_empty("recompute", self.recompute_queue.dlq)
        self.monitoring.dlq_not_empty("feedback", self.feedback_dlq)
        self.monitoring.pending_sends_unknown()
        for spec in FUNCTION_SPECS:
            self.monitoring.function_errors(spec.name, fns[spec.name])
        self.monitoring.coupon_pool_empty("retention-send_message")
        self.monitoring.marketing_paused(service="retention-feedback")
        self.monitoring.ses_reputation(self.email.configuration_set_name)

    def _outputs(self) -> None:
        CfnOutput(self, "ApiUrl", value=self.api.base_url + "/", description="Base URL of the HTTP API")
        if self.ingest_url is not None:
            CfnOutput(self, "IngestUrl", value=self.ingest_url.url,
                      description="Segment host for the shop's events (POST /v1/batch …): no API Gateway fee")
        for role in TABLE_ROLES:
            table: dynamodb.Table = self.storage.tables[role]
            CfnOutput(self, f"{role.capitalize()}TableName", value=table.table_name)
        CfnOutput(self, "SendQueueUrl", value=self.send_queue.queue.queue_url)
        CfnOutput(self, "SendDlqUrl", value=self.send_queue.dlq.queue_url)
        CfnOutput(self, "RecomputeQueueUrl", value=self.recompute_queue.queue.queue_url)
        CfnOutput(self, "RecomputeDlqUrl", value=self.recompute_queue.dlq.queue_url)
        CfnOutput(self, "SesConfigurationSet", value=self.email.configuration_set_name)
        CfnOutput(self, "SesEventsTopicArn", value=self.email.events_topic.topic_arn)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        # what `retention bootstrap`, `retention dns` and `retention doctor` read (with the table names above)
        CfnOutput(self, "Stage", value=self.config.stage)
        CfnOutput(self, "SenderEmail", value=self.config.sender_email)
        CfnOutput(self, "SenderDomain", value=self.config.identity_domain)
        identity = self.email.identity
        if identity is not None:
            CfnOutput(self, "MailFromDomain", value=self.email.mail_from_domain,
                      description="publish: MX 10 feedback-smtp.<region>.amazonses.com and TXT v=spf1 "
                                  "include:amazonses.com ~all")
            tokens = ((identity.dkim_dns_token_name1, identity.dkim_dns_token_value1),
                      (identity.dkim_dns_token_name2, identity.dkim_dns_token_value2),
                      (identity.dkim_dns_token_name3, identity.dkim_dns_token_value3))
            for i, (name, value) in enumerate(tokens, start=1):
                CfnOutput(self, f"DkimName{i}", value=name, description="publish as a CNAME to DkimValue" + str(i))
                CfnOutput(self, f"DkimValue{i}", value=value)

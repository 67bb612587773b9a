"""SES configuration set, its event topic and (optionally) the sending identity."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ses as ses
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.constructs.common import set_role

SES_EVENTS = (
    ses.EmailSendingEvent.SEND,
    ses.EmailSendingEvent.DELIVERY,
    ses.EmailSendingEvent.BOUNCE,
    ses.EmailSendingEvent.COMPLAINT,
    ses.EmailSendingEvent.REJECT,
    ses.EmailSendingEvent.OPEN,
    ses.EmailSendingEvent.CLICK,
    ses.EmailSendingEvent.RENDERING_FAILURE,
    ses.EmailSendingEvent.DELIVERY_DELAY,
)


class Email(Construct):
    """Every email goes out through `configuration_set_name`; its events land on `events_topic`.

    With `-c senderDomain=shop.example` (or `-c createIdentity=true`) the stack creates the SES domain
    identity: Easy DKIM (three CNAMEs to publish), a custom MAIL FROM domain `bounce.<domain>` (an MX and
    an SPF record to publish; if the MX is missing SES falls back to its own MAIL FROM instead of refusing
    to send) and the configuration set as its default. The records come out as stack outputs
    (`retention dns --stack …`, printed by `make deploy`). Without a sender domain nothing is created
    and the shop verifies its sender in SES itself.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        sender_domain: str,
        sender_address: str,
        create_identity: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.configuration_set_name = f"retention-{stage}"
        self.configuration_set = ses.ConfigurationSet(
            self,
            "ConfigurationSet",
            configuration_set_name=self.configuration_set_name,
            reputation_metrics=True,
            sending_enabled=True,
            suppression_reasons=ses.SuppressionReasons.BOUNCES_AND_COMPLAINTS,
        )
        set_role(self.configuration_set, "ses:configuration_set")

        # SSE is left off on purpose: SES cannot publish to a topic encrypted with the AWS-managed
        # key, and a customer key would cost a fixed monthly fee; the events carry delivery
        # metadata, and publishing is TLS-only.
        self.events_topic = sns.Topic(self, "EventsTopic", display_name="Retention SES events", enforce_ssl=True)
        set_role(self.events_topic, "topic:ses_events")
        self.configuration_set.add_event_destination(
            "ToSns",
            destination=ses.EventDestination.sns_topic(self.events_topic),
            events=list(SES_EVENTS),
        )

        self.identity: ses.EmailIdentity | None = None
        self.mail_from_domain = f"bounce.{sender_domain}"
        if create_identity:
            self.identity = ses.EmailIdentity(
                self,
                "DomainIdentity",
                identity=ses.Identity.domain(sender_domain),
                configuration_set=self.configuration_set,
                dkim_signing=True,
                mail_from_domain=self.mail_from_domain,
                mail_from_behavior_on_mx_failure=ses.MailFromBehaviorOnMxFailure.USE_DEFAULT_VALUE,
            )
            set_role(self.identity, "ses:identity")

        stack = Stack.of(self)
        self.identity_arns = [
            self._identity_arn(stack, sender_domain),
            self._identity_arn(stack, sender_address),
        ]
        self.configuration_set_arn = stack.format_arn(
            service="ses",
            resource="configuration-set",
            resource_name=self.configuration_set_name,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    @staticmethod
    def _identity_arn(stack: Stack, identity: str) -> str:
        return stack.format_arn(
            service="ses", resource="identity", resource_name=identity, arn_format=ArnFormat.SLASH_RESOURCE_NAME
        )

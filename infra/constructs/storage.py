"""DynamoDB tables (keys and items: docs/architecture.md)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from infra.constructs.common import acknowledge, set_role

# role -> construct id; the environment variable is `<ROLE>_TABLE`.
TABLE_ROLES = ("profiles", "events", "config", "due", "messages", "idempotency", "products")
TTL_ATTRIBUTE = "ttl"
# Continuous backups cost $0.20 per GB-month, nearly what the storage costs. The raw events are the bulk of
# the stored bytes and are an append-only log that expires (90 days by default): a restore would bring back
# little that matters. The messageId markers (idempotency) live 30 days and only stop a client's retry
# from counting twice: a restore to an earlier point would bring back older markers, never a customer's
# data. Profiles, configuration, the due index, the ledger (messages) and the products keep PITR.
NO_PITR = ("events", "idempotency")


class Storage(Construct):
    """Seven on-demand tables (products: catalogue, recommendation counters, coupon pools), all keyed
    `pk`/`sk` (S), with TTL on `ttl`, PITR (but the raw events), AWS-managed SSE."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.tables: dict[str, dynamodb.Table] = {}
        for role in TABLE_ROLES:
            table = dynamodb.Table(
                self,
                f"{role.capitalize()}Table",
                partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=role not in NO_PITR
                ),
                encryption=dynamodb.TableEncryption.AWS_MANAGED,
                time_to_live_attribute=TTL_ATTRIBUTE,
                removal_policy=removal_policy,
            )
            set_role(table, f"table:{role}")
            if role in NO_PITR:
                acknowledge(table, "AwsSolutions-DDB3", f"{role}: expiring items (raw events, messageId markers) "
                            "whose restore would bring back no customer data; PITR would double their storage "
                            "bill (the profiles, configuration and ledger tables keep PITR)")
            self.tables[role] = table

        # The send ledger by customer, for the admin API's "messages" of a customer and for erasure. Keys only:
        # the ledger's later writes (`sent`, delivered, opened …) change no key, so they write nothing to the
        # index (with ALL every one of them cost a second write unit, and the index stored a second copy of
        # every ledger item); the admin view reads the items it lists with one BatchGetItem.
        self.tables["messages"].add_global_secondary_index(
            index_name="by_customer",
            partition_key=dynamodb.Attribute(name="customer_id", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="created_at", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )

    @property
    def profiles(self) -> dynamodb.Table:
        return self.tables["profiles"]

    @property
    def messages(self) -> dynamodb.Table:
        return self.tables["messages"]

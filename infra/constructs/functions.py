"""The Lambda functions, their log groups and roles, and the common layer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Annotations, AssetHashType, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import logging_config
from infra.constructs.common import HANDLER_DIR_KEY, HANDLER_KEY, acknowledge, set_role
from infra.layer import PYTHON_VERSION, REPO_ROOT, build_layer

HANDLER = "handler.lambda_handler"
RUNTIME = {
    "3.12": lambda_.Runtime.PYTHON_3_12,
    "3.13": lambda_.Runtime.PYTHON_3_13,
    "3.14": lambda_.Runtime.PYTHON_3_14,
}[PYTHON_VERSION]
ASSET_EXCLUDES = ["__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".mypy_cache", "tests"]

# Lambda's advanced logging controls (why these: infra/logging_config.py)
LOGGING_FORMAT = lambda_.LoggingFormat(logging_config.LOG_FORMAT)
SYSTEM_LOG_LEVEL = lambda_.SystemLogLevel(logging_config.SYSTEM_LOG_LEVEL)


def application_log_level(environment: dict[str, str]) -> lambda_.ApplicationLogLevel:
    return lambda_.ApplicationLogLevel(logging_config.application_log_level(environment))


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # directory under functions/, and the `function:<name>` role
    timeout_seconds: int
    memory_mb: int
    description: str

    @property
    def construct_id(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))

    @property
    def source_dir(self) -> str:
        return f"functions/{self.name}"


API_TIMEOUT = 10
FUNCTION_SPECS: tuple[FunctionSpec, ...] = (
    FunctionSpec("track_event", API_TIMEOUT, 512, "Segment-compatible ingestion: profiles, KPIs, segments"),
    FunctionSpec("evaluate_triggers", 60, 512, "Minute tick: due journey steps, segment re-checks, broadcasts"),
    # I/O-bound (SES ≈ 40 ms, DynamoDB): rendering + MIME take 0.61 ms of one vCPU, ≈ 2 ms at 512 MB
    FunctionSpec("send_message", 30, 512, "Send queue consumer: consent, caps, render, SES/SNS, ledger"),
    FunctionSpec("nps_webhook", API_TIMEOUT, 512, "NPS survey links and the signed external webhook"),
    FunctionSpec("feedback", 30, 512, "SES events (SNS): suppression list and message stats"),
    FunctionSpec("preferences", API_TIMEOUT, 512, "Unsubscribe / preferences pages (/u/{token})"),
    FunctionSpec("admin_api", API_TIMEOUT, 512, "Admin API (/admin): customers, rules, segments, templates"),
    FunctionSpec("recompute", 300, 512, "Segment recompute: nightly fan-out and parallel-scan workers"),
)
SPECS_BY_NAME = {spec.name: spec for spec in FUNCTION_SPECS}


def code_dir(spec: FunctionSpec) -> Path:
    """functions/<name>: a function without its handler is a synth error, never a placeholder deployed."""
    source = REPO_ROOT / spec.source_dir
    if not (source / "handler.py").is_file():
        raise FileNotFoundError(f"{spec.source_dir}/handler.py is missing (FUNCTION_SPECS names {spec.name})")
    return source


class Functions(Construct):
    """One function per FunctionSpec: arm64, X-Ray, own log group (JSON, system logs at WARN), own role, the
    common layer.

    Each role starts with nothing but writing to its own log group (no AWS managed policies);
    the stack adds the table/queue/SES grants of each function (infra/stack.py, ACCESS).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: dict[str, str],
        removal_policy: RemovalPolicy,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        layer_build = build_layer()
        if not layer_build.complete:
            Annotations.of(self).add_warning_v2(
                "retention:layer-incomplete",
                "the common layer has only the retention library (pip failed): do not deploy it",
            )
        self.layer = lambda_.LayerVersion(
            self,
            "CommonLayer",
            code=lambda_.Code.from_asset(
                str(layer_build.path), asset_hash_type=AssetHashType.CUSTOM, asset_hash=layer_build.asset_hash
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            description="retention library + pydantic, powertools, jinja2, pyyaml",
            removal_policy=RemovalPolicy.DESTROY,
        )
        set_role(self.layer, "layer:common")

        self.functions: dict[str, lambda_.Function] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        app_log_level = application_log_level(environment)
        for spec in FUNCTION_SPECS:
            cid = spec.construct_id
            log_group = logs.LogGroup(self, f"{cid}Logs", retention=log_retention, removal_policy=removal_policy)
            role = iam.Role(
                self,
                f"{cid}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"retention {spec.name} function",
            )
            log_group.grant_write(role)
            function = lambda_.Function(
                self,
                cid,
                description=spec.description,
                runtime=RUNTIME,
                architecture=lambda_.Architecture.ARM_64,
                handler=HANDLER,
                code=lambda_.Code.from_asset(str(code_dir(spec)), exclude=ASSET_EXCLUDES),
                layers=[self.layer],
                memory_size=spec.memory_mb,
                timeout=Duration.seconds(spec.timeout_seconds),
                tracing=lambda_.Tracing.ACTIVE,
                log_group=log_group,
                logging_format=LOGGING_FORMAT,
                system_log_level_v2=SYSTEM_LOG_LEVEL,
                application_log_level_v2=app_log_level,
                role=role,
                environment={**environment, "POWERTOOLS_SERVICE_NAME": f"retention-{spec.name}"},
            )
            self._drop_redundant_role_dependency(function, role)
            set_role(function, f"function:{spec.name}", **{HANDLER_DIR_KEY: spec.source_dir, HANDLER_KEY: HANDLER})
            self.functions[spec.name] = function
            self.log_groups[spec.name] = log_group

        acknowledge(
            self,
            "AwsSolutions-L1",
            f"Pinned to python{PYTHON_VERSION}: the common layer's compiled wheels (pydantic-core) are "
            "built for exactly this CPython ABI (infra/layer.py PYTHON_VERSION); bump both together.",
        )
        acknowledge(
            self,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) support no resource-level "
            "permissions; CDK adds them with Resource '*'.",
        )

    @staticmethod
    def _drop_redundant_role_dependency(function: lambda_.Function, role: iam.Role) -> None:
        """Keep only `DependsOn: <role's DefaultPolicy>` on the function.

        CDK also lists the role itself, which `Role: !GetAtt Role.Arn` already orders (cfn-lint
        W3005). The policy dependency matters: the SQS event source mapping is validated against
        the role's permissions, so the grants must exist before the function.
        """
        policy = role.node.try_find_child("DefaultPolicy")
        cfn_function = function.node.default_child
        if policy is None or not isinstance(cfn_function, CfnResource):
            return
        cfn_policy = policy.node.default_child
        if not isinstance(cfn_policy, CfnResource):
            return
        cfn_function.add_override("DependsOn", [Stack.of(function).get_logical_id(cfn_policy)])

    def __getitem__(self, name: str) -> lambda_.Function:
        return self.functions[name]

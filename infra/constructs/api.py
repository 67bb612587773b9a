"""The REST API (DESIGN.md section 3): every route is a Lambda proxy integration."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Fn, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.constructs.common import acknowledge, set_role

THROTTLE_RATE = 1000  # requests per second, steady state (per stage, all methods)
THROTTLE_BURST = 2000
# Per-method limits below the stage's: a flood on one route cannot starve the others. Segment/Rudder
# clients cannot send an API key, so a usage plan cannot tell sources apart; the write key is checked
# in the function (before the body is read), the optional WAF rule limits per IP.
METHOD_THROTTLES: dict[str, tuple[int, int]] = {
    "/v1/batch/POST": (500, 1000),
    **{f"/v1/{call}/POST": (200, 400) for call in ("track", "identify", "page", "screen", "alias", "group")},
    "/v1/webhooks/nps/POST": (50, 100),
    "/admin/{proxy+}/*": (50, 100),
    "/console/{proxy+}/*": (20, 40),
}


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    function: str


SEGMENT_CALLS = ("batch", "track", "identify", "page", "screen", "alias", "group")
ROUTES: tuple[RouteSpec, ...] = (
    # Explicit resources rather than /v1/{proxy+}, so /v1/webhooks/nps can go to another function.
    *(RouteSpec("POST", f"/v1/{call}", "track_event") for call in SEGMENT_CALLS),
    RouteSpec("POST", "/v1/webhooks/nps", "nps_webhook"),
    RouteSpec("GET", "/nps/{token}", "nps_webhook"),
    RouteSpec("POST", "/nps/{token}", "nps_webhook"),
    RouteSpec("GET", "/survey/{token}", "nps_webhook"),
    RouteSpec("POST", "/survey/{token}", "nps_webhook"),
    RouteSpec("GET", "/u/{token}", "preferences"),
    RouteSpec("POST", "/u/{token}", "preferences"),
    RouteSpec("GET", "/optin/{token}", "preferences"),
    RouteSpec("POST", "/optin/{token}", "preferences"),
    RouteSpec("ANY", "/admin", "admin_api"),
    RouteSpec("ANY", "/admin/{proxy+}", "admin_api"),
    # the web console: same function and permissions as the admin API, a session cookie instead of Bearer
    RouteSpec("GET", "/console", "admin_api"),
    RouteSpec("ANY", "/console/{proxy+}", "admin_api"),
)


class Api(Construct):
    """One REST API, stage named after the deployment stage, access + execution logs, X-Ray.

    Authorization is done by the functions (write key, admin bearer token, signed tokens, HMAC
    webhook signature), so methods have authorization NONE.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage_name: str,
        functions: dict[str, lambda_.IFunction],
        removal_policy: RemovalPolicy,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        waf_rate_limit: int = 0,
    ) -> None:
        super().__init__(scope, construct_id)
        self.stage_name = stage_name
        self.web_acl: wafv2.CfnWebACL | None = None
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention, removal_policy=removal_policy)
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"retention-{stage_name}",
            description="Retention engine: ingestion, surveys, preferences, admin",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Every body reaches the functions base64-encoded (gzip from rudder-sdk, forms, JSON);
            # the handlers decode `isBase64Encoded` bodies.
            binary_media_types=["*/*"],
            # Execution logging needs the account-level CloudWatch role.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.INFO,
                data_trace_enabled=False,  # bodies carry personal data: never log them
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=THROTTLE_RATE,
                throttling_burst_limit=THROTTLE_BURST,
                method_options={
                    path: apigw.MethodDeploymentOptions(throttling_rate_limit=rate, throttling_burst_limit=burst)
                    for path, (rate, burst) in METHOD_THROTTLES.items()
                },
            ),
        )
        set_role(self.rest_api, "api")
        # CDK's automatic `Endpoint` output references the Stage (absent on moto); the stack
        # exports ApiUrl instead.
        self.rest_api.node.try_remove_child("Endpoint")
        # Body validation only applies to methods with a request model (none: bodies are
        # base64/gzip); parameter validation rejects a request without its path token early.
        self.validator = self.rest_api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )

        integrations = {
            name: apigw.LambdaIntegration(fn, proxy=True, allow_test_invoke=False)
            for name, fn in functions.items()
            if any(route.function == name for route in ROUTES)
        }
        for route in ROUTES:
            resource = self.rest_api.root.resource_for_path(route.path)
            params = {f"method.request.path.{p}": True for p in _path_params(route.path)}
            resource.add_method(
                route.method,
                integrations[route.function],
                authorization_type=apigw.AuthorizationType.NONE,
                request_parameters=params or None,
                request_validator=self.validator if params else None,
            )

        reason = (
            "Authorization is enforced inside the functions: Segment write key (HTTP Basic) "
            "for /v1, HMAC-SHA256 signature for /v1/webhooks/nps, signed tokens for /nps and "
            "/u, admin bearer token (stored hashed) for /admin, a session cookie from that token for "
            "/console. Clients are the shop's "
            "servers and Segment/Rudder SDKs, which cannot use Cognito or IAM signing."
        )
        acknowledge(self, "AwsSolutions-APIG4", reason)
        acknowledge(self, "AwsSolutions-COG4", reason)
        if waf_rate_limit:
            self._waf(waf_rate_limit)
        else:
            acknowledge(
                self,
                "AwsSolutions-APIG3",
                "No WAF by default (USD 5+/month per web ACL for a pay-per-use engine): stage and "
                "per-method throttling limit abuse and every route authenticates in the function; "
                "`-c wafRateLimit=N` attaches a web ACL with a per-IP rate rule.",
            )
        acknowledge(
            self,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "The account-level API Gateway logging role uses the AWS-documented managed "
            "policy; it only allows pushing API Gateway logs to CloudWatch Logs.",
        )

    def _waf(self, limit: int) -> None:
        """A regional web ACL on the stage: a rate-based rule blocks an IP over `limit` requests in 5 minutes."""
        name = f"retention-{self.stage_name}"
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=f"{name}-acl", sampled_requests_enabled=False),
            rules=[wafv2.CfnWebACL.RuleProperty(
                name="rate-per-ip",
                priority=0,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        limit=limit, aggregate_key_type="IP")),
                visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                    cloud_watch_metrics_enabled=True, metric_name=f"{name}-rate", sampled_requests_enabled=False),
            )],
        )
        wafv2.CfnWebACLAssociation(  # the stage ARN's Ref orders it after the stage
            self, "WebAclAssociation", resource_arn=self.rest_api.deployment_stage.stage_arn,
            web_acl_arn=self.web_acl.attr_arn)

    @property
    def base_url(self) -> str:
        """https://<api id>.execute-api.<region>.<suffix>/<stage> built from the API id.

        `rest_api.url` references the Stage, which depends on the methods, which depend on the
        functions: a function's environment cannot use it without a circular dependency.
        """
        return Fn.join(
            "",
            [
                "https://",
                self.rest_api.rest_api_id,
                ".execute-api.",
                Aws.REGION,
                ".",
                Aws.URL_SUFFIX,
                "/",
                self.stage_name,
            ],
        )


def _path_params(path: str) -> list[str]:
    return [part.strip("{}").rstrip("+") for part in path.split("/") if part.startswith("{")]

"""Synthesize the CDK stack and deploy the template into moto: the local runtime's source of truth.

The local runtime (DESIGN.md section 8) creates its tables, queues and topics from the same
template that `cdk deploy` uses, then reads back what it needs to run the real handlers::

    from infra.local_deploy import synth, deploy_to_moto

    template = synth(Path("build/local-cdk.out"), {"publicBaseUrl": "http://127.0.0.1:8787"})
    with mock_aws():                                  # or clients pointed at a moto server
        cfn = boto3.client("cloudformation", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        stack = deploy_to_moto(template, None, cfn, s3)   # assets file found next to the template
        stack.tables["profiles"]            # physical table name
        stack.queues["send"]                # queue URL (also send_dlq, recompute, recompute_dlq)
        stack.topics["ses_events"]          # topic ARN (also alarms)
        fn = stack.functions["track_event"]
        fn.handler_dir, fn.handler, fn.environment   # Path, "handler.lambda_handler", {...}
        stack.routes          # [Route("POST", "/v1/batch", "track_event"), …, Route("ANY", "/admin/{proxy+}", …)]
        stack.schedules       # [Schedule("rate(1 minute)", "evaluate_triggers", None),
                              #  Schedule("cron(0 2 * * ? *)", "recompute", {"action": "full_recompute", …})]
        stack.event_sources   # [EventSource("send", "send_message", 10), EventSource("recompute", "recompute", 1)]
        stack.subscriptions   # [Subscription("ses_events", "feedback")]

API
- `synth(outdir, context=None) -> Path`: runs `python -m infra.app` in a subprocess (the jsii
  node process does not outlive it) with `local=true` (no bootstrap-version rule) and
  `nag=false` (cdk-nag does not change the template; the infra tests run it) unless the
  context says otherwise; returns the `.template.json` path. About 4 s warm.
- `read_stack(template_path) -> StackModel`: the template alone (no AWS): function specs,
  routes, schedules, event sources, subscriptions. Useful without moto.
- `deploy_to_moto(template_path, assets_json_path, cfn_client, s3_client, stack_name=None)
  -> DeployedStack`: zips every file asset (`<Stack>.assets.json`) into the CDK bootstrap
  bucket `cdk-hnb659fds-assets-<account>-<region>` (created if missing), `create_stack`, checks
  CREATE_COMPLETE (raises `LocalDeployError` with the failed resources otherwise) and maps
  physical ids back. Function environments are resolved from the template with the stack's
  physical ids (same values moto's `get_function_configuration` returns).
- `delete_event_source_mappings(lambda_client, stack)`: moto would try to run the consumers in
  Docker; a runtime that drains the queues itself deletes the mappings first.
- `patch_moto_gaps(stack, dynamodb_client)`: enables TTL (attribute `ttl`) on every table,
  which moto's CloudFormation leaves off.

How the mapping works: every resource the runtime cares about carries CloudFormation
`Metadata` `retention:role` (set in infra/constructs): `table:<role>`, `queue:<role>`,
`topic:<role>`, `function:<name>` (+ `retention:handler_dir`, `retention:handler`),
`layer:common`, `api`, `schedule:<name>`, `ses:configuration_set`. Routes come from the
`AWS::ApiGateway::Resource` tree (ParentId/PathPart) and each `AWS::ApiGateway::Method`'s
proxy integration URI, which references the function (`Fn::GetAtt [<Function>, Arn]`).
Schedules come from `AWS::Events::Rule` targets, queue consumers from
`AWS::Lambda::EventSourceMapping`, topic subscribers from `AWS::SNS::Subscription`.

What moto leaves out (see /work/shared/notes/cdk-on-moto.md): the API Gateway stage, SES
configuration set, alarms, SNS subscriptions and topic/queue policies are skipped (listed in
`DeployedStack.skipped_types`); functions lose layers, tracing and architecture.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[1]
ROLE_KEY = "retention:role"
HANDLER_DIR_KEY = "retention:handler_dir"
HANDLER_KEY = "retention:handler"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
LOCAL_CONTEXT = {"local": True, "nag": False}


class LocalDeployError(RuntimeError):
    """The synth or the moto deployment failed."""


class Route(NamedTuple):
    method: str  # GET, POST, ANY, …
    path: str  # "/nps/{token}", "/admin/{proxy+}"
    function: str  # "nps_webhook"


class Schedule(NamedTuple):
    expression: str  # "rate(1 minute)", "cron(0 2 * * ? *)"
    function: str
    input: dict[str, Any] | None  # the constant event, or None (EventBridge's scheduled event)


class EventSource(NamedTuple):
    queue: str  # queue role: "send", "recompute"
    function: str
    batch_size: int


class Subscription(NamedTuple):
    topic: str  # topic role: "ses_events"
    function: str


@dataclass
class FunctionInfo:
    name: str  # "track_event"
    handler_dir: Path  # absolute path of functions/<name>
    handler: str  # "handler.lambda_handler"
    environment: dict[str, str]  # resolved after deploy_to_moto; raw template values in read_stack
    logical_id: str
    physical_name: str = ""  # the Lambda function name in moto
    timeout: int = 3
    memory_size: int = 128

    @property
    def module_name(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def function_name(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass
class StackModel:
    """What the template says, independent of any deployment."""

    template: dict[str, Any]
    roles: dict[str, str]  # role ("table:profiles") -> logical id
    functions: dict[str, FunctionInfo]
    routes: list[Route]
    schedules: list[Schedule]
    event_sources: list[EventSource]
    subscriptions: list[Subscription]

    def logical_ids(self, kind: str) -> dict[str, str]:
        """{name: logical id} for roles of one kind: `logical_ids("table")` -> {"profiles": …}."""
        prefix = f"{kind}:"
        return {role[len(prefix) :]: lid for role, lid in self.roles.items() if role.startswith(prefix)}


@dataclass
class DeployedStack:
    stack_name: str
    stack_id: str
    region: str
    account_id: str
    tables: dict[str, str]  # role -> table name
    queues: dict[str, str]  # role -> queue URL (send, send_dlq, recompute, recompute_dlq)
    topics: dict[str, str]  # role -> topic ARN (ses_events, alarms)
    functions: dict[str, FunctionInfo]
    routes: list[Route]
    schedules: list[Schedule]
    event_sources: list[EventSource]
    subscriptions: list[Subscription]
    rest_api_id: str
    api_stage: str
    ses_configuration_set: str
    outputs: dict[str, str]
    physical_ids: dict[str, str]  # logical id -> physical id (empty for types moto skipped)
    skipped_types: list[str] = field(default_factory=list)  # resource types moto did not create

    @property
    def environment(self) -> dict[str, str]:
        """The environment of every function in one (without POWERTOOLS_SERVICE_NAME): the local runtime runs
        them all in one process. Most of it is shared; a few variables are one function's (the admin API's
        dead-letter queue URLs)."""
        merged: dict[str, str] = {}
        for info in self.functions.values():
            merged.update({k: v for k, v in info.environment.items() if k != "POWERTOOLS_SERVICE_NAME"})
        return merged


# -- synth -----------------------------------------------------------------------------------------
def synth(outdir: Path | str, context: dict[str, Any] | None = None, *, timeout: float = 300) -> Path:
    """Synthesize the app into `outdir` and return the stack's template path.

    `context` overrides cdk.json (e.g. {"stage": "dev", "publicBaseUrl": "http://127.0.0.1:8787"});
    `local` defaults to true and `nag` to false here.
    """
    outdir = Path(outdir).resolve()
    merged = {**LOCAL_CONTEXT, **(context or {})}
    env = {
        **os.environ,
        "CDK_OUTDIR": str(outdir),
        "CDK_CONTEXT_JSON": json.dumps(merged),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "infra.app"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise LocalDeployError(f"synth failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return stack_template_path(outdir)


def stack_template_path(outdir: Path | str, stack_name: str | None = None) -> Path:
    """The template file of the (only, or named) stack in a cloud assembly directory."""
    outdir = Path(outdir)
    manifest = json.loads((outdir / "manifest.json").read_text())
    for name, artifact in manifest.get("artifacts", {}).items():
        if artifact.get("type") == "aws:cloudformation:stack" and stack_name in (None, name):
            return outdir / artifact["properties"]["templateFile"]
    raise LocalDeployError(f"no stack {stack_name or ''} in {outdir}/manifest.json")


def assets_path_for(template_path: Path | str) -> Path:
    """`<Stack>.template.json` -> `<Stack>.assets.json` next to it."""
    template_path = Path(template_path)
    return template_path.with_name(template_path.name.replace(".template.json", ".assets.json"))


# -- reading the template --------------------------------------------------------------------------
def read_stack(template_path: Path | str | dict[str, Any]) -> StackModel:
    template = template_path if isinstance(template_path, dict) else json.loads(Path(template_path).read_text())
    resources: dict[str, dict[str, Any]] = template["Resources"]
    roles: dict[str, str] = {}
    for lid, res in resources.items():
        role = res.get("Metadata", {}).get(ROLE_KEY)
        if role:
            if role in roles:
                raise LocalDeployError(f"role {role} on both {roles[role]} and {lid}")
            roles[role] = lid
    by_lid = {lid: role for role, lid in roles.items()}

    def role_name(lid: str | None, kind: str) -> str | None:
        role = by_lid.get(lid or "")
        return role.split(":", 1)[1] if role and role.startswith(f"{kind}:") else None

    functions: dict[str, FunctionInfo] = {}
    for lid, res in resources.items():
        name = role_name(lid, "function")
        if res["Type"] != "AWS::Lambda::Function" or not name:
            continue
        props, meta = res["Properties"], res["Metadata"]
        functions[name] = FunctionInfo(
            name=name,
            handler_dir=(REPO_ROOT / meta.get(HANDLER_DIR_KEY, f"functions/{name}")).resolve(),
            handler=meta.get(HANDLER_KEY, props.get("Handler", "handler.lambda_handler")),
            environment=dict(props.get("Environment", {}).get("Variables", {})),
            logical_id=lid,
            timeout=int(props.get("Timeout", 3)),
            memory_size=int(props.get("MemorySize", 128)),
        )

    routes = _routes(resources, lambda lid: role_name(lid, "function"))
    schedules: list[Schedule] = []
    event_sources: list[EventSource] = []
    subscriptions: list[Subscription] = []
    for res in resources.values():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in props:
            for target in props.get("Targets", []):
                fn = role_name(_referenced(target.get("Arn")), "function")
                if fn:
                    raw = target.get("Input")
                    schedules.append(Schedule(props["ScheduleExpression"], fn, json.loads(raw) if raw else None))
        elif res["Type"] == "AWS::Lambda::EventSourceMapping":
            queue = role_name(_referenced(props.get("EventSourceArn")), "queue")
            fn = role_name(_referenced(props.get("FunctionName")), "function")
            if queue and fn:
                event_sources.append(EventSource(queue, fn, int(props.get("BatchSize", 10))))
        elif res["Type"] == "AWS::SNS::Subscription" and props.get("Protocol") == "lambda":
            topic = role_name(_referenced(props.get("TopicArn")), "topic")
            fn = role_name(_referenced(props.get("Endpoint")), "function")
            if topic and fn:
                subscriptions.append(Subscription(topic, fn))
    return StackModel(template, roles, functions, routes, schedules, event_sources, subscriptions)


def _referenced(value: Any) -> str | None:
    """The logical id in `{"Ref": X}` or `{"Fn::GetAtt": [X, …]}`, else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else att.split(".", 1)[0]
    return None


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _routes(resources: dict[str, dict[str, Any]], function_of: Any) -> list[Route]:
    paths: dict[str, str] = {}

    def path_of(ref: Any) -> str:
        if isinstance(ref, dict) and "Fn::GetAtt" in ref:  # the RestApi's RootResourceId
            return ""
        lid = _referenced(ref)
        if lid is None:
            raise LocalDeployError(f"unexpected API resource parent {ref!r}")
        if lid not in paths:
            props = resources[lid]["Properties"]
            paths[lid] = f"{path_of(props['ParentId'])}/{props['PathPart']}"
        return paths[lid]

    routes: list[Route] = []
    for res in resources.values():
        if res["Type"] != "AWS::ApiGateway::Method":
            continue
        props = res["Properties"]
        uri = props.get("Integration", {}).get("Uri")
        function = next(
            (function_of(lid) for node in _walk(uri) if (lid := _referenced(node)) and function_of(lid)), None
        )
        if function:
            routes.append(Route(props["HttpMethod"], path_of(props["ResourceId"]) or "/", function))
    return routes


# -- deploying into moto ---------------------------------------------------------------------------
def deploy_to_moto(
    template_path: Path | str,
    assets_json_path: Path | str | None = None,
    cfn_client: Any = None,
    s3_client: Any = None,
    stack_name: str | None = None,
    *,
    account_id: str | None = None,
) -> DeployedStack:
    """Upload the assets, create the stack in moto and map what it created.

    `cfn_client`/`s3_client` are boto3 clients on moto (in-process `mock_aws` or a moto server
    endpoint). `stack_name` defaults to the template file's stack (`Retention-dev`).
    """
    if cfn_client is None or s3_client is None:
        raise TypeError("deploy_to_moto needs a CloudFormation and an S3 client")
    template_path = Path(template_path)
    assets_json_path = Path(assets_json_path) if assets_json_path else assets_path_for(template_path)
    stack_name = stack_name or template_path.name.removesuffix(".template.json")
    region = cfn_client.meta.region_name
    account_id = account_id or _account_id(cfn_client)

    model = read_stack(template_path)
    body = _moto_template(model.template)
    if assets_json_path.exists():
        upload_assets(assets_json_path, s3_client, account_id=account_id, region=region)

    quiet = _DropUnsupportedNotices()  # moto logs and warns once per resource it skips
    moto_logger = logging.getLogger("moto")
    moto_logger.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not supported by moto's CloudFormation.*")
            stack_id = cfn_client.create_stack(
                StackName=stack_name, TemplateBody=json.dumps(body), Capabilities=CAPABILITIES
            )["StackId"]
            stack = cfn_client.describe_stacks(StackName=stack_id)["Stacks"][0]
            summaries = _stack_resources(cfn_client, stack_id)
    finally:
        moto_logger.removeFilter(quiet)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        failed = [
            f"{s['LogicalResourceId']} ({s['ResourceType']}): {s.get('ResourceStatusReason', '')}"
            for s in summaries
            if s.get("ResourceStatus", "").endswith("FAILED")
        ]
        raise LocalDeployError(f"{stack_name}: {stack['StackStatus']} {stack.get('StackStatusReason', '')} {failed}")

    physical = {s["LogicalResourceId"]: s.get("PhysicalResourceId") or "" for s in summaries}
    pseudo = {
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackName": stack_name,
        "AWS::StackId": stack_id,
    }
    resolve = _Resolver(physical, pseudo)

    functions = {}
    for name, info in model.functions.items():
        info.environment = {k: resolve(v) for k, v in info.environment.items()}
        info.physical_name = physical.get(info.logical_id, "")
        functions[name] = info

    api_lid = model.roles.get("api", "")
    env = next(iter(functions.values())).environment if functions else {}
    return DeployedStack(
        stack_name=stack_name,
        stack_id=stack_id,
        region=region,
        account_id=account_id,
        tables={role: physical[lid] for role, lid in model.logical_ids("table").items()},
        queues={role: physical[lid] for role, lid in model.logical_ids("queue").items()},
        topics={role: physical[lid] for role, lid in model.logical_ids("topic").items()},
        functions=functions,
        routes=model.routes,
        schedules=model.schedules,
        event_sources=model.event_sources,
        subscriptions=model.subscriptions,
        rest_api_id=physical.get(api_lid, ""),
        api_stage=env.get("STAGE", ""),
        ses_configuration_set=env.get("SES_CONFIGURATION_SET", ""),
        outputs={o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])},
        physical_ids=physical,
        skipped_types=sorted(set(quiet.types)),
    )


def upload_assets(assets_json_path: Path | str, s3_client: Any, *, account_id: str, region: str) -> int:
    """Zip/copy every file asset of the manifest into its bootstrap bucket; returns the count."""
    assets_json_path = Path(assets_json_path)
    manifest = json.loads(assets_json_path.read_text())
    created: set[str] = set()
    count = 0
    for asset in manifest.get("files", {}).values():
        source = assets_json_path.parent / asset["source"]["path"]
        if asset["source"].get("packaging") == "zip" or source.is_dir():
            payload = _zip_dir(source)
        else:
            payload = source.read_bytes()
        for dest in asset["destinations"].values():
            bucket = _sub(dest["bucketName"], account_id, region)
            if bucket not in created:
                _ensure_bucket(s3_client, bucket, region)
                created.add(bucket)
            s3_client.put_object(Bucket=bucket, Key=_sub(dest["objectKey"], account_id, region), Body=payload)
            count += 1
    return count


def delete_event_source_mappings(lambda_client: Any, stack: DeployedStack) -> int:
    """Delete moto's SQS event source mappings of the stack's functions (see module docstring)."""
    deleted = 0
    for info in stack.functions.values():
        if not info.physical_name:
            continue
        for mapping in lambda_client.list_event_source_mappings(FunctionName=info.physical_name).get(
            "EventSourceMappings", []
        ):
            lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])
            deleted += 1
    return deleted


def patch_moto_gaps(stack: DeployedStack, dynamodb_client: Any) -> None:
    """Apply what moto's CloudFormation ignores on tables: the `ttl` TimeToLive attribute."""
    for table in stack.tables.values():
        dynamodb_client.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
        )


# -- helpers ---------------------------------------------------------------------------------------
def _moto_template(template: dict[str, Any]) -> dict[str, Any]:
    """Drop the bootstrap-version check of a non-local synth (its SSM parameter is not in moto), and outputs
    reading an attribute of a resource type moto cannot create (the SES identity's DKIM tokens): moto
    refuses the whole stack for them."""
    body = json.loads(json.dumps(template))
    from moto.cloudformation.parsing import resource_class_from_type
    resources = body.get("Resources", {})
    for name, output in list(body.get("Outputs", {}).items()):
        value = output.get("Value")
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target = resources.get(value["Fn::GetAtt"][0], {})
            if resource_class_from_type(target.get("Type", "")) is None:
                del body["Outputs"][name]
    params = body.get("Parameters", {})
    if "BootstrapVersion" in params:
        del params["BootstrapVersion"]
        if not params:
            body.pop("Parameters")
        rules = body.get("Rules", {})
        rules.pop("CheckBootstrapVersion", None)
        if not rules:
            body.pop("Rules", None)
    return body


def _zip_dir(source: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(source).as_posix())
    return buf.getvalue()


def _sub(text: str, account_id: str, region: str) -> str:
    return (
        text.replace("${AWS::AccountId}", account_id)
        .replace("${AWS::Region}", region)
        .replace("${AWS::Partition}", "aws")
    )


def _ensure_bucket(s3_client: Any, bucket: str, region: str) -> None:
    existing = {b["Name"] for b in s3_client.list_buckets().get("Buckets", [])}
    if bucket in existing:
        return
    if region == "us-east-1":
        s3_client.create_bucket(Bucket=bucket)
    else:
        s3_client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})


def _account_id(cfn_client: Any) -> str:
    """The account moto answers for: STS with the CloudFormation client's endpoint and keys."""
    import boto3

    try:
        creds = cfn_client._request_signer._credentials
        sts = boto3.client(
            "sts",
            region_name=cfn_client.meta.region_name,
            endpoint_url=cfn_client.meta.endpoint_url,
            aws_access_key_id=creds.access_key if creds else "testing",
            aws_secret_access_key=creds.secret_key if creds else "testing",
            aws_session_token=creds.token if creds else None,
        )
        return str(sts.get_caller_identity()["Account"])
    except Exception:
        return "123456789012"


def _stack_resources(cfn_client: Any, stack_id: str) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs = {"StackName": stack_id, **({"NextToken": token} if token else {})}
        page = cfn_client.list_stack_resources(**kwargs)
        summaries.extend(page.get("StackResourceSummaries", []))
        token = page.get("NextToken")
        if not token:
            return summaries


class _DropUnsupportedNotices(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.types: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("No Moto CloudFormation support for "):
            self.types.append(record.getMessage().rsplit(" ", 1)[-1])
            return False
        return True


class _Resolver:
    """Resolves the intrinsics CDK puts in function environments (Ref, Fn::Join, Fn::Sub, …)."""

    def __init__(self, physical: dict[str, str], pseudo: dict[str, str]) -> None:
        self.physical = physical
        self.pseudo = pseudo

    def __call__(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float, bool)):
            return str(value).lower() if isinstance(value, bool) else str(value)
        if isinstance(value, dict) and len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self.pseudo[arg] if arg in self.pseudo else self.physical[arg]
            if fn == "Fn::Join":
                sep, parts = arg
                return sep.join(self(part) for part in parts)
            if fn == "Fn::Select":
                index, items = arg
                return self(items[int(index)] if isinstance(items, list) else self(items).split(",")[int(index)])
            if fn == "Fn::Sub" and isinstance(arg, str):
                out = arg
                for key, val in {**self.pseudo, **self.physical}.items():
                    out = out.replace("${" + key + "}", val)
                return out
            if fn == "Fn::GetAtt":
                lid, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                raise LocalDeployError(f"cannot resolve Fn::GetAtt {lid}.{attr} outside CloudFormation")
        raise LocalDeployError(f"cannot resolve {value!r}")

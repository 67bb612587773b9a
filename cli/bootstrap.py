"""`retention bootstrap --stack NAME`: from `cdk deploy` to a usable stack, with the deployer's AWS credentials.

There is no admin token yet (that is what this makes), so bootstrap does not use the admin API: it reads the
stack's outputs (CloudFormation DescribeStacks) and writes to the stack's tables with the library, exactly as
the admin API would:
1. the first admin token, for a named person (stored salted and hashed; printed once);
2. the scenario library (or a folder given) applied: segments, templates, rules, versioned and audited;
3. a first source (write key, stored hashed; printed once).
A second run changes nothing it already did and says what exists (tokens and keys are never shown again:
`retention tokens create` / `retention sources create` make new ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from retention.core import clock, ddb

# CfnOutput key -> Env field (infra/stack.py `_outputs`)
OUTPUT_ENV = {
    "ProfilesTableName": "PROFILES_TABLE", "EventsTableName": "EVENTS_TABLE", "ConfigTableName": "CONFIG_TABLE",
    "DueTableName": "DUE_TABLE", "MessagesTableName": "MESSAGES_TABLE", "IdempotencyTableName": "IDEMPOTENCY_TABLE",
    "SendQueueUrl": "SEND_QUEUE_URL", "RecomputeQueueUrl": "RECOMPUTE_QUEUE_URL",
    "SesConfigurationSet": "SES_CONFIGURATION_SET", "SenderEmail": "SENDER_EMAIL", "Stage": "STAGE",
}
MARKER = ("BOOTSTRAP", "state")


class BootstrapError(Exception):
    pass


def stack_outputs(stack: str, region: str | None = None, cfn: Any = None) -> dict[str, str]:
    """The stack's outputs (the deployer's credentials; AWS_ENDPOINT_URL / AWS_PROFILE as boto3 reads them)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
    try:
        cfn = cfn or boto3.client("cloudformation", region_name=region)
        found = cfn.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        raise BootstrapError(f"stack {stack!r}: {exc.response.get('Error', {}).get('Message', exc)} "
                             "(deployed? the right region? AWS_REGION / --region)") from exc
    except BotoCoreError as exc:
        raise BootstrapError(f"cannot read stack {stack!r}: {exc} (AWS credentials of the deployer needed)") from exc
    if not found:
        raise BootstrapError(f"stack {stack!r} not found")
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in found[0].get("Outputs", [])}
    missing = [k for k in ("ApiUrl", "ConfigTableName", "ProfilesTableName") if not outputs.get(k)]
    if missing:
        raise BootstrapError(f"stack {stack!r} has no output {', '.join(missing)}: is it a retention stack "
                             f"deployed from this version? (make deploy)")
    return outputs


def deps_for(outputs: dict[str, str], region: str | None = None) -> Any:
    import boto3
    from retention.core.runtime import Deps
    from retention.core.settings import Env
    env = Env.model_validate({field: outputs[key] for key, field in OUTPUT_ENV.items() if outputs.get(key)})
    session = boto3.session.Session(region_name=region)
    return Deps(env, dynamodb=session.client("dynamodb"), sqs=session.client("sqs"))


def run(stack: str, name: str, scenarios: Path, source_name: str, out: TextIO, *, region: str | None = None,
        cfn: Any = None, d: Any = None) -> int:
    from retention.admin.people import People
    from retention.admin.previews import apply_folder
    outputs = stack_outputs(stack, region, cfn)
    d = d or deps_for(outputs, region)
    api_url = outputs["ApiUrl"].rstrip("/")
    # the shop's Segment host: track_event's function URL (no API Gateway fee) when the stack has one
    events_url = str(outputs.get("IngestUrl") or "").rstrip("/") or api_url
    people = People(d.config)
    table = d.env.config_table
    marker = ddb.get(d.dynamodb, table, *MARKER, consistent=True) or {}
    author = f"bootstrap:{name}"
    out.write(f"stack {stack}: API {api_url}\n")

    # 1. the first admin
    token = None
    admins = [t for t in people.tokens(include_revoked=False) if t["role"] == "admin" and t["state"] == "active"]
    if marker.get("token_id") or admins:
        first = marker.get("admin") or admins[0]["name"]
        out.write(f"admin token: exists already (for {first}, {marker.get('token_id') or admins[0]['token_id']}); "
                  "it is not shown again — more people: retention tokens create --name NAME --role editor\n")
    else:
        made = people.create(name, "admin", by="bootstrap")
        token = made["token"]
        marker.update({"admin": name, "token_id": made["token_id"]})

    # 2. the scenario library
    if not scenarios.is_dir():
        raise BootstrapError(f"no scenarios folder at {scenarios} (--scenarios DIR)")
    applied = apply_folder(d, scenarios, author=author)
    changed = [k for k, v in applied.items() if v["changed"]]
    for changed_key in changed:
        kind, def_id = changed_key.split(":", 1)
        people.audit(author, "apply", {"RULE": "rule", "SEGDEF": "segment", "TEMPLATE": "template"}[kind], def_id,
                     version=applied[changed_key]["version"], role="admin")
    out.write(f"scenarios: {len(applied)} definitions from {scenarios}, {len(changed)} applied now"
              f"{'' if changed else ' (all already applied)'}\n")

    # 3. a first write key
    key: str | None = None
    sources = {s["source_id"]: s for s in d.config.list_sources()}
    existing = sources.get(str(marker.get("source_id") or ""))
    if existing and not existing.get("revoked"):
        out.write(f"write key: exists already (source {existing['source_id']}, {existing.get('name')}); "
                  "it is not shown again — another one: retention sources create NAME\n")
    else:
        made_source = d.config.create_source(source_name)
        key = made_source["write_key"]
        marker["source_id"] = made_source["source_id"]
        people.audit(author, "create", "source", made_source["source_id"], role="admin",
                     detail={"name": source_name})
    if token or key:
        marker.update({"pk": MARKER[0], "sk": MARKER[1], "at": marker.get("at") or clock.iso(clock.now())})
        d.dynamodb.put_item(TableName=table, Item=ddb.serialize(marker))

    out.write("\n")
    out.write(f"API URL     : {api_url}\n")
    out.write(f"events URL  : {events_url}\n")
    if token:
        out.write(f"admin token : {token}\n")
    if key:
        out.write(f"write key   : {key}\n")
    if token or key:
        out.write("Shown once and stored hashed: copy them now.\n")
    out.write("\nNext:\n"
              f"  export RETENTION_URL={api_url}\n"
              f"  export RETENTION_ADMIN_TOKEN={token or '<your admin token>'}\n"
              f"  curl -s -u {key or '<write key>'}: {events_url}/v1/track -H 'Content-Type: application/json' \\\n"
              "    -d '{\"userId\": \"u1\", \"event\": \"Signed Up\", \"messageId\": \"m1\"}'\n"
              f"  ./retention doctor --stack {stack}     # DNS records, SES sandbox, quota, reputation\n")
    return 0

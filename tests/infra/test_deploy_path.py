"""The path from `cdk deploy` to the first email, without the local runtime: the synthesized template deployed
into moto (a moto server standing in for the AWS account), `./retention bootstrap --stack …` run as the
README says (a separate process with the deployer's credentials), then an event posted to the deployed
track_event function with the printed write key and the send queue fed to the deployed send_message
function, as API Gateway and Lambda's SQS poller would: the welcome email is in SES."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import LambdaContext, load_handler

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    for k, v in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "POWERTOOLS_TRACE_DISABLED": "true",
                 "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}.items():
        monkeypatch.setenv(k, v)
    try:
        yield url
    finally:
        server.stop()
        from retention.core import runtime, settings
        from retention.core.config import ConfigStore
        runtime.set_deps(None)
        ConfigStore.invalidate()
        settings.reload_env()


def as_lambda(function: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The deployed function's handler in this process, with the environment CloudFormation gave it."""
    from retention.core import runtime, settings
    from retention.core.config import ConfigStore
    lam = boto3.client("lambda", region_name=REGION)
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    name = next(n for n in names if lam.get_function_configuration(FunctionName=n)["Environment"]["Variables"]
                .get("POWERTOOLS_SERVICE_NAME") == f"retention-{function}")
    for k, v in lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"].items():
        monkeypatch.setenv(k, v)
    settings.reload_env()
    runtime.set_deps(None)
    ConfigStore.invalidate()
    return load_handler(function, "deploy").lambda_handler


def test_deploy_bootstrap_and_the_first_email(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.local_deploy import delete_event_source_mappings, deploy_to_moto, synth
    template = synth(tmp_path / "cdk.out", {"stage": "prod", "senderEmail": "Shop <news@shop.example>",
                                            "senderDomain": "shop.example"})
    stack = deploy_to_moto(template, None, boto3.client("cloudformation", region_name=REGION),
                           boto3.client("s3", region_name=REGION))
    # Lambda's SQS poller is played by this test (moto would want Docker)
    delete_event_source_mappings(boto3.client("lambda", region_name=REGION), stack)
    # the shop published the DNS records: SES verified the domain
    boto3.client("sesv2", region_name=REGION).create_email_identity(EmailIdentity="shop.example")

    # README: ./retention bootstrap --stack Retention-prod --name anna
    cmd = [str(REPO / "retention"), "bootstrap", "--stack", stack.stack_name, "--name", "anna"]
    env = {**os.environ, "RETENTION_PYTHON": sys.executable}  # the interpreter running the tests
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert first.returncode == 0, first.stderr + first.stdout
    printed = {k.strip(): v.strip() for k, v in (line.split(" : ", 1) for line in first.stdout.splitlines()
                                                 if " : " in line)}
    token, key = printed["admin token"].strip(), printed["write key"].strip()
    assert printed["API URL"].strip() == stack.outputs["ApiUrl"].rstrip("/")
    # the shop's Segment host: the function URL when the deployment has one (moto skips AWS::Lambda::Url)
    assert printed["events URL"] == (stack.outputs.get("IngestUrl") or stack.outputs["ApiUrl"]).rstrip("/")
    assert "applied now" in first.stdout

    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert second.returncode == 0, second.stderr
    assert "admin token: exists already (for anna" in second.stdout and token not in second.stdout
    assert "write key: exists already" in second.stdout and "(all already applied)" in second.stdout

    # the shop posts an event with the printed key (API Gateway -> track_event)
    track = as_lambda("track_event", monkeypatch)
    body = {"batch": [{"type": "identify", "userId": "u1", "messageId": "m1",
                       "traits": {"email": "anna@example.com", "first_name": "Анна", "email_consent": True}},
                      {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m2"}]}
    basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    event = {"resource": "/v1/batch", "path": "/v1/batch", "httpMethod": "POST",
             "headers": {"Authorization": basic, "Content-Type": "application/json"},
             "multiValueHeaders": {}, "queryStringParameters": None, "pathParameters": None,
             "requestContext": {"resourcePath": "/v1/batch", "httpMethod": "POST", "stage": "prod",
                                "requestId": "r1", "identity": {"sourceIp": "203.0.113.1"}},
             "body": json.dumps(body), "isBase64Encoded": False}
    resp = track(event, LambdaContext())
    assert resp["statusCode"] == 200 and json.loads(resp["body"])["accepted"] == 2, resp

    # Lambda's SQS trigger: the send queue -> send_message
    send = as_lambda("send_message", monkeypatch)
    sqs = boto3.client("sqs", region_name=REGION)
    msgs = sqs.receive_message(QueueUrl=stack.outputs["SendQueueUrl"], MaxNumberOfMessages=10,
                               AttributeNames=["All"])["Messages"]
    records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": "",
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:send",
                "awsRegion": REGION} for m in msgs]
    assert send({"Records": records}, LambdaContext()) == {"batchItemFailures": []}

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends
    from retention.messaging.mime import parse_email
    sent = [parse_email(m.raw_data.encode() if isinstance(m.raw_data, str) else m.raw_data)
            for m in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages]
    assert len(sent) == 1
    assert sent[0]["headers"]["To"] == "anna@example.com" and "Анна" in sent[0]["subject"]
    assert sent[0]["headers"]["X-Retention-Rule"] == "welcome"
    assert "news@shop.example" in sent[0]["headers"]["From"]

    # the admin token works on the deployed admin API; the audit log names the bootstrap
    admin = as_lambda("admin_api", monkeypatch)

    def get(path: str) -> tuple[int, Any]:
        ev = {"resource": "/admin/{proxy+}", "path": path, "httpMethod": "GET",
              "headers": {"Authorization": f"Bearer {token}"}, "multiValueHeaders": {},
              "queryStringParameters": None, "pathParameters": {"proxy": path[7:]},
              "requestContext": {"resourcePath": "/admin/{proxy+}", "httpMethod": "GET", "stage": "prod",
                                 "requestId": "r2", "identity": {"sourceIp": "203.0.113.1"}},
              "body": None, "isBase64Encoded": False}
        out = admin(ev, LambdaContext())
        return out["statusCode"], json.loads(out["body"])
    status, customer = get("/admin/customers/u1")
    assert status == 200 and customer["messages"][0]["rule"] == "welcome"
    status, audit = get("/admin/audit")
    assert status == 200 and {e["who"] for e in audit["entries"]} >= {"bootstrap", "bootstrap:anna"}

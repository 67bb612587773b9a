"""The REST API: routes, proxy integrations, stage settings."""

from __future__ import annotations

import json

from infra.local_deploy import Route

EXPECTED_ROUTES = {
    *(
        Route("POST", f"/v1/{call}", "track_event")
        for call in ("batch", "track", "identify", "page", "screen", "alias", "group")
    ),
    Route("POST", "/v1/webhooks/nps", "nps_webhook"),
    Route("GET", "/nps/{token}", "nps_webhook"),
    Route("POST", "/nps/{token}", "nps_webhook"),
    Route("GET", "/survey/{token}", "nps_webhook"),
    Route("POST", "/survey/{token}", "nps_webhook"),
    Route("GET", "/u/{token}", "preferences"),
    Route("POST", "/u/{token}", "preferences"),
    Route("GET", "/optin/{token}", "preferences"),
    Route("POST", "/optin/{token}", "preferences"),
    Route("ANY", "/admin", "admin_api"),
    Route("ANY", "/admin/{proxy+}", "admin_api"),
    Route("GET", "/console", "admin_api"),  # the web console is served by the admin API's function
    Route("ANY", "/console/{proxy+}", "admin_api"),
}


def test_routes(synth):
    assert set(synth.model.routes) == EXPECTED_ROUTES
    assert len(synth.model.routes) == len(EXPECTED_ROUTES)  # no duplicates, no stray methods
    # Explicit /v1 resources, no greedy /v1/{proxy+}.
    v1_lid = next(
        lid for lid, r in synth.resources("AWS::ApiGateway::Resource").items() if r["Properties"]["PathPart"] == "v1"
    )
    v1_children = {
        r["Properties"]["PathPart"]
        for r in synth.resources("AWS::ApiGateway::Resource").values()
        if r["Properties"]["ParentId"] == {"Ref": v1_lid}
    }
    assert v1_children == {"batch", "track", "identify", "page", "screen", "alias", "group", "webhooks"}


def test_methods_are_lambda_proxy_integrations(synth):
    functions = {info.logical_id for info in synth.model.functions.values()}
    for method in synth.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        integration = props["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert integration["IntegrationHttpMethod"] == "POST"
        assert any(f'"{lid}"' in json.dumps(integration["Uri"]) for lid in functions)
        assert props["AuthorizationType"] == "NONE"  # authorization happens in the functions


def test_token_routes_validate_path_parameters(synth):
    validators = synth.resources("AWS::ApiGateway::RequestValidator")
    assert len(validators) == 1
    validator_lid, validator = next(iter(validators.items()))
    assert validator["Properties"]["ValidateRequestParameters"] is True
    with_params = [
        m["Properties"]
        for m in synth.resources("AWS::ApiGateway::Method").values()
        if m["Properties"].get("RequestParameters")
    ]
    # GET/POST /nps/{token}, /survey/{token}, /u/{token}, /optin/{token}; ANY /admin/{proxy+} and /console/…
    assert len(with_params) == 10
    for props in with_params:
        assert props["RequestValidatorId"] == {"Ref": validator_lid}


def test_rest_api_settings(synth):
    _, api = synth.by_role("api")
    props = api["Properties"]
    assert props["BinaryMediaTypes"] == ["*/*"]
    assert props["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert len(synth.resources("AWS::ApiGateway::RestApi")) == 1


def test_stage_logging_tracing_throttling(synth):
    stages = list(synth.resources("AWS::ApiGateway::Stage").values())
    assert len(stages) == 1
    props = stages[0]["Properties"]
    assert props["StageName"] == "dev"
    assert props["TracingEnabled"] is True
    access_log_lid = props["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0]
    assert synth.json["Resources"][access_log_lid]["Type"] == "AWS::Logs::LogGroup"
    assert "$context.requestId" in props["AccessLogSetting"]["Format"]
    # the stage-wide settings, then the per-method throttles (tests/infra/test_infra_hardening.py)
    (settings,) = [m for m in props["MethodSettings"] if m["ResourcePath"] == "/*"]
    assert settings["HttpMethod"] == "*" and settings["ResourcePath"] == "/*"
    assert settings["LoggingLevel"] == "INFO"
    assert settings["DataTraceEnabled"] is False
    assert settings["ThrottlingRateLimit"] == 1000
    assert settings["ThrottlingBurstLimit"] == 2000
    # Execution logging needs the account's CloudWatch role.
    assert len(synth.resources("AWS::ApiGateway::Account")) == 1


def test_api_invoke_permissions_scoped_to_the_api(synth):
    api_lid, _ = synth.by_role("api")
    permissions = [
        p["Properties"]
        for p in synth.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    assert len(permissions) == len(synth.model.routes)
    for permission in permissions:
        assert f'"{api_lid}"' in json.dumps(permission["SourceArn"])


def test_ingestion_function_url(synth, variant):
    """track_event's function URL (IngestUrl): public (the write key is checked in the function), both
    permissions function URLs need since October 2025, and no other function gets one."""
    urls = synth.resources("AWS::Lambda::Url")
    assert len(urls) == 1
    (url,) = urls.values()
    track_lid = synth.model.roles["function:track_event"]
    assert url["Properties"] == {"AuthType": "NONE", "InvokeMode": "BUFFERED",
                                 "TargetFunctionArn": {"Fn::GetAtt": [track_lid, "Arn"]}}
    public = sorted((p["Properties"]["Action"], json.dumps(p["Properties"]["FunctionName"]),
                     p["Properties"].get("FunctionUrlAuthType"), p["Properties"].get("InvokedViaFunctionUrl"))
                    for p in synth.resources("AWS::Lambda::Permission").values()
                    if p["Properties"]["Principal"] == "*")
    target = json.dumps({"Fn::GetAtt": [track_lid, "Arn"]})
    assert public == [("lambda:InvokeFunction", target, None, True),
                      ("lambda:InvokeFunctionUrl", target, "NONE", None)]
    url_lid = next(iter(urls))
    assert synth.json["Outputs"]["IngestUrl"]["Value"] == {"Fn::GetAtt": [url_lid, "FunctionUrl"]}
    # -c ingestUrl=false: no URL, no public permission, no output
    assert variant.resources("AWS::Lambda::Url") == {}
    assert not [p for p in variant.resources("AWS::Lambda::Permission").values()
                if p["Properties"]["Principal"] == "*"]
    assert "IngestUrl" not in variant.json["Outputs"]

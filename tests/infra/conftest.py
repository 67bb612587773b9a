"""Session fixtures: the stack is synthesized once (plus one variant with every option flipped)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App
from aws_cdk.assertions import Template

from infra.app import build_app
from infra.local_deploy import StackModel, read_stack
from infra.stack import RetentionStack

VARIANT_CONTEXT = {
    "stage": "prod",
    "local": True,
    "createIdentity": True,
    "alarmEmail": "ops@example.com",
    "sendConcurrency": "20",  # strings, as `cdk -c key=value` passes them
    "publicBaseUrl": "https://shop.example.com/",
    "wafRateLimit": "2000",
    "ingestConcurrency": "0",
    "ingestUrl": "false",
}


@dataclass
class Synth:
    app: App
    stack: RetentionStack
    template: Template
    json: dict[str, Any]
    template_path: Path
    assets_path: Path
    model: StackModel

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.json["Resources"].items() if r["Type"] == type_}

    def by_role(self, role: str) -> tuple[str, dict[str, Any]]:
        lid = self.model.roles[role]
        return lid, self.json["Resources"][lid]

    def function(self, name: str) -> dict[str, Any]:
        return self.by_role(f"function:{name}")[1]

    def grants(self, name: str) -> set[tuple[str, str]]:
        """(action, target) pairs of the function's role; target = a role like `table:profiles`
        (suffixed `/index` for a GSI ARN, `[SECRET,TICK]` for a dynamodb:LeadingKeys condition),
        `ses:identity`, `ses:configuration-set`, `log-group` or `*`."""
        role_lid = self.function(name)["Properties"]["Role"]["Fn::GetAtt"][0]
        role_of = {lid: role for role, lid in self.model.roles.items()}
        pairs: set[tuple[str, str]] = set()
        for policy in self.resources("AWS::IAM::Policy").values():
            if {"Ref": role_lid} not in policy["Properties"]["Roles"]:
                continue
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if statement["Effect"] == "Deny":
                    continue  # guard rails (sns:Publish on topics): tests/infra/test_infra_hardening.py
                assert statement["Effect"] == "Allow"
                actions = _as_list(statement["Action"])
                condition = statement.get("Condition")
                suffix = ""
                if condition:  # only the config-table partition-key condition is expected
                    keys = condition["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]
                    suffix = "[" + ",".join(sorted(_as_list(keys))) + "]"
                for resource in _as_list(statement["Resource"]):
                    target = _target(resource, role_of, self.json["Resources"]) + suffix
                    pairs.update((action, target) for action in actions)
        return pairs


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _target(resource: Any, role_of: dict[str, str], resources: dict[str, Any]) -> str:
    if resource == "*":
        return "*"
    text = json.dumps(resource)
    for lid, role in role_of.items():
        if f'"{lid}"' in text:
            return f"{role}/index" if "/index/" in text else role
    for lid, res in resources.items():
        if f'"{lid}"' in text and res["Type"] == "AWS::Logs::LogGroup":
            return "log-group"
    if ":identity/" in text:
        return "ses:identity"
    if ":configuration-set/" in text:
        return "ses:configuration-set"
    return text


def _synth(outdir: Path, context: dict[str, Any]) -> Synth:
    app, stack = build_app({"nag": False, **context}, outdir=str(outdir))
    app.synth()
    template_path = outdir / f"{stack.stack_name}.template.json"
    data = json.loads(template_path.read_text())
    return Synth(
        app=app,
        stack=stack,
        template=Template.from_stack(stack),  # reuses the assembly synthesized above
        json=data,
        template_path=template_path,
        assets_path=outdir / f"{stack.stack_name}.assets.json",
        model=read_stack(data),
    )


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The default stack (cdk.json context: stage dev), synthesized once per session."""
    return _synth(tmp_path_factory.mktemp("cdk-default"), {})


@pytest.fixture(scope="session")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """prod + local synthesizer + SES identity + alarm email + custom concurrency and base URL."""
    return _synth(tmp_path_factory.mktemp("cdk-variant"), VARIANT_CONTEXT)

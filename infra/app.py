"""CDK app entry point: `CDK_OUTDIR=cdk.out python -m infra.app` (or `cdk synth`).

No AWS credentials, no Docker: the layer is pip-installed for aarch64 (infra/layer.py) and the
stack is environment-agnostic.  cdk-nag (AwsSolutions) runs as a policy-validation plugin, so
an unacknowledged finding fails the synth (context `nag=false` skips it).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import App, DefaultStackSynthesizer, Validations

from infra.config import DEFAULTS, StackConfig, cdk_json_context
from infra.stack import RetentionStack


def build_app(context: dict[str, Any] | None = None, outdir: str | None = None) -> tuple[App, RetentionStack]:
    """Compose the app. Context precedence: CDK CLI/CDK_CONTEXT_JSON > `context` > cdk.json > defaults."""
    base = {**DEFAULTS, **cdk_json_context(), **(context or {})}
    app = App(context=base, outdir=outdir)
    # Values passed by the CLI (CDK_CONTEXT_JSON) win over `context=`; explicit `context` from
    # a Python caller (tests, infra.local_deploy) must win over everything.
    for key, value in (context or {}).items():
        app.node.set_context(key, value)
    config = StackConfig.from_node(app.node)
    synthesizer = DefaultStackSynthesizer(generate_bootstrap_version_rule=False) if config.local else None
    stack = RetentionStack(
        app,
        config.stack_name,
        config=config,
        synthesizer=synthesizer,
        description=f"Retention engine ({config.stage})",
    )
    if config.nag:
        from cdk_nag import AwsSolutionsChecks

        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()

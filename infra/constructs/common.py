"""Helpers shared by the constructs: role metadata and cdk-nag acknowledgements."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Validations
from constructs import IConstruct

# Metadata keys written on the CloudFormation resources; infra/local_deploy.py reads them to map
# logical resources to their role (table:profiles, queue:send, function:track_event, …).
ROLE_KEY = "retention:role"
HANDLER_DIR_KEY = "retention:handler_dir"
HANDLER_KEY = "retention:handler"


def set_role(construct: IConstruct, role: str, **extra: str) -> None:
    """Mark the construct's CloudFormation resource with `retention:role` (and extra keys)."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to tag")
    resource.add_metadata(ROLE_KEY, role)
    for key, value in extra.items():
        resource.add_metadata(key, value)


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge (suppress) one cdk-nag finding on `scope` and everything below it.

    `rule` is a cdk-nag 3 finding id, e.g. `AwsSolutions-APIG3` or
    `AwsSolutions-IAM5[Resource::*]`; every acknowledgement states why the finding is accepted.
    """
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))

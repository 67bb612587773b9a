"""CDK app of the retention engine (`python -m infra.app`); see infra/stack.py for the composition."""

import os

# Node 20 is past jsii's support window; the kernel starts with the first aws_cdk import and
# reads this variable then, so it is set here, before any infra module imports aws_cdk.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
